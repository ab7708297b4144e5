//! What event handlers receive and send: JSON arguments plus binary attachments.

use crate::protocol::socketio::{self, Packet};
use crate::transport::Frame;
use bytes::Bytes;
use serde_json::Value;

/// Arguments of an event or an ack. Binary arguments stay as attachments, referenced from
/// `args` by `{"_placeholder":true,"num":N}` ([`socketio::placeholder`]), so relaying a
/// binary event costs no conversion.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
}

impl Payload {
    pub fn new(args: Vec<Value>) -> Self {
        Payload {
            args,
            binary: Vec::new(),
        }
    }

    /// Appends a binary argument (sent as an attachment).
    pub fn with_binary(mut self, bytes: Bytes) -> Self {
        self.args.push(socketio::placeholder(self.binary.len()));
        self.binary.push(bytes);
        self
    }

    /// The attachment a placeholder argument stands for.
    pub fn binary_arg(&self, arg: &Value) -> Option<&Bytes> {
        socketio::placeholder_index(arg).and_then(|i| self.binary.get(i))
    }
}

impl From<Vec<Value>> for Payload {
    fn from(args: Vec<Value>) -> Self {
        Payload::new(args)
    }
}

impl From<Value> for Payload {
    fn from(arg: Value) -> Self {
        Payload::new(vec![arg])
    }
}

/// An event a client emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub payload: Payload,
}

impl Event {
    pub fn args(&self) -> &[Value] {
        &self.payload.args
    }
}

/// Encodes a packet into the Engine.IO frames that carry it: one text frame (`4…`) and
/// one binary frame per attachment. Done once per emit, whatever the number of receivers.
pub fn encode_frames(packet: &Packet, binary: &[Bytes]) -> Vec<Frame> {
    let mut text = String::with_capacity(64);
    text.push('4');
    socketio::encode(packet, &mut text);
    let mut frames = Vec::with_capacity(1 + binary.len());
    frames.push(Frame::text(text));
    frames.extend(binary.iter().cloned().map(Frame::Binary));
    frames
}

/// Splits a decoded EVENT's data into name and payload.
pub(crate) fn event_from_packet(packet: Packet, binary: Vec<Bytes>) -> Option<Event> {
    let Some(Value::Array(mut items)) = packet.data else {
        return None;
    };
    if items.is_empty() {
        return None;
    }
    // Numeric event names are legal on the wire (socket.io-parser accepts them).
    let name = match items.remove(0) {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(Event {
        name,
        payload: Payload {
            args: items,
            binary,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binary_arguments_become_attachments() {
        let p = Payload::new(vec![json!("a")]).with_binary(Bytes::from_static(b"\x01"));
        assert_eq!(p.args[1], socketio::placeholder(0));
        assert_eq!(p.binary_arg(&p.args[1]).unwrap().as_ref(), b"\x01");
        let packet = Packet::event("/", "up", p.args.clone(), p.binary.len());
        let frames = encode_frames(&packet, &p.binary);
        assert_eq!(
            frames,
            vec![
                Frame::text(r#"451-["up","a",{"_placeholder":true,"num":0}]"#),
                Frame::Binary(Bytes::from_static(b"\x01"))
            ]
        );
    }

    #[test]
    fn events_split_into_name_and_args() {
        let packet = socketio::decode(r#"2["msg",1,{"a":2}]"#).unwrap();
        let e = event_from_packet(packet, vec![]).unwrap();
        assert_eq!(e.name, "msg");
        assert_eq!(e.args(), &[json!(1), json!({"a": 2})]);
        let packet = socketio::decode(r#"2[7,"x"]"#).unwrap();
        assert_eq!(event_from_packet(packet, vec![]).unwrap().name, "7");
    }
}
