//! Between the server's adapter types and the cluster wire types of
//! [`crate::protocol::cluster`]: the one place that converts, so everything else in the
//! server deals in its own types and a single-node emit never builds a wire message.

use crate::protocol::cluster::{self, BroadcastOpts, ClusterPacket};
use crate::server::adapter::{BroadcastFlags, BroadcastOptions, BroadcastPacket, RemoteSocket};
use crate::server::Room;
use serde_json::Value;
use std::time::Duration;

/// The wire packet of a broadcast in namespace `nsp`.
pub fn packet_to_wire(nsp: &str, packet: &BroadcastPacket) -> ClusterPacket {
    ClusterPacket::event(nsp, packet.data.clone(), packet.binary.clone())
}

/// A broadcast packet from the wire (its namespace was checked by the caller).
pub fn packet_from_wire(packet: ClusterPacket) -> BroadcastPacket {
    BroadcastPacket {
        data: packet.data,
        binary: packet.attachments,
    }
}

/// The wire form of `opts`. Unset flags are not sent, as in Node, where `flags` is `{}`
/// unless `.volatile`, `.local`, `.timeout()`… were used.
pub fn opts_to_wire(opts: &BroadcastOptions) -> BroadcastOpts {
    let flags = &opts.flags;
    BroadcastOpts {
        rooms: rooms_to_wire(&opts.rooms),
        except: rooms_to_wire(&opts.except),
        flags: Some(cluster::BroadcastFlags {
            local: flags.local.then_some(true),
            volatile: flags.volatile.then_some(true),
            timeout: flags.timeout.map(|t| t.as_millis() as u64),
            ..Default::default()
        }),
    }
}

/// Rooms and except-rooms only: what requests (fetch, join, leave, disconnect) carry.
pub fn targets_to_wire(opts: &BroadcastOptions) -> BroadcastOpts {
    BroadcastOpts {
        flags: None,
        ..opts_to_wire(opts)
    }
}

/// Options from the wire. Flags the server does not act on (`compress`,
/// `expectSingleResponse`) are dropped.
pub fn opts_from_wire(opts: BroadcastOpts) -> BroadcastOptions {
    let flags = opts.flags.unwrap_or_default();
    BroadcastOptions {
        rooms: opts.rooms.into_iter().map(Room::from).collect(),
        except: opts.except.into_iter().map(Room::from).collect(),
        flags: BroadcastFlags {
            local: flags.local == Some(true),
            volatile: flags.volatile == Some(true),
            timeout: flags.timeout.map(Duration::from_millis),
        },
    }
}

pub fn rooms_to_wire(rooms: &[Room]) -> Vec<String> {
    rooms.iter().map(|r| r.to_string()).collect()
}

/// A socket as a REMOTE_FETCH answer carries it: `{id, handshake, rooms, data}`.
pub fn remote_socket_to_wire(socket: &RemoteSocket) -> Value {
    serde_json::json!({
        "id": socket.id,
        "handshake": socket.handshake,
        "rooms": rooms_to_wire(&socket.rooms),
        "data": socket.data,
    })
}

/// A socket from a REMOTE_FETCH answer. Node allows numeric rooms; ours are strings.
pub fn remote_socket_from_wire(v: Value) -> Option<RemoteSocket> {
    Some(RemoteSocket {
        id: v.get("id")?.as_str()?.to_owned(),
        handshake: v.get("handshake").cloned().unwrap_or(Value::Null),
        rooms: v
            .get("rooms")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| match r {
                        Value::String(s) => Some(Room::from(s.as_str())),
                        Value::Number(n) => Some(Room::from(n.to_string())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        data: v.get("data").cloned().unwrap_or(Value::Null),
        local: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::cluster::BroadcastMessage;
    use crate::server::Payload;
    use bytes::Bytes;
    use serde_json::json;

    #[test]
    fn options_round_trip_and_unset_flags_stay_off_the_wire() {
        let opts = BroadcastOptions {
            rooms: vec!["a".into(), "b".into()],
            except: vec!["c".into()],
            flags: BroadcastFlags {
                local: false,
                volatile: true,
                timeout: Some(Duration::from_millis(1500)),
            },
        };
        let wire = opts_to_wire(&opts);
        let flags = wire.flags.clone().unwrap();
        assert_eq!(
            (flags.local, flags.volatile, flags.timeout),
            (None, Some(true), Some(1500))
        );
        assert_eq!(opts_from_wire(wire), opts);
        assert_eq!(targets_to_wire(&opts).flags, None);
    }

    #[test]
    fn a_broadcast_message_carries_the_event_and_its_binary() {
        let packet = BroadcastPacket::event(
            "m",
            Payload::new(vec![json!(1)]).with_binary(Bytes::from_static(b"\x01")),
        );
        let msg = BroadcastMessage {
            uid: "abc".into(),
            packet: packet_to_wire("/chat", &packet),
            opts: opts_to_wire(&BroadcastOptions::room("r")),
        };
        let back = BroadcastMessage::decode(&msg.encode()).unwrap();
        assert_eq!(back.packet.nsp, "/chat");
        assert_eq!(packet_from_wire(back.packet), packet);
        assert_eq!(opts_from_wire(back.opts), BroadcastOptions::room("r"));
    }

    #[test]
    fn fetched_sockets_round_trip() {
        let socket = RemoteSocket {
            id: "s1".into(),
            handshake: json!({"auth": {}}),
            rooms: vec!["s1".into(), "r".into()],
            data: json!({"userId": "u"}),
            local: None,
        };
        let back = remote_socket_from_wire(remote_socket_to_wire(&socket)).unwrap();
        assert_eq!(
            (back.id, back.rooms, back.data),
            (socket.id, socket.rooms, socket.data)
        );
        let numeric = remote_socket_from_wire(json!({"id": "x", "rooms": [7]})).unwrap();
        assert_eq!(numeric.rooms, vec![Room::from("7")]);
        assert!(remote_socket_from_wire(json!({"rooms": []})).is_none());
    }
}
