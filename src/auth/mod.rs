//! Who is connecting: the Next.js app's session token, checked with its secret.
//!
//! The app signs people in with NextAuth.js; its session lives in a token that the browser
//! holds as a cookie. This module reads that token from a Socket.IO handshake
//! ([`extract_token`]) and checks it ([`Verifier::verify`]) without calling the app, so any
//! node can authenticate any connection with nothing but `NEXTAUTH_SECRET` (or
//! `AUTH_SECRET`). Three formats are accepted:
//!
//! | format | what makes it | shape |
//! | --- | --- | --- |
//! | [`TokenFormat::V4`] | next-auth 4 (`next-auth/jwt`) | JWE `dir` + `A256GCM`, key = HKDF(secret, salt `""`) |
//! | [`TokenFormat::V5`] | Auth.js 5 (`@auth/core/jwt`) | JWE `dir` + `A256CBC-HS512` (or `A256GCM`), key = HKDF(secret, salt = cookie name) |
//! | [`TokenFormat::Hs256`] | a backend's own JWT | JWS `HS256` keyed with the secret |
//!
//! Auth.js salts its key with the cookie's name, so a token read from a cookie is tried with
//! that name, and a token passed as `auth.token` or a bearer header is tried with both of
//! Auth.js's names (`authjs.session-token`, then `__Secure-authjs.session-token`). An
//! `A256GCM` token is tried with NextAuth v4's key first.
//!
//! Claims are checked the way the libraries' `decode` (jose's `jwtDecrypt`) checks them, with
//! the same 15 s clock tolerance: expired when `exp <= now - 15`, not yet valid when
//! `nbf > now + 15`; we also refuse an `iat` more than 15 s in the future. A token without
//! `exp` does not expire, as in those libraries. `sub` (the user id) is required.
//!
//! Errors carry a machine-readable [`AuthError::reason`] and never any part of the token.
//! [`mint`] makes tokens of each format for `rtctl token` and the load tester.

mod extract;
mod jose;
mod mint;

pub use extract::{
    extract_token, FoundToken, TokenSource, AUTHJS_COOKIE, AUTHJS_SECURE_COOKIE, NEXTAUTH_COOKIE,
    NEXTAUTH_SECURE_COOKIE, SESSION_COOKIES,
};
pub use mint::{mint, mint_authjs, session_claims};

use http::HeaderMap;
use jose::{Compact, Enc, Jwe};
use serde_json::{Map, Value};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Clock skew we forgive on `exp`, `nbf` and `iat`: the same as next-auth and Auth.js.
pub const CLOCK_TOLERANCE: Duration = Duration::from_secs(15);

/// The salts an explicit (non-cookie) token is tried with, in order.
const EXPLICIT_TOKEN_SALTS: [&str; 2] = [AUTHJS_COOKIE, AUTHJS_SECURE_COOKIE];

/// The kind of token: which library made it (for verification), or should read it (for
/// minting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenFormat {
    /// NextAuth.js v4: encrypted, `A256GCM`.
    V4,
    /// Auth.js v5: encrypted, `A256CBC-HS512` (also `A256GCM` when verifying).
    V5,
    /// A plain JWT signed with `HS256`.
    Hs256,
}

impl TokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFormat::V4 => "v4",
            TokenFormat::V5 => "v5",
            TokenFormat::Hs256 => "hs256",
        }
    }
}

impl fmt::Display for TokenFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection is not authenticated. The messages are safe to send to the client and
/// to log: they never contain the token or its claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no session token: send auth.token, an Authorization: Bearer header, or the NextAuth/Auth.js session cookie")]
    MissingToken,
    #[error("the session token is malformed: {0}")]
    MalformedToken(&'static str),
    #[error("the session token's algorithm is not supported (accepted: JWE dir with A256GCM or A256CBC-HS512, JWS HS256)")]
    UnsupportedAlgorithm,
    #[error("the session token cannot be decrypted with the configured secret")]
    DecryptionFailed,
    #[error("the session token's signature does not match the configured secret")]
    InvalidSignature,
    #[error("the session token has expired")]
    Expired,
    #[error("the session token is not valid yet")]
    NotYetValid,
    #[error("the session token names no user (no `sub` claim)")]
    MissingSubject,
    #[error("the session token has a claim of the wrong type (`exp`, `nbf`, `iat` must be numbers, `sub` a string)")]
    InvalidClaims,
}

impl AuthError {
    /// A stable, machine-readable reason (for the CONNECT error's `data`, logs and metric
    /// labels).
    /// Every value [`AuthError::reason`] gives, for declaring their metric series at zero.
    pub const REASONS: [&'static str; 9] = [
        "missing_token",
        "malformed_token",
        "unsupported_algorithm",
        "decryption_failed",
        "invalid_signature",
        "expired",
        "not_yet_valid",
        "missing_subject",
        "invalid_claims",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::MalformedToken(_) => "malformed_token",
            AuthError::UnsupportedAlgorithm => "unsupported_algorithm",
            AuthError::DecryptionFailed => "decryption_failed",
            AuthError::InvalidSignature => "invalid_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::MissingSubject => "missing_subject",
            AuthError::InvalidClaims => "invalid_claims",
        }
    }
}

/// [`Verifier::new`] was given an empty secret: every HS256 token would be forgeable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the auth secret is empty: set NEXTAUTH_SECRET or AUTH_SECRET")]
pub struct EmptySecret;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The `sub` claim: the app's user id.
    pub user_id: String,
    /// The `name` claim, when it is a string.
    pub name: Option<String>,
    /// The `email` claim, when it is a string.
    pub email: Option<String>,
    /// Which kind of token it was.
    pub format: TokenFormat,
    /// Every claim, as decoded (`picture`, `role`, whatever the app's `jwt` callback added).
    pub claims: Map<String, Value>,
}

impl Identity {
    /// When the token stops being valid (`exp`, without the tolerance), if it says.
    pub fn expires_at(&self) -> Option<SystemTime> {
        let exp = self.claims.get("exp")?.as_f64()?;
        UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(exp).ok()?)
    }

    /// Checks the time claims against `now` and reads the identity out of `claims`.
    fn from_claims(
        claims: Map<String, Value>,
        format: TokenFormat,
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        // jose's `epoch(new Date())`: whole seconds, rounded down.
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs() as f64);
        let tolerance = CLOCK_TOLERANCE.as_secs() as f64;
        if let Some(exp) = number_claim(&claims, "exp")? {
            if exp <= now - tolerance {
                return Err(AuthError::Expired);
            }
        }
        if let Some(nbf) = number_claim(&claims, "nbf")? {
            if nbf > now + tolerance {
                return Err(AuthError::NotYetValid);
            }
        }
        if let Some(iat) = number_claim(&claims, "iat")? {
            if iat > now + tolerance {
                return Err(AuthError::NotYetValid);
            }
        }
        let user_id = match claims.get("sub") {
            None | Some(Value::Null) => return Err(AuthError::MissingSubject),
            Some(Value::String(s)) if s.is_empty() => return Err(AuthError::MissingSubject),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(AuthError::InvalidClaims),
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(Identity {
            user_id,
            name: text("name"),
            email: text("email"),
            format,
            claims,
        })
    }
}

/// A NumericDate claim: absent is fine, anything but a number is not.
fn number_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(AuthError::InvalidClaims),
        Some(_) => Err(AuthError::InvalidClaims),
    }
}

/// The Auth.js keys for one salt.
struct SaltKeys {
    salt: &'static str,
    cbc: [u8; 64],
    gcm: [u8; 32],
}

impl SaltKeys {
    fn derive(secret: &[u8], salt: &'static str) -> Self {
        SaltKeys {
            salt,
            cbc: jose::authjs_key(secret, salt),
            gcm: jose::authjs_key(secret, salt),
        }
    }
}

/// Checks session tokens against one secret. Build it once at startup: the keys for NextAuth
/// v4 and for every session cookie name are derived here, so [`Verifier::verify`] does no key
/// derivation for any token [`extract_token`] can find. Its `Debug` output shows no key.
pub struct Verifier {
    secret: Box<[u8]>,
    nextauth: [u8; 32],
    authjs: Vec<SaltKeys>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Derives every key from `secret` (`NEXTAUTH_SECRET` / `AUTH_SECRET`, as UTF-8 bytes).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, EmptySecret> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(EmptySecret);
        }
        Ok(Verifier {
            secret: secret.into(),
            nextauth: jose::nextauth_key(secret),
            authjs: SESSION_COOKIES
                .iter()
                .map(|salt| SaltKeys::derive(secret, salt))
                .collect(),
        })
    }

    /// Finds the token of a handshake and verifies it: [`AuthError::MissingToken`] when
    /// there is none.
    pub fn authenticate(
        &self,
        auth: &Value,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        let found = extract_token(auth, headers).ok_or(AuthError::MissingToken)?;
        self.verify(&found, now)
    }

    /// Verifies `found` (decrypts or checks its signature, then its claims) as of `now`.
    pub fn verify(&self, found: &FoundToken, now: SystemTime) -> Result<Identity, AuthError> {
        let (format, payload) = match jose::parse(&found.token)? {
            Compact::Jws(jws) => {
                if !jose::verify_hs256(&self.secret, &jws) {
                    return Err(AuthError::InvalidSignature);
                }
                (TokenFormat::Hs256, jws.payload)
            }
            Compact::Jwe(jwe) => self.decrypt(&jwe, &found.source)?,
        };
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| AuthError::MalformedToken("the claims are not a JSON object"))?;
        Identity::from_claims(claims, format, now)
    }

    fn decrypt(
        &self,
        jwe: &Jwe<'_>,
        source: &TokenSource,
    ) -> Result<(TokenFormat, Vec<u8>), AuthError> {
        let salts: &[&str] = match source {
            TokenSource::Cookie { name, .. } => &[name.as_str()],
            TokenSource::HandshakeAuth | TokenSource::BearerHeader => &EXPLICIT_TOKEN_SALTS,
        };
        if jwe.enc == Enc::A256Gcm {
            if let Some(plaintext) = jose::open_gcm(&self.nextauth, jwe) {
                return Ok((TokenFormat::V4, plaintext));
            }
        }
        for salt in salts {
            let opened = match (jwe.enc, self.authjs.iter().find(|k| k.salt == *salt)) {
                (Enc::A256Gcm, Some(keys)) => jose::open_gcm(&keys.gcm, jwe),
                (Enc::A256CbcHs512, Some(keys)) => jose::open_cbc_hs512(&keys.cbc, jwe),
                // A cookie name we have no keys for (a hand-built FoundToken): derive now.
                (Enc::A256Gcm, None) => jose::open_gcm(&jose::authjs_key(&self.secret, salt), jwe),
                (Enc::A256CbcHs512, None) => {
                    jose::open_cbc_hs512(&jose::authjs_key(&self.secret, salt), jwe)
                }
            };
            if let Some(plaintext) = opened {
                return Ok((TokenFormat::V5, plaintext));
            }
        }
        Err(AuthError::DecryptionFailed)
    }
}

#[cfg(test)]
mod tests;
