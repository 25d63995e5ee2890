//! Secrets handed to users and agents: generated here, stored only as a SHA-256 hash.
//!
//! Format: `<kind>_<32 random bytes as base64url>` (kind `pgt` for API tokens, `pga` for agent
//! tokens, `pgs` for satellite tokens, `pgp` for provider tokens), so a leaked token is recognisable by secret scanners.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::SecureRandom as _;

/// Prefix of API tokens.
pub const API_PREFIX: &str = "pgt";
/// Prefix of agent tokens.
pub const AGENT_PREFIX: &str = "pga";
/// Prefix of satellite tokens.
pub const SATELLITE_PREFIX: &str = "pgs";
/// Prefix of workspace-provider (REMOTE) tokens.
pub const PROVIDER_PREFIX: &str = "pgp";

/// A secret whose `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it must leave the process.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // SystemRandom only fails when the OS has no entropy source; nothing can run then.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("the operating system's random number generator failed");
    }
    bytes
}

/// A new random token of the given kind.
pub fn generate(prefix: &str) -> Secret {
    Secret(format!("{prefix}_{}", B64.encode(random_bytes::<32>())))
}

/// Random identifier (16 bytes, hex) for rows, sessions and key ids.
pub fn random_id() -> String {
    random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random 64-bit number (stream ids).
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Whether two secrets (CSRF tokens, codes) are equal, in time that does not depend on
/// where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The hash stored for a token: SHA-256, hex.
pub fn hash(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let a = generate(API_PREFIX);
        let b = generate(API_PREFIX);
        assert_ne!(a, b);
        assert!(a.expose().starts_with("pgt_"));
        assert_eq!(format!("{a:?}"), "***");
        assert_eq!(hash(a.expose()).len(), 64);
        assert_ne!(hash(a.expose()), hash(b.expose()));
    }
}
