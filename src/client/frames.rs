//! Socket.IO packets as the client sends and receives them, as Engine.IO text packets,
//! built and parsed with the crate's pure codecs ([`crate::protocol`]).

use super::ClientError;
use crate::protocol::{engineio, socketio};
use serde_json::Value;

/// What one Engine.IO packet means to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The server's ping: answer with [`PONG`].
    Ping,
    /// The namespace accepted us: the socket's id and, with connection state recovery on
    /// at the server, its private session id (`pid`, see [`super::recovery`]).
    Connected {
        nsp: String,
        sid: Option<String>,
        pid: Option<String>,
    },
    /// The namespace refused us (`{message, data}`).
    ConnectError { nsp: String, data: Value },
    /// The server left us from a namespace.
    Disconnected { nsp: String },
    /// An event: its name and arguments, and an ack id when the server asks for one.
    Event {
        nsp: String,
        name: String,
        args: Vec<Value>,
        id: Option<u64>,
    },
    /// The answer to an ack we asked for.
    Ack {
        nsp: String,
        id: u64,
        args: Vec<Value>,
    },
    /// The server closes the session.
    Close,
    /// Anything else (pong, noop, binary): nothing to do.
    Other,
}

/// The answer to a ping.
pub const PONG: &str = "3";

/// Parses the Engine.IO open packet (`0{"sid":…}`) into its JSON.
pub fn parse_open(packet: &str) -> Result<Value, ClientError> {
    match engineio::decode_text(packet) {
        Ok(engineio::Packet::Open(json)) => serde_json::from_str(json)
            .map_err(|e| ClientError::Protocol(format!("bad open packet: {e}"))),
        _ => Err(ClientError::Protocol(format!(
            "expected the Engine.IO open packet, got {:?}",
            truncate(packet)
        ))),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses one Engine.IO text packet.
pub fn parse(packet: &str) -> Result<Incoming, ClientError> {
    let bad =
        |e: &dyn std::fmt::Display| ClientError::Protocol(format!("{e} in {:?}", truncate(packet)));
    let text = match engineio::decode_text(packet).map_err(|e| bad(&e))? {
        engineio::Packet::Ping(_) => return Ok(Incoming::Ping),
        engineio::Packet::Close => return Ok(Incoming::Close),
        engineio::Packet::Message(engineio::Data::Text(t)) => t,
        _ => return Ok(Incoming::Other),
    };
    let p = socketio::decode(text).map_err(|e| bad(&e))?;
    let args = |data: Option<Value>| match data {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    Ok(match p.kind {
        socketio::PacketKind::Connect => {
            let field = |k: &str| {
                p.data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            Incoming::Connected {
                sid: field("sid"),
                pid: field("pid"),
                nsp: p.nsp,
            }
        }
        socketio::PacketKind::ConnectError => Incoming::ConnectError {
            nsp: p.nsp,
            data: p.data.unwrap_or(Value::Null),
        },
        socketio::PacketKind::Disconnect => Incoming::Disconnected { nsp: p.nsp },
        socketio::PacketKind::Event => {
            let mut a = args(p.data).into_iter();
            let name = match a.next() {
                Some(Value::String(s)) => s,
                _ => return Err(bad(&"event without a name")),
            };
            Incoming::Event {
                nsp: p.nsp,
                name,
                args: a.collect(),
                id: p.id,
            }
        }
        socketio::PacketKind::Ack => Incoming::Ack {
            nsp: p.nsp,
            id: p.id.ok_or_else(|| bad(&"ack without an id"))?,
            args: args(p.data),
        },
        socketio::PacketKind::BinaryEvent | socketio::PacketKind::BinaryAck => Incoming::Other,
    })
}

/// `40/nsp,{"token":…}`: joins a namespace with the handshake `auth`.
pub fn connect(nsp: &str, auth: &Value) -> String {
    let mut p = socketio::Packet::connect_ok(nsp, "", None);
    p.data = Some(auth.clone());
    message(&p)
}

/// `42/nsp,id["name",arg]`: an event, asking for an ack when `id` is given.
pub fn event(nsp: &str, name: &str, arg: Value, id: Option<u64>) -> String {
    let mut p = socketio::Packet::event(nsp, name, vec![arg], 0);
    p.id = id;
    message(&p)
}

fn message(p: &socketio::Packet) -> String {
    let mut out = String::with_capacity(96);
    out.push('4');
    socketio::encode(p, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_what_the_server_parses() {
        assert_eq!(
            connect("/bench", &json!({"token": "t"})),
            r#"40/bench,{"token":"t"}"#
        );
        assert_eq!(
            event("/bench", "join", json!({"room": "r"}), Some(7)),
            r#"42/bench,7["join",{"room":"r"}]"#
        );
        assert_eq!(event("/", "x", json!(1), None), r#"42["x",1]"#);
    }

    #[test]
    fn parses_what_the_server_sends() {
        assert_eq!(parse("2").unwrap(), Incoming::Ping);
        assert_eq!(
            parse(r#"40/bench,{"sid":"a"}"#).unwrap(),
            Incoming::Connected {
                nsp: "/bench".into(),
                sid: Some("a".into()),
                pid: None
            }
        );
        assert_eq!(
            parse(r#"40{"sid":"a","pid":"p"}"#).unwrap(),
            Incoming::Connected {
                nsp: "/".into(),
                sid: Some("a".into()),
                pid: Some("p".into())
            }
        );
        assert_eq!(
            parse(r#"42/bench,["message",{"seq":1}]"#).unwrap(),
            Incoming::Event {
                nsp: "/bench".into(),
                name: "message".into(),
                args: vec![json!({"seq": 1})],
                id: None
            }
        );
        assert_eq!(
            parse(r#"43/bench,7[{"ok":true}]"#).unwrap(),
            Incoming::Ack {
                nsp: "/bench".into(),
                id: 7,
                args: vec![json!({"ok": true})]
            }
        );
        assert!(matches!(
            parse(r#"44/bench,{"message":"unauthorized"}"#).unwrap(),
            Incoming::ConnectError { .. }
        ));
        assert!(parse("4x").is_err());
        assert_eq!(
            parse_open(r#"0{"sid":"s","pingInterval":25000}"#).unwrap()["sid"],
            "s"
        );
        assert!(parse_open("40").is_err());
    }
}
