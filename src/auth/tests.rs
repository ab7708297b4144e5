//! Verifier tests: known tokens made by the real libraries, round trips, tampering, time
//! edges and key selection. (`jose.rs`, `extract.rs` and `mint.rs` test their own parts;
//! tests/it/auth.rs runs the npm packages live.)

use super::*;
use serde_json::json;

const SECRET: &str = "kat-secret-0123456789";

/// Minted by next-auth 4.24.15 `encode({ token, secret: SECRET, maxAge: 3600 })` with
/// token `{ name: "Ada Lovelace", email: "ada@example.com", picture: null, sub: "user-42" }`.
const NEXTAUTH_TOKEN: &str = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..rl6-lNAQHKBu53BD.vAm2HNh_LBBPc-RciKFoOcif6nE73QcJJJ5wY2So6aJ_QEwTdoBcNg0vGo00spbAJqhpBVlPW9ksww4LzA9aZWFR4kuAvLMSlYJyK0Ds5B-mIZoAiQbDFujM-hrfc4jQACVKPMT9dhZz2UBb1QztagteQqHECVdvrCzXsaStqVvUo2EhbfhOk34rg8Ki6Ln5MFfuMBRGpmndoGYeJ3lg.2KLGBQY0K6E-76gVXRUWCg";

/// Minted by @auth/core 0.41.3 `encode({ token, secret: SECRET, salt: "authjs.session-token",
/// maxAge: 3600 })` with the same token.
const AUTHJS_TOKEN: &str = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoiaU1tZEVaRGNMeDVnRXRmVFpmWHpaWUhOam1rMzMtT3JlUkRhaDNKMnl2ME92N0tkN2ZQNWxxSjlEaUtrSjkwa2gxdGdMWlFYTkJyaFZaakhXNmdsd0EifQ..uKVDq6rWRP8e7SA48jZPxA.92c5ViYUytiFhyjwVR7kQtdcXtlQraaw9HJC5fXsolGY3FVfKgNCf7B4GlpX5gIRb78EmYcBjKSWAM98HQUE_GH8BROLdTBLd08axCEpXlIBh1PBMpbHUGMa7EtluryiNLf2L5WEcPpiInM8NmopPOmu17XE5jEGUKP9Xa9TBvlmEwdrh8J7FEm3CPW-20HHrTs4gzc44B0lY--Yt5_79Q.2C5gZCHOlPHjb-6OQriwEMS_zgqSKqYV26u1uxK3eR4";

/// When both were minted (their `iat`, give or take a second); they expire an hour later.
const MINTED_AT: u64 = 1_795_639_503;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn verifier() -> Verifier {
    Verifier::new(SECRET).unwrap()
}

fn bearer(token: impl Into<String>) -> FoundToken {
    FoundToken::new(token, TokenSource::BearerHeader)
}

fn cookie(name: &str, token: impl Into<String>) -> FoundToken {
    FoundToken::new(
        token,
        TokenSource::Cookie {
            name: name.to_owned(),
            chunks: None,
        },
    )
}

fn claims(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// `sub`, `name`, `email`, valid for an hour from `now`.
fn ada(now: u64) -> Map<String, Value> {
    claims(json!({
        "name": "Ada", "email": "ada@example.com", "sub": "user-1",
        "iat": now, "exp": now + 3600
    }))
}

/// Flips one bit of one decoded part of a compact token.
fn flip(token: &str, part: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut bytes = jose_b64(&parts[part]);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    parts[part] = jose::b64_encode(&bytes);
    parts.join(".")
}

fn jose_b64(part: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap()
}

#[test]
fn accepts_a_token_minted_by_next_auth_4() {
    for found in [
        cookie(NEXTAUTH_COOKIE, NEXTAUTH_TOKEN),
        cookie(NEXTAUTH_SECURE_COOKIE, NEXTAUTH_TOKEN),
        bearer(NEXTAUTH_TOKEN),
        FoundToken::new(NEXTAUTH_TOKEN, TokenSource::HandshakeAuth),
    ] {
        let id = verifier().verify(&found, at(MINTED_AT)).unwrap();
        assert_eq!(id.user_id, "user-42");
        assert_eq!(id.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(id.email.as_deref(), Some("ada@example.com"));
        assert_eq!(id.format, TokenFormat::V4);
        assert_eq!(id.claims["picture"], Value::Null);
        assert!(id.claims["jti"].is_string());
        let exp = id.claims["exp"].as_u64().unwrap();
        assert_eq!(exp, id.claims["iat"].as_u64().unwrap() + 3600);
        assert_eq!(id.expires_at(), Some(at(exp)));
    }
}

#[test]
fn accepts_a_token_minted_by_auth_core_5() {
    for found in [
        cookie(AUTHJS_COOKIE, AUTHJS_TOKEN),
        bearer(AUTHJS_TOKEN),
        FoundToken::new(AUTHJS_TOKEN, TokenSource::HandshakeAuth),
    ] {
        let id = verifier().verify(&found, at(MINTED_AT)).unwrap();
        assert_eq!(id.user_id, "user-42");
        assert_eq!(id.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(id.format, TokenFormat::V5);
    }
    // The salt is the cookie name: the same token in the HTTPS cookie does not open.
    assert_eq!(
        verifier().verify(&cookie(AUTHJS_SECURE_COOKIE, AUTHJS_TOKEN), at(MINTED_AT)),
        Err(AuthError::DecryptionFailed)
    );
}

#[test]
fn round_trips_every_format() {
    let now = MINTED_AT;
    for format in [TokenFormat::V4, TokenFormat::V5, TokenFormat::Hs256] {
        let token = mint(SECRET, format, &ada(now));
        let id = verifier().verify(&bearer(&token), at(now)).unwrap();
        assert_eq!(
            id,
            Identity {
                user_id: "user-1".into(),
                name: Some("Ada".into()),
                email: Some("ada@example.com".into()),
                format,
                claims: ada(now),
            }
        );
    }
}

#[test]
fn auth_js_salts_follow_the_source() {
    let now = MINTED_AT;
    let secure = mint_authjs(SECRET, AUTHJS_SECURE_COOKIE, &ada(now));
    let plain = mint_authjs(SECRET, AUTHJS_COOKIE, &ada(now));
    let v = verifier();
    // Explicit tokens try both Auth.js salts.
    assert_eq!(
        v.verify(&bearer(&secure), at(now)).unwrap().format,
        TokenFormat::V5
    );
    assert_eq!(
        v.verify(&bearer(&plain), at(now)).unwrap().format,
        TokenFormat::V5
    );
    // Cookies use their own name only.
    assert!(v
        .verify(&cookie(AUTHJS_SECURE_COOKIE, &secure), at(now))
        .is_ok());
    assert_eq!(
        v.verify(&cookie(AUTHJS_COOKIE, &secure), at(now)),
        Err(AuthError::DecryptionFailed)
    );
    // An Auth.js app that kept NextAuth's cookie name salts with that name.
    let renamed = mint_authjs(SECRET, NEXTAUTH_COOKIE, &ada(now));
    assert!(v
        .verify(&cookie(NEXTAUTH_COOKIE, &renamed), at(now))
        .is_ok());
    assert_eq!(
        v.verify(&bearer(&renamed), at(now)),
        Err(AuthError::DecryptionFailed)
    );
    // A cookie name without precomputed keys is derived on the fly.
    let custom = mint_authjs(SECRET, "my-app.session", &ada(now));
    assert!(v
        .verify(&cookie("my-app.session", &custom), at(now))
        .is_ok());
}

#[test]
fn auth_js_a256gcm_variant_is_accepted() {
    // @auth/core's decode accepts `enc: A256GCM` with a 32-byte key for the same salt.
    let now = MINTED_AT;
    let key: [u8; 32] = jose::authjs_key(SECRET.as_bytes(), AUTHJS_SECURE_COOKIE);
    let kid = jose::oct_thumbprint(&key);
    let token = mint::seal_gcm_token(&key, Some(&kid), &[3; 12], &ada(now));
    let v = verifier();
    for found in [cookie(AUTHJS_SECURE_COOKIE, &token), bearer(&token)] {
        let id = v.verify(&found, at(now)).unwrap();
        assert_eq!(
            (id.user_id.as_str(), id.format),
            ("user-1", TokenFormat::V5)
        );
    }
    assert_eq!(
        v.verify(&cookie(AUTHJS_COOKIE, &token), at(now)),
        Err(AuthError::DecryptionFailed)
    );
}

#[test]
fn wrong_secret_is_rejected() {
    let other = Verifier::new("another-secret").unwrap();
    let now = MINTED_AT;
    assert_eq!(
        other.verify(&cookie(NEXTAUTH_COOKIE, NEXTAUTH_TOKEN), at(now)),
        Err(AuthError::DecryptionFailed)
    );
    assert_eq!(
        other.verify(&cookie(AUTHJS_COOKIE, AUTHJS_TOKEN), at(now)),
        Err(AuthError::DecryptionFailed)
    );
    let hs = mint(SECRET, TokenFormat::Hs256, &ada(now));
    assert_eq!(
        other.verify(&bearer(hs), at(now)),
        Err(AuthError::InvalidSignature)
    );
}

#[test]
fn tampering_is_detected() {
    let now = MINTED_AT;
    let v = verifier();
    for token in [NEXTAUTH_TOKEN, AUTHJS_TOKEN] {
        // iv, ciphertext, tag
        for part in [2, 3, 4] {
            assert_eq!(
                v.verify(&bearer(flip(token, part)), at(now)),
                Err(AuthError::DecryptionFailed),
                "part {part}"
            );
        }
        // The header is the AAD: re-encoding it (same JSON, one more space) breaks the tag.
        let (header, rest) = token.split_once('.').unwrap();
        let json = String::from_utf8(jose_b64(header)).unwrap();
        let reencoded = jose::b64_encode(json.replacen(':', ": ", 1).as_bytes());
        assert_eq!(
            v.verify(&bearer(format!("{reencoded}.{rest}")), at(now)),
            Err(AuthError::DecryptionFailed)
        );
    }
    let hs = mint(SECRET, TokenFormat::Hs256, &ada(now));
    for part in [1, 2] {
        assert_eq!(
            v.verify(&bearer(flip(&hs, part)), at(now)),
            Err(AuthError::InvalidSignature),
            "part {part}"
        );
    }
    // A truncated signature is a mismatch, not a panic.
    let (input, sig) = hs.rsplit_once('.').unwrap();
    assert_eq!(
        v.verify(&bearer(format!("{input}.{}", &sig[..8])), at(now)),
        Err(AuthError::InvalidSignature)
    );
    // alg confusion: an HS256 header on a JWE-shaped token, `none` with no signature.
    let none = format!(
        "{}.{}.",
        jose::b64_encode(br#"{"alg":"none"}"#),
        input.split_once('.').unwrap().1
    );
    assert_eq!(
        v.verify(&bearer(none), at(now)),
        Err(AuthError::UnsupportedAlgorithm)
    );
}

#[test]
fn expiry_edges_follow_jose() {
    // Expired when exp <= now - 15.
    let v = verifier();
    let now = 2_000_000_000;
    for (exp, want) in [
        (now - 14, Ok(())),
        (now - 15, Err(AuthError::Expired)),
        (now - 3600, Err(AuthError::Expired)),
    ] {
        for format in [TokenFormat::V4, TokenFormat::V5, TokenFormat::Hs256] {
            let token = mint(
                SECRET,
                format,
                &claims(json!({ "sub": "u", "iat": now - 7200, "exp": exp })),
            );
            assert_eq!(
                v.verify(&bearer(token), at(now)).map(|_| ()),
                want,
                "exp {exp} {format}"
            );
        }
    }
    // Sub-second `now` rounds down, like jose's epoch().
    let token = mint(
        SECRET,
        TokenFormat::V4,
        &claims(json!({ "sub": "u", "exp": now - 14 })),
    );
    assert!(v
        .verify(&bearer(token), at(now) + Duration::from_millis(999))
        .is_ok());
}

#[test]
fn not_before_and_issued_at_edges() {
    let v = verifier();
    let now = 2_000_000_000u64;
    let check = |claims_: Value| {
        let token = mint(SECRET, TokenFormat::Hs256, &claims(claims_));
        v.verify(&bearer(token), at(now)).map(|_| ())
    };
    assert_eq!(check(json!({ "sub": "u", "nbf": now + 15 })), Ok(()));
    assert_eq!(
        check(json!({ "sub": "u", "nbf": now + 16 })),
        Err(AuthError::NotYetValid)
    );
    assert_eq!(check(json!({ "sub": "u", "iat": now + 15 })), Ok(()));
    assert_eq!(
        check(json!({ "sub": "u", "iat": now + 16 })),
        Err(AuthError::NotYetValid)
    );
    // Fractional NumericDates are numbers too.
    assert_eq!(
        check(json!({ "sub": "u", "exp": now as f64 + 0.5 })),
        Ok(())
    );
    // No exp: valid, as in jose.
    assert_eq!(check(json!({ "sub": "u" })), Ok(()));
}

#[test]
fn claim_types_and_subject() {
    let v = verifier();
    let now = 2_000_000_000u64;
    let check = |claims_: Value| {
        let token = mint(SECRET, TokenFormat::V5, &claims(claims_));
        v.verify(&bearer(token), at(now)).map(|id| id.user_id)
    };
    assert_eq!(check(json!({ "sub": "u-1" })), Ok("u-1".to_owned()));
    assert_eq!(
        check(json!({ "name": "x" })),
        Err(AuthError::MissingSubject)
    );
    assert_eq!(check(json!({ "sub": "" })), Err(AuthError::MissingSubject));
    assert_eq!(
        check(json!({ "sub": null })),
        Err(AuthError::MissingSubject)
    );
    assert_eq!(check(json!({ "sub": 42 })), Err(AuthError::InvalidClaims));
    assert_eq!(
        check(json!({ "sub": "u", "exp": "tomorrow" })),
        Err(AuthError::InvalidClaims)
    );
    assert_eq!(
        check(json!({ "sub": "u", "nbf": null })),
        Err(AuthError::InvalidClaims)
    );
    // Non-string name/email are dropped, not errors; the raw claims keep them.
    let token = mint(
        SECRET,
        TokenFormat::V4,
        &claims(json!({ "sub": "u", "name": 7, "email": null, "role": "admin" })),
    );
    let id = v.verify(&bearer(token), at(now)).unwrap();
    assert_eq!((&id.name, &id.email), (&None, &None));
    assert_eq!(id.claims["role"], "admin");
    assert_eq!(id.claims["name"], 7);
    // Absurd NumericDates are not a panic.
    for exp in [json!(1e300), json!(-5)] {
        let id = Identity {
            claims: claims(json!({ "sub": "u", "exp": exp })),
            ..id.clone()
        };
        assert_eq!(id.expires_at(), None);
    }
}

#[test]
fn payload_must_be_a_json_object() {
    let v = verifier();
    let key = jose::nextauth_key(SECRET.as_bytes());
    let header = jose::b64_encode(br#"{"alg":"dir","enc":"A256GCM"}"#);
    let iv = [1u8; 12];
    for payload in [&b"[1,2]"[..], b"not json", b"\"sub\""] {
        let (ct, tag) = jose::seal_gcm(&key, &iv, header.as_bytes(), payload);
        let token = format!(
            "{header}..{}.{}.{}",
            jose::b64_encode(&iv),
            jose::b64_encode(&ct),
            jose::b64_encode(&tag)
        );
        assert!(matches!(
            v.verify(&bearer(token), at(0)),
            Err(AuthError::MalformedToken(_))
        ));
    }
}

#[test]
fn authenticate_uses_the_first_source() {
    let v = verifier();
    let now = MINTED_AT;
    let good = mint(SECRET, TokenFormat::V4, &ada(now));
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        format!("next-auth.session-token={good}").parse().unwrap(),
    );
    assert_eq!(
        v.authenticate(&Value::Null, &headers, at(now))
            .unwrap()
            .user_id,
        "user-1"
    );
    // An explicit but bad token is a failure, not a fall-through to the good cookie.
    assert_eq!(
        v.authenticate(&json!({ "token": "nope" }), &headers, at(now)),
        Err(AuthError::MalformedToken(
            "not a compact JWS (3 parts) or JWE (5 parts)"
        ))
    );
    assert_eq!(
        v.authenticate(&json!({}), &HeaderMap::new(), at(now)),
        Err(AuthError::MissingToken)
    );
}

#[test]
fn chunked_cookie_round_trip() {
    let v = verifier();
    let now = MINTED_AT;
    let mut big = ada(now);
    big.insert("picture".into(), "x".repeat(9000).into());
    let token = mint_authjs(SECRET, AUTHJS_SECURE_COOKIE, &big);
    let chunks: Vec<String> = token
        .as_bytes()
        .chunks(3933)
        .enumerate()
        .map(|(i, c)| {
            format!(
                "__Secure-authjs.session-token.{i}={}",
                std::str::from_utf8(c).unwrap()
            )
        })
        .collect();
    assert!(chunks.len() >= 3);
    let mut headers = HeaderMap::new();
    // Out of order across two headers, to be sure we join by index.
    let (first, rest) = chunks.split_at(1);
    headers.append(http::header::COOKIE, rest.join("; ").parse().unwrap());
    headers.append(
        http::header::COOKIE,
        format!("theme=dark; {}", first[0]).parse().unwrap(),
    );
    let found = extract_token(&Value::Null, &headers).unwrap();
    assert_eq!(
        found.source,
        TokenSource::Cookie {
            name: AUTHJS_SECURE_COOKIE.into(),
            chunks: Some(chunks.len())
        }
    );
    assert_eq!(v.verify(&found, at(now)).unwrap().claims, big);
}

#[test]
fn errors_have_reasons_and_no_token_text() {
    let all = [
        (AuthError::MissingToken, "missing_token"),
        (AuthError::MalformedToken("x"), "malformed_token"),
        (AuthError::UnsupportedAlgorithm, "unsupported_algorithm"),
        (AuthError::DecryptionFailed, "decryption_failed"),
        (AuthError::InvalidSignature, "invalid_signature"),
        (AuthError::Expired, "expired"),
        (AuthError::NotYetValid, "not_yet_valid"),
        (AuthError::MissingSubject, "missing_subject"),
        (AuthError::InvalidClaims, "invalid_claims"),
    ];
    for (error, reason) in all {
        assert_eq!(error.reason(), reason);
    }
    // Whatever goes wrong with a token, the error text holds none of it.
    let v = verifier();
    let token = mint(SECRET, TokenFormat::V4, &ada(MINTED_AT));
    for bad in [
        flip(&token, 3),
        token.replace('.', "!"),
        format!("{token}.extra"),
        token.clone(),
    ] {
        let err = v.verify(&bearer(&bad), at(MINTED_AT + 7200)).unwrap_err();
        let shown = format!("{err} {err:?}");
        for piece in bad.split(['.', '!']).filter(|p| p.len() > 8) {
            assert!(!shown.contains(piece), "{shown}");
        }
        assert!(!shown.contains("Ada"), "{shown}");
    }
    assert!(!format!("{v:?}").contains(SECRET));
    assert_eq!(Verifier::new("").unwrap_err(), EmptySecret);
}

/// Every refusal reason is declared (its metric series starts at 0).
#[test]
fn every_refusal_reason_is_declared() {
    let all = [
        AuthError::MissingToken,
        AuthError::MalformedToken("x"),
        AuthError::UnsupportedAlgorithm,
        AuthError::DecryptionFailed,
        AuthError::InvalidSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::MissingSubject,
        AuthError::InvalidClaims,
    ];
    let reasons: Vec<&str> = all.iter().map(AuthError::reason).collect();
    assert_eq!(reasons, AuthError::REASONS);
}
