//! Engine.IO v4 packets and HTTP long-polling payloads.
//!
//! This module is pure: bytes in, enums out. It knows nothing about sockets, tasks or
//! timers, so every rule of the wire format can be unit-tested and fuzzed in isolation.
//!
//! Wire format (<https://socket.io/docs/v4/engine-io-protocol/>):
//! - a text packet is one ASCII digit (the type) followed by its data: `4hello`, `2probe`;
//! - over WebSocket a binary frame is a `message` packet whose data is the raw bytes;
//! - over HTTP long-polling several packets travel in one body, separated by the record
//!   separator `\x1e`, and binary data is sent as `b` + base64.

use base64::Engine as _;
use bytes::Bytes;
use std::fmt;

/// The record separator that joins packets in a long-polling payload.
pub const RECORD_SEPARATOR: char = '\x1e';

/// Engine.IO packet types, as the digit that starts a text packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Open = 0,
    Close = 1,
    Ping = 2,
    Pong = 3,
    Message = 4,
    Upgrade = 5,
    Noop = 6,
}

impl PacketType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }

    /// The digit that starts this packet on the wire.
    pub fn as_char(self) -> char {
        (b'0' + self as u8) as char
    }
}

/// The data a `message` packet carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data<'a> {
    Text(&'a str),
    Binary(Bytes),
}

/// One decoded Engine.IO packet. Text data borrows from the input, so decoding a
/// WebSocket frame or a polling body copies nothing but base64-decoded binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Open(&'a str),
    Close,
    Ping(&'a str),
    Pong(&'a str),
    Message(Data<'a>),
    Upgrade,
    Noop,
}

/// Why bytes are not a valid Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("invalid base64 in a binary packet")]
    InvalidBase64,
    #[error("packet type {0:?} carries no data")]
    UnexpectedData(PacketType),
}

/// Decodes one text packet (a WebSocket text frame, or one record of a polling payload).
pub fn decode_text(input: &str) -> Result<Packet<'_>, DecodeError> {
    let first = *input.as_bytes().first().ok_or(DecodeError::Empty)?;
    if first == b'b' {
        // Base64 binary is only legal inside polling payloads, but it is unambiguous, so
        // accepting it here keeps one decoder for both transports.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&input[1..])
            .map_err(|_| DecodeError::InvalidBase64)?;
        return Ok(Packet::Message(Data::Binary(Bytes::from(raw))));
    }
    let kind = PacketType::from_byte(first)
        .ok_or_else(|| DecodeError::UnknownType(input.chars().next().unwrap_or_default()))?;
    let data = &input[1..];
    let no_data = |p: Packet<'static>| {
        if data.is_empty() {
            Ok(p)
        } else {
            Err(DecodeError::UnexpectedData(kind))
        }
    };
    match kind {
        PacketType::Open => Ok(Packet::Open(data)),
        PacketType::Close => no_data(Packet::Close),
        PacketType::Ping => Ok(Packet::Ping(data)),
        PacketType::Pong => Ok(Packet::Pong(data)),
        PacketType::Message => Ok(Packet::Message(Data::Text(data))),
        PacketType::Upgrade => no_data(Packet::Upgrade),
        PacketType::Noop => no_data(Packet::Noop),
    }
}

/// Iterates over the packets of a long-polling payload (`4a\x1e4b\x1ebAQID`).
pub fn decode_payload(input: &str) -> impl Iterator<Item = Result<Packet<'_>, DecodeError>> {
    input.split(RECORD_SEPARATOR).map(decode_text)
}

/// Encodes a packet as text. Binary data becomes `b` + base64, as polling needs it;
/// over WebSocket binary data goes in a binary frame instead (see [`Packet::Message`]).
pub fn encode_text(packet: &Packet<'_>, out: &mut String) {
    match packet {
        Packet::Open(d) => push(out, PacketType::Open, d),
        Packet::Close => out.push('1'),
        Packet::Ping(d) => push(out, PacketType::Ping, d),
        Packet::Pong(d) => push(out, PacketType::Pong, d),
        Packet::Message(Data::Text(d)) => push(out, PacketType::Message, d),
        Packet::Message(Data::Binary(b)) => encode_binary_base64(b, out),
        Packet::Upgrade => out.push('5'),
        Packet::Noop => out.push('6'),
    }
}

/// Appends `b<base64>`: a binary message inside a polling payload.
pub fn encode_binary_base64(bytes: &[u8], out: &mut String) {
    out.push('b');
    base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
}

fn push(out: &mut String, kind: PacketType, data: &str) {
    out.reserve(1 + data.len());
    out.push(kind.as_char());
    out.push_str(data);
}

/// The handshake (`open` packet) the server sends first on every new session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    pub sid: String,
    pub upgrades: Vec<String>,
    pub ping_interval: u64,
    pub ping_timeout: u64,
    pub max_payload: u64,
}

impl Handshake {
    /// `0{"sid":…}` ready to send.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push('0');
        out.push_str(&serde_json::to_string(self).expect("handshake serializes"));
        out
    }
}

/// A transport name from the `transport` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Polling,
    Websocket,
}

impl TransportKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "polling" => Some(Self::Polling),
            "websocket" => Some(Self::Websocket),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::Websocket => "websocket",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(p: &Packet<'_>) -> String {
        let mut s = String::new();
        encode_text(p, &mut s);
        s
    }

    #[test]
    fn every_packet_type_round_trips() {
        let cases = [
            Packet::Open(r#"{"sid":"x"}"#),
            Packet::Close,
            Packet::Ping(""),
            Packet::Ping("probe"),
            Packet::Pong("probe"),
            Packet::Message(Data::Text("hello")),
            Packet::Message(Data::Text("")),
            Packet::Message(Data::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
            Packet::Upgrade,
            Packet::Noop,
        ];
        for p in cases {
            let text = enc(&p);
            assert_eq!(decode_text(&text).unwrap(), p, "{text}");
        }
    }

    #[test]
    fn wire_forms_match_the_spec() {
        assert_eq!(enc(&Packet::Ping("probe")), "2probe");
        assert_eq!(enc(&Packet::Message(Data::Text("hello"))), "4hello");
        assert_eq!(
            enc(&Packet::Message(Data::Binary(Bytes::from_static(&[
                1, 2, 3, 4
            ])))),
            "bAQIDBA=="
        );
    }

    #[test]
    fn payload_splits_on_record_separator() {
        let got: Vec<_> = decode_payload("4hello\x1ebAQIDBA==\x1e3")
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            vec![
                Packet::Message(Data::Text("hello")),
                Packet::Message(Data::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
                Packet::Pong(""),
            ]
        );
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let table: &[(&str, DecodeError)] = &[
            ("", DecodeError::Empty),
            ("abc", DecodeError::UnknownType('a')),
            ("7", DecodeError::UnknownType('7')),
            ("9x", DecodeError::UnknownType('9')),
            ("é", DecodeError::UnknownType('é')),
            ("b!!!", DecodeError::InvalidBase64),
            ("1x", DecodeError::UnexpectedData(PacketType::Close)),
            ("5x", DecodeError::UnexpectedData(PacketType::Upgrade)),
            ("6 ", DecodeError::UnexpectedData(PacketType::Noop)),
        ];
        for (input, want) in table {
            assert_eq!(decode_text(input).unwrap_err(), *want, "{input:?}");
        }
        assert!(decode_payload("4a\x1e\x1e4b").any(|r| r.is_err()));
    }

    #[test]
    fn handshake_has_the_fields_clients_read() {
        let h = Handshake {
            sid: "abc".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 60000,
            max_payload: 1_000_000,
        };
        assert_eq!(
            h.encode(),
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":60000,"maxPayload":1000000}"#
        );
    }
}
