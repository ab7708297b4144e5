//! The namespace as its adapter sees it: [`SocketEmitter`] over this node's sockets.
//! Each call looks its sockets up under one read lock and acts on them after releasing
//! it, so a large broadcast never holds up connects and disconnects.

use super::adapter::{AckFuture, BroadcastPacket, RemoteSocket, ServerAck, SocketEmitter};
use super::namespace::Namespace;
use super::Room;
use crate::sid::Sid;
use crate::transport::Frame;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// How many sockets of one broadcast the broadcasting task writes to itself; the rest
/// are queued for their connections' tasks. Writing costs least where the frame already
/// is, but each write is a system call of a few microseconds: past this many (about half
/// a millisecond of them), a large broadcast would hold its task and thread too long,
/// and queued sockets are written by every worker thread in parallel.
const WRITTEN_BY_THE_BROADCASTER: usize = 128;

impl SocketEmitter for Namespace {
    fn nsp(&self) -> &str {
        &self.name
    }

    fn has_socket(&self, sid: &Sid) -> bool {
        Namespace::has_socket(self, sid)
    }

    fn socket_ids(&self) -> Vec<Sid> {
        Namespace::socket_ids(self)
    }

    fn is_watched(&self) -> bool {
        self.observer().is_some()
    }

    fn observe_sent(&self, sids: &HashSet<Sid>, data: &serde_json::Value) {
        if let Some(o) = self.observer() {
            for sid in sids.iter().filter(|s| self.has_socket(s)) {
                o.sent(&self.name, sid, data);
            }
        }
    }

    fn send_many(&self, sids: &HashSet<Sid>, frames: &[Frame]) -> usize {
        self.sockets_among(sids)
            .iter()
            .enumerate()
            .filter(|(i, socket)| socket.send_frames(frames, *i < WRITTEN_BY_THE_BROADCASTER))
            .count()
    }

    fn send_many_with_ack(
        &self,
        sids: &HashSet<Sid>,
        packet: &BroadcastPacket,
        timeout: Duration,
    ) -> Vec<AckFuture> {
        self.sockets_among(sids)
            .into_iter()
            .map(|socket| {
                let answer =
                    socket.send_with_ack(packet.data.clone(), packet.binary.clone(), timeout);
                Box::pin(answer) as AckFuture
            })
            .collect()
    }

    fn join_many(&self, sids: &HashSet<Sid>, rooms: &[Room]) {
        for socket in self.sockets_among(sids) {
            for room in rooms {
                socket.join(room.clone());
            }
        }
    }

    fn leave_many(&self, sids: &HashSet<Sid>, rooms: &[Room]) {
        for socket in self.sockets_among(sids) {
            for room in rooms {
                socket.leave(room);
            }
        }
    }

    fn disconnect_many(&self, sids: &HashSet<Sid>, close: bool) {
        for socket in self.sockets_among(sids) {
            socket.disconnect(close);
        }
    }

    fn remote_sockets(&self, sids: &HashSet<Sid>) -> Vec<RemoteSocket> {
        self.sockets_among(sids)
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

    fn server_event(&self, data: Vec<Value>, ack: Option<ServerAck>) {
        self.dispatch_server_event(data, ack)
    }
}
