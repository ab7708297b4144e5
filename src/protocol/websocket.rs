//! The one piece of WebSocket framing the server writes itself: the header of an
//! unmasked, unfragmented frame (RFC 6455 §5.2), so a queued Engine.IO packet goes out as
//! `writev(header, payload)` with no copy of the payload. Reading stays with tungstenite.

/// A frame's opcode (RFC 6455 §5.2): the two data kinds Engine.IO sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Text = 0x1,
    Binary = 0x2,
}

/// The encoded header of a final, unmasked frame: 2, 4 or 10 bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    bytes: [u8; 10],
    len: u8,
}

impl FrameHeader {
    /// The header of a server frame carrying `payload_len` bytes (servers never mask).
    pub fn new(opcode: Opcode, payload_len: usize) -> Self {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | opcode as u8; // FIN
        let len = if payload_len < 126 {
            bytes[1] = payload_len as u8;
            2
        } else if let Ok(short) = u16::try_from(payload_len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        };
        FrameHeader { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_length_form_is_encoded_big_endian_after_the_fin_bit() {
        assert_eq!(FrameHeader::new(Opcode::Text, 0).as_bytes(), [0x81, 0]);
        assert_eq!(FrameHeader::new(Opcode::Text, 125).as_bytes(), [0x81, 125]);
        assert_eq!(
            FrameHeader::new(Opcode::Binary, 126).as_bytes(),
            [0x82, 126, 0, 126]
        );
        assert_eq!(
            FrameHeader::new(Opcode::Text, 65_535).as_bytes(),
            [0x81, 126, 0xff, 0xff]
        );
        assert_eq!(
            FrameHeader::new(Opcode::Binary, 65_536).as_bytes(),
            [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }
}
