//! Session and socket ids.
//!
//! Node's engine.io and socket.io use `base64id`: 15 random bytes in URL-safe base64, 20
//! characters. We keep exactly that shape (clients and the Redis adapter see these ids)
//! but store them inline as `[u8; 20]`, so an id is `Copy`, hashes fast and costs no heap
//! allocation per connection.

use base64::Engine as _;
use std::fmt;

/// A 20-character Engine.IO session id or Socket.IO socket id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid([u8; 20]);

impl Sid {
    /// A fresh random id (15 bytes of OS-seeded randomness, as `base64id` does).
    pub fn new() -> Self {
        let raw: [u8; 15] = rand::random();
        let mut out = [0u8; 20];
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(raw, &mut out)
            .expect("15 bytes encode to exactly 20 base64 characters");
        Sid(out)
    }

    /// Parses an id a client sent back; anything that is not 20 URL-safe base64
    /// characters cannot be one of ours.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; 20] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .then_some(Sid(bytes))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a Sid is always ASCII")
    }
}

impl Default for Sid {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twenty_url_safe_characters_and_parse_back() {
        let a = Sid::new();
        assert_eq!(a.as_str().len(), 20);
        assert_eq!(Sid::parse(a.as_str()), Some(a));
        assert_ne!(a, Sid::new());
    }

    #[test]
    fn foreign_strings_are_rejected() {
        assert_eq!(Sid::parse(""), None);
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse("aaaaaaaaaaaaaaaaaaa/"), None);
        assert_eq!(Sid::parse("aaaaaaaaaaaaaaaaaaaaa"), None);
        assert!(Sid::parse("oSO0OpakMV_3jnilAAAA").is_some());
    }
}
