//! Redis Cluster's key slot, as the servers compute it, so a layout can be checked to
//! put the keys of one script (or one pipeline) in one slot.

/// The slot of `key`: CRC16 (XMODEM) of its hash tag — the text between the first `{`
/// and the next `}`, when not empty — or of the whole key, mod 16384.
pub fn key_slot(key: &str) -> u16 {
    let hashed = key
        .find('{')
        .and_then(|open| {
            let close = key[open + 1..].find('}')?;
            (close > 0).then(|| &key[open + 1..open + 1 + close])
        })
        .unwrap_or(key);
    crc16(hashed.as_bytes()) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Redis Cluster specification's examples.
    #[test]
    fn slots_follow_the_specification() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(
            key_slot("{user1000}.following"),
            key_slot("{user1000}.followers")
        );
        assert_eq!(key_slot("foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
    }
}
