//! Messages between nodes in the wire format of `@socket.io/redis-streams-adapter` 0.3.x
//! (socket.io-adapter's `ClusterAdapter` messages), so Rust and Node nodes share one
//! cluster on Redis streams, recovery sessions included. Pure and I/O-free.
//!
//! What travels, as the package's `lib/adapter.ts` writes it:
//!
//! - **stream entries** (`XADD <stream> MAXLEN ~ <maxLen> * uid … nsp … type … data …`):
//!   broadcasts without acknowledgement (3), `socketsJoin` (4), `socketsLeave` (5),
//!   `disconnectSockets` (6). `type` is the decimal number as a string; `data` is
//!   `JSON.stringify(data)`, or the standard padded base64 of msgpack(`data`) when a
//!   broadcast carries binary ([`Message::to_entry`]). The entry id is the offset a
//!   recovering client resumes from.
//! - **pub/sub** on `<prefix>#<nsp>#` (requests: fetchSockets, serverSideEmit with or
//!   without ack, broadcasts with acks) and `<prefix>#<nsp>#<uid>#` (every response):
//!   raw msgpack of `{type, data, uid, nsp}`, `type` an integer ([`Message::to_pubsub`]).
//! - **sessions** at `<sessionKeyPrefix><pid>`: base64(msgpack `{sid, pid, rooms, data}`)
//!   ([`SessionRecord`]).
//!
//! The packet in a broadcast is `{type: 2, data: [event, ...args]}` with no `nsp` (the
//! receiver sets it). As in [`super::cluster`], binary arguments are kept as JSON
//! placeholders plus attachments, and [`to_msgpack`] / [`from_msgpack`] move between that
//! form and msgpack values.
//!
//! Every `data` map is written with its keys in the order Node's objects have them, and
//! numbers as JavaScript writes them (a safe integer is an integer), so what we write is
//! byte for byte what the npm package writes for the same call (checked against captured
//! bytes in `tests/interop/fixtures/`).

use super::cluster::{
    from_msgpack, js_safe_integer, map_get, read_mp, rooms_of, to_msgpack, write_mp, BroadcastOpts,
};
use base64::Engine as _;
use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{json, Value};

/// socket.io-adapter's `MessageType` (`cluster-adapter.ts`), same numbers. 0.3.x never
/// sends the heartbeats (1, 2) nor ADAPTER_CLOSE (13); they are ignored when received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Broadcast = 3,
    SocketsJoin = 4,
    SocketsLeave = 5,
    DisconnectSockets = 6,
    FetchSockets = 7,
    FetchSocketsResponse = 8,
    ServerSideEmit = 9,
    ServerSideEmitResponse = 10,
    BroadcastClientCount = 11,
    BroadcastAck = 12,
}

impl MessageType {
    pub fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            3 => Self::Broadcast,
            4 => Self::SocketsJoin,
            5 => Self::SocketsLeave,
            6 => Self::DisconnectSockets,
            7 => Self::FetchSockets,
            8 => Self::FetchSocketsResponse,
            9 => Self::ServerSideEmit,
            10 => Self::ServerSideEmitResponse,
            11 => Self::BroadcastClientCount,
            12 => Self::BroadcastAck,
            _ => return None,
        })
    }

    /// The types whose `data` the package checks for binary (`mayContainBinary`).
    fn may_contain_binary(self) -> bool {
        matches!(
            self,
            Self::Broadcast
                | Self::FetchSocketsResponse
                | Self::ServerSideEmit
                | Self::ServerSideEmitResponse
                | Self::BroadcastAck
        )
    }
}

/// Why bytes from Redis are not a message we understand. Such messages are skipped, as
/// the package does (`debug("invalid format")`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamsDecodeError {
    #[error("not valid base64")]
    Base64,
    #[error("not valid msgpack")]
    Msgpack,
    #[error("not valid JSON")]
    Json,
    #[error("unknown message type {0}")]
    UnknownType(u64),
    #[error("unexpected message shape: {0}")]
    Shape(&'static str),
}

/// What a message says, by type, with its `data` fields. Binary inside (`packet`,
/// acknowledgement arguments) is placeholders referring to [`Message::attachments`].
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `{packet, opts}` (stream), or `{packet, requestId, opts}` when the sender wants
    /// every client's acknowledgement (pub/sub). `packet` is `[event, ...args]`.
    Broadcast {
        packet: Value,
        opts: BroadcastOpts,
        request_id: Option<String>,
    },
    SocketsJoin {
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    SocketsLeave {
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    DisconnectSockets {
        opts: BroadcastOpts,
        close: bool,
    },
    FetchSockets {
        opts: BroadcastOpts,
        request_id: String,
    },
    /// `sockets`: `{id, handshake, rooms, data}` each.
    FetchSocketsResponse {
        request_id: String,
        sockets: Vec<Value>,
    },
    /// `packet` is `[event, ...args]`; a request id asks each node for one answer.
    ServerSideEmit {
        request_id: Option<String>,
        packet: Vec<Value>,
    },
    ServerSideEmitResponse {
        request_id: String,
        packet: Value,
    },
    BroadcastClientCount {
        request_id: String,
        client_count: u64,
    },
    /// One client's (first) acknowledgement argument.
    BroadcastAck {
        request_id: String,
        packet: Value,
    },
}

impl Body {
    pub fn kind(&self) -> MessageType {
        match self {
            Body::Broadcast { .. } => MessageType::Broadcast,
            Body::SocketsJoin { .. } => MessageType::SocketsJoin,
            Body::SocketsLeave { .. } => MessageType::SocketsLeave,
            Body::DisconnectSockets { .. } => MessageType::DisconnectSockets,
            Body::FetchSockets { .. } => MessageType::FetchSockets,
            Body::FetchSocketsResponse { .. } => MessageType::FetchSocketsResponse,
            Body::ServerSideEmit { .. } => MessageType::ServerSideEmit,
            Body::ServerSideEmitResponse { .. } => MessageType::ServerSideEmitResponse,
            Body::BroadcastClientCount { .. } => MessageType::BroadcastClientCount,
            Body::BroadcastAck { .. } => MessageType::BroadcastAck,
        }
    }

    /// The request this message answers or asks, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Body::Broadcast { request_id, .. } | Body::ServerSideEmit { request_id, .. } => {
                request_id.as_deref()
            }
            Body::FetchSockets { request_id, .. }
            | Body::FetchSocketsResponse { request_id, .. }
            | Body::ServerSideEmitResponse { request_id, .. }
            | Body::BroadcastClientCount { request_id, .. }
            | Body::BroadcastAck { request_id, .. } => Some(request_id),
            Body::SocketsJoin { .. }
            | Body::SocketsLeave { .. }
            | Body::DisconnectSockets { .. } => None,
        }
    }

    /// Whether the package sends it on pub/sub (`isEphemeral`, and every response)
    /// rather than in the stream.
    pub fn is_ephemeral(&self) -> bool {
        match self {
            Body::Broadcast { request_id, .. } => request_id.is_some(),
            Body::SocketsJoin { .. }
            | Body::SocketsLeave { .. }
            | Body::DisconnectSockets { .. } => false,
            _ => true,
        }
    }

    /// `data` with its keys in the order the package's objects have them.
    fn to_json(&self) -> Value {
        match self {
            Body::Broadcast {
                packet,
                opts,
                request_id: None,
            } => json!({ "packet": packet_json(packet), "opts": opts_json(opts) }),
            Body::Broadcast {
                packet,
                opts,
                request_id: Some(id),
            } => json!({ "packet": packet_json(packet), "requestId": id, "opts": opts_json(opts) }),
            Body::SocketsJoin { opts, rooms } | Body::SocketsLeave { opts, rooms } => {
                json!({ "opts": opts_json(opts), "rooms": rooms })
            }
            Body::DisconnectSockets { opts, close } => {
                json!({ "opts": opts_json(opts), "close": close })
            }
            Body::FetchSockets { opts, request_id } => {
                json!({ "opts": opts_json(opts), "requestId": request_id })
            }
            Body::FetchSocketsResponse {
                request_id,
                sockets,
            } => json!({ "requestId": request_id, "sockets": sockets }),
            Body::ServerSideEmit {
                request_id: None,
                packet,
            } => json!({ "packet": packet }),
            Body::ServerSideEmit {
                request_id: Some(id),
                packet,
            } => json!({ "requestId": id, "packet": packet }),
            Body::ServerSideEmitResponse { request_id, packet }
            | Body::BroadcastAck { request_id, packet } => {
                json!({ "requestId": request_id, "packet": packet })
            }
            Body::BroadcastClientCount {
                request_id,
                client_count,
            } => json!({ "requestId": request_id, "clientCount": client_count }),
        }
    }

    fn from_json(kind: MessageType, d: &Value) -> Result<Self, StreamsDecodeError> {
        let opts = || match d.get("opts") {
            Some(o) if o.is_object() => Ok(BroadcastOpts::from_value(o)),
            _ => Err(StreamsDecodeError::Shape("no opts")),
        };
        let request_id = || d.get("requestId").and_then(id_string);
        let need_id = || request_id().ok_or(StreamsDecodeError::Shape("no requestId"));
        let packet = || d.get("packet").cloned().unwrap_or(Value::Null);
        Ok(match kind {
            MessageType::Broadcast => Body::Broadcast {
                packet: d
                    .get("packet")
                    .and_then(|p| p.get("data"))
                    .filter(|p| p.is_array())
                    .cloned()
                    .ok_or(StreamsDecodeError::Shape("broadcast without packet data"))?,
                opts: opts()?,
                request_id: request_id(),
            },
            MessageType::SocketsJoin => Body::SocketsJoin {
                opts: opts()?,
                rooms: rooms_of(d.get("rooms")),
            },
            MessageType::SocketsLeave => Body::SocketsLeave {
                opts: opts()?,
                rooms: rooms_of(d.get("rooms")),
            },
            MessageType::DisconnectSockets => Body::DisconnectSockets {
                opts: opts()?,
                close: d.get("close").and_then(Value::as_bool).unwrap_or(false),
            },
            MessageType::FetchSockets => Body::FetchSockets {
                opts: opts()?,
                request_id: need_id()?,
            },
            MessageType::FetchSocketsResponse => Body::FetchSocketsResponse {
                request_id: need_id()?,
                sockets: d
                    .get("sockets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            },
            MessageType::ServerSideEmit => Body::ServerSideEmit {
                request_id: request_id(),
                packet: match d.get("packet") {
                    Some(Value::Array(a)) => a.clone(),
                    _ => return Err(StreamsDecodeError::Shape("serverSideEmit without packet")),
                },
            },
            MessageType::ServerSideEmitResponse => Body::ServerSideEmitResponse {
                request_id: need_id()?,
                packet: packet(),
            },
            MessageType::BroadcastClientCount => Body::BroadcastClientCount {
                request_id: need_id()?,
                client_count: d.get("clientCount").and_then(Value::as_u64).unwrap_or(0),
            },
            MessageType::BroadcastAck => Body::BroadcastAck {
                request_id: need_id()?,
                packet: packet(),
            },
        })
    }
}

/// Request ids are 16 hex characters; a number is tolerated.
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The broadcast packet `{type: 2, data}`: EVENT, even with binary (socket.io-parser's
/// encoder picks BINARY_EVENT later), and without `nsp` or `id`.
fn packet_json(data: &Value) -> Value {
    json!({ "type": 2, "data": data })
}

/// `encodeOptions(opts)`: `{rooms, except, flags}`, flags as set (`{}` when none).
fn opts_json(o: &BroadcastOpts) -> Value {
    json!({ "rooms": o.rooms, "except": o.except, "flags": o.flags.clone().unwrap_or_default() })
}

/// One message of one namespace adapter (`ClusterMessage` / `ClusterResponse`).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The sending adapter's uid: 16 hex characters, one per (server, namespace).
    pub uid: String,
    pub nsp: String,
    pub body: Body,
    /// The binary the body's placeholders refer to.
    pub attachments: Vec<Bytes>,
}

/// A stream entry as XREAD / XRANGE return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// `<ms>-<seq>`: the offset of a broadcast.
    pub id: String,
    pub fields: Vec<(String, String)>,
}

impl StreamEntry {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Node decodes base64 leniently (padding or not); so do we.
const B64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

impl Message {
    /// The XADD fields, in the package's order: `uid`, `nsp`, `type`, `data`.
    pub fn to_entry(&self) -> Vec<(String, String)> {
        let kind = self.body.kind();
        let json = js_numbers(self.body.to_json());
        let data = if kind.may_contain_binary() && !self.attachments.is_empty() {
            let mp = to_msgpack(&json, &self.attachments);
            base64::engine::general_purpose::STANDARD.encode(write_mp(&mp))
        } else {
            serde_json::to_string(&json).expect("JSON values always serialize")
        };
        vec![
            ("uid".into(), self.uid.clone()),
            ("nsp".into(), self.nsp.clone()),
            ("type".into(), (kind as u8).to_string()),
            ("data".into(), data),
        ]
    }

    /// Reads an entry's fields (`RedisStreamsAdapter.decode`): `data` is JSON when it
    /// starts with `{`, base64 msgpack otherwise.
    pub fn from_entry(entry: &StreamEntry) -> Result<Self, StreamsDecodeError> {
        let uid = entry.field("uid").unwrap_or_default().to_owned();
        let nsp = entry
            .field("nsp")
            .ok_or(StreamsDecodeError::Shape("entry without nsp"))?
            .to_owned();
        let n: u64 = entry
            .field("type")
            .and_then(|t| t.parse().ok())
            .ok_or(StreamsDecodeError::Shape("entry without a numeric type"))?;
        let kind = MessageType::from_u64(n).ok_or(StreamsDecodeError::UnknownType(n))?;
        let raw = entry.field("data").unwrap_or_default();
        let (data, attachments) = if raw.starts_with('{') {
            let v = serde_json::from_str(raw).map_err(|_| StreamsDecodeError::Json)?;
            (v, Vec::new())
        } else {
            let bytes = B64_LENIENT
                .decode(raw.trim())
                .map_err(|_| StreamsDecodeError::Base64)?;
            let mp = read_mp(&bytes).map_err(|_| StreamsDecodeError::Msgpack)?;
            from_msgpack(&mp)
        };
        Ok(Message {
            uid,
            nsp,
            body: Body::from_json(kind, &data)?,
            attachments,
        })
    }

    /// The pub/sub payload: msgpack `{type, data, uid, nsp}` (`encode(message)`).
    pub fn to_pubsub(&self) -> Vec<u8> {
        let data = js_numbers(self.body.to_json());
        write_mp(&Mp::Map(vec![
            (Mp::from("type"), Mp::from(self.body.kind() as u8)),
            (Mp::from("data"), to_msgpack(&data, &self.attachments)),
            (Mp::from("uid"), Mp::from(self.uid.as_str())),
            (Mp::from("nsp"), Mp::from(self.nsp.as_str())),
        ]))
    }

    pub fn from_pubsub(bytes: &[u8]) -> Result<Self, StreamsDecodeError> {
        let mp = read_mp(bytes).map_err(|_| StreamsDecodeError::Msgpack)?;
        let n = map_get(&mp, "type")
            .and_then(Mp::as_u64)
            .ok_or(StreamsDecodeError::Shape("message without a type"))?;
        let kind = MessageType::from_u64(n).ok_or(StreamsDecodeError::UnknownType(n))?;
        let (data, attachments) = match map_get(&mp, "data") {
            Some(d) => from_msgpack(d),
            None => (Value::Null, Vec::new()),
        };
        let text = |k: &str| {
            map_get(&mp, k)
                .and_then(Mp::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Message {
            uid: text("uid"),
            nsp: text("nsp"),
            body: Body::from_json(kind, &data)?,
            attachments,
        })
    }
}

/// Replaces each float that JavaScript would write as an integer by that integer.
/// With it, serde_json's output is `JSON.stringify`'s (same string escapes, non-ASCII
/// kept) except for exponents (`1e21` vs `1e+21`), which no one sends.
fn js_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64().and_then(js_safe_integer) {
            Some(i) => Value::from(i),
            None => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(js_numbers).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, js_numbers(v))).collect())
        }
        other => other,
    }
}

/// A disconnected socket's session as the package stores it: base64(msgpack
/// `{sid, pid, rooms, data}`), plus `expiresAt` (ms since the epoch) when we know when
/// it expires. Node ignores the extra key.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub sid: String,
    pub pid: String,
    pub rooms: Vec<String>,
    pub data: Value,
    pub expires_at_ms: Option<u64>,
}

impl SessionRecord {
    /// The value of `SET <prefix><pid> <value> PX <ms>`: standard base64, padded.
    pub fn encode(&self) -> String {
        let mut map = vec![
            (Mp::from("sid"), Mp::from(self.sid.as_str())),
            (Mp::from("pid"), Mp::from(self.pid.as_str())),
            (
                Mp::from("rooms"),
                Mp::Array(self.rooms.iter().map(|r| Mp::from(r.as_str())).collect()),
            ),
            (
                Mp::from("data"),
                to_msgpack(&js_numbers(self.data.clone()), &[]),
            ),
        ];
        if let Some(at) = self.expires_at_ms {
            map.push((Mp::from("expiresAt"), Mp::from(at)));
        }
        base64::engine::general_purpose::STANDARD.encode(write_mp(&Mp::Map(map)))
    }

    /// Reads a stored session (ours or Node's). Binary inside `data` comes back as
    /// placeholders without its bytes: our sockets' data is JSON.
    pub fn decode(value: &str) -> Result<Self, StreamsDecodeError> {
        let bytes = B64_LENIENT
            .decode(value.trim())
            .map_err(|_| StreamsDecodeError::Base64)?;
        let mp = read_mp(&bytes).map_err(|_| StreamsDecodeError::Msgpack)?;
        let (v, _) = from_msgpack(&mp);
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(SessionRecord {
            sid: text("sid").ok_or(StreamsDecodeError::Shape("session without sid"))?,
            pid: text("pid").ok_or(StreamsDecodeError::Shape("session without pid"))?,
            rooms: rooms_of(v.get("rooms")),
            data: v.get("data").cloned().unwrap_or(Value::Null),
            expires_at_ms: v.get("expiresAt").and_then(Value::as_f64).map(|f| f as u64),
        })
    }
}

/// Java's `String.hashCode` over UTF-16 code units with int32 wrap-around (the
/// package's `hashCode`, which picks a namespace's stream).
pub fn hash_code(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)))
}

/// The stream a namespace writes to and restores from (`computeStreamName`): `name` with
/// one stream, else `name-<hashCode(nsp) % count>`.
///
/// The remainder keeps the sign of the hash, as JavaScript's `%` does, so a namespace
/// with a negative hash maps to e.g. `socket.io--3`. That is an upstream bug: no reader
/// (ours or Node's) polls that key, so with several streams such a namespace's cluster
/// traffic reaches no other node, though its recovery still works (restore reads the
/// same key). We keep it: any other key would split a mixed cluster.
pub fn stream_name(name: &str, count: u32, nsp: &str) -> String {
    if count <= 1 {
        return name.to_owned();
    }
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    format!("{name}-{}", hash_code(nsp) % count)
}

/// The streams a node polls: `name`, or `name-0` … `name-<count-1>`.
pub fn reader_streams(name: &str, count: u32) -> Vec<String> {
    if count <= 1 {
        return vec![name.to_owned()];
    }
    (0..count).map(|i| format!("{name}-{i}")).collect()
}

/// Requests go to `<prefix>#<nsp>#`, which every node of the namespace subscribes to
/// (so `PUBSUB NUMSUB` of it counts the nodes).
pub fn public_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#")
}

/// Responses to the adapter `uid` go to `<prefix>#<nsp>#<uid>#`.
pub fn private_channel(prefix: &str, nsp: &str, uid: &str) -> String {
    format!("{prefix}#{nsp}#{uid}#")
}

/// Whether `offset` looks like an entry id (`/^[0-9]+-[0-9]+$/`).
pub fn is_offset(offset: &str) -> bool {
    let Some((ms, seq)) = offset.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(ms) && digits(seq)
}

/// The first id after `offset` (`nextOffset`: XRANGE's exclusive start, which Redis
/// before 6.2 lacks). `offset` must pass [`is_offset`].
pub fn next_offset(offset: &str) -> String {
    let (ms, seq) = offset.split_once('-').unwrap_or((offset, "0"));
    let seq: u64 = seq.parse().unwrap_or(0);
    format!("{ms}-{}", seq.saturating_add(1))
}

/// Whether a broadcast to `opts` is one a session in `rooms` missed
/// (`shouldIncludePacket`): to everyone or one of its rooms, and none of them excepted.
pub fn should_include(rooms: &[String], opts: &BroadcastOpts) -> bool {
    let included = opts.rooms.is_empty() || rooms.iter().any(|r| opts.rooms.contains(r));
    included && rooms.iter().all(|r| !opts.except.contains(r))
}

#[cfg(test)]
mod tests;
