//! TURN credentials in coturn's "REST API" form, minted by the control plane and checked by
//! every edge's TURN server (crate `turn`): a username is `EXPIRY:USER` (Unix seconds) and its
//! password `base64(HMAC-SHA1(secret, username))`, so an edge checks credentials without a
//! lookup and they stop working at EXPIRY. Here, in the crate both sides import, so the
//! control plane does not depend on the TURN server for two functions.

use base64::Engine as _;

/// The password for an ephemeral `username` under `secret`.
pub fn ephemeral_password(secret: &[u8], username: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&k, username.as_bytes()))
}

/// An ephemeral username valid until `expiry` for `user`.
pub fn ephemeral_username(expiry: u64, user: &str) -> String {
    format!("{expiry}:{user}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_follow_coturns_rest_api_form() {
        // coturn: password = base64(hmac-sha1(static-auth-secret, username))
        let p = super::ephemeral_password(b"north", &super::ephemeral_username(1_700_000_000, "u"));
        assert_eq!(p.len(), 28, "{p}");
        assert_ne!(p, super::ephemeral_password(b"south", "1700000000:u"));
        assert_eq!(p, super::ephemeral_password(b"north", "1700000000:u"));
    }
}
