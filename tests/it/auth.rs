//! Auth interop: tokens made by the real npm libraries — `next-auth/jwt` (NextAuth 4) and
//! `@auth/core/jwt` (Auth.js 5), pinned in tests/interop/package.json — verify here, and
//! tokens we mint (the library and `rtctl token`) decode there. A wrong secret fails both ways.
//!
//! Each check runs `node tests/interop/mint-{nextauth,authjs}.mjs` with a JSON request on
//! stdin and reads one JSON answer from stdout. Needs `node` and `npm ci --prefix
//! tests/interop`; both are checked, never silently skipped.

use crate::common::nodejs::{interop_dir, require_node, PACKAGES_HINT};
use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use realtime::auth::{
    extract_token, mint, mint_authjs, session_claims, AuthError, FoundToken, Identity, TokenFormat,
    TokenSource, Verifier, AUTHJS_COOKIE, AUTHJS_SECURE_COOKIE, NEXTAUTH_COOKIE,
    NEXTAUTH_SECURE_COOKIE,
};
use serde_json::{json, Map, Value};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

const SECRET: &str = "interop-secret-that-the-next-app-shares";
const WRONG_SECRET: &str = "some-other-apps-secret";

/// The two libraries, each behind its script.
#[derive(Clone, Copy, Debug)]
enum Library {
    NextAuth,
    AuthJs,
}

impl Library {
    fn script(self) -> &'static str {
        match self {
            Library::NextAuth => "mint-nextauth.mjs",
            Library::AuthJs => "mint-authjs.mjs",
        }
    }

    /// Runs one request through the library and returns its JSON answer.
    fn call(self, request: Value) -> Value {
        require_node(&["next-auth", "@auth/core"]);
        let dir = interop_dir();
        let mut child = Command::new("node")
            .arg(dir.join(self.script()))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn node {}: {err}", self.script()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} failed ({}):\nstdout: {stdout}\nstderr: {stderr}\n(if a module is missing: {PACKAGES_HINT})",
            self.script(),
            out.status
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|err| panic!("{}: not JSON ({err}): {stdout}", self.script()))
    }

    /// The library's `encode`: it adds `iat`, `exp` = now + `max_age` and `jti` itself.
    fn encode(self, secret: &str, salt: &str, claims: Value, max_age: i64) -> String {
        let answer = self.call(json!({
            "op": "encode", "secret": secret, "salt": salt, "claims": claims, "maxAge": max_age
        }));
        answer["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {answer}"))
            .to_owned()
    }

    /// The library's `decode`: `Ok(payload)` or `Err(the library's error)`.
    fn decode(self, secret: &str, salt: &str, token: &str) -> Result<Value, String> {
        let answer = self.call(json!({
            "op": "decode", "secret": secret, "salt": salt, "token": token
        }));
        if answer["ok"] == json!(true) {
            Ok(answer["payload"].clone())
        } else {
            Err(answer["error"].to_string())
        }
    }
}

fn verifier(secret: &str) -> Verifier {
    Verifier::new(secret).unwrap()
}

fn cookie_headers(cookie: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, cookie.parse().unwrap());
    headers
}

fn cookie(name: &str, token: &str) -> FoundToken {
    FoundToken::new(
        token,
        TokenSource::Cookie {
            name: name.to_owned(),
            chunks: None,
        },
    )
}

fn profile() -> Value {
    json!({
        "name": "Grace Hopper",
        "email": "grace@example.com",
        "picture": null,
        "sub": "user-7",
        "role": "admin"
    })
}

fn assert_grace(id: &Identity, format: TokenFormat) {
    assert_eq!(id.user_id, "user-7");
    assert_eq!(id.name.as_deref(), Some("Grace Hopper"));
    assert_eq!(id.email.as_deref(), Some("grace@example.com"));
    assert_eq!(id.format, format);
    assert_eq!(id.claims["role"], "admin");
    let (iat, exp) = (id.claims["iat"].as_u64(), id.claims["exp"].as_u64());
    assert_eq!(exp, iat.map(|iat| iat + 600), "exp = iat + maxAge");
    assert!(id.claims["jti"].is_string());
}

fn claims_of(value: &Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn next_auth_tokens_verify_here() {
    let token = Library::NextAuth.encode(SECRET, "", profile(), 600);
    let v = verifier(SECRET);
    let now = SystemTime::now();
    // Wherever the browser or a client puts it.
    for (auth, headers) in [
        (
            Value::Null,
            cookie_headers(&format!("{NEXTAUTH_COOKIE}={token}")),
        ),
        (
            Value::Null,
            cookie_headers(&format!("theme=dark; {NEXTAUTH_SECURE_COOKIE}={token}")),
        ),
        (json!({ "token": token }), HeaderMap::new()),
        (Value::Null, {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
            h
        }),
    ] {
        let id = v.authenticate(&auth, &headers, now).unwrap();
        assert_grace(&id, TokenFormat::V4);
    }
}

#[test]
fn auth_js_tokens_verify_here() {
    let v = verifier(SECRET);
    let now = SystemTime::now();
    for (salt, other) in [
        (AUTHJS_COOKIE, AUTHJS_SECURE_COOKIE),
        (AUTHJS_SECURE_COOKIE, AUTHJS_COOKIE),
    ] {
        let token = Library::AuthJs.encode(SECRET, salt, profile(), 600);
        let headers = cookie_headers(&format!("{salt}={token}"));
        assert_grace(
            &v.authenticate(&Value::Null, &headers, now).unwrap(),
            TokenFormat::V5,
        );
        // Passed explicitly, both Auth.js salts are tried.
        assert_grace(
            &v.authenticate(&json!({ "token": token }), &HeaderMap::new(), now)
                .unwrap(),
            TokenFormat::V5,
        );
        // In the other cookie it was salted for the wrong name: Auth.js would refuse it too.
        assert_eq!(
            v.verify(&cookie(other, &token), now),
            Err(AuthError::DecryptionFailed)
        );
        assert!(Library::AuthJs.decode(SECRET, other, &token).is_err());
    }
}

#[test]
fn our_tokens_decode_in_the_libraries() {
    let claims = session_claims(
        "user-9",
        Some("Alan"),
        Some("alan@example.com"),
        SystemTime::now(),
        Duration::from_secs(600),
    );
    let expected = Value::Object(claims.clone());

    let v4 = mint(SECRET, TokenFormat::V4, &claims);
    assert_eq!(
        Library::NextAuth.decode(SECRET, "", &v4),
        Ok(expected.clone())
    );

    let v5 = mint(SECRET, TokenFormat::V5, &claims);
    assert_eq!(
        Library::AuthJs.decode(SECRET, AUTHJS_COOKIE, &v5),
        Ok(expected.clone())
    );

    let secure = mint_authjs(SECRET, AUTHJS_SECURE_COOKIE, &claims);
    assert_eq!(
        Library::AuthJs.decode(SECRET, AUTHJS_SECURE_COOKIE, &secure),
        Ok(expected)
    );
}

#[test]
fn a_wrong_secret_fails_both_ways() {
    let now = SystemTime::now();
    // Theirs, checked with the wrong secret here.
    let v4 = Library::NextAuth.encode(SECRET, "", profile(), 600);
    let v5 = Library::AuthJs.encode(SECRET, AUTHJS_COOKIE, profile(), 600);
    let wrong = verifier(WRONG_SECRET);
    assert_eq!(
        wrong.verify(&cookie(NEXTAUTH_COOKIE, &v4), now),
        Err(AuthError::DecryptionFailed)
    );
    assert_eq!(
        wrong.verify(&cookie(AUTHJS_COOKIE, &v5), now),
        Err(AuthError::DecryptionFailed)
    );
    // Ours, checked with the wrong secret there.
    let claims = claims_of(&json!({ "sub": "user-1", "exp": 4_000_000_000u64 }));
    let ours_v4 = mint(SECRET, TokenFormat::V4, &claims);
    let ours_v5 = mint(SECRET, TokenFormat::V5, &claims);
    assert!(Library::NextAuth
        .decode(WRONG_SECRET, "", &ours_v4)
        .is_err());
    assert!(Library::AuthJs
        .decode(WRONG_SECRET, AUTHJS_COOKIE, &ours_v5)
        .is_err());
    // And the right secret still works (the failures above are about the secret).
    assert!(Library::NextAuth.decode(SECRET, "", &ours_v4).is_ok());
    assert!(Library::AuthJs
        .decode(SECRET, AUTHJS_COOKIE, &ours_v5)
        .is_ok());
}

#[test]
fn expiry_agrees_with_the_libraries() {
    let v = verifier(SECRET);
    let now = SystemTime::now();
    for library in [Library::NextAuth, Library::AuthJs] {
        let salt = match library {
            Library::NextAuth => "",
            Library::AuthJs => AUTHJS_COOKIE,
        };
        // Expired a minute ago: refused by both.
        let old = library.encode(SECRET, salt, profile(), -60);
        assert_eq!(
            v.verify(&FoundToken::new(&old, TokenSource::HandshakeAuth), now),
            Err(AuthError::Expired),
            "{library:?}"
        );
        assert!(library.decode(SECRET, salt, &old).is_err(), "{library:?}");
        // Expired 5 s ago: inside the 15 s tolerance of both.
        let recent = library.encode(SECRET, salt, profile(), -5);
        assert!(
            v.verify(&FoundToken::new(&recent, TokenSource::HandshakeAuth), now)
                .is_ok(),
            "{library:?}"
        );
        assert!(library.decode(SECRET, salt, &recent).is_ok(), "{library:?}");
    }
}

#[test]
fn a_large_session_arrives_in_chunked_cookies() {
    // A session with a big claim (say, a list of teams) makes a token over 4 KiB, which
    // next-auth stores as `next-auth.session-token.0`, `.1`, … (3933-byte chunks).
    let mut claims = profile();
    claims["teams"] = json!((0..400).map(|i| format!("team-{i}")).collect::<Vec<_>>());
    let token = Library::NextAuth.encode(SECRET, "", claims, 600);
    assert!(token.len() > 4096);
    let cookie = token
        .as_bytes()
        .chunks(3933)
        .enumerate()
        .map(|(i, chunk)| {
            format!(
                "{NEXTAUTH_SECURE_COOKIE}.{i}={}",
                std::str::from_utf8(chunk).unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let headers = cookie_headers(&cookie);
    let found = extract_token(&Value::Null, &headers).unwrap();
    assert!(matches!(
        found.source,
        TokenSource::Cookie { ref name, chunks: Some(n) } if name == NEXTAUTH_SECURE_COOKIE && n >= 2
    ));
    let id = verifier(SECRET).verify(&found, SystemTime::now()).unwrap();
    assert_grace(&id, TokenFormat::V4);
    assert_eq!(id.claims["teams"].as_array().unwrap().len(), 400);
}

/// Runs the real `rtctl token` binary with only the given secret variables set.
fn rtctl_token(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtctl"));
    cmd.arg("token")
        .args(args)
        .env_remove("NEXTAUTH_SECRET")
        .env_remove("AUTH_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run rtctl")
}

fn stdout_token(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "rtctl token failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        stdout.ends_with('\n') && stdout.trim().lines().count() == 1,
        "{stdout:?}"
    );
    stdout.trim().to_owned()
}

#[test]
fn rtctl_token_is_accepted_by_the_libraries_and_by_us() {
    let args = ["--user", "user-11", "--name", "Edsger", "--ttl", "120"];
    let check = |payload: Value| {
        assert_eq!(payload["sub"], "user-11");
        assert_eq!(payload["name"], "Edsger");
        assert!(payload.get("email").is_none());
        let exp = payload["exp"].as_u64().unwrap();
        assert_eq!(exp, payload["iat"].as_u64().unwrap() + 120);
    };

    // Default format v4, secret from NEXTAUTH_SECRET.
    let v4 = stdout_token(&rtctl_token(&args, &[("NEXTAUTH_SECRET", SECRET)]));
    check(Library::NextAuth.decode(SECRET, "", &v4).unwrap());

    // v5, secret from AUTH_SECRET (the Auth.js v5 name).
    let v5_args = [&args[..], &["--format", "v5"]].concat();
    let v5 = stdout_token(&rtctl_token(&v5_args, &[("AUTH_SECRET", SECRET)]));
    check(Library::AuthJs.decode(SECRET, AUTHJS_COOKIE, &v5).unwrap());

    // --secret wins over the environment.
    let hs_args = [&args[..], &["--format", "hs256", "--secret", SECRET]].concat();
    let hs = stdout_token(&rtctl_token(&hs_args, &[("NEXTAUTH_SECRET", WRONG_SECRET)]));
    let id = verifier(SECRET)
        .verify(
            &FoundToken::new(hs, TokenSource::BearerHeader),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(
        (id.user_id.as_str(), id.format),
        ("user-11", TokenFormat::Hs256)
    );
    check(Value::Object(id.claims));
}

#[test]
fn rtctl_token_without_a_secret_is_a_usage_error() {
    let out = rtctl_token(&["--user", "user-1"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NEXTAUTH_SECRET") && stderr.contains("AUTH_SECRET"),
        "{stderr}"
    );
    // An empty variable is no secret either.
    let out = rtctl_token(&["--user", "user-1"], &[("NEXTAUTH_SECRET", "")]);
    assert_eq!(out.status.code(), Some(2));
}
