//! Socket.IO v5 packets: the codec that sits inside Engine.IO `message` packets.
//!
//! Pure and I/O-free. The textual form is
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`, e.g.
//! `2/chat,12["message",{"text":"hi"}]`. Binary arguments travel as separate Engine.IO
//! binary messages after the text packet; inside the JSON they are replaced by
//! `{"_placeholder":true,"num":N}` (see [`placeholder`]). We keep the JSON with its
//! placeholders plus the attachment list side by side: relaying a binary event (the common
//! case for a server) then needs no reconstruction at all.
//!
//! The validity rules mirror `socket.io-parser` 4.x (what every official client speaks),
//! so anything the reference server would refuse we refuse too.

use bytes::Bytes;
use serde_json::Value;
use std::fmt::Write as _;

/// Event names a client may not emit: the server would mistake them for lifecycle events.
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The most binary attachments one packet may announce. socket.io-parser has no limit;
/// we need one so a client cannot make the server wait for millions of frames.
pub const MAX_ATTACHMENTS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// One Socket.IO packet. `data` keeps binary placeholders; `attachments` is how many
/// binary messages follow it on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketKind,
    pub nsp: String,
    pub id: Option<u64>,
    pub data: Option<Value>,
    pub attachments: usize,
}

/// Why a text message is not a valid Socket.IO packet. Any of these closes the connection,
/// as the reference server does: a client that sends them is broken or hostile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("illegal attachment count")]
    IllegalAttachments,
    #[error("invalid ack id")]
    InvalidAckId,
    #[error("payload is not valid JSON")]
    InvalidJson,
    #[error("payload is not valid for a {0:?} packet")]
    InvalidPayload(PacketKind),
    #[error("binary placeholder refers to a missing attachment")]
    InvalidPlaceholder,
}

impl Packet {
    /// A CONNECT reply (`0/chat,{"sid":"…"}`).
    /// The CONNECT reply: `{sid}`, or `{sid, pid}` with connection state recovery on
    /// (the private id the client sends back to recover its session).
    pub fn connect_ok(nsp: &str, sid: &str, pid: Option<&str>) -> Self {
        let body = match pid {
            Some(pid) => serde_json::json!({ "sid": sid, "pid": pid }),
            None => serde_json::json!({ "sid": sid }),
        };
        Self::new(PacketKind::Connect, nsp, None, Some(body))
    }

    /// A CONNECT_ERROR with `{"message": …, "data"?: …}` as socket.io-client expects.
    pub fn connect_error(nsp: &str, message: &str, data: Option<Value>) -> Self {
        let mut body = serde_json::Map::new();
        body.insert("message".into(), Value::String(message.into()));
        if let Some(d) = data {
            body.insert("data".into(), d);
        }
        Self::new(
            PacketKind::ConnectError,
            nsp,
            None,
            Some(Value::Object(body)),
        )
    }

    pub fn disconnect(nsp: &str) -> Self {
        Self::new(PacketKind::Disconnect, nsp, None, None)
    }

    /// An EVENT (or BINARY_EVENT when `attachments > 0`): `[name, ...args]`.
    pub fn event(nsp: &str, name: &str, args: Vec<Value>, attachments: usize) -> Self {
        let mut array = Vec::with_capacity(args.len() + 1);
        array.push(Value::String(name.into()));
        array.extend(args);
        let kind = if attachments > 0 {
            PacketKind::BinaryEvent
        } else {
            PacketKind::Event
        };
        Packet {
            kind,
            nsp: nsp.into(),
            id: None,
            data: Some(Value::Array(array)),
            attachments,
        }
    }

    /// An ACK (or BINARY_ACK) carrying `args` for the ack `id`.
    pub fn ack(nsp: &str, id: u64, args: Vec<Value>, attachments: usize) -> Self {
        let kind = if attachments > 0 {
            PacketKind::BinaryAck
        } else {
            PacketKind::Ack
        };
        Packet {
            kind,
            nsp: nsp.into(),
            id: Some(id),
            data: Some(Value::Array(args)),
            attachments,
        }
    }

    fn new(kind: PacketKind, nsp: &str, id: Option<u64>, data: Option<Value>) -> Self {
        Packet {
            kind,
            nsp: nsp.into(),
            id,
            data,
            attachments: 0,
        }
    }

    /// The event name of an EVENT / BINARY_EVENT.
    pub fn event_name(&self) -> Option<&str> {
        match &self.data {
            Some(Value::Array(a)) => a.first().and_then(Value::as_str),
            _ => None,
        }
    }
}

/// Appends the textual form of `packet` to `out` (callers start `out` with the Engine.IO
/// `4` so a frame is built with one allocation).
pub fn encode(packet: &Packet, out: &mut String) {
    out.push((b'0' + packet.kind as u8) as char);
    if packet.kind.is_binary() {
        let _ = write!(out, "{}-", packet.attachments);
    }
    if packet.nsp != "/" && !packet.nsp.is_empty() {
        out.push_str(&packet.nsp);
        out.push(',');
    }
    if let Some(id) = packet.id {
        let _ = write!(out, "{id}");
    }
    if let Some(data) = &packet.data {
        // Writing into a String through serde_json's io::Write adapter would need unsafe;
        // serializing to a Vec and appending is one extra copy of the JSON only.
        out.push_str(&serde_json::to_string(data).expect("JSON values always serialize"));
    }
}

/// Encodes a packet to a fresh string.
pub fn encode_to_string(packet: &Packet) -> String {
    let mut s = String::with_capacity(64);
    encode(packet, &mut s);
    s
}

/// Decodes one textual Socket.IO packet.
pub fn decode(input: &str) -> Result<Packet, DecodeError> {
    let bytes = input.as_bytes();
    let first = *bytes.first().ok_or(DecodeError::Empty)?;
    let kind = PacketKind::from_byte(first)
        .ok_or_else(|| DecodeError::UnknownType(input.chars().next().unwrap_or_default()))?;
    let mut i = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i >= bytes.len() || bytes[i] != b'-' {
            return Err(DecodeError::IllegalAttachments);
        }
        attachments = input[start..i]
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_ATTACHMENTS)
            .ok_or(DecodeError::IllegalAttachments)?;
        i += 1;
    }

    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        let start = i;
        while i < bytes.len() && bytes[i] != b',' {
            i += 1;
        }
        nsp = &input[start..i];
        if i < bytes.len() {
            i += 1; // the comma
        }
    }

    let mut id = None;
    if bytes.get(i).is_some_and(u8::is_ascii_digit) {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        id = Some(
            input[start..i]
                .parse::<u64>()
                .map_err(|_| DecodeError::InvalidAckId)?,
        );
    }

    let rest = &input[i..];
    let data = if rest.is_empty() {
        None
    } else {
        Some(parse_json(rest)?)
    };
    if !payload_is_valid(kind, data.as_ref()) {
        return Err(DecodeError::InvalidPayload(kind));
    }
    if matches!(kind, PacketKind::Ack | PacketKind::BinaryAck) && id.is_none() {
        return Err(DecodeError::InvalidAckId);
    }
    Ok(Packet {
        kind,
        nsp: nsp.to_owned(),
        id,
        data,
        attachments,
    })
}

/// Parses a payload as `JSON.parse` would. JavaScript strings may hold lone UTF-16
/// surrogates (a text cut in the middle of an emoji), and `JSON.stringify` writes them as
/// `\ud83e`; serde_json refuses those. Rather than drop the client's whole connection
/// for it, such escapes become U+FFFD, which is what the browser would display anyway.
fn parse_json(text: &str) -> Result<Value, DecodeError> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(_) => {
            let repaired = replace_lone_surrogates(text).ok_or(DecodeError::InvalidJson)?;
            serde_json::from_str(&repaired).map_err(|_| DecodeError::InvalidJson)
        }
    }
}

/// Rewrites `\uD800`–`\uDFFF` escapes that are not part of a valid pair as `\uFFFD`.
/// Returns None when there was nothing to replace (the JSON is broken some other way).
pub fn replace_lone_surrogates(json: &str) -> Option<String> {
    fn hex4(b: &[u8]) -> Option<u16> {
        std::str::from_utf8(b.get(..4)?)
            .ok()
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    }
    let b = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let (mut i, mut last, mut in_string, mut changed) = (0, 0, false, false);
    while i < b.len() {
        match b[i] {
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            b'\\' if in_string => {
                if b.get(i + 1) != Some(&b'u') {
                    i += 2;
                    continue;
                }
                let unit = hex4(&b[i + 2..])?;
                let paired = (0xD800..0xDC00).contains(&unit)
                    && b.get(i + 6) == Some(&b'\\')
                    && b.get(i + 7) == Some(&b'u')
                    && hex4(&b[(i + 8).min(b.len())..])
                        .is_some_and(|n| (0xDC00..0xE000).contains(&n));
                if paired {
                    i += 12;
                } else if (0xD800..0xE000).contains(&unit) {
                    out.push_str(&json[last..i]);
                    out.push_str("\\ufffd");
                    i += 6;
                    last = i;
                    changed = true;
                } else {
                    i += 6;
                }
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&json[last..]);
    Some(out)
}

/// socket.io-parser's `isPayloadValid`, with "absent" allowed where the parser never checks.
fn payload_is_valid(kind: PacketKind, data: Option<&Value>) -> bool {
    match (kind, data) {
        (PacketKind::Connect, None) => true,
        (PacketKind::Connect, Some(v)) => v.is_object(),
        (PacketKind::Disconnect, d) => d.is_none(),
        (PacketKind::ConnectError, Some(v)) => v.is_string() || v.is_object(),
        (PacketKind::Event | PacketKind::BinaryEvent, Some(Value::Array(a))) => match a.first() {
            Some(Value::Number(_)) => true,
            Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
            _ => false,
        },
        (PacketKind::Ack | PacketKind::BinaryAck, Some(v)) => v.is_array(),
        _ => false,
    }
}

/// The placeholder that stands for attachment `num` inside a binary packet's JSON.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// If `v` is a placeholder, the attachment index it refers to.
pub fn placeholder_index(v: &Value) -> Option<usize> {
    let obj = v.as_object()?;
    if obj.len() != 2 || obj.get("_placeholder")? != &Value::Bool(true) {
        return None;
    }
    obj.get("num")?.as_u64().map(|n| n as usize)
}

/// Checks that every placeholder in `v` names an attachment that exists, as
/// socket.io-parser's `reconstructPacket` does before it hands a packet on.
pub fn check_placeholders(v: &Value, attachments: usize) -> Result<(), DecodeError> {
    if let Some(n) = placeholder_index(v) {
        return if n < attachments {
            Ok(())
        } else {
            Err(DecodeError::InvalidPlaceholder)
        };
    }
    match v {
        Value::Array(a) => a
            .iter()
            .try_for_each(|x| check_placeholders(x, attachments)),
        Value::Object(o) => o
            .values()
            .try_for_each(|x| check_placeholders(x, attachments)),
        _ => Ok(()),
    }
}

/// Collects a binary packet's attachments as they arrive, one Engine.IO binary message
/// at a time. `push` says when the packet is complete.
#[derive(Debug)]
pub struct BinaryAssembler {
    packet: Packet,
    attachments: Vec<Bytes>,
}

impl BinaryAssembler {
    /// Starts assembling `packet`, which must announce at least one attachment.
    pub fn new(packet: Packet) -> Self {
        let n = packet.attachments;
        Self {
            packet,
            attachments: Vec::with_capacity(n),
        }
    }

    /// Adds one attachment; returns the finished packet and its attachments once all arrived.
    pub fn push(&mut self, bytes: Bytes) -> Option<Result<(Packet, Vec<Bytes>), DecodeError>> {
        self.attachments.push(bytes);
        if self.attachments.len() < self.packet.attachments {
            return None;
        }
        let packet = std::mem::replace(&mut self.packet, Packet::disconnect("/"));
        let attachments = std::mem::take(&mut self.attachments);
        Some(match &packet.data {
            Some(d) => check_placeholders(d, attachments.len()).map(|_| (packet, attachments)),
            None => Err(DecodeError::InvalidPayload(packet.kind)),
        })
    }

    pub fn received_bytes(&self) -> usize {
        self.attachments.iter().map(Bytes::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_every_packet_type() {
        let cases = vec![
            Packet::connect_ok("/", "abc", None),
            Packet::connect_ok("/chat", "abc", Some("p")),
            Packet {
                kind: PacketKind::Connect,
                nsp: "/admin".into(),
                id: None,
                data: None,
                attachments: 0,
            },
            Packet::disconnect("/chat"),
            Packet::event("/", "hello", vec![json!(1), json!({"a": [true]})], 0),
            Packet {
                id: Some(12),
                ..Packet::event("/chat", "message", vec![json!("hi")], 0)
            },
            Packet::ack("/", 7, vec![json!("ok")], 0),
            Packet::connect_error("/x", "Invalid namespace", None),
            Packet::event("/", "upload", vec![placeholder(0), placeholder(1)], 2),
            Packet::ack("/chat", 3, vec![placeholder(0)], 1),
        ];
        for p in cases {
            let text = encode_to_string(&p);
            assert_eq!(decode(&text).unwrap(), p, "{text}");
        }
    }

    #[test]
    fn wire_forms_match_the_spec() {
        assert_eq!(encode_to_string(&Packet::disconnect("/")), "1");
        assert_eq!(
            encode_to_string(&Packet::connect_ok("/admin", "oSO0OpakMV_3jnilAAAA", None)),
            r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#
        );
        assert_eq!(
            encode_to_string(&Packet::connect_ok(
                "/",
                "Qy6Paa9Gg_3ppQ19AAAA",
                Some("SP3wY8Ojg10-512oAAAB")
            )),
            r#"0{"sid":"Qy6Paa9Gg_3ppQ19AAAA","pid":"SP3wY8Ojg10-512oAAAB"}"#
        );
        let p = Packet {
            id: Some(12),
            ..Packet::event("/admin", "project:delete", vec![json!(123)], 0)
        };
        assert_eq!(encode_to_string(&p), r#"2/admin,12["project:delete",123]"#);
        assert_eq!(
            encode_to_string(&Packet::event("/", "hello", vec![placeholder(0)], 1)),
            r#"51-["hello",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            encode_to_string(&Packet::connect_error("/", "Invalid namespace", None)),
            r#"4{"message":"Invalid namespace"}"#
        );
    }

    #[test]
    fn decodes_what_clients_send() {
        let p = decode(r#"0{"token":"123"}"#).unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.data),
            (PacketKind::Connect, "/", Some(json!({"token": "123"})))
        );
        let p = decode("0/chat,").unwrap();
        assert_eq!((p.kind, p.nsp.as_str()), (PacketKind::Connect, "/chat"));
        let p = decode("0/chat").unwrap();
        assert_eq!(p.nsp, "/chat");
        let p = decode(r#"3/chat,42["ok"]"#).unwrap();
        assert_eq!((p.id, p.data), (Some(42), Some(json!(["ok"]))));
        let p =
            decode(r#"52-/x,9["f",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
                .unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (PacketKind::BinaryEvent, 2, Some(9))
        );
        assert_eq!(decode(r#"2[1,2]"#).unwrap().event_name(), None);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        use DecodeError::*;
        let table: &[(&str, DecodeError)] = &[
            ("", Empty),
            ("7", UnknownType('7')),
            ("a", UnknownType('a')),
            ("2", InvalidPayload(PacketKind::Event)),
            ("2{}", InvalidPayload(PacketKind::Event)),
            ("2[]", InvalidPayload(PacketKind::Event)),
            (r#"2[{}]"#, InvalidPayload(PacketKind::Event)),
            (r#"2["connect"]"#, InvalidPayload(PacketKind::Event)),
            (r#"2["disconnecting"]"#, InvalidPayload(PacketKind::Event)),
            (r#"2["a""#, InvalidJson),
            (r#"2/chat,["a"] x"#, InvalidJson),
            ("0[]", InvalidPayload(PacketKind::Connect)),
            ("0\"x\"", InvalidPayload(PacketKind::Connect)),
            ("1{}", InvalidPayload(PacketKind::Disconnect)),
            ("4", InvalidPayload(PacketKind::ConnectError)),
            ("3[]", InvalidAckId),
            ("3/chat,[]", InvalidAckId),
            ("31{}", InvalidPayload(PacketKind::Ack)),
            ("399999999999999999999999[]", InvalidAckId),
            ("5[\"a\"]", IllegalAttachments),
            ("5-[\"a\"]", IllegalAttachments),
            ("51[\"a\"]", IllegalAttachments),
            ("51", IllegalAttachments),
            ("5999-[\"a\"]", IllegalAttachments),
        ];
        for (input, want) in table {
            assert_eq!(decode(input).unwrap_err(), *want, "{input:?}");
        }
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let p = decode(r#"2["m",{"text":"x\ud83e"}]"#).unwrap();
        assert_eq!(p.data, Some(json!(["m", {"text": "x\u{fffd}"}])));
        let p = decode(r#"2["m","\udc00a\ud83d\ude00"]"#).unwrap();
        assert_eq!(p.data, Some(json!(["m", "\u{fffd}a\u{1F600}"])));
        // An escaped backslash is not an escape.
        assert_eq!(replace_lone_surrogates(r#"["\\ud83e"]"#), None);
        assert_eq!(
            decode(r#"2["m","\ud83"]"#).unwrap_err(),
            DecodeError::InvalidJson
        );
    }

    #[test]
    fn binary_assembler_waits_for_every_attachment() {
        let p = decode(r#"51-["up",{"_placeholder":true,"num":0}]"#).unwrap();
        let mut asm = BinaryAssembler::new(p);
        let (p, att) = asm.push(Bytes::from_static(b"\x01\x02")).unwrap().unwrap();
        assert_eq!(p.event_name(), Some("up"));
        assert_eq!(att, vec![Bytes::from_static(b"\x01\x02")]);

        let p = decode(r#"52-["up",{"_placeholder":true,"num":0}]"#).unwrap();
        let mut asm = BinaryAssembler::new(p);
        assert!(asm.push(Bytes::from_static(b"a")).is_none());
        assert_eq!(asm.received_bytes(), 1);
        assert!(asm.push(Bytes::from_static(b"b")).unwrap().is_ok());

        let p = decode(r#"51-["up",{"_placeholder":true,"num":5}]"#).unwrap();
        let mut asm = BinaryAssembler::new(p);
        assert_eq!(
            asm.push(Bytes::new()).unwrap().unwrap_err(),
            DecodeError::InvalidPlaceholder
        );
    }

    #[test]
    fn placeholders_are_recognised_exactly() {
        assert_eq!(placeholder_index(&placeholder(3)), Some(3));
        assert_eq!(placeholder_index(&json!({"_placeholder": true})), None);
        assert_eq!(
            placeholder_index(&json!({"_placeholder": false, "num": 1})),
            None
        );
        assert_eq!(
            placeholder_index(&json!({"_placeholder": true, "num": 1, "x": 2})),
            None
        );
    }
}
