//! Minting session tokens the way the Next.js app would: for `rtctl token`, the load tester
//! and tests. Each format is byte-compatible with the library that reads it (proved against
//! the real npm packages by `tests/it/auth.rs`):
//! - [`TokenFormat::V4`]: next-auth 4 `encode`: JWE `{"alg":"dir","enc":"A256GCM"}`, a
//!   fresh random 96-bit IV per token;
//! - [`TokenFormat::V5`]: @auth/core `encode`: JWE
//!   `{"alg":"dir","enc":"A256CBC-HS512","kid":<key thumbprint>}` with the salt
//!   `authjs.session-token` (see [`mint_authjs`] for another cookie name), a fresh random
//!   128-bit IV;
//! - [`TokenFormat::Hs256`]: a JWS `{"alg":"HS256","typ":"JWT"}` signed with the secret.

use super::extract::AUTHJS_COOKIE;
use super::jose::{self, b64_encode};
use super::TokenFormat;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Mints a token of `format` carrying exactly `claims` (set `sub`, `iat` and `exp` yourself,
/// or start from [`session_claims`]).
pub fn mint(secret: impl AsRef<[u8]>, format: TokenFormat, claims: &Map<String, Value>) -> String {
    let secret = secret.as_ref();
    match format {
        TokenFormat::V4 => {
            seal_gcm_token(&jose::nextauth_key(secret), None, &rand::random(), claims)
        }
        TokenFormat::V5 => mint_authjs(secret, AUTHJS_COOKIE, claims),
        TokenFormat::Hs256 => sign_hs256(secret, claims),
    }
}

/// Mints an Auth.js v5 token for the session cookie `salt` (e.g.
/// `__Secure-authjs.session-token` for an HTTPS deployment).
pub fn mint_authjs(secret: impl AsRef<[u8]>, salt: &str, claims: &Map<String, Value>) -> String {
    seal_cbc_token(
        &jose::authjs_key(secret.as_ref(), salt),
        &rand::random(),
        claims,
    )
}

/// The claims NextAuth puts in a session token: `name` and `email` when known, `sub` (the
/// user id), `iat`, `exp` = `iat + ttl`, and a random `jti`.
pub fn session_claims(
    user_id: &str,
    name: Option<&str>,
    email: Option<&str>,
    issued_at: SystemTime,
    ttl: Duration,
) -> Map<String, Value> {
    let iat = issued_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut claims = Map::new();
    if let Some(name) = name {
        claims.insert("name".into(), name.into());
    }
    if let Some(email) = email {
        claims.insert("email".into(), email.into());
    }
    claims.insert("sub".into(), user_id.into());
    claims.insert("iat".into(), iat.into());
    claims.insert("exp".into(), iat.saturating_add(ttl.as_secs()).into());
    claims.insert("jti".into(), random_uuid().into());
    claims
}

/// A random (version 4) UUID, as next-auth's `uuid.v4()` / `crypto.randomUUID()` make.
fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn payload(claims: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(claims).expect("a JSON map serializes")
}

/// `{"alg":"dir","enc":"A256GCM"[,"kid":…]}` JWE with the given IV.
pub(crate) fn seal_gcm_token(
    key: &[u8; 32],
    kid: Option<&str>,
    iv: &[u8; 12],
    claims: &Map<String, Value>,
) -> String {
    let header = match kid {
        None => r#"{"alg":"dir","enc":"A256GCM"}"#.to_owned(),
        Some(kid) => format!(r#"{{"alg":"dir","enc":"A256GCM","kid":"{kid}"}}"#),
    };
    let header = b64_encode(header.as_bytes());
    let (ciphertext, tag) = jose::seal_gcm(key, iv, header.as_bytes(), &payload(claims));
    format!(
        "{header}..{}.{}.{}",
        b64_encode(iv),
        b64_encode(&ciphertext),
        b64_encode(&tag)
    )
}

/// `{"alg":"dir","enc":"A256CBC-HS512","kid":…}` JWE with the given IV; the `kid` is the
/// key's thumbprint, as @auth/core writes it.
pub(crate) fn seal_cbc_token(key: &[u8; 64], iv: &[u8; 16], claims: &Map<String, Value>) -> String {
    let header = format!(
        r#"{{"alg":"dir","enc":"A256CBC-HS512","kid":"{}"}}"#,
        jose::oct_thumbprint(key)
    );
    let header = b64_encode(header.as_bytes());
    let (ciphertext, tag) = jose::seal_cbc_hs512(key, iv, header.as_bytes(), &payload(claims));
    format!(
        "{header}..{}.{}.{}",
        b64_encode(iv),
        b64_encode(&ciphertext),
        b64_encode(&tag)
    )
}

fn sign_hs256(secret: &[u8], claims: &Map<String, Value>) -> String {
    let input = format!(
        "{}.{}",
        b64_encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64_encode(&payload(claims))
    );
    let signature = jose::hs256(secret, input.as_bytes());
    format!("{input}.{}", b64_encode(&signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// jose 6 `new SignJWT(claims).setProtectedHeader({alg:"HS256",typ:"JWT"}).sign(secret)`,
    /// run by node with secret `kat-secret-0123456789`: HS256 is deterministic, so ours must
    /// be the same string.
    #[test]
    fn hs256_matches_jose_byte_for_byte() {
        let claims = json!({
            "name": "Ada", "email": "ada@example.com", "sub": "user-1",
            "iat": 1700000000, "exp": 1700003600
        });
        assert_eq!(
            mint(
                "kat-secret-0123456789",
                TokenFormat::Hs256,
                claims.as_object().unwrap()
            ),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJuYW1lIjoiQWRhIiwiZW1haWwiOiJhZGFAZXhhbXBsZS5jb20iLCJzdWIiOiJ1c2VyLTEiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.ua4iQ_RDCUj4Rm65Si_cvOokT_04xGrffCt6m7hhukU"
        );
    }

    #[test]
    fn encrypted_tokens_use_fresh_ivs() {
        let claims = json!({ "sub": "u" });
        for format in [TokenFormat::V4, TokenFormat::V5] {
            let a = mint("s", format, claims.as_object().unwrap());
            let b = mint("s", format, claims.as_object().unwrap());
            assert_ne!(a.split('.').nth(2), b.split('.').nth(2), "{format:?}");
        }
    }

    #[test]
    fn session_claims_shape() {
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        let claims = session_claims("u1", Some("Ada"), None, at, Duration::from_secs(60));
        let keys: Vec<&str> = claims.keys().map(String::as_str).collect();
        assert_eq!(keys, ["name", "sub", "iat", "exp", "jti"]);
        assert_eq!(claims["iat"], 1_000);
        assert_eq!(claims["exp"], 1_060);
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 36);
        assert_eq!(&jti[14..15], "4");
    }
}
