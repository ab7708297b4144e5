//! The messages of socket.io-adapter's `ClusterAdapter` (`cluster-adapter.ts`): what
//! nodes of the adapters built on it tell each other, whatever carries them. Pure and
//! I/O-free.
//!
//! A message is `{type, data, uid, nsp}` — keys in that order, as `publishAndReturnOffset`
//! and `publishResponse` add `uid` and `nsp` to `{type, data}` — with `type` one of
//! [`MessageType`] and `data` a map whose keys depend on it ([`Body`]). Two adapters
//! speak it, each with its own envelope:
//!
//! - `createShardedAdapter` of `@socket.io/redis-adapter` 8.3 (`lib/sharded-adapter.ts`)
//!   SPUBLISHes the whole message: msgpack (notepack.io) when its type may carry binary
//!   and its `data` does, `JSON.stringify` otherwise; a receiver tells them apart by the
//!   first byte, `{` being JSON ([`Message::encode_sharded`], [`Message::decode_sharded`]);
//! - `@socket.io/redis-streams-adapter` 0.3 writes stream entries and msgpack pub/sub
//!   messages ([`super::cluster_streams`]).
//!
//! The packet in a broadcast is `{type: 2, data: [event, ...args]}` with no `nsp` (the
//! sender encodes the message before its own local delivery sets it). As in
//! [`super::cluster`], binary arguments are kept as JSON placeholders plus attachments,
//! and [`to_msgpack`] / [`from_msgpack`] move between that form and msgpack values.
//!
//! Every `data` map is written with its keys in the order Node's objects have them, and
//! numbers as JavaScript writes them (a safe integer is an integer), so what we write is
//! byte for byte what the npm packages write for the same call (checked against captured
//! bytes in `tests/interop/fixtures/`).

use super::cluster::{
    from_msgpack, js_safe_integer, map_get, read_mp, rooms_of, to_msgpack, write_mp, BroadcastOpts,
};
use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{json, Value};

/// socket.io-adapter's `MessageType`, same numbers. The adapters without heartbeats
/// (sharded, streams) never send 1, 2 and 13, and ignore them when received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    InitialHeartbeat = 1,
    Heartbeat = 2,
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
    AdapterClose = 13,
}

impl MessageType {
    pub fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            1 => Self::InitialHeartbeat,
            2 => Self::Heartbeat,
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
            13 => Self::AdapterClose,
            _ => return None,
        })
    }

    /// The types whose `data` the adapters check for binary (`mayContainBinary`).
    pub fn may_contain_binary(self) -> bool {
        matches!(
            self,
            Self::Broadcast
                | Self::FetchSocketsResponse
                | Self::ServerSideEmit
                | Self::ServerSideEmitResponse
                | Self::BroadcastAck
        )
    }

    /// Whether it answers a request (`ClusterResponse`): such messages go to the
    /// requester's own channel.
    pub fn is_response(self) -> bool {
        matches!(
            self,
            Self::FetchSocketsResponse
                | Self::ServerSideEmitResponse
                | Self::BroadcastClientCount
                | Self::BroadcastAck
        )
    }
}

/// Why bytes from Redis are not a message we understand. Such messages are skipped, as
/// the packages do (`debug("invalid format")`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
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
    /// `{packet, opts}`, or `{packet, requestId, opts}` when the sender wants every
    /// client's acknowledgement. `packet` is `[event, ...args]`.
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
    /// `ClusterAdapterWithHeartbeat`'s messages, without `data`.
    InitialHeartbeat,
    Heartbeat,
    AdapterClose,
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
            Body::InitialHeartbeat => MessageType::InitialHeartbeat,
            Body::Heartbeat => MessageType::Heartbeat,
            Body::AdapterClose => MessageType::AdapterClose,
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
            | Body::DisconnectSockets { .. }
            | Body::InitialHeartbeat
            | Body::Heartbeat
            | Body::AdapterClose => None,
        }
    }

    /// `data` with its keys in the order the packages' objects have them; `None` for
    /// the messages that have no `data`.
    pub(crate) fn to_json(&self) -> Option<Value> {
        let data = match self {
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
            Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => return None,
        };
        Some(js_numbers(data))
    }

    /// The body of a message of type `kind` whose `data` is `d` (`Null` when absent).
    pub(crate) fn from_json(kind: MessageType, d: &Value) -> Result<Self, DecodeError> {
        let opts = || match d.get("opts") {
            Some(o) if o.is_object() => Ok(BroadcastOpts::from_value(o)),
            _ => Err(DecodeError::Shape("no opts")),
        };
        let request_id = || d.get("requestId").and_then(id_string);
        let need_id = || request_id().ok_or(DecodeError::Shape("no requestId"));
        let packet = || d.get("packet").cloned().unwrap_or(Value::Null);
        Ok(match kind {
            MessageType::Broadcast => Body::Broadcast {
                packet: d
                    .get("packet")
                    .and_then(|p| p.get("data"))
                    .filter(|p| p.is_array())
                    .cloned()
                    .ok_or(DecodeError::Shape("broadcast without packet data"))?,
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
                    _ => return Err(DecodeError::Shape("serverSideEmit without packet")),
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
            MessageType::InitialHeartbeat => Body::InitialHeartbeat,
            MessageType::Heartbeat => Body::Heartbeat,
            MessageType::AdapterClose => Body::AdapterClose,
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

impl Message {
    /// Whether `hasBinary(message.data)` holds for a type that may carry binary.
    fn carries_binary(&self) -> bool {
        self.body.kind().may_contain_binary() && !self.attachments.is_empty()
    }

    /// notepack's `encode(message)`: a msgpack map `{type, data, uid, nsp}`, binary
    /// in place (`data` left out for the messages without one).
    pub fn encode_msgpack(&self) -> Vec<u8> {
        let mut map = vec![(Mp::from("type"), Mp::from(self.body.kind() as u8))];
        if let Some(data) = self.body.to_json() {
            map.push((Mp::from("data"), to_msgpack(&data, &self.attachments)));
        }
        map.push((Mp::from("uid"), Mp::from(self.uid.as_str())));
        map.push((Mp::from("nsp"), Mp::from(self.nsp.as_str())));
        write_mp(&Mp::Map(map))
    }

    /// `JSON.stringify(message)`. Binary has no JSON form: callers check
    /// [`MessageType::may_contain_binary`] and the attachments first, as the packages do.
    pub fn encode_json(&self) -> Vec<u8> {
        let mut map = serde_json::Map::new();
        map.insert("type".into(), Value::from(self.body.kind() as u8));
        if let Some(data) = self.body.to_json() {
            map.insert("data".into(), data);
        }
        map.insert("uid".into(), Value::from(self.uid.as_str()));
        map.insert("nsp".into(), Value::from(self.nsp.as_str()));
        serde_json::to_vec(&Value::Object(map)).expect("JSON values always serialize")
    }

    /// What the sharded adapter SPUBLISHes (its `encode`): msgpack when the message
    /// carries binary, JSON otherwise.
    pub fn encode_sharded(&self) -> Vec<u8> {
        if self.carries_binary() {
            self.encode_msgpack()
        } else {
            self.encode_json()
        }
    }

    /// Reads what the sharded adapter SPUBLISHes (`onRawMessage`): JSON when the first
    /// byte is `{` (0x7b), msgpack otherwise.
    pub fn decode_sharded(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.first() == Some(&b'{') {
            Self::decode_json(bytes)
        } else {
            Self::decode_msgpack(bytes)
        }
    }

    pub fn decode_msgpack(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mp = read_mp(bytes).map_err(|_| DecodeError::Msgpack)?;
        let n = map_get(&mp, "type")
            .and_then(Mp::as_u64)
            .ok_or(DecodeError::Shape("message without a type"))?;
        let kind = MessageType::from_u64(n).ok_or(DecodeError::UnknownType(n))?;
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

    pub fn decode_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|_| DecodeError::Json)?;
        let n = v
            .get("type")
            .and_then(Value::as_u64)
            .ok_or(DecodeError::Shape("message without a type"))?;
        let kind = MessageType::from_u64(n).ok_or(DecodeError::UnknownType(n))?;
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Message {
            uid: text("uid"),
            nsp: text("nsp"),
            body: Body::from_json(kind, v.get("data").unwrap_or(&Value::Null))?,
            attachments: Vec::new(),
        })
    }
}

/// Replaces each float that JavaScript would write as an integer by that integer.
/// With it, serde_json's output is `JSON.stringify`'s (same string escapes, non-ASCII
/// kept) except for exponents (`1e21` vs `1e+21`), which no one sends.
pub(crate) fn js_numbers(v: Value) -> Value {
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

#[cfg(test)]
mod tests;
