//! HTTP cookies, for every perigee server: reading a request's `Cookie` headers and
//! writing `Set-Cookie` through the `cookie` crate, always `HttpOnly`, host-only (never a
//! `Domain`: a cookie of one host is not sent to its siblings under a wildcard).

use std::time::Duration;

pub use cookie::SameSite;

/// Every `name=value` pair of a request's `Cookie` headers.
pub fn cookies(headers: &http::HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    cookies(headers).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// How a cookie is set.
#[derive(Debug, Clone, Copy)]
pub struct Attributes {
    /// The path it is sent for.
    pub path: &'static str,
    /// How long it lives (zero: cleared at once).
    pub max_age: Duration,
    /// `SameSite`.
    pub same_site: SameSite,
    /// Only over HTTPS.
    pub secure: bool,
}

/// The `Set-Cookie` value for `name=value` with `attributes` (always `HttpOnly`, no
/// `Domain`); `None` when the name or value holds bytes a header cannot.
pub fn set_cookie(name: &str, value: &str, attributes: Attributes) -> Option<http::HeaderValue> {
    let max_age = i64::try_from(attributes.max_age.as_secs()).unwrap_or(i64::MAX);
    let c = cookie::Cookie::build((name, value))
        .path(attributes.path)
        .max_age(cookie::time::Duration::seconds(max_age))
        .http_only(true)
        .same_site(attributes.same_site)
        .secure(attributes.secure)
        .build();
    http::HeaderValue::from_str(&c.to_string()).ok()
}

/// Adds a `Set-Cookie` header to `headers` (nothing when the cookie cannot be a header).
pub fn add(headers: &mut http::HeaderMap, name: &str, value: &str, attributes: Attributes) {
    if let Some(v) = set_cookie(name, value, attributes) {
        headers.append(http::header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookies_are_host_only_http_only_and_carry_their_attributes() {
        let v = set_cookie(
            "__Host-s",
            "abc",
            Attributes {
                path: "/",
                max_age: Duration::from_secs(60),
                same_site: SameSite::Strict,
                secure: true,
            },
        )
        .map(|v| v.to_str().map(str::to_owned))
        .and_then(Result::ok)
        .unwrap_or_default();
        for part in [
            "__Host-s=abc",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(v.split("; ").any(|p| p == part), "{part} missing from {v}");
        }
        assert!(!v.contains("Domain"), "{v}");
        // A value a header cannot carry is refused, not sent half.
        assert!(set_cookie(
            "s",
            "a\nb",
            Attributes {
                path: "/",
                max_age: Duration::ZERO,
                same_site: SameSite::Lax,
                secure: false,
            }
        )
        .is_none());
    }

    #[test]
    fn request_cookies_are_found_by_exact_name() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; ab=2"),
        );
        h.append(http::header::COOKIE, http::HeaderValue::from_static("b=3"));
        assert_eq!(cookie(&h, "ab"), Some("2"));
        assert_eq!(cookie(&h, "b"), Some("3"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
