//! Compact JOSE, exactly as much as NextAuth.js / Auth.js session tokens need and no more.
//!
//! A compact token is dot-separated base64url: three parts for a JWS
//! (`header.payload.signature`, RFC 7515) and five for a JWE
//! (`header.encrypted_key.iv.ciphertext.tag`, RFC 7516). We accept:
//! - JWS `alg: HS256`, keyed with the secret's bytes as they are;
//! - JWE `alg: dir` (the key is the content key: no encrypted key part) with
//!   `enc: A256GCM` (NextAuth v4, and Auth.js v5 when asked) or `enc: A256CBC-HS512` (Auth.js
//!   v5's default, RFC 7518 §5.2.5).
//!
//! Everything else is refused *before* any key is touched: `none`, RSA/EC, key wrapping,
//! compression (`zip`) and critical extensions (`crit`). In both JWE algorithms the additional
//! authenticated data is the ASCII of the protected header exactly as sent (RFC 7516 §5.2
//! step 14), so a re-encoded header fails authentication.
//!
//! The key derivations mirror the libraries' own code line by line:
//! - next-auth 4 `jwt/index.ts` `getDerivedEncryptionKey(secret, salt = "")`:
//!   `hkdf("sha256", secret, salt, "NextAuth.js Generated Encryption Key", 32)` (the info
//!   gets ` (<salt>)` appended only when a salt is given; `getToken` never gives one);
//! - @auth/core `jwt.ts` `getDerivedEncryptionKey(enc, secret, salt)`:
//!   `hkdf("sha256", secret, salt, "Auth.js Generated Encryption Key (<salt>)", 64 or 32)`,
//!   64 bytes for A256CBC-HS512 and 32 for A256GCM, where the salt is the cookie's name.

use super::AuthError;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The longest token we look at. Session cookies are chunked at ~4 KiB and a handshake is
/// bounded by the transport anyway; this only stops us base64-decoding something absurd.
pub(crate) const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The HKDF info of NextAuth v4's key (no salt, so no ` (<salt>)` suffix).
pub(crate) const NEXTAUTH_INFO: &str = "NextAuth.js Generated Encryption Key";

/// A JWE content encryption algorithm we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enc {
    /// AES-256-GCM: 32-byte key, 96-bit IV, 128-bit tag.
    A256Gcm,
    /// AES-256-CBC + HMAC-SHA-512/256: 64-byte key (MAC key, then AES key), 128-bit IV,
    /// 256-bit tag.
    A256CbcHs512,
}

impl Enc {
    fn iv_len(self) -> usize {
        match self {
            Enc::A256Gcm => 12,
            Enc::A256CbcHs512 => 16,
        }
    }

    fn tag_len(self) -> usize {
        match self {
            Enc::A256Gcm => 16,
            Enc::A256CbcHs512 => 32,
        }
    }
}

/// A parsed compact token. Nothing in it has been authenticated yet.
#[derive(Debug)]
pub(crate) enum Compact<'a> {
    Jws(Jws<'a>),
    Jwe(Jwe<'a>),
}

/// A JWS with `alg: HS256`.
#[derive(Debug)]
pub(crate) struct Jws<'a> {
    /// `header_b64 "." payload_b64`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A JWE with `alg: dir`, lengths already checked against `enc`.
#[derive(Debug)]
pub(crate) struct Jwe<'a> {
    /// The protected header as sent (base64url ASCII): the AAD.
    pub aad: &'a [u8],
    pub enc: Enc,
    pub iv: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub tag: Vec<u8>,
}

fn b64(part: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::MalformedToken("a part is not base64url"))
}

pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Splits and decodes a compact token and checks its header; authenticates nothing.
pub(crate) fn parse(token: &str) -> Result<Compact<'_>, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::MalformedToken("longer than 64 KiB"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 && parts.len() != 5 {
        return Err(AuthError::MalformedToken(
            "not a compact JWS (3 parts) or JWE (5 parts)",
        ));
    }
    let header: Map<String, Value> = serde_json::from_slice(&b64(parts[0])?)
        .map_err(|_| AuthError::MalformedToken("the header is not a JSON object"))?;
    // We implement no extension and no compression: refuse rather than misread (RFC 7515
    // §4.1.11 requires rejecting a `crit` we do not understand).
    if header.contains_key("crit") || header.contains_key("zip") {
        return Err(AuthError::UnsupportedAlgorithm);
    }
    let alg = header.get("alg").and_then(Value::as_str);
    if parts.len() == 3 {
        if alg != Some("HS256") {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let (signing_input, _) = token.rsplit_once('.').expect("three parts have two dots");
        return Ok(Compact::Jws(Jws {
            signing_input,
            payload: b64(parts[1])?,
            signature: b64(parts[2])?,
        }));
    }
    let enc = match (alg, header.get("enc").and_then(Value::as_str)) {
        (Some("dir"), Some("A256GCM")) => Enc::A256Gcm,
        (Some("dir"), Some("A256CBC-HS512")) => Enc::A256CbcHs512,
        _ => return Err(AuthError::UnsupportedAlgorithm),
    };
    if !parts[1].is_empty() {
        return Err(AuthError::MalformedToken(
            "`alg: dir` JWE carries an encrypted key",
        ));
    }
    let (iv, ciphertext, tag) = (b64(parts[2])?, b64(parts[3])?, b64(parts[4])?);
    if iv.len() != enc.iv_len() {
        return Err(AuthError::MalformedToken("wrong IV length for `enc`"));
    }
    if tag.len() != enc.tag_len() {
        return Err(AuthError::MalformedToken(
            "wrong authentication tag length for `enc`",
        ));
    }
    if enc == Enc::A256CbcHs512 && (ciphertext.is_empty() || ciphertext.len() % 16 != 0) {
        return Err(AuthError::MalformedToken(
            "CBC ciphertext is not whole AES blocks",
        ));
    }
    Ok(Compact::Jwe(Jwe {
        aad: parts[0].as_bytes(),
        enc,
        iv,
        ciphertext,
        tag,
    }))
}

/// HKDF-SHA-256 (RFC 5869). An empty salt is the same as no salt: HMAC pads both to a block
/// of zeros, which is what @panva/hkdf does with `""`.
pub(crate) fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], okm: &mut [u8]) {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm)
        .expect("HKDF-SHA-256 yields up to 8160 bytes; we ask for 32 or 64");
}

/// NextAuth v4's content key for `A256GCM`.
pub(crate) fn nextauth_key(secret: &[u8]) -> [u8; 32] {
    let mut key = [0; 32];
    hkdf_sha256(secret, b"", NEXTAUTH_INFO.as_bytes(), &mut key);
    key
}

/// Auth.js v5's content key for `salt` (the session cookie's name): `N` = 64 for
/// `A256CBC-HS512`, 32 for `A256GCM`.
pub(crate) fn authjs_key<const N: usize>(secret: &[u8], salt: &str) -> [u8; N] {
    let mut key = [0; N];
    let info = format!("Auth.js Generated Encryption Key ({salt})");
    hkdf_sha256(secret, salt.as_bytes(), info.as_bytes(), &mut key);
    key
}

/// The RFC 7638 thumbprint of a symmetric JWK `{"k":…,"kty":"oct"}`: Auth.js puts it in the
/// header as `kid`, hashed with SHA-512 for a 64-byte key and SHA-256 for a 32-byte one.
pub(crate) fn oct_thumbprint(key: &[u8]) -> String {
    let jwk = format!(r#"{{"k":"{}","kty":"oct"}}"#, b64_encode(key));
    if key.len() == 64 {
        b64_encode(&Sha512::digest(jwk.as_bytes()))
    } else {
        b64_encode(&Sha256::digest(jwk.as_bytes()))
    }
}

/// Opens an `A256GCM` JWE; `None` when the tag does not verify (wrong key or tampering).
pub(crate) fn open_gcm(key: &[u8; 32], jwe: &Jwe<'_>) -> Option<Vec<u8>> {
    let cipher = Aes256Gcm::new(key.into());
    let mut buffer = jwe.ciphertext.clone();
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&jwe.iv),
            jwe.aad,
            &mut buffer,
            Tag::from_slice(&jwe.tag),
        )
        .ok()?;
    Some(buffer)
}

/// Seals `plaintext` with AES-256-GCM: `(ciphertext, tag)`.
pub(crate) fn seal_gcm(
    key: &[u8; 32],
    iv: &[u8; 12],
    aad: &[u8],
    plaintext: &[u8],
) -> (Vec<u8>, [u8; 16]) {
    let cipher = Aes256Gcm::new(key.into());
    let mut buffer = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(iv), aad, &mut buffer)
        .expect("AES-GCM seals anything shorter than 64 GiB");
    (buffer, tag.into())
}

/// The A256CBC-HS512 tag (RFC 7518 §5.2.2.1): the first 32 bytes of
/// HMAC-SHA-512(MAC_KEY, AAD || IV || ciphertext || AL), AL = AAD length in bits, u64 BE.
fn cbc_hs512_tag(mac_key: &[u8], aad: &[u8], iv: &[u8], ciphertext: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha512> as Mac>::new_from_slice(mac_key).expect("HMAC takes any key length");
    mac.update(aad);
    mac.update(iv);
    mac.update(ciphertext);
    mac.update(&((aad.len() as u64) * 8).to_be_bytes());
    let full = mac.finalize().into_bytes();
    let mut tag = [0; 32];
    tag.copy_from_slice(&full[..32]);
    tag
}

/// Opens an `A256CBC-HS512` JWE: the MAC is checked (in constant time) before a single block
/// is decrypted, so a padding error cannot be used as an oracle. `None` on any failure.
pub(crate) fn open_cbc_hs512(key: &[u8; 64], jwe: &Jwe<'_>) -> Option<Vec<u8>> {
    let (mac_key, enc_key) = key.split_at(32);
    let expected = cbc_hs512_tag(mac_key, jwe.aad, &jwe.iv, &jwe.ciphertext);
    if !bool::from(expected.ct_eq(jwe.tag.as_slice())) {
        return None;
    }
    cbc::Decryptor::<aes::Aes256>::new_from_slices(enc_key, &jwe.iv)
        .ok()?
        .decrypt_padded_vec_mut::<Pkcs7>(&jwe.ciphertext)
        .ok()
}

/// Seals `plaintext` with AES-256-CBC + HMAC-SHA-512/256: `(ciphertext, tag)`.
pub(crate) fn seal_cbc_hs512(
    key: &[u8; 64],
    iv: &[u8; 16],
    aad: &[u8],
    plaintext: &[u8],
) -> (Vec<u8>, [u8; 32]) {
    let (mac_key, enc_key) = key.split_at(32);
    let ciphertext = cbc::Encryptor::<aes::Aes256>::new_from_slices(enc_key, iv)
        .expect("32-byte AES key and 16-byte IV")
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let tag = cbc_hs512_tag(mac_key, aad, iv, &ciphertext);
    (ciphertext, tag)
}

/// HMAC-SHA-256 of `input` keyed with `secret`: an HS256 signature.
pub(crate) fn hs256(secret: &[u8], input: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(input);
    mac.finalize().into_bytes().into()
}

/// Checks an HS256 signature in constant time (a length mismatch is simply a mismatch).
pub(crate) fn verify_hs256(secret: &[u8], jws: &Jws<'_>) -> bool {
    let expected = hs256(secret, jws.signing_input.as_bytes());
    bool::from(expected.ct_eq(jws.signature.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 7518 Appendix B.3 (AES_256_CBC_HMAC_SHA_512): the split of the 64-byte key into
    /// MAC key (first half) and AES key (second half), AL, and the tag truncation.
    #[test]
    fn cbc_hs512_matches_rfc7518_b3() {
        let key: [u8; 64] = std::array::from_fn(|i| i as u8);
        let iv: [u8; 16] = hex("1af38c2dc2b96ffdd86694092341bc04").try_into().unwrap();
        let plaintext = b"A cipher system must not be required to be secret, and it must be able \
to fall into the hands of the enemy without inconvenience";
        let aad = b"The second principle of Auguste Kerckhoffs";
        let expected_e = hex(
            "4affaaadb78c31c5da4b1b590d10ffbd3dd8d5d302423526912da037ecbcc7bd\
             822c301dd67c373bccb584ad3e9279c2e6d12a1374b77f077553df829410446b\
             36ebd97066296ae6427ea75c2e0846a11a09ccf5370dc80bfecbad28c73f09b3\
             a3b75e662a2594410ae496b2e2e6609e31e6e02cc837f053d21f37ff4f51950b\
             be2638d09dd7a4930930806d0703b1f6",
        );
        let expected_t = hex("4dd3b4c088a7f45c216839645b2012bf2e6269a8c56a816dbc1b267761955bc5");

        let (e, t) = seal_cbc_hs512(&key, &iv, aad, plaintext);
        assert_eq!(e, expected_e);
        assert_eq!(t.to_vec(), expected_t);

        let jwe = Jwe {
            aad,
            enc: Enc::A256CbcHs512,
            iv: iv.to_vec(),
            ciphertext: e,
            tag: t.to_vec(),
        };
        assert_eq!(open_cbc_hs512(&key, &jwe).as_deref(), Some(&plaintext[..]));

        // Swapping the halves (AES key first) must not verify: the split is part of the spec.
        let mut swapped = [0u8; 64];
        swapped[..32].copy_from_slice(&key[32..]);
        swapped[32..].copy_from_slice(&key[..32]);
        assert_eq!(open_cbc_hs512(&swapped, &jwe), None);
        // Neither does a changed AAD (AL covers its length, the MAC its bytes).
        let other_aad = Jwe {
            aad: b"The second principle of Auguste Kerckhoffs!",
            ..jwe
        };
        assert_eq!(open_cbc_hs512(&key, &other_aad), None);
    }

    /// Keys computed by node with the libraries' own dependency, @panva/hkdf 1.2.1:
    /// `hkdf("sha256", secret, salt, info, len)` with secret `kat-secret-0123456789`.
    #[test]
    fn key_derivations_match_panva_hkdf() {
        let secret = b"kat-secret-0123456789";
        assert_eq!(
            nextauth_key(secret).to_vec(),
            hex("918ee4216ab33605ef516796f880361996042932ac6682a3c6e87f5b72a80f1d")
        );
        let k64: [u8; 64] = authjs_key(secret, "authjs.session-token");
        assert_eq!(
            k64.to_vec(),
            hex(
                "82912fefcb56867b93520d2b725630a9f68e34b2d5de08769c47c1b01ed2380e\
                 981db6497219c146caf9b7c866ffbc700afaeb1db77f4f93b4511b414f5b8f10"
            )
        );
        let k32: [u8; 32] = authjs_key(secret, "__Secure-authjs.session-token");
        assert_eq!(
            k32.to_vec(),
            hex("e971a55bf6acb623de21db9b447e6cf5a8eb3b291f62904fb56ea6d4beabe1ae")
        );
        // The `kid` Auth.js writes (jose `calculateJwkThumbprint`, sha512 / sha256).
        assert_eq!(
            oct_thumbprint(&k64),
            "iMmdEZDcLx5gEtfTZfXzZYHNjmk33-OreRDah3J2yv0Ov7Kd7fP5lqJ9DiKkJ90kh1tgLZQXNBrhVZjHW6glwA"
        );
        assert_eq!(
            oct_thumbprint(&k32),
            "lfO_8cvnmnCxdaUDr66t9H61-bKOPx6OmsH6C7JQiGY"
        );
    }

    /// RFC 4231 test case 2 (HMAC-SHA-256 with key "Jefe").
    #[test]
    fn hs256_matches_rfc4231() {
        assert_eq!(
            hs256(b"Jefe", b"what do ya want for nothing?").to_vec(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn gcm_round_trip_and_tamper() {
        let key = [7u8; 32];
        let iv = [9u8; 12];
        let (ct, tag) = seal_gcm(&key, &iv, b"hdr", b"hello");
        let jwe = Jwe {
            aad: b"hdr",
            enc: Enc::A256Gcm,
            iv: iv.to_vec(),
            ciphertext: ct.clone(),
            tag: tag.to_vec(),
        };
        assert_eq!(open_gcm(&key, &jwe).as_deref(), Some(&b"hello"[..]));
        let mut bad = ct;
        bad[0] ^= 1;
        assert_eq!(
            open_gcm(
                &key,
                &Jwe {
                    ciphertext: bad,
                    ..jwe
                }
            ),
            None
        );
    }

    #[test]
    fn parse_refuses_what_we_do_not_implement() {
        let h = |json: &str| b64_encode(json.as_bytes());
        let unsupported = [
            format!("{}.e30.", h(r#"{"alg":"none"}"#)),
            format!("{}.e30.c2ln", h(r#"{"alg":"RS256"}"#)),
            format!("{}.e30.c2ln", h(r#"{"alg":"HS512"}"#)),
            format!(
                "{}.e30.c2ln",
                h(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#)
            ),
            format!(
                "{}..aaaa.bbbb.cccc",
                h(r#"{"alg":"A256KW","enc":"A256GCM"}"#)
            ),
            format!("{}..aaaa.bbbb.cccc", h(r#"{"alg":"dir","enc":"A128GCM"}"#)),
            format!(
                "{}..aaaa.bbbb.cccc",
                h(r#"{"alg":"dir","enc":"A256GCM","zip":"DEF"}"#)
            ),
            format!("{}..aaaa.bbbb.cccc", h(r#"{"enc":"A256GCM"}"#)),
        ];
        for token in &unsupported {
            assert_eq!(
                parse(token).unwrap_err(),
                AuthError::UnsupportedAlgorithm,
                "{token}"
            );
        }
        let gcm = h(r#"{"alg":"dir","enc":"A256GCM"}"#);
        let iv12 = b64_encode(&[0; 12]);
        let tag16 = b64_encode(&[0; 16]);
        let malformed = [
            String::new(),
            "abc".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "a.b.c.d.e.f".to_owned(),
            format!("{}.e30.c2ln", h("[1]")),
            format!("{}.e30.c2ln", h("not json")),
            "!!!.e30.c2ln".to_owned(),
            format!("{}.e30.c2ln=", h(r#"{"alg":"HS256"}"#)),
            format!("{gcm}.a2V5.{iv12}.Y3Q.{tag16}"),
            format!("{gcm}..{}.Y3Q.{tag16}", b64_encode(&[0; 16])),
            format!("{gcm}..{iv12}.Y3Q.{}", b64_encode(&[0; 15])),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for token in &malformed {
            assert!(
                matches!(parse(token), Err(AuthError::MalformedToken(_))),
                "{token:.80}: {:?}",
                parse(token).err()
            );
        }
    }
}
