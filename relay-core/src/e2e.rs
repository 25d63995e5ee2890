//! End-to-end encryption of tunnels between the CLI and the agent, for providers that turn it
//! on: a TLS 1.3 session inside the tunnel stream, so edges relay only ciphertext.
//!
//! The agent makes a self-signed certificate when it starts and reports its SHA-256
//! fingerprint to the control plane with its agent token; the control plane hands the
//! fingerprint to the CLI with the connection ticket (authenticated by the user's API
//! token over TLS). The CLI accepts exactly that certificate, so an edge — which sees the
//! ticket but holds no agent key — cannot stand in for the agent.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::tls::{provider, TlsError};

/// ALPN of the inner session.
pub const ALPN: &[u8] = b"perigee-e2e/1";
/// Server name the CLI asks for (the certificate is pinned, not named).
pub const SERVER_NAME: &str = "perigee-agent";
/// Length of a fingerprint in hex.
pub const FINGERPRINT_LEN: usize = 64;

/// Lowercase hex SHA-256 of a certificate.
pub fn fingerprint(cert: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, cert);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` has the shape of a fingerprint.
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == FINGERPRINT_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The agent's inner-session identity.
pub struct AgentIdentity {
    /// TLS server configuration for the inner session.
    pub server: Arc<rustls::ServerConfig>,
    /// Fingerprint to report to the control plane.
    pub fingerprint: String,
}

impl AgentIdentity {
    /// A fresh key and self-signed certificate.
    pub fn generate() -> Result<Self, TlsError> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])?;
        let cert = certified.cert.der().clone();
        let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).map_err(|e| {
            TlsError::Pem {
                path: std::path::PathBuf::new(),
                what: e.to_string(),
            }
        })?;
        let fingerprint = fingerprint(&cert);
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Self {
            server: Arc::new(server),
            fingerprint,
        })
    }
}

/// TLS client configuration that accepts only the certificate with `fingerprint`.
pub fn client_config(fingerprint: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let verifier = Pinned {
        fingerprint: fingerprint.to_ascii_lowercase(),
        provider: provider(),
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// The name the CLI connects to.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME)
        .unwrap_or_else(|_| ServerName::from(std::net::Ipv4Addr::LOCALHOST))
}

#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the agent's end-to-end key is not the one the control plane vouched for".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn handshake(agent: &AgentIdentity, pin: &str) -> Result<Vec<u8>, std::io::Error> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio_rustls::TlsAcceptor::from(agent.server.clone());
        let srv = tokio::spawn(async move {
            let mut s = server.accept(b).await?;
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await?;
            s.write_all(&buf).await?;
            s.shutdown().await?;
            std::io::Result::Ok(())
        });
        let connector = tokio_rustls::TlsConnector::from(client_config(pin).unwrap());
        let mut c = connector.connect(server_name(), a).await?;
        c.write_all(b"hello").await?;
        let mut back = Vec::new();
        c.read_to_end(&mut back).await?;
        let _ = srv.await;
        Ok(back)
    }

    #[tokio::test]
    async fn only_the_pinned_agent_is_accepted() {
        let agent = AgentIdentity::generate().unwrap();
        assert!(is_fingerprint(&agent.fingerprint));
        assert_eq!(
            handshake(&agent, &agent.fingerprint).await.unwrap(),
            b"hello"
        );
        let other = AgentIdentity::generate().unwrap();
        let e = handshake(&agent, &other.fingerprint).await.unwrap_err();
        assert!(e.to_string().contains("vouched"), "{e}");
    }
}
