//! Finding the session token in a Socket.IO handshake.
//!
//! A browser on the Next.js app sends its session cookie with the Engine.IO handshake (same
//! site, `withCredentials`); a native or server-side client usually passes the token
//! explicitly. We look, in order, at:
//! 1. the CONNECT packet's `auth.token` (`io(url, { auth: { token } })`),
//! 2. an `Authorization: Bearer <token>` header,
//! 3. the session cookies, in [`SESSION_COOKIES`] order: NextAuth v4's
//!    `__Secure-next-auth.session-token` / `next-auth.session-token`, then Auth.js v5's
//!    `__Secure-authjs.session-token` / `authjs.session-token`. Both libraries split a cookie
//!    larger than ~4 KiB into `<name>.0`, `<name>.1`, …, which we join in index order.
//!
//! The first source that holds a non-empty token wins, even if that token turns out to be
//! invalid: an explicit token that fails is a failure, not a reason to try the cookie.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// NextAuth v4's session cookie on HTTPS.
pub const NEXTAUTH_SECURE_COOKIE: &str = "__Secure-next-auth.session-token";
/// NextAuth v4's session cookie on HTTP (development).
pub const NEXTAUTH_COOKIE: &str = "next-auth.session-token";
/// Auth.js v5's session cookie on HTTPS (also its HKDF salt).
pub const AUTHJS_SECURE_COOKIE: &str = "__Secure-authjs.session-token";
/// Auth.js v5's session cookie on HTTP (also its HKDF salt, and the one we mint with).
pub const AUTHJS_COOKIE: &str = "authjs.session-token";

/// The session cookies we read, in the order we look for them.
pub const SESSION_COOKIES: [&str; 4] = [
    NEXTAUTH_SECURE_COOKIE,
    NEXTAUTH_COOKIE,
    AUTHJS_SECURE_COOKIE,
    AUTHJS_COOKIE,
];

/// Where a token came from. For Auth.js v5 this decides the key: the cookie's name is the
/// HKDF salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `auth.token` in the Socket.IO CONNECT payload.
    HandshakeAuth,
    /// `Authorization: Bearer <token>`.
    BearerHeader,
    /// A session cookie: `name` without any chunk suffix; `chunks` is `Some(n)` when the
    /// token was joined from `name.0` … `name.{n-1}`.
    Cookie { name: String, chunks: Option<usize> },
}

impl TokenSource {
    /// A short label for logs and metrics (never the token).
    pub fn label(&self) -> &'static str {
        match self {
            TokenSource::HandshakeAuth => "auth.token",
            TokenSource::BearerHeader => "bearer",
            TokenSource::Cookie { .. } => "cookie",
        }
    }
}

/// A token and where it was found. Its `Debug` output never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct FoundToken {
    pub token: String,
    pub source: TokenSource,
}

impl FoundToken {
    pub fn new(token: impl Into<String>, source: TokenSource) -> Self {
        FoundToken {
            token: token.into(),
            source,
        }
    }
}

impl fmt::Debug for FoundToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FoundToken")
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .field("source", &self.source)
            .finish()
    }
}

/// Finds the session token of a handshake: `auth` is the CONNECT payload (`Value::Null`
/// when the client sent none), `headers` the Engine.IO handshake request's headers.
pub fn extract_token(auth: &Value, headers: &HeaderMap) -> Option<FoundToken> {
    if let Some(token) = auth
        .get("token")
        .and_then(Value::as_str)
        .map(strip_bearer)
        .filter(|t| !t.is_empty())
    {
        return Some(FoundToken::new(token, TokenSource::HandshakeAuth));
    }
    if let Some(token) = bearer_token(headers) {
        return Some(FoundToken::new(token, TokenSource::BearerHeader));
    }
    session_cookie(headers)
}

/// Clients sometimes copy the whole header value into `auth.token`; accept that too.
fn strip_bearer(token: &str) -> &str {
    let token = token.trim();
    match token.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => token,
    }
}

/// The token of the first `Authorization: Bearer …` header (scheme case-insensitive, as
/// RFC 7235 says; percent-decoded, as next-auth's `getToken` does).
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(AUTHORIZATION).iter().find_map(|value| {
        let value = value.to_str().ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
            .then(|| percent_decode(token).into_owned())
    })
}

/// The first session cookie present, whole or chunked.
fn session_cookie(headers: &HeaderMap) -> Option<FoundToken> {
    let jar = CookieJar::parse(headers);
    if jar.is_empty() {
        return None;
    }
    for name in SESSION_COOKIES {
        if let Some(value) = jar.get(name).filter(|v| !v.is_empty()) {
            return Some(FoundToken::new(
                value,
                TokenSource::Cookie {
                    name: name.to_owned(),
                    chunks: None,
                },
            ));
        }
        let mut token = String::new();
        let mut chunks = 0;
        while let Some(chunk) = jar.get(&format!("{name}.{chunks}")) {
            token.push_str(chunk);
            chunks += 1;
        }
        if !token.is_empty() {
            return Some(FoundToken::new(
                token,
                TokenSource::Cookie {
                    name: name.to_owned(),
                    chunks: Some(chunks),
                },
            ));
        }
    }
    None
}

/// Cookies by name, parsed like the `cookie` npm package that both libraries use: pairs split
/// on `;`, names and values trimmed, one pair of surrounding quotes removed, values
/// percent-decoded (kept as sent when that fails), and the first of a repeated name wins.
/// Every `Cookie` header counts (HTTP/2 may send several).
struct CookieJar(HashMap<String, String>);

impl CookieJar {
    fn parse(headers: &HeaderMap) -> Self {
        let mut jar = HashMap::new();
        for header in headers.get_all(COOKIE) {
            let header = String::from_utf8_lossy(header.as_bytes());
            for pair in header.split(';') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let name = name.trim();
                if name.is_empty() || jar.contains_key(name) {
                    continue;
                }
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                jar.insert(name.to_owned(), percent_decode(value).into_owned());
            }
        }
        CookieJar(jar)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// `decodeURIComponent`, or the input unchanged when it is not valid percent-encoded UTF-8.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Cow::Borrowed(s);
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_or(Cow::Borrowed(s), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn cookie(name: &str) -> TokenSource {
        TokenSource::Cookie {
            name: name.to_owned(),
            chunks: None,
        }
    }

    #[test]
    fn handshake_auth_beats_bearer_beats_cookies() {
        let all = headers(&[
            ("authorization", "Bearer from-header"),
            ("cookie", "next-auth.session-token=from-cookie"),
        ]);
        let found = extract_token(&json!({ "token": "from-auth" }), &all).unwrap();
        assert_eq!(
            found,
            FoundToken::new("from-auth", TokenSource::HandshakeAuth)
        );

        let found = extract_token(&Value::Null, &all).unwrap();
        assert_eq!(
            found,
            FoundToken::new("from-header", TokenSource::BearerHeader)
        );

        let cookies_only = headers(&[("cookie", "next-auth.session-token=from-cookie")]);
        let found = extract_token(&json!({ "other": 1 }), &cookies_only).unwrap();
        assert_eq!(
            found,
            FoundToken::new("from-cookie", cookie(NEXTAUTH_COOKIE))
        );
    }

    #[test]
    fn empty_or_non_string_sources_are_skipped() {
        let h = headers(&[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("authorization", "Bearer   "),
            ("cookie", "authjs.session-token=c"),
        ]);
        for auth in [
            json!({ "token": "" }),
            json!({ "token": "  " }),
            json!({ "token": 42 }),
            json!({ "token": null }),
            json!("token"),
            json!(["token"]),
            Value::Null,
        ] {
            assert_eq!(
                extract_token(&auth, &h),
                Some(FoundToken::new("c", cookie(AUTHJS_COOKIE))),
                "{auth}"
            );
        }
        assert_eq!(extract_token(&Value::Null, &HeaderMap::new()), None);
        assert_eq!(
            extract_token(&Value::Null, &headers(&[("cookie", "theme=dark; a=b")])),
            None
        );
    }

    #[test]
    fn bearer_forms() {
        for (value, want) in [
            ("Bearer abc.def", "abc.def"),
            ("bearer abc.def", "abc.def"),
            ("BEARER  abc.def ", "abc.def"),
            ("Bearer abc%2Edef", "abc.def"),
            ("Bearer abc%zz", "abc%zz"),
        ] {
            let found = extract_token(&Value::Null, &headers(&[("authorization", value)]));
            assert_eq!(
                found,
                Some(FoundToken::new(want, TokenSource::BearerHeader)),
                "{value}"
            );
        }
        assert_eq!(
            extract_token(&json!({ "token": "Bearer xyz" }), &HeaderMap::new()),
            Some(FoundToken::new("xyz", TokenSource::HandshakeAuth))
        );
    }

    #[test]
    fn cookie_order_is_nextauth_secure_first() {
        let h = headers(&[(
            "cookie",
            "authjs.session-token=d; __Secure-authjs.session-token=c; \
             next-auth.session-token=b; __Secure-next-auth.session-token=a",
        )]);
        let mut jar = h.clone();
        for (name, value) in SESSION_COOKIES.iter().zip(["a", "b", "c", "d"]) {
            let found = extract_token(&Value::Null, &jar).unwrap();
            assert_eq!(found, FoundToken::new(value, cookie(name)));
            // Drop the winner and look again.
            let rest: Vec<String> = jar
                .get(COOKIE)
                .unwrap()
                .to_str()
                .unwrap()
                .split("; ")
                .filter(|p| !p.starts_with(&format!("{name}=")))
                .map(str::to_owned)
                .collect();
            jar = headers(&[("cookie", &rest.join("; "))]);
        }
    }

    #[test]
    fn chunked_cookies_join_in_index_order() {
        let h = headers(&[
            ("cookie", "theme=dark; next-auth.session-token.1=BBB"),
            (
                "cookie",
                "next-auth.session-token.2=CC; next-auth.session-token.0=AAA",
            ),
        ]);
        assert_eq!(
            extract_token(&Value::Null, &h),
            Some(FoundToken::new(
                "AAABBBCC",
                TokenSource::Cookie {
                    name: NEXTAUTH_COOKIE.to_owned(),
                    chunks: Some(3)
                }
            ))
        );
        // A whole cookie wins over chunks of the same name; chunks start at 0.
        let h = headers(&[(
            "cookie",
            "authjs.session-token.0=x; authjs.session-token=whole; __Secure-authjs.session-token.1=y",
        )]);
        assert_eq!(
            extract_token(&Value::Null, &h),
            Some(FoundToken::new("whole", cookie(AUTHJS_COOKIE)))
        );
    }

    #[test]
    fn cookie_values_are_unquoted_decoded_and_first_wins() {
        let h = headers(&[(
            "cookie",
            "next-auth.session-token=\"q%2Eq\"; next-auth.session-token=second",
        )]);
        assert_eq!(
            extract_token(&Value::Null, &h).unwrap().token,
            "q.q".to_owned()
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let found = FoundToken::new("super-secret-token", TokenSource::BearerHeader);
        let shown = format!("{found:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("18 bytes"), "{shown}");
    }
}
