//! Connection tickets: short-lived, Ed25519-signed permission to open tunnels to some ports of
//! one workspace. The control plane signs them; every edge verifies them offline.
//!
//! Encoding: `pt1.<base64url(claims JSON)>.<base64url(signature)>`, where the signature covers
//! the ASCII bytes `pt1.<base64url(claims JSON)>`. The prefix is the format version; a new
//! layout gets a new prefix and edges accept both during a rollout.
//! Tickets are carried in the `Perigee-Ticket` header, never in URLs.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Format prefix of the current ticket encoding.
pub const PREFIX: &str = "pt1.";
/// Longest encoded ticket an edge will look at.
pub const MAX_TICKET_LEN: usize = 4096;
/// Longest lifetime the control plane may give a ticket, in seconds.
pub const MAX_LIFETIME_SECS: u64 = 300;
/// Clock skew tolerated between the control plane and an edge, in seconds.
pub const CLOCK_SKEW_SECS: u64 = 30;
/// Header that carries a ticket.
pub const HEADER: &str = "perigee-ticket";
/// Most ports one ticket may name.
pub const MAX_PORTS: usize = 64;

/// What a ticket grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Key id of the signing key.
    pub kid: String,
    /// User id of the holder.
    pub sub: String,
    /// Workspace id.
    pub ws: String,
    /// Ports of the workspace the holder may reach.
    pub ports: Vec<u16>,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// Session id, for logs and tracing.
    pub sid: String,
    /// Name of the workspace agent's home edge (where its link is): an edge that does not
    /// hold the agent forwards the tunnel there over the mesh. Empty: the primary edge.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub home: String,
    /// Streams carry an end-to-end encrypted session the agent terminates (the provider has
    /// end-to-end encryption on); edges tell the agent so when they open the stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub e2e: bool,
    /// Id of the API token the ticket was issued to: edges refuse tickets of a token revoked
    /// since (the control plane lists those in their configuration).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tid: String,
}

/// Why a ticket was refused. Every variant is the client's fault except `UnknownKey`, which
/// may also mean the edge has not yet received a rotated key.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TicketError {
    /// Longer than [`MAX_TICKET_LEN`].
    #[error("ticket too long ({0} bytes)")]
    TooLong(usize),
    /// Not of the `pt1.<claims>.<sig>` shape, or not base64/JSON.
    #[error("malformed ticket: {0}")]
    Malformed(&'static str),
    /// Signed with a key this edge does not know.
    #[error("ticket signed by unknown key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("ticket signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("ticket expired {0} s ago")]
    Expired(u64),
    /// Issued with a lifetime over [`MAX_LIFETIME_SECS`] or in the future.
    #[error("ticket lifetime is not acceptable")]
    BadLifetime,
    /// For another workspace.
    #[error("ticket is for another workspace")]
    WrongWorkspace,
    /// Does not name the requested port.
    #[error("ticket does not grant port {0}")]
    PortNotGranted(u16),
    /// Issued to an API token that has been revoked since.
    #[error("ticket was issued to an API token that has been revoked")]
    Revoked,
}

/// The control plane's signing key.
pub struct Signer {
    key: Ed25519KeyPair,
    kid: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("key", &"***")
            .finish()
    }
}

/// Failure to create or load a signing key.
#[derive(Debug, Error)]
#[error("ticket signing key: {0}")]
pub struct KeyError(String);

impl Signer {
    /// Generates a new key; returns it with its PKCS#8 encoding for storage.
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError(e.to_string()))?;
        let signer = Self::from_pkcs8(pkcs8.as_ref())?;
        Ok((signer, pkcs8.as_ref().to_vec()))
    }

    /// Loads a key from its PKCS#8 encoding.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let key = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| KeyError(e.to_string()))?;
        let kid = key_id(key.public_key().as_ref());
        Ok(Self { key, kid })
    }

    /// The key id carried in tickets.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key, for edges.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// Signs claims (the `kid` field is overwritten with this key's id).
    pub fn sign(&self, mut claims: Claims) -> String {
        claims.kid = self.kid.clone();
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let mut out = String::with_capacity(PREFIX.len() + json.len() * 2);
        out.push_str(PREFIX);
        B64.encode_string(&json, &mut out);
        let sig = self.key.sign(out.as_bytes());
        out.push('.');
        B64.encode_string(sig.as_ref(), &mut out);
        out
    }
}

/// The key id of a public key: the first 8 bytes of its SHA-256, hex.
pub fn key_id(public_key: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The public keys an edge trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: HashMap<String, Vec<u8>>,
    revoked: std::collections::HashSet<String>,
}

impl Verifier {
    /// A verifier trusting the given Ed25519 public keys.
    pub fn new<I: IntoIterator<Item = Vec<u8>>>(public_keys: I) -> Self {
        let keys = public_keys.into_iter().map(|k| (key_id(&k), k)).collect();
        Self {
            keys,
            revoked: Default::default(),
        }
    }

    /// Also refuses tickets issued to these API token ids.
    pub fn with_revoked<I: IntoIterator<Item = String>>(mut self, token_ids: I) -> Self {
        self.revoked = token_ids.into_iter().collect();
        self
    }

    /// Checks a ticket's form, signature, lifetime, workspace and port at time `now`.
    pub fn verify(
        &self,
        ticket: &str,
        workspace: Option<&str>,
        port: u16,
        now: u64,
    ) -> Result<Claims, TicketError> {
        let claims = self.verify_signature(ticket)?;
        if claims.iat > now + CLOCK_SKEW_SECS
            || claims.exp < claims.iat
            || claims.exp - claims.iat > MAX_LIFETIME_SECS
        {
            return Err(TicketError::BadLifetime);
        }
        if claims.exp + CLOCK_SKEW_SECS < now {
            return Err(TicketError::Expired(now - claims.exp));
        }
        if let Some(ws) = workspace {
            if ws != claims.ws {
                return Err(TicketError::WrongWorkspace);
            }
        }
        if !claims.ports.contains(&port) {
            return Err(TicketError::PortNotGranted(port));
        }
        if !claims.tid.is_empty() && self.revoked.contains(&claims.tid) {
            return Err(TicketError::Revoked);
        }
        Ok(claims)
    }

    /// Checks form and signature only, returning the claims.
    pub fn verify_signature(&self, ticket: &str) -> Result<Claims, TicketError> {
        if ticket.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLong(ticket.len()));
        }
        let rest = ticket
            .strip_prefix(PREFIX)
            .ok_or(TicketError::Malformed("unknown prefix"))?;
        let (claims_b64, sig_b64) = rest
            .split_once('.')
            .ok_or(TicketError::Malformed("missing signature"))?;
        let signed = &ticket[..PREFIX.len() + claims_b64.len()];
        let json = B64
            .decode(claims_b64)
            .map_err(|_| TicketError::Malformed("claims are not base64url"))?;
        let sig = B64
            .decode(sig_b64)
            .map_err(|_| TicketError::Malformed("signature is not base64url"))?;
        let claims: Claims = serde_json::from_slice(&json)
            .map_err(|_| TicketError::Malformed("claims are not valid JSON"))?;
        if claims.ports.len() > MAX_PORTS {
            return Err(TicketError::Malformed("too many ports"));
        }
        let key = self
            .keys
            .get(&claims.kid)
            .ok_or_else(|| TicketError::UnknownKey(claims.kid.clone()))?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| TicketError::BadSignature)?;
        Ok(claims)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims(now: u64) -> Claims {
        Claims {
            kid: String::new(),
            sub: "u1".into(),
            ws: "w1".into(),
            ports: vec![22],
            iat: now,
            exp: now + 60,
            sid: "s".into(),
            home: String::new(),
            e2e: false,
            tid: String::new(),
        }
    }

    #[test]
    fn verifies_a_good_ticket_and_refuses_the_rest() {
        let (signer, _) = Signer::generate().unwrap();
        let v = Verifier::new([signer.public_key()]);
        let now = 1_000_000;
        let t = signer.sign(claims(now));
        assert_eq!(v.verify(&t, Some("w1"), 22, now).unwrap().sub, "u1");
        assert_eq!(
            v.verify(&t, Some("w2"), 22, now),
            Err(TicketError::WrongWorkspace)
        );
        assert_eq!(
            v.verify(&t, Some("w1"), 80, now),
            Err(TicketError::PortNotGranted(80))
        );
        assert_eq!(
            v.verify(&t, Some("w1"), 22, now + 1000),
            Err(TicketError::Expired(1000 - 60))
        );

        // Issued to a token revoked since: refused; tickets of other tokens are not.
        let mut c = claims(now);
        c.tid = "tok1".into();
        let of_revoked = signer.sign(c.clone());
        c.tid = "tok2".into();
        let of_other = signer.sign(c);
        let v2 = Verifier::new([signer.public_key()]).with_revoked(["tok1".to_owned()]);
        assert_eq!(
            v2.verify(&of_revoked, Some("w1"), 22, now),
            Err(TicketError::Revoked)
        );
        assert!(v2.verify(&of_other, Some("w1"), 22, now).is_ok());
        assert!(v2.verify(&t, Some("w1"), 22, now).is_ok());

        // A forged ticket: same claims, another key.
        let (other, _) = Signer::generate().unwrap();
        let mut forged = other.sign(claims(now));
        assert!(matches!(
            v.verify(&forged, None, 22, now),
            Err(TicketError::UnknownKey(_))
        ));
        // Claims edited after signing.
        let mut c = claims(now);
        c.ports = vec![22, 80];
        c.kid = signer.kid().to_owned();
        let json = serde_json::to_vec(&c).unwrap();
        let sig = t.rsplit_once('.').unwrap().1;
        forged = format!("{PREFIX}{}.{sig}", B64.encode(json));
        assert_eq!(
            v.verify(&forged, None, 80, now),
            Err(TicketError::BadSignature)
        );

        let mut long = claims(now);
        long.exp = now + MAX_LIFETIME_SECS + 1;
        assert_eq!(
            v.verify(&signer.sign(long), None, 22, now),
            Err(TicketError::BadLifetime)
        );
        assert!(matches!(
            v.verify("garbage", None, 22, now),
            Err(TicketError::Malformed(_))
        ));
        assert!(matches!(
            v.verify(&"x".repeat(5000), None, 22, now),
            Err(TicketError::TooLong(_))
        ));
    }

    #[test]
    fn round_trips_keys() {
        let (signer, pkcs8) = Signer::generate().unwrap();
        let again = Signer::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(signer.kid(), again.kid());
        assert!(Signer::from_pkcs8(b"nope").is_err());
    }
}
