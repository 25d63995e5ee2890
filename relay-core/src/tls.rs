//! TLS material: the self-signed CA kept in a data directory, and rustls configurations.
//!
//! Everything uses the `ring` provider explicitly (no process-global default needed) with
//! AES-GCM first, which beats ChaCha20 on machines with AES-NI.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Failure to create, read or use TLS material.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file held no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider used everywhere in perigee.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Reads a PEM certificate chain and key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
            path: key.into(),
            what: format!("no private key: {e}"),
        })?;
        Ok(Self { chain, key })
    }
}

/// Reads every certificate of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Pem {
            path: path.into(),
            what: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.into(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.into(),
            what: "no certificate in file".into(),
        });
    }
    Ok(certs)
}

/// A local certificate authority whose files live in one directory (`ca.pem`, `ca-key.pem`).
pub struct LocalCa {
    params: CertificateParams,
    key: KeyPair,
    /// Path of the CA certificate that clients should trust.
    pub cert_path: PathBuf,
}

impl LocalCa {
    /// Loads the CA from `dir`, creating it (mode 0600 key) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        fn io(path: &Path) -> impl Fn(std::io::Error) -> TlsError + '_ {
            move |source| TlsError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        let params = ca_params();
        if cert_path.exists() && key_path.exists() {
            let pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = KeyPair::from_pem(&pem).map_err(|e| TlsError::Pem {
                path: key_path.clone(),
                what: e.to_string(),
            })?;
            return Ok(Self {
                params,
                key,
                cert_path,
            });
        }
        let key = KeyPair::generate()?;
        let cert = params.clone().self_signed(&key)?;
        write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
        std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
        Ok(Self {
            params,
            key,
            cert_path,
        })
    }

    /// Issues a fresh leaf for the given DNS names and IP addresses.
    pub fn issue(&self, names: &[String]) -> Result<Identity, TlsError> {
        // Re-creating the CA certificate from the same name and key yields an issuer that
        // verifies against the stored ca.pem.
        let issuer = self.params.clone().self_signed(&self.key)?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "perigee".into()),
        );
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer, &self.key)?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::Pem {
            path: PathBuf::new(),
            what: e.to_string(),
        })?;
        Ok(Identity {
            chain: vec![cert.der().clone(), issuer.der().clone()],
            key: key_der,
        })
    }
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name
        .push(DnType::CommonName, "perigee local CA");
    p.distinguished_name
        .push(DnType::OrganizationName, "perigee");
    p
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// A server configuration for `identity` offering the given ALPN protocols.
pub fn server_config(
    identity: &Identity,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// Root certificates: the public web roots plus an optional extra CA file (a self-signed
/// deployment's `ca.pem`).
pub fn roots(extra_ca: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| TlsError::Pem {
                path: path.into(),
                what: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// A client configuration trusting `roots` and offering the given ALPN protocols.
pub fn client_config(
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;

    #[test]
    fn ca_survives_reload_and_issues_verifiable_leaves() {
        let dir = std::env::temp_dir().join(format!("perigee-ca-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = LocalCa::load_or_create(&dir).unwrap();
        let pem1 = std::fs::read(&ca.cert_path).unwrap();
        let ca = LocalCa::load_or_create(&dir).unwrap();
        assert_eq!(
            pem1,
            std::fs::read(&ca.cert_path).unwrap(),
            "CA must not be regenerated"
        );
        let id = ca.issue(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let roots = roots(Some(&ca.cert_path)).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        verifier
            .verify_server_cert(
                &id.chain[0],
                &id.chain[1..],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("leaf verifies against the stored CA");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
