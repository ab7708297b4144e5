//! What one node does with its own sockets: the room index and socket.io-adapter's
//! in-memory `Adapter` (`apply`, `broadcast`, `broadcastWithAck`, `addSockets`, …).

use super::{AckEvent, AckSink, BroadcastOpts, ClusterPacket, RemoteSocket};
use crate::protocol::socketio::Packet;
use crate::server::{encode_frames, Namespace, Payload, Room, SocketRef};
use crate::sid::Sid;
use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use crate::server::RoomIndex;

/// The node-local half of every adapter.
pub struct LocalAdapter {
    ns: Weak<Namespace>,
    rooms: RoomIndex,
}

impl LocalAdapter {
    pub fn new(ns: Weak<Namespace>) -> Self {
        LocalAdapter {
            ns,
            rooms: RoomIndex::default(),
        }
    }

    /// The namespace; None only while it is being built or torn down.
    pub fn namespace(&self) -> Option<Arc<Namespace>> {
        self.ns.upgrade()
    }

    pub fn add_all(&self, sid: Sid, rooms: &[Room]) {
        for room in rooms {
            self.rooms.add(room.clone(), sid);
        }
    }

    pub fn del(&self, sid: Sid, room: &str) {
        self.rooms.remove(room, sid);
    }

    /// Rooms with their member counts (own-id rooms are not listed).
    pub fn rooms(&self) -> Vec<(Room, usize)> {
        self.rooms.list()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Whether `room` has members here; a socket id is the room of that socket
    /// (the adapter's `hasRoom`, which sees Node's own-id rooms).
    pub fn has_room(&self, room: &str) -> bool {
        if self.rooms.with_members(room, |m| m.is_some()) {
            return true;
        }
        match (Sid::parse(room), self.namespace()) {
            (Some(sid), Some(ns)) => ns.has_socket(&sid),
            _ => false,
        }
    }

    /// Room names as Node's `this.rooms.keys()` lists them: joined rooms and socket ids.
    pub fn all_rooms(&self) -> Vec<Room> {
        let mut rooms: Vec<Room> = self.rooms.list().into_iter().map(|(r, _)| r).collect();
        if let Some(ns) = self.namespace() {
            rooms.extend(ns.socket_ids().iter().map(|s| Room::from(s.as_str())));
        }
        rooms
    }

    fn members_into(&self, ns: &Namespace, room: &str, out: &mut HashSet<Sid>) {
        let found = self
            .rooms
            .with_members(room, |m| m.map(|m| out.extend(m.iter().copied())).is_some());
        // A socket id is a room holding just that socket.
        if !found {
            if let Some(sid) = Sid::parse(room).filter(|s| ns.has_socket(s)) {
                out.insert(sid);
            }
        }
    }

    /// The socket ids `opts` targets on this node (socket.io-adapter's `apply`).
    pub fn socket_ids(&self, opts: &BroadcastOpts) -> HashSet<Sid> {
        let Some(ns) = self.namespace() else {
            return HashSet::new();
        };
        let mut excluded = HashSet::new();
        for room in &opts.except {
            self.members_into(&ns, room, &mut excluded);
        }
        let mut targets = HashSet::new();
        if opts.rooms.is_empty() {
            targets.extend(ns.socket_ids());
        } else {
            for room in &opts.rooms {
                self.members_into(&ns, room, &mut targets);
            }
        }
        targets.retain(|s| !excluded.contains(s));
        targets
    }

    /// The sockets `opts` targets on this node.
    pub fn sockets(&self, opts: &BroadcastOpts) -> Vec<SocketRef> {
        let Some(ns) = self.namespace() else {
            return Vec::new();
        };
        self.socket_ids(opts)
            .into_iter()
            .filter_map(|sid| ns.get_socket(&sid))
            .collect()
    }

    /// Sends to every local target; the packet is encoded once.
    pub fn broadcast(&self, packet: &ClusterPacket, opts: &BroadcastOpts) -> usize {
        let Some(ns) = self.namespace() else {
            return 0;
        };
        let frames = encode_frames(&event_packet(&ns.name, packet), &packet.attachments);
        let mut sent = 0;
        for sid in self.socket_ids(opts) {
            if let Some(socket) = ns.get_socket(&sid) {
                if socket.send_frames(&frames) {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// Sends with an ack id to every local target; reports the count, then each answer.
    pub fn broadcast_with_ack(
        &self,
        packet: &ClusterPacket,
        opts: &BroadcastOpts,
        timeout: Duration,
        sink: AckSink,
    ) {
        let sockets = self.sockets(opts);
        let _ = sink.send(AckEvent::ClientCount(sockets.len()));
        for socket in sockets {
            let answer =
                socket.send_with_ack(packet.data.clone(), packet.attachments.clone(), timeout);
            let sink = sink.clone();
            tokio::spawn(async move {
                if let Ok(payload) = answer.await {
                    let _ = sink.send(AckEvent::Ack(payload));
                }
            });
        }
    }

    pub fn add_sockets(&self, opts: &BroadcastOpts, rooms: &[Room]) {
        for socket in self.sockets(opts) {
            for room in rooms {
                socket.join(room.clone());
            }
        }
    }

    pub fn del_sockets(&self, opts: &BroadcastOpts, rooms: &[Room]) {
        for socket in self.sockets(opts) {
            for room in rooms {
                socket.leave(room);
            }
        }
    }

    pub fn disconnect_sockets(&self, opts: &BroadcastOpts, close: bool) {
        for socket in self.sockets(opts) {
            socket.disconnect(close);
        }
    }

    pub fn fetch_sockets(&self, opts: &BroadcastOpts) -> Vec<RemoteSocket> {
        self.sockets(opts)
            .into_iter()
            .map(|s| RemoteSocket {
                id: s.id.as_str().to_owned(),
                handshake: s.handshake_json(),
                rooms: s.rooms(),
                data: s.data(),
                local: Some(s),
            })
            .collect()
    }
}

/// The Socket.IO packet of a cluster event: EVENT, or BINARY_EVENT with attachments.
fn event_packet(nsp: &str, packet: &ClusterPacket) -> Packet {
    use crate::protocol::socketio::PacketKind;
    let kind = if packet.attachments.is_empty() {
        PacketKind::Event
    } else {
        PacketKind::BinaryEvent
    };
    Packet {
        kind,
        nsp: nsp.to_owned(),
        id: None,
        data: Some(packet.data.clone()),
        attachments: packet.attachments.len(),
    }
}

/// An event's `[name, ...args]` and attachments as a cluster packet.
pub(crate) fn packet_of(nsp: &str, event: &str, payload: Payload) -> ClusterPacket {
    let mut data = Vec::with_capacity(payload.args.len() + 1);
    data.push(serde_json::Value::String(event.to_owned()));
    data.extend(payload.args);
    ClusterPacket::event(nsp, serde_json::Value::Array(data), payload.binary)
}
