//! What a broadcast carries to the adapter: the packet and who it is for. These are the
//! server's own types; an adapter that leaves the process converts them to its wire
//! format (and back) itself, so a single-node emit never builds a wire message.

use crate::protocol::socketio::{Packet, PacketKind};
use crate::server::{encode_frames, Payload, Room};
use crate::transport::Frame;
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;

/// An EVENT on its way to many sockets: `data` is `[event, ...args]` with binary
/// arguments as placeholders, `binary` the attachments they refer to (socket.io's
/// `packet.data` and its buffers).
///
/// `data` stays a JSON array rather than a name plus arguments so a packet relayed from
/// another node reaches clients exactly as that node sent it (a numeric event name stays
/// a number), and so an adapter can append an argument (a recovery offset) before the
/// packet is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastPacket {
    pub data: Value,
    pub binary: Vec<Bytes>,
}

impl BroadcastPacket {
    /// The packet of `event` with `payload`.
    pub fn event(event: &str, payload: Payload) -> Self {
        let mut data = Vec::with_capacity(payload.args.len() + 1);
        data.push(Value::String(event.to_owned()));
        data.extend(payload.args);
        BroadcastPacket {
            data: Value::Array(data),
            binary: payload.binary,
        }
    }

    /// The event name, when `data` starts with one.
    pub fn event_name(&self) -> Option<&str> {
        self.data.get(0).and_then(Value::as_str)
    }

    /// Appends `arg` as the last argument (where socket.io puts a recovery offset).
    pub fn push_arg(&mut self, arg: Value) {
        match &mut self.data {
            Value::Array(items) => items.push(arg),
            other => *other = Value::Array(vec![std::mem::take(other), arg]),
        }
    }

    /// The Engine.IO frames that carry the packet to a client of `nsp` (EVENT, or
    /// BINARY_EVENT with attachments; `id` asks for an acknowledgement). Broadcasts
    /// encode once, whatever the number of receivers.
    pub(crate) fn into_frames(self, nsp: &str, id: Option<u64>) -> Vec<Frame> {
        let kind = if self.binary.is_empty() {
            PacketKind::Event
        } else {
            PacketKind::BinaryEvent
        };
        let packet = Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            data: Some(self.data),
            attachments: self.binary.len(),
        };
        encode_frames(&packet, &self.binary)
    }
}

/// Who a broadcast (or a cluster-wide join, leave, disconnect or fetch) is for:
/// socket.io-adapter's `BroadcastOptions`. No rooms means the whole namespace; a socket
/// id works as a room holding just that socket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BroadcastOptions {
    pub rooms: Vec<Room>,
    pub except: Vec<Room>,
    pub flags: BroadcastFlags,
}

impl BroadcastOptions {
    /// The options of one room.
    pub fn room(room: impl Into<Room>) -> Self {
        BroadcastOptions {
            rooms: vec![room.into()],
            ..Default::default()
        }
    }

    /// Whether only this node's sockets are targeted.
    pub fn is_local(&self) -> bool {
        self.flags.local
    }
}

/// The flags of a broadcast that change how it travels (socket.io's `.local`,
/// `.volatile`, `.timeout()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// Only this node's sockets.
    pub local: bool,
    /// May be dropped; never replayed to a recovering client.
    pub volatile: bool,
    /// How long a broadcast with acknowledgements waits for them.
    pub timeout: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_packet_is_name_then_arguments() {
        let p = BroadcastPacket::event(
            "m",
            Payload::new(vec![json!(1)]).with_binary(Bytes::from_static(b"\x01")),
        );
        assert_eq!(p.data, json!(["m", 1, {"_placeholder": true, "num": 0}]));
        assert_eq!(p.event_name(), Some("m"));
        assert_eq!(
            p.into_frames("/chat", None),
            vec![
                Frame::text(r#"451-/chat,["m",1,{"_placeholder":true,"num":0}]"#),
                Frame::Binary(Bytes::from_static(b"\x01"))
            ]
        );
        let plain = BroadcastPacket::event("m", Payload::default()).into_frames("/", Some(3));
        assert_eq!(plain, vec![Frame::text(r#"423["m"]"#)]);
    }

    #[test]
    fn an_offset_goes_last() {
        let mut p = BroadcastPacket::event("m", Payload::new(vec![json!("a")]));
        p.push_arg(json!("offset-1"));
        assert_eq!(p.data, json!(["m", "a", "offset-1"]));
    }
}
