//! Dev URL host names: `{port}--{workspace}--{user}.{host}` (a trailing `s` on the port means
//! the workspace port speaks HTTPS) and named URLs `{name}--{user}.{host}`.
//!
//! Edges route dev URLs on the `Host` header (or SNI) alone; this module owns the format and
//! its limits, so every edge reads a host the same way. Parsing never allocates more than
//! the host's length and refuses anything outside the format with a reason.

use thiserror::Error;

/// Longest host accepted (DNS limit).
pub const MAX_HOST_LEN: usize = 253;
/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// Separator between the parts of the first label.
pub const SEP: &str = "--";

/// What a dev URL host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A workspace port.
    Port {
        /// Port inside the workspace (1-65535).
        port: u16,
        /// The port speaks HTTPS (the edge connects with TLS).
        https: bool,
        /// Workspace name.
        workspace: String,
        /// Owner's user name.
        user: String,
    },
    /// A named URL the owner created (`perigee urls create … --name`).
    Named {
        /// URL name.
        name: String,
        /// Owner's user name.
        user: String,
    },
}

/// What the control plane decided about a dev URL request (the edge turns it into a
/// response).
///
/// Serialized as the control plane's answer to a satellite (`{"allow": {…}}`, `"sign_in"`,
/// `{"deny": "…"}`, `"not_found"`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Proxy to `port` of the workspace.
    Allow {
        /// Workspace id (the agent link's key).
        workspace_id: String,
        /// Port inside the workspace.
        port: u16,
        /// The port speaks HTTPS.
        https: bool,
        /// The edge holding the workspace's agent link (empty: the primary edge); an edge
        /// without the link opens the stream there over the mesh.
        #[serde(default)]
        home: String,
        /// A short-lived connection ticket for exactly this workspace port, which the home
        /// edge checks again when the stream crosses the mesh.
        #[serde(default)]
        ticket: String,
    },
    /// Only a signed-in viewer may open it, and there is none.
    SignIn,
    /// The viewer may not open it; the reason is shown.
    Deny(String),
    /// Nothing at this address (said the same way whatever is missing).
    NotFound,
    /// No decision could be made now (the control plane is unreachable); not cached.
    Unavailable(String),
}

/// A host that looks like a dev URL of this edge but is not a valid one.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostError {
    /// Longer than [`MAX_HOST_LEN`] or a label over [`MAX_LABEL_LEN`].
    #[error("host name too long")]
    TooLong,
    /// Not of the `port--workspace--user` or `name--user` shape, or bad characters.
    #[error("malformed dev URL host: {0}")]
    Malformed(&'static str),
    /// The port is 0 or over 65535.
    #[error("port out of range (1-65535)")]
    PortOutOfRange,
}

/// The wildcard's base (`*.dev.example.com` → `dev.example.com`), lowercased.
pub fn base(wildcard: &str) -> String {
    wildcard
        .trim()
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Checks a dev URL wildcard host as an admin gives it (`*.dev.example.com`): its base, or
/// why it cannot be served.
pub fn check_wildcard(wildcard: &str) -> Result<String, String> {
    let b = base(wildcard);
    let labels_ok = b.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= MAX_LABEL_LEN
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    });
    if !wildcard.trim().starts_with("*.") || !labels_ok {
        return Err(format!(
            "dev URL host {wildcard:?} must be a wildcard like '*.dev.example.com'"
        ));
    }
    if !b.contains('.') {
        return Err(format!(
            "dev URL host {wildcard:?}: give a wildcard over at least two labels, like '*.dev.example.com' or '*.dev.localhost' (certificates cannot cover '*.{b}')"
        ));
    }
    Ok(b)
}

/// The host part of a `Host` header value (port removed, lowercased), or `None` when it is
/// not a plain DNS name.
pub fn host_of(header: &str) -> Option<String> {
    let h = header.trim();
    if h.starts_with('[') {
        return None; // IPv6 literal: never a dev URL
    }
    let h = match h.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => h,
    };
    let h = h.trim_end_matches('.');
    (!h.is_empty()).then(|| h.to_ascii_lowercase())
}

/// Reads `host` (already lowercased, no port) against the dev URL base `base`: `Ok(None)`
/// when the host is not under the base (not a dev URL at all), an error when it is under it
/// but not a valid dev URL.
pub fn parse(host: &str, base: &str) -> Result<Option<Target>, HostError> {
    if base.is_empty() {
        return Ok(None);
    }
    let Some(first) = host
        .strip_suffix(base)
        .and_then(|rest| rest.strip_suffix('.'))
    else {
        return Ok(None);
    };
    if host.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    if first.contains('.') {
        return Err(HostError::Malformed("one label before the dev URL host"));
    }
    if first.len() > MAX_LABEL_LEN {
        return Err(HostError::TooLong);
    }
    if !first
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(HostError::Malformed("letters, digits and hyphens only"));
    }
    let parts: Vec<&str> = first.split(SEP).collect();
    let name_ok = |s: &str| !s.is_empty() && !s.starts_with('-') && !s.ends_with('-');
    match parts.as_slice() {
        [port, workspace, user] => {
            let (digits, https) = match port.strip_suffix('s') {
                Some(d) => (d, true),
                None => (*port, false),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HostError::Malformed("the first part must be a port"));
            }
            let port: u32 = if digits.len() > 5 {
                return Err(HostError::PortOutOfRange);
            } else {
                digits.parse().map_err(|_| HostError::PortOutOfRange)?
            };
            if port == 0 || port > 65535 {
                return Err(HostError::PortOutOfRange);
            }
            if !name_ok(workspace) || !name_ok(user) {
                return Err(HostError::Malformed("empty workspace or user"));
            }
            Ok(Some(Target::Port {
                port: port as u16,
                https,
                workspace: (*workspace).to_owned(),
                user: (*user).to_owned(),
            }))
        }
        [name, user] => {
            if !name_ok(name) || !name_ok(user) {
                return Err(HostError::Malformed("empty name or user"));
            }
            Ok(Some(Target::Named {
                name: (*name).to_owned(),
                user: (*user).to_owned(),
            }))
        }
        _ => Err(HostError::Malformed(
            "expected PORT--WORKSPACE--USER or NAME--USER",
        )),
    }
}

/// `name=value` pairs of every `Cookie` header of a request (the edge's session cookie, the
pub use crate::cookies::{cookie, cookies};

/// A dev URL session cookie's value for `user` on exactly `host`, good until `exp` (Unix
/// seconds): `USER.EXP.MAC`, the MAC an HMAC-SHA256 under the edge's key over the host too,
/// so a cookie of one dev URL means nothing on another.
pub fn cookie_value(key: &[u8], user: &str, host: &str, exp: u64) -> String {
    use base64::Engine as _;
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&k, format!("v1\n{host}\n{user}\n{exp}").as_bytes());
    format!(
        "{user}.{exp}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// The user a cookie value names, if it was made by `key` for `host` and is not expired at
/// `now`. Values over 256 bytes are refused unread.
pub fn cookie_user(key: &[u8], value: &str, host: &str, now: u64) -> Option<String> {
    use base64::Engine as _;
    if value.len() > 256 {
        return None;
    }
    let mut parts = value.splitn(3, '.');
    let (user, exp, mac) = (parts.next()?, parts.next()?, parts.next()?);
    if user.is_empty() || !user.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let exp: u64 = exp.parse().ok()?;
    let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(mac)
        .ok()?;
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::verify(&k, format!("v1\n{host}\n{user}\n{exp}").as_bytes(), &mac).ok()?;
    (exp > now).then(|| user.to_owned())
}

/// The host of a port URL (the inverse of [`parse`]).
pub fn port_host(port: u16, https: bool, workspace: &str, user: &str, base: &str) -> String {
    let s = if https { "s" } else { "" };
    format!("{port}{s}{SEP}{workspace}{SEP}{user}.{base}")
}

/// The host of a named URL.
pub fn named_host(name: &str, user: &str, base: &str) -> String {
    format!("{name}{SEP}{user}.{base}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const B: &str = "dev.example.com";

    #[test]
    fn reads_port_and_named_urls() {
        assert_eq!(
            parse("8080--ws--alice.dev.example.com", B),
            Ok(Some(Target::Port {
                port: 8080,
                https: false,
                workspace: "ws".into(),
                user: "alice".into()
            }))
        );
        assert_eq!(
            parse("8443s--my-ws--bob.dev.example.com", B),
            Ok(Some(Target::Port {
                port: 8443,
                https: true,
                workspace: "my-ws".into(),
                user: "bob".into()
            }))
        );
        assert_eq!(
            parse("docs--alice.dev.example.com", B),
            Ok(Some(Target::Named {
                name: "docs".into(),
                user: "alice".into()
            }))
        );
        let h = port_host(3000, true, "w", "u", B);
        assert_eq!(
            parse(&h, B).unwrap(),
            Some(Target::Port {
                port: 3000,
                https: true,
                workspace: "w".into(),
                user: "u".into()
            })
        );
    }

    #[test]
    fn other_hosts_are_not_dev_urls() {
        assert_eq!(parse("dev.example.com", B), Ok(None));
        assert_eq!(parse("api.example.com", B), Ok(None));
        assert_eq!(parse("8080--ws--alice.evildev.example.com", B), Ok(None));
        assert_eq!(parse("x.dev.example.com.evil.org", B), Ok(None));
        assert_eq!(parse("8080--ws--alice.dev.example.com", ""), Ok(None));
    }

    #[test]
    fn bad_hosts_are_refused_with_a_reason() {
        assert_eq!(
            parse("0--ws--a.dev.example.com", B),
            Err(HostError::PortOutOfRange)
        );
        assert_eq!(
            parse("65536--ws--a.dev.example.com", B),
            Err(HostError::PortOutOfRange)
        );
        assert_eq!(
            parse("99999999999999999999--ws--a.dev.example.com", B),
            Err(HostError::PortOutOfRange)
        );
        assert!(matches!(
            parse("a.b.dev.example.com", B),
            Err(HostError::Malformed(_))
        ));
        assert!(matches!(
            parse("x--y--z--w.dev.example.com", B),
            Err(HostError::Malformed(_))
        ));
        assert!(matches!(
            parse("80---ws--a.dev.example.com", B),
            Err(HostError::Malformed(_))
        ));
        assert!(matches!(
            parse("a_b--c.dev.example.com", B),
            Err(HostError::Malformed(_))
        ));
        assert_eq!(
            parse(&format!("{}.dev.example.com", "a".repeat(64)), B),
            Err(HostError::TooLong)
        );
        assert!(matches!(
            parse("nope.dev.example.com", B),
            Err(HostError::Malformed(_))
        ));
    }

    #[test]
    fn cookies_are_bound_to_key_host_and_time() {
        let v = cookie_value(b"k1", "ab12", "8080--w--u.dev.test", 100);
        assert_eq!(
            cookie_user(b"k1", &v, "8080--w--u.dev.test", 99).as_deref(),
            Some("ab12")
        );
        assert_eq!(
            cookie_user(b"k1", &v, "8080--w--u.dev.test", 100),
            None,
            "expired"
        );
        assert_eq!(
            cookie_user(b"k1", &v, "8081--w--u.dev.test", 99),
            None,
            "other host"
        );
        assert_eq!(
            cookie_user(b"k2", &v, "8080--w--u.dev.test", 99),
            None,
            "other key"
        );
        let forged = v.replacen("ab12", "ab13", 1);
        assert_eq!(cookie_user(b"k1", &forged, "8080--w--u.dev.test", 99), None);
        assert_eq!(cookie_user(b"k1", "x", "h", 0), None);
        assert_eq!(cookie_user(b"k1", &"a".repeat(300), "h", 0), None);
    }

    #[test]
    fn host_headers() {
        assert_eq!(
            host_of("8080--W--a.Dev.Example.com:8443").as_deref(),
            Some("8080--w--a.dev.example.com")
        );
        assert_eq!(host_of("[::1]:80"), None);
        assert_eq!(host_of("a:b"), None);
        assert_eq!(host_of(""), None);
        assert_eq!(base("*.Dev.Example.com."), "dev.example.com");
    }
}
