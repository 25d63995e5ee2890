//! TURN long-term credentials in coturn's "REST API" form: the control plane and the edges
//! share a secret; a username is `EXPIRY:USER` (Unix seconds) and its password
//! `base64(HMAC-SHA1(secret, username))`, so an edge checks credentials without a lookup
//! and they stop working at EXPIRY. Nonces are stateless (time plus a MAC) and go stale.

/// How long a nonce stays fresh.
pub const NONCE_LIFETIME_SECS: u64 = 600;

pub use relay_core::turn_creds::{ephemeral_password, ephemeral_username};

pub use relay_core::stun::long_term_key;

/// Why credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not `EXPIRY:USER`.
    #[error("username is not EXPIRY:USER")]
    Malformed,
    /// Past its expiry.
    #[error("credentials expired")]
    Expired,
}

/// The server's view of credentials and nonces.
pub struct Credentials {
    secret: Vec<u8>,
    realm: String,
    nonce_key: ring::hmac::Key,
}

impl Credentials {
    /// Credentials checked against `secret` in `realm`.
    pub fn new(secret: &[u8], realm: &str) -> Self {
        let nonce_secret: [u8; 32] = relay_random();
        Self {
            secret: secret.to_vec(),
            realm: realm.to_owned(),
            nonce_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &nonce_secret),
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The user and the message-integrity key for `username` at `now`.
    pub fn key_for(&self, username: &str, now: u64) -> Result<(String, [u8; 16]), AuthError> {
        let (expiry, user) = username.split_once(':').ok_or(AuthError::Malformed)?;
        let expiry: u64 = expiry.parse().map_err(|_| AuthError::Malformed)?;
        if user.is_empty() {
            return Err(AuthError::Malformed);
        }
        if expiry < now {
            return Err(AuthError::Expired);
        }
        let password = ephemeral_password(&self.secret, username);
        Ok((
            user.to_owned(),
            long_term_key(username, &self.realm, &password),
        ))
    }

    /// A fresh nonce.
    pub fn nonce(&self, now: u64) -> String {
        let ts = format!("{now:016x}");
        let tag = ring::hmac::sign(&self.nonce_key, ts.as_bytes());
        let mac: String = tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{ts}{mac}")
    }

    /// Whether `nonce` is one of ours and still fresh at `now`.
    pub fn nonce_fresh(&self, nonce: &str, now: u64) -> bool {
        if nonce.len() != 32 || !nonce.is_ascii() {
            return false;
        }
        let (ts, mac) = nonce.split_at(16);
        let tag = ring::hmac::sign(&self.nonce_key, ts.as_bytes());
        let want: String = tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let Ok(t) = u64::from_str_radix(ts, 16) else {
            return false;
        };
        want == mac && now.saturating_sub(t) < NONCE_LIFETIME_SECS && t <= now + 5
    }
}

fn relay_random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let rng = ring::rand::SystemRandom::new();
    let _ = ring::rand::SecureRandom::fill(&rng, &mut b);
    b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn coturn_rest_credentials() {
        // The coturn REST form: password = base64(hmac-sha1(secret, "expiry:user")).
        let p = ephemeral_password(b"north", "1700000000:ada");
        assert_eq!(p.len(), 28);
        let c = Credentials::new(b"north", "perigee");
        let (user, key) = c.key_for("1700000000:ada", 1_600_000_000).unwrap();
        assert_eq!(user, "ada");
        assert_eq!(key, long_term_key("1700000000:ada", "perigee", &p));
        assert_eq!(
            c.key_for("1700000000:ada", 1_800_000_000),
            Err(AuthError::Expired)
        );
        assert_eq!(c.key_for("ada", 0), Err(AuthError::Malformed));
        assert_eq!(c.key_for("soon:ada", 0), Err(AuthError::Malformed));
        let n = c.nonce(1000);
        assert!(c.nonce_fresh(&n, 1000 + NONCE_LIFETIME_SECS - 1));
        assert!(!c.nonce_fresh(&n, 1000 + NONCE_LIFETIME_SECS));
        assert!(!c.nonce_fresh(&Credentials::new(b"north", "perigee").nonce(1000), 1000));
        assert!(!c.nonce_fresh("short", 1000));
    }
}
