//! The wire format of `@socket.io/redis-streams-adapter` 0.3.x, so Rust and Node nodes
//! share one cluster on Redis streams, recovery sessions included. Its messages are
//! socket.io-adapter's `ClusterAdapter` messages ([`super::cluster_adapter`]); this module
//! adds the envelopes the package puts them in. Pure and I/O-free.
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
//!   raw msgpack of `{type, data, uid, nsp}`, `type` an integer
//!   ([`Message::encode_msgpack`]).
//! - **sessions** at `<sessionKeyPrefix><pid>`: base64(msgpack `{sid, pid, rooms, data}`)
//!   ([`SessionRecord`]).

use super::cluster::{from_msgpack, read_mp, rooms_of, to_msgpack, write_mp, BroadcastOpts};
use super::cluster_adapter::js_numbers;
pub use super::cluster_adapter::{Body, DecodeError, Message, MessageType};
use base64::Engine as _;
use rmpv::Value as Mp;
use serde_json::Value;

impl Body {
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
    /// The XADD fields, in the package's order: `uid`, `nsp`, `type`, `data` (left out
    /// for the messages without one, which the package never writes).
    pub fn to_entry(&self) -> Vec<(String, String)> {
        let kind = self.body.kind();
        let mut fields = vec![
            ("uid".into(), self.uid.clone()),
            ("nsp".into(), self.nsp.clone()),
            ("type".into(), (kind as u8).to_string()),
        ];
        let Some(json) = self.body.to_json() else {
            return fields;
        };
        let data = if kind.may_contain_binary() && !self.attachments.is_empty() {
            let mp = to_msgpack(&json, &self.attachments);
            base64::engine::general_purpose::STANDARD.encode(write_mp(&mp))
        } else {
            serde_json::to_string(&json).expect("JSON values always serialize")
        };
        fields.push(("data".into(), data));
        fields
    }

    /// Reads an entry's fields (`RedisStreamsAdapter.decode`): `data` is JSON when it
    /// starts with `{`, base64 msgpack otherwise.
    pub fn from_entry(entry: &StreamEntry) -> Result<Self, DecodeError> {
        let uid = entry.field("uid").unwrap_or_default().to_owned();
        let nsp = entry
            .field("nsp")
            .ok_or(DecodeError::Shape("entry without nsp"))?
            .to_owned();
        let n: u64 = entry
            .field("type")
            .and_then(|t| t.parse().ok())
            .ok_or(DecodeError::Shape("entry without a numeric type"))?;
        let kind = MessageType::from_u64(n).ok_or(DecodeError::UnknownType(n))?;
        let (data, attachments) = match entry.field("data") {
            None => (Value::Null, Vec::new()),
            Some(raw) if raw.starts_with('{') => {
                let v = serde_json::from_str(raw).map_err(|_| DecodeError::Json)?;
                (v, Vec::new())
            }
            Some(raw) => {
                let bytes = B64_LENIENT
                    .decode(raw.trim())
                    .map_err(|_| DecodeError::Base64)?;
                let mp = read_mp(&bytes).map_err(|_| DecodeError::Msgpack)?;
                from_msgpack(&mp)
            }
        };
        Ok(Message {
            uid,
            nsp,
            body: Body::from_json(kind, &data)?,
            attachments,
        })
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
    pub fn decode(value: &str) -> Result<Self, DecodeError> {
        let bytes = B64_LENIENT
            .decode(value.trim())
            .map_err(|_| DecodeError::Base64)?;
        let mp = read_mp(&bytes).map_err(|_| DecodeError::Msgpack)?;
        let (v, _) = from_msgpack(&mp);
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(SessionRecord {
            sid: text("sid").ok_or(DecodeError::Shape("session without sid"))?,
            pid: text("pid").ok_or(DecodeError::Shape("session without pid"))?,
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
