//! Messages between nodes: the wire format of Node's `@socket.io/redis-adapter` 8.x
//! (non-sharded) and `@socket.io/redis-emitter` 5.x, so Rust and Node nodes (and a Next.js
//! route with the emitter) can share one cluster.
//!
//! Pure and I/O-free, like the other codecs. What travels, as the adapter's
//! `lib/index.ts` writes it:
//!
//! - **broadcasts**: msgpack (notepack.io) `[uid, packet, {rooms, except, flags}]` on
//!   `<key>#<nsp>#`, or `<key>#<nsp>#<room>#` when there is exactly one room
//!   (`RedisAdapter.broadcast`). `packet` is socket.io-parser's object
//!   `{type: 2, data: [event, ...args], nsp}` with binary arguments *inside* `data` as
//!   msgpack `bin` (no placeholders: the receiving node's encoder deconstructs them).
//! - **requests** on `<key>-request#<nsp>#`: JSON (`JSON.stringify`) except BROADCAST,
//!   which is msgpack because its packet may hold binary. A receiver tells them apart by
//!   the first byte: `{` (0x7b) is JSON (`onrequest`: `if (msg[0] === 0x7b)`).
//! - **responses** on `<key>-response#<nsp>#` (or `<key>-response#<nsp>#<uid>#` with
//!   `publishOnSpecificResponseChannel`): JSON, except BROADCAST_ACK (msgpack).
//!
//! Binary arguments are kept by the server as JSON with `{"_placeholder":true,"num":N}`
//! plus an attachment list; [`to_msgpack`] / [`from_msgpack`] are socket.io-parser's
//! `reconstructPacket` / `deconstructPacket` between that form and msgpack values.

use bytes::Bytes;
use rmpv::Value as Mp;
use serde::Serialize;
use serde_json::{Map, Value};

/// The adapter's `RequestType` enum (`lib/index.ts`), same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "u8")]
pub enum RequestType {
    Sockets = 0,
    AllRooms = 1,
    RemoteJoin = 2,
    RemoteLeave = 3,
    RemoteDisconnect = 4,
    RemoteFetch = 5,
    ServerSideEmit = 6,
    Broadcast = 7,
    BroadcastClientCount = 8,
    BroadcastAck = 9,
}

impl From<RequestType> for u8 {
    fn from(t: RequestType) -> u8 {
        t as u8
    }
}

impl RequestType {
    pub fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            0 => Self::Sockets,
            1 => Self::AllRooms,
            2 => Self::RemoteJoin,
            3 => Self::RemoteLeave,
            4 => Self::RemoteDisconnect,
            5 => Self::RemoteFetch,
            6 => Self::ServerSideEmit,
            7 => Self::Broadcast,
            8 => Self::BroadcastClientCount,
            9 => Self::BroadcastAck,
            _ => return None,
        })
    }
}

/// Why bytes from Redis are not a message we understand. Such messages are ignored (the
/// adapter logs "ignoring malformed request" and goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterDecodeError {
    #[error("not valid msgpack")]
    Msgpack,
    #[error("not valid JSON")]
    Json,
    #[error("unexpected message shape: {0}")]
    Shape(&'static str),
}

/// The channel names of one namespace (`RedisAdapter` constructor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// `<key>#<nsp>#`: broadcasts to the whole namespace; rooms append `<room>#`.
    pub broadcast: String,
    /// `<key>-request#<nsp>#`
    pub request: String,
    /// `<key>-response#<nsp>#`
    pub response: String,
}

impl Channels {
    pub fn new(key: &str, nsp: &str) -> Self {
        Channels {
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            response: format!("{key}-response#{nsp}#"),
        }
    }

    /// The pattern every node PSUBSCRIBEs: `<key>#<nsp>#*`.
    pub fn pattern(&self) -> String {
        format!("{}*", self.broadcast)
    }

    /// The per-node response channel `<key>-response#<nsp>#<uid>#`.
    pub fn specific_response(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }

    /// Where a broadcast goes: the room channel when exactly one room is targeted.
    pub fn for_rooms(&self, rooms: &[String]) -> String {
        match rooms {
            [room] => format!("{}{room}#", self.broadcast),
            _ => self.broadcast.clone(),
        }
    }

    /// The room a broadcast channel names (`""` for the namespace channel), as
    /// `onmessage` computes it: `channel.slice(this.channel.length, -1)`. `None` when the
    /// channel is not this namespace's.
    pub fn room_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let rest = channel.strip_prefix(self.broadcast.as_str())?;
        Some(rest.strip_suffix('#').unwrap_or(rest))
    }
}

/// `BroadcastOptions.flags` (socket.io-adapter). Unset flags are not sent, as in Node,
/// where `flags` is `{}` unless `.volatile`, `.local`, `.timeout()`… were used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volatile: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<bool>,
    /// Milliseconds, for broadcasts with acknowledgements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_single_response: Option<bool>,
}

impl BroadcastFlags {
    pub fn is_local(&self) -> bool {
        self.local == Some(true)
    }

    fn from_value(v: &Value) -> Self {
        let b = |k: &str| v.get(k).and_then(Value::as_bool);
        BroadcastFlags {
            volatile: b("volatile"),
            compress: b("compress"),
            local: b("local"),
            timeout: v.get("timeout").and_then(Value::as_f64).map(|t| t as u64),
            expect_single_response: b("expectSingleResponse"),
        }
    }
}

/// `{rooms, except, flags}`: who a broadcast (or a remote join/leave/disconnect/fetch)
/// is for. No rooms means the whole namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BroadcastOpts {
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<BroadcastFlags>,
}

/// Rooms from the wire: Node allows numeric rooms (`socket.join(42)`); ours are strings.
pub(crate) fn rooms_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|r| match r {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl BroadcastOpts {
    /// Reads `{rooms, except, flags}` as any Node adapter writes it.
    pub fn from_value(v: &Value) -> Self {
        BroadcastOpts {
            rooms: rooms_of(v.get("rooms")),
            except: rooms_of(v.get("except")),
            flags: v.get("flags").map(BroadcastFlags::from_value),
        }
    }

    /// `{rooms, except}` as the JSON requests carry them (no flags).
    fn targets_json(&self) -> Value {
        serde_json::json!({ "rooms": self.rooms, "except": self.except })
    }
}

/// An EVENT packet between nodes: `data` is `[event, ...args]` with placeholders, and
/// `attachments` the binary arguments they refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterPacket {
    /// socket.io-parser's packet type: 2 (EVENT) as Node sends it; 5 is accepted too.
    pub kind: u8,
    pub nsp: String,
    pub data: Value,
    pub attachments: Vec<Bytes>,
    pub id: Option<u64>,
}

impl ClusterPacket {
    pub fn event(nsp: &str, data: Value, attachments: Vec<Bytes>) -> Self {
        ClusterPacket {
            kind: 2,
            nsp: nsp.to_owned(),
            data,
            attachments,
            id: None,
        }
    }

    /// `{type, data, nsp}` in that order (the order Node's objects have). Binary goes
    /// back inside `data` as msgpack bin, and the type stays EVENT: the receiver's
    /// encoder turns it into BINARY_EVENT itself (socket.io-parser `Encoder.encode`).
    fn to_mp(&self) -> Mp {
        let kind = match self.kind {
            5 => 2,
            6 => 3,
            k => k,
        };
        let mut m = vec![
            (Mp::from("type"), Mp::from(kind)),
            (Mp::from("data"), to_msgpack(&self.data, &self.attachments)),
            (Mp::from("nsp"), Mp::from(self.nsp.as_str())),
        ];
        if let Some(id) = self.id {
            m.push((Mp::from("id"), Mp::from(id)));
        }
        Mp::Map(m)
    }

    fn from_mp(v: &Mp) -> Result<Self, ClusterDecodeError> {
        let get = |k: &str| map_get(v, k);
        let kind = get("type")
            .and_then(Mp::as_u64)
            .ok_or(ClusterDecodeError::Shape("packet without a type"))? as u8;
        let (data, attachments) = match get("data") {
            Some(d) => from_msgpack(d),
            None => (Value::Null, Vec::new()),
        };
        // `if (packet && packet.nsp === undefined) packet.nsp = "/"`
        let nsp = get("nsp").and_then(Mp::as_str).unwrap_or("/").to_owned();
        Ok(ClusterPacket {
            kind,
            nsp,
            data,
            attachments,
            id: get("id").and_then(Mp::as_u64),
        })
    }
}

/// A broadcast message `[uid, packet, opts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastMessage {
    pub uid: String,
    pub packet: ClusterPacket,
    pub opts: BroadcastOpts,
}

impl BroadcastMessage {
    /// The msgpack bytes (`this.parser.encode([this.uid, packet, rawOpts])`).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_opts(opts_to_mp(&self.opts))
    }

    /// The bytes `@socket.io/redis-emitter` publishes for the same broadcast: the same
    /// message, with the `opts` keys in the emitter's order (receivers read them by name,
    /// so either decodes the same; this keeps our emitter byte for byte the npm one).
    pub fn encode_as_emitter(&self) -> Vec<u8> {
        self.encode_with_opts(emitter_opts_to_mp(&self.opts))
    }

    fn encode_with_opts(&self, opts: Mp) -> Vec<u8> {
        let msg = Mp::Array(vec![Mp::from(self.uid.as_str()), self.packet.to_mp(), opts]);
        write_mp(&msg)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ClusterDecodeError> {
        let v = read_mp(bytes)?;
        let Mp::Array(items) = v else {
            return Err(ClusterDecodeError::Shape("broadcast is not an array"));
        };
        if items.len() < 3 {
            return Err(ClusterDecodeError::Shape(
                "broadcast needs [uid, packet, opts]",
            ));
        }
        // The emitter's uid is the string "emitter"; anything else is not ours either.
        let uid = items[0].as_str().unwrap_or_default().to_owned();
        let packet = ClusterPacket::from_mp(&items[1])?;
        let (opts, _) = from_msgpack(&items[2]);
        Ok(BroadcastMessage {
            uid,
            packet,
            opts: BroadcastOpts::from_value(&opts),
        })
    }
}

/// `opts` with its keys in the adapter's order, `{rooms, except, flags}`.
fn opts_to_mp(o: &BroadcastOpts) -> Mp {
    let flags = o.flags.clone().unwrap_or_default();
    let json = serde_json::json!({ "rooms": o.rooms, "except": o.except, "flags": flags });
    to_msgpack(&json, &[])
}

/// `opts` as `@socket.io/redis-emitter` writes it: `{rooms, flags, except}`.
fn emitter_opts_to_mp(o: &BroadcastOpts) -> Mp {
    let flags = o.flags.clone().unwrap_or_default();
    let json = serde_json::json!({ "rooms": o.rooms, "flags": flags, "except": o.except });
    to_msgpack(&json, &[])
}

/// Which sockets a remote join / leave / disconnect is for: the 8.x form (`opts`, from
/// `socketsJoin` and friends) or the older per-socket form (`sid`, with a response).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Opts(BroadcastOpts),
    Socket(String),
}

/// A request from another node (or from the emitter, whose requests carry no uid).
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Sockets {
        uid: Option<String>,
        request_id: String,
        rooms: Vec<String>,
    },
    AllRooms {
        uid: Option<String>,
        request_id: String,
    },
    RemoteJoin {
        uid: Option<String>,
        request_id: Option<String>,
        target: Target,
        rooms: Vec<String>,
    },
    RemoteLeave {
        uid: Option<String>,
        request_id: Option<String>,
        target: Target,
        rooms: Vec<String>,
    },
    RemoteDisconnect {
        uid: Option<String>,
        request_id: Option<String>,
        target: Target,
        close: bool,
    },
    RemoteFetch {
        uid: Option<String>,
        request_id: String,
        opts: BroadcastOpts,
    },
    /// `data` is `[event, ...args]`; a `request_id` means the sender wants answers.
    ServerSideEmit {
        uid: Option<String>,
        request_id: Option<String>,
        data: Vec<Value>,
    },
    Broadcast {
        uid: Option<String>,
        request_id: String,
        packet: ClusterPacket,
        opts: BroadcastOpts,
    },
}

impl Request {
    /// The sender's uid, if it sent one.
    pub fn uid(&self) -> Option<&str> {
        match self {
            Request::Sockets { uid, .. }
            | Request::AllRooms { uid, .. }
            | Request::RemoteJoin { uid, .. }
            | Request::RemoteLeave { uid, .. }
            | Request::RemoteDisconnect { uid, .. }
            | Request::RemoteFetch { uid, .. }
            | Request::ServerSideEmit { uid, .. }
            | Request::Broadcast { uid, .. } => uid.as_deref(),
        }
    }

    /// Decodes a request: JSON when the first byte is `{`, msgpack otherwise. `Ok(None)`
    /// for request types this version does not know (ignored, as in Node).
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>, ClusterDecodeError> {
        let (v, attachments) = decode_any(bytes)?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let uid = s("uid");
        let request_id = s("requestId");
        let need_id = |id: Option<String>| id.ok_or(ClusterDecodeError::Shape("no requestId"));
        let target = || match v.get("opts") {
            Some(o) if o.is_object() => Ok(Target::Opts(BroadcastOpts::from_value(o))),
            _ => s("sid")
                .map(Target::Socket)
                .ok_or(ClusterDecodeError::Shape("neither opts nor sid")),
        };
        // Old per-socket requests name one `room`; new ones a list of `rooms`.
        let rooms = || match v.get("room") {
            Some(r) => rooms_of(Some(&Value::Array(vec![r.clone()]))),
            None => rooms_of(v.get("rooms")),
        };
        let Some(kind) = v
            .get("type")
            .and_then(Value::as_u64)
            .and_then(RequestType::from_u64)
        else {
            return Ok(None);
        };
        Ok(Some(match kind {
            RequestType::Sockets => Request::Sockets {
                uid,
                request_id: need_id(request_id)?,
                rooms: rooms_of(v.get("rooms")),
            },
            RequestType::AllRooms => Request::AllRooms {
                uid,
                request_id: need_id(request_id)?,
            },
            RequestType::RemoteJoin => Request::RemoteJoin {
                uid,
                request_id,
                target: target()?,
                rooms: rooms(),
            },
            RequestType::RemoteLeave => Request::RemoteLeave {
                uid,
                request_id,
                target: target()?,
                rooms: rooms(),
            },
            RequestType::RemoteDisconnect => Request::RemoteDisconnect {
                uid,
                request_id,
                target: target()?,
                close: v.get("close").and_then(Value::as_bool).unwrap_or(false),
            },
            RequestType::RemoteFetch => Request::RemoteFetch {
                uid,
                request_id: need_id(request_id)?,
                opts: v
                    .get("opts")
                    .map(BroadcastOpts::from_value)
                    .unwrap_or_default(),
            },
            RequestType::ServerSideEmit => Request::ServerSideEmit {
                uid,
                request_id,
                data: match v.get("data") {
                    Some(Value::Array(a)) => a.clone(),
                    _ => return Err(ClusterDecodeError::Shape("serverSideEmit without data")),
                },
            },
            RequestType::Broadcast => {
                let packet = match &v.get("packet") {
                    // Re-read the packet from the msgpack form so its binary survives.
                    Some(_) => packet_from_decoded(bytes, &v, attachments)?,
                    None => return Err(ClusterDecodeError::Shape("broadcast without packet")),
                };
                Request::Broadcast {
                    uid,
                    request_id: need_id(request_id)?,
                    packet,
                    opts: v
                        .get("opts")
                        .map(BroadcastOpts::from_value)
                        .unwrap_or_default(),
                }
            }
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => return Ok(None),
        }))
    }

    /// The bytes Node's adapter would publish for this request (same keys, same order;
    /// JSON except BROADCAST, which is msgpack).
    pub fn encode(&self) -> Vec<u8> {
        use serde_json::json;
        let mut m = Map::new();
        let put_uid = |m: &mut Map<String, Value>, uid: &Option<String>| {
            if let Some(u) = uid {
                m.insert("uid".into(), json!(u));
            }
        };
        match self {
            Request::Sockets {
                uid,
                request_id,
                rooms,
            } => {
                put_uid(&mut m, uid);
                m.insert("requestId".into(), json!(request_id));
                m.insert("type".into(), json!(RequestType::Sockets as u8));
                m.insert("rooms".into(), json!(rooms));
            }
            Request::AllRooms { uid, request_id } => {
                put_uid(&mut m, uid);
                m.insert("requestId".into(), json!(request_id));
                m.insert("type".into(), json!(RequestType::AllRooms as u8));
            }
            Request::RemoteJoin {
                uid,
                request_id,
                target,
                rooms,
            }
            | Request::RemoteLeave {
                uid,
                request_id,
                target,
                rooms,
            } => {
                let kind = if matches!(self, Request::RemoteJoin { .. }) {
                    RequestType::RemoteJoin
                } else {
                    RequestType::RemoteLeave
                };
                put_uid(&mut m, uid);
                if let Some(id) = request_id {
                    m.insert("requestId".into(), json!(id));
                }
                m.insert("type".into(), json!(kind as u8));
                match target {
                    Target::Opts(o) => {
                        m.insert("opts".into(), o.targets_json());
                        m.insert("rooms".into(), json!(rooms));
                    }
                    Target::Socket(sid) => {
                        m.insert("sid".into(), json!(sid));
                        m.insert("room".into(), json!(rooms.first()));
                    }
                }
            }
            Request::RemoteDisconnect {
                uid,
                request_id,
                target,
                close,
            } => {
                put_uid(&mut m, uid);
                if let Some(id) = request_id {
                    m.insert("requestId".into(), json!(id));
                }
                m.insert("type".into(), json!(RequestType::RemoteDisconnect as u8));
                match target {
                    Target::Opts(o) => m.insert("opts".into(), o.targets_json()),
                    Target::Socket(sid) => m.insert("sid".into(), json!(sid)),
                };
                m.insert("close".into(), json!(close));
            }
            Request::RemoteFetch {
                uid,
                request_id,
                opts,
            } => {
                put_uid(&mut m, uid);
                m.insert("requestId".into(), json!(request_id));
                m.insert("type".into(), json!(RequestType::RemoteFetch as u8));
                m.insert("opts".into(), opts.targets_json());
            }
            Request::ServerSideEmit {
                uid,
                request_id,
                data,
            } => {
                put_uid(&mut m, uid);
                if let Some(id) = request_id {
                    m.insert("requestId".into(), json!(id));
                }
                m.insert("type".into(), json!(RequestType::ServerSideEmit as u8));
                m.insert("data".into(), json!(data));
            }
            Request::Broadcast {
                uid,
                request_id,
                packet,
                opts,
            } => {
                let mut mp = Vec::new();
                if let Some(u) = uid {
                    mp.push((Mp::from("uid"), Mp::from(u.as_str())));
                }
                mp.push((Mp::from("requestId"), Mp::from(request_id.as_str())));
                mp.push((Mp::from("type"), Mp::from(RequestType::Broadcast as u8)));
                mp.push((Mp::from("packet"), packet.to_mp()));
                mp.push((Mp::from("opts"), opts_to_mp(opts)));
                return write_mp(&Mp::Map(mp));
            }
        }
        serde_json::to_vec(&Value::Object(m)).expect("JSON values always serialize")
    }
}

/// Re-decodes a msgpack BROADCAST request to read its packet with binaries intact.
fn packet_from_decoded(
    bytes: &[u8],
    v: &Value,
    _attachments: Vec<Bytes>,
) -> Result<ClusterPacket, ClusterDecodeError> {
    if bytes.first() == Some(&b'{') {
        // JSON carries no binary: build the packet from the JSON value.
        let p = v.get("packet").cloned().unwrap_or(Value::Null);
        let mp = to_msgpack(&p, &[]);
        return ClusterPacket::from_mp(&mp);
    }
    let mp = read_mp(bytes)?;
    let packet = map_get(&mp, "packet").ok_or(ClusterDecodeError::Shape("no packet"))?;
    ClusterPacket::from_mp(packet)
}

/// A response to one of our requests. Which fields matter depends on the request it
/// answers (looked up by `request_id`); `kind` is set only by SERVER_SIDE_EMIT,
/// BROADCAST_CLIENT_COUNT and BROADCAST_ACK responses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub request_id: String,
    pub kind: Option<RequestType>,
    pub rooms: Option<Vec<String>>,
    /// Socket ids (SOCKETS) or socket details `{id, handshake, rooms, data}` (REMOTE_FETCH).
    pub sockets: Option<Vec<Value>>,
    /// SERVER_SIDE_EMIT: the one argument the remote handler acknowledged with.
    pub data: Option<Value>,
    pub client_count: Option<u64>,
    /// BROADCAST_ACK: the client's (first) acknowledgement argument, with placeholders
    /// and `attachments` for its binary.
    pub packet: Option<Value>,
    pub attachments: Vec<Bytes>,
}

impl Response {
    pub fn decode(bytes: &[u8]) -> Result<Self, ClusterDecodeError> {
        let (v, attachments) = decode_any(bytes)?;
        let request_id = match v.get("requestId") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(ClusterDecodeError::Shape("response without requestId")),
        };
        Ok(Response {
            request_id,
            kind: v
                .get("type")
                .and_then(Value::as_u64)
                .and_then(RequestType::from_u64),
            rooms: v.get("rooms").and_then(Value::as_array).map(|a| {
                a.iter()
                    .map(|r| match r {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            }),
            sockets: v.get("sockets").and_then(Value::as_array).cloned(),
            data: v.get("data").cloned(),
            client_count: v.get("clientCount").and_then(Value::as_u64),
            packet: v.get("packet").cloned(),
            attachments,
        })
    }

    /// `{requestId, sockets: [ids]}` (SOCKETS).
    pub fn sockets_ids(request_id: &str, ids: &[String]) -> Vec<u8> {
        json_bytes(serde_json::json!({ "requestId": request_id, "sockets": ids }))
    }

    /// `{requestId, rooms}` (ALL_ROOMS).
    pub fn all_rooms(request_id: &str, rooms: &[String]) -> Vec<u8> {
        json_bytes(serde_json::json!({ "requestId": request_id, "rooms": rooms }))
    }

    /// `{requestId}`: the per-socket REMOTE_JOIN / LEAVE / DISCONNECT are done.
    pub fn done(request_id: &str) -> Vec<u8> {
        json_bytes(serde_json::json!({ "requestId": request_id }))
    }

    /// `{requestId, sockets: [{id, handshake, rooms, data}]}` (REMOTE_FETCH).
    pub fn fetched(request_id: &str, sockets: Vec<Value>) -> Vec<u8> {
        json_bytes(serde_json::json!({ "requestId": request_id, "sockets": sockets }))
    }

    /// `{type: 6, requestId, data}`: one server's answer to a SERVER_SIDE_EMIT.
    pub fn server_side_emit(request_id: &str, data: &Value) -> Vec<u8> {
        json_bytes(serde_json::json!({
            "type": RequestType::ServerSideEmit as u8,
            "requestId": request_id,
            "data": data,
        }))
    }

    /// `{type: 8, requestId, clientCount}` (JSON).
    pub fn client_count(request_id: &str, count: u64) -> Vec<u8> {
        json_bytes(serde_json::json!({
            "type": RequestType::BroadcastClientCount as u8,
            "requestId": request_id,
            "clientCount": count,
        }))
    }

    /// `{type: 9, requestId, packet}` in msgpack: the ack argument may be binary.
    pub fn broadcast_ack(request_id: &str, arg: &Value, attachments: &[Bytes]) -> Vec<u8> {
        write_mp(&Mp::Map(vec![
            (Mp::from("type"), Mp::from(RequestType::BroadcastAck as u8)),
            (Mp::from("requestId"), Mp::from(request_id)),
            (Mp::from("packet"), to_msgpack(arg, attachments)),
        ]))
    }
}

fn json_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("JSON values always serialize")
}

/// JSON when the first byte is `{`, msgpack otherwise (`if (msg[0] === 0x7b)`).
fn decode_any(bytes: &[u8]) -> Result<(Value, Vec<Bytes>), ClusterDecodeError> {
    if bytes.first() == Some(&b'{') {
        let v = serde_json::from_slice(bytes).map_err(|_| ClusterDecodeError::Json)?;
        Ok((v, Vec::new()))
    } else {
        Ok(from_msgpack(&read_mp(bytes)?))
    }
}

/// How deep a msgpack message may nest. Below serde_json's limit (128), so what a node
/// reads as msgpack can always be written and read again as JSON (the sharded adapter
/// writes JSON when there is no binary); found by fuzzing (a 200-deep array decoded from
/// msgpack whose JSON encoding could not be read back).
const MAX_MSGPACK_DEPTH: usize = 100;

pub(crate) fn read_mp(mut bytes: &[u8]) -> Result<Mp, ClusterDecodeError> {
    rmpv::decode::read_value_with_max_depth(&mut bytes, MAX_MSGPACK_DEPTH)
        .map_err(|_| ClusterDecodeError::Msgpack)
}

/// Encodes through rmp-serde (rmpv values serialize `Binary` as msgpack bin).
pub(crate) fn write_mp(v: &Mp) -> Vec<u8> {
    rmp_serde::to_vec(v).expect("msgpack values always serialize")
}

pub(crate) fn map_get<'a>(v: &'a Mp, key: &str) -> Option<&'a Mp> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// socket.io-parser's `reconstructPacket`: a JSON value with placeholders and its
/// attachments → a msgpack value with the binary in place.
pub fn to_msgpack(v: &Value, attachments: &[Bytes]) -> Mp {
    match v {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Mp::from(u)
            } else if let Some(i) = n.as_i64() {
                Mp::from(i)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                // JS has one number type: msgpack encoders write a safe integer as an
                // integer, whether it was parsed from `1` or `1.0`.
                match js_safe_integer(f) {
                    Some(i) => Mp::from(i),
                    None => Mp::F64(f),
                }
            }
        }
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(items) => {
            Mp::Array(items.iter().map(|i| to_msgpack(i, attachments)).collect())
        }
        Value::Object(obj) => {
            if let Some(bin) =
                crate::protocol::socketio::placeholder_index(v).and_then(|n| attachments.get(n))
            {
                return Mp::Binary(bin.to_vec());
            }
            Mp::Map(
                obj.iter()
                    .map(|(k, v)| (Mp::from(k.as_str()), to_msgpack(v, attachments)))
                    .collect(),
            )
        }
    }
}

/// `f` as an integer when JavaScript would treat it as one (`Number.isSafeInteger`).
pub(crate) fn js_safe_integer(f: f64) -> Option<i64> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    (f.fract() == 0.0 && f.abs() <= MAX_SAFE).then_some(f as i64)
}

/// socket.io-parser's `deconstructPacket`: a msgpack value → JSON with placeholders for
/// each `bin` (numbered in document order) plus the attachments. A date (notepack's
/// timestamp extensions: a Node node broadcasting a `Date`) becomes its ISO-8601 string,
/// as `JSON.stringify` makes of it for a browser; notepack's `undefined` (fixext 1 type 0)
/// and other extension types become `null`.
pub fn from_msgpack(v: &Mp) -> (Value, Vec<Bytes>) {
    let mut attachments = Vec::new();
    let value = deconstruct(v, &mut attachments);
    (value, attachments)
}

/// The epoch milliseconds of a date as notepack.io encodes one: the msgpack timestamp
/// extension (type -1: 32, 64 or 96 bits), or notepack 2's own (fixext 8, type 0).
fn ext_date_ms(kind: i8, data: &[u8]) -> Option<i64> {
    let u32_at = |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().unwrap());
    match (kind, data.len()) {
        (-1, 4) => Some(u32_at(0) as i64 * 1000),
        (-1, 8) => {
            let (hi, lo) = (u32_at(0) as i64, u32_at(4) as i64);
            let seconds = ((hi & 0x3) << 32) | lo;
            Some(seconds * 1000 + (hi >> 2) / 1_000_000)
        }
        (-1, 12) => {
            let nanos = u32_at(0) as i64;
            let seconds = ((u32_at(4) as i32 as i64) << 32) | u32_at(8) as i64;
            Some(seconds * 1000 + nanos / 1_000_000)
        }
        (0, 8) => Some(((u32_at(0) as i32 as i64) << 32) | u32_at(4) as i64),
        _ => None,
    }
}

fn deconstruct(v: &Mp, out: &mut Vec<Bytes>) -> Value {
    match v {
        Mp::Ext(kind, data) => ext_date_ms(*kind, data)
            .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
            .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
            .unwrap_or(Value::Null),
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(*b),
        Mp::Integer(i) => {
            if let Some(u) = i.as_u64() {
                Value::from(u)
            } else {
                Value::from(i.as_i64().unwrap_or(0))
            }
        }
        Mp::F32(f) => serde_json::Number::from_f64(*f as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Mp::F64(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Mp::String(s) => Value::String(match s.as_str() {
            Some(s) => s.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        Mp::Binary(b) => {
            out.push(Bytes::copy_from_slice(b));
            crate::protocol::socketio::placeholder(out.len() - 1)
        }
        Mp::Array(items) => Value::Array(items.iter().map(|i| deconstruct(i, out)).collect()),
        Mp::Map(entries) => {
            let mut m = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    Mp::String(s) => s.as_str().map(str::to_owned).unwrap_or_default(),
                    other => other.to_string(),
                };
                m.insert(key, deconstruct(v, out));
            }
            Value::Object(m)
        }
    }
}

/// A random id like the adapter's `uid2(6)`: node uids and request ids.
pub fn uid2(len: usize, mut next: impl FnMut(usize) -> usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| CHARS[next(CHARS.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn channels_follow_the_adapter() {
        let c = Channels::new("socket.io", "/chat");
        assert_eq!(c.broadcast, "socket.io#/chat#");
        assert_eq!(c.pattern(), "socket.io#/chat#*");
        assert_eq!(c.request, "socket.io-request#/chat#");
        assert_eq!(c.response, "socket.io-response#/chat#");
        assert_eq!(
            c.specific_response("AbC123"),
            "socket.io-response#/chat#AbC123#"
        );
        assert_eq!(c.for_rooms(&["room:1".into()]), "socket.io#/chat#room:1#");
        assert_eq!(c.for_rooms(&["a".into(), "b".into()]), "socket.io#/chat#");
        assert_eq!(c.for_rooms(&[]), "socket.io#/chat#");
        assert_eq!(c.room_of("socket.io#/chat#room:1#"), Some("room:1"));
        assert_eq!(c.room_of("socket.io#/chat#"), Some(""));
        assert_eq!(c.room_of("socket.io#/other#"), None);
    }

    /// The exact bytes notepack.io produces for
    /// `encode(["abc123", {type: 2, data: ["hi", Buffer.from([1, 2])], nsp: "/"},
    ///          {rooms: ["r"], except: [], flags: {}}])` (checked with node).
    #[test]
    fn broadcast_bytes_match_notepack() {
        let msg = BroadcastMessage {
            uid: "abc123".into(),
            packet: ClusterPacket::event(
                "/",
                json!(["hi", {"_placeholder": true, "num": 0}]),
                vec![Bytes::from_static(&[1, 2])],
            ),
            opts: BroadcastOpts {
                rooms: vec!["r".into()],
                except: vec![],
                flags: Some(BroadcastFlags::default()),
            },
        };
        let bytes = msg.encode();
        assert_eq!(
            hex(&bytes),
            "93a6616263313233\
             83a474797065 02 a464617461 92a26869c4020102 a36e7370 a12f\
             83a5726f6f6d7391a172 a6657863657074 90 a5666c616773 80"
                .replace(' ', "")
        );
        let back = BroadcastMessage::decode(&bytes).unwrap();
        assert_eq!(back, msg);
    }

    /// Dates as notepack.io 3.0.1 encodes them (the bytes are its output for
    /// `new Date(ms)`), and notepack 2's own encoding, become what `JSON.stringify` gives.
    #[test]
    fn dates_from_node_become_iso_strings() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        for (bytes, iso) in [
            ("d7ff1d535300633fdbbb", "2022-10-07T07:56:43.123Z"),
            ("d6ff633fdbbb", "2022-10-07T07:56:43.000Z"),
            ("c70cff00000000ffffffffffffffff", "1969-12-31T23:59:59.000Z"),
            ("d70000000183b17252f3", "2022-10-07T07:56:43.123Z"),
        ] {
            let mp = rmpv::decode::read_value(&mut hex(bytes).as_slice()).unwrap();
            assert_eq!(from_msgpack(&mp).0, json!(iso), "{bytes}");
        }
        let other = Mp::Ext(5, vec![1, 2]);
        assert_eq!(from_msgpack(&other).0, Value::Null);
    }

    #[test]
    fn binary_is_deconstructed_in_document_order() {
        let mp = Mp::Array(vec![
            Mp::from("ev"),
            Mp::Map(vec![
                (Mp::from("a"), Mp::Binary(vec![1])),
                (Mp::from("b"), Mp::Array(vec![Mp::Binary(vec![2]), Mp::Nil])),
            ]),
            Mp::Ext(0, vec![0]),
        ]);
        let (v, att) = from_msgpack(&mp);
        assert_eq!(
            v,
            json!(["ev", {"a": {"_placeholder": true, "num": 0},
                          "b": [{"_placeholder": true, "num": 1}, null]}, null])
        );
        assert_eq!(
            att,
            vec![Bytes::from_static(&[1]), Bytes::from_static(&[2])]
        );
        let again = to_msgpack(&v, &att);
        assert_eq!(from_msgpack(&again), (v, att));
    }

    #[test]
    fn requests_round_trip_and_match_node_json() {
        let r = Request::AllRooms {
            uid: Some("u1".into()),
            request_id: "r1".into(),
        };
        assert_eq!(
            String::from_utf8(r.encode()).unwrap(),
            r#"{"uid":"u1","requestId":"r1","type":1}"#
        );
        assert_eq!(Request::decode(&r.encode()).unwrap(), Some(r));

        let join = Request::RemoteJoin {
            uid: Some("u1".into()),
            request_id: None,
            target: Target::Opts(BroadcastOpts {
                rooms: vec!["a".into()],
                except: vec!["b".into()],
                flags: None,
            }),
            rooms: vec!["x".into()],
        };
        assert_eq!(
            String::from_utf8(join.encode()).unwrap(),
            r#"{"uid":"u1","type":2,"opts":{"rooms":["a"],"except":["b"]},"rooms":["x"]}"#
        );
        let back = Request::decode(&join.encode()).unwrap().unwrap();
        assert!(matches!(back, Request::RemoteJoin { ref rooms, .. } if rooms == &["x"]));

        // The emitter's requests carry no uid; numeric rooms become strings.
        let emitter = br#"{"type":4,"opts":{"rooms":[42],"except":[]},"close":true}"#;
        match Request::decode(emitter).unwrap().unwrap() {
            Request::RemoteDisconnect {
                uid: None,
                target: Target::Opts(o),
                close: true,
                ..
            } => assert_eq!(o.rooms, vec!["42"]),
            other => panic!("{other:?}"),
        }

        let bc = Request::Broadcast {
            uid: Some("u1".into()),
            request_id: "q".into(),
            packet: ClusterPacket::event(
                "/chat",
                json!(["e", {"_placeholder": true, "num": 0}]),
                vec![Bytes::from_static(b"\xff")],
            ),
            opts: BroadcastOpts {
                rooms: vec![],
                except: vec![],
                flags: Some(BroadcastFlags {
                    timeout: Some(1000),
                    ..Default::default()
                }),
            },
        };
        let bytes = bc.encode();
        assert_ne!(bytes[0], b'{');
        assert_eq!(Request::decode(&bytes).unwrap(), Some(bc));
        assert_eq!(Request::decode(br#"{"type":99}"#).unwrap(), None);
        assert!(Request::decode(b"{nope").is_err());
        assert!(Request::decode(b"\x93\x01").is_err());
    }

    #[test]
    fn responses_decode_both_encodings() {
        let r = Response::decode(&Response::client_count("q", 3)).unwrap();
        assert_eq!(r.kind, Some(RequestType::BroadcastClientCount));
        assert_eq!(r.client_count, Some(3));
        let ack = Response::broadcast_ack(
            "q",
            &json!({"_placeholder": true, "num": 0}),
            &[Bytes::from_static(b"ok")],
        );
        let r = Response::decode(&ack).unwrap();
        assert_eq!(r.kind, Some(RequestType::BroadcastAck));
        assert_eq!(r.packet, Some(json!({"_placeholder": true, "num": 0})));
        assert_eq!(r.attachments, vec![Bytes::from_static(b"ok")]);
        let r = Response::decode(br#"{"requestId":"z","rooms":["a",7]}"#).unwrap();
        assert_eq!(r.rooms, Some(vec!["a".into(), "7".into()]));
    }

    #[test]
    fn uid2_uses_alphanumerics() {
        let mut n = 0;
        let id = uid2(6, |len| {
            n += 7;
            n % len
        });
        assert_eq!(id.len(), 6);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
