//! Emitting to many sockets: `to(room)`, `except(room)`, the whole namespace.

use super::namespace::Namespace;
use super::payload::{encode_frames, Payload};
use super::Room;
use crate::protocol::socketio::Packet;
use crate::sid::Sid;
use std::collections::HashSet;
use std::sync::Arc;

/// Chooses the receivers of an emit. Built by [`Namespace::to`] or
/// [`super::Socket::to`]; [`BroadcastOperator::emit`] sends.
#[derive(Clone)]
pub struct BroadcastOperator {
    ns: Arc<Namespace>,
    rooms: Vec<Room>,
    except: Vec<Room>,
    except_socket: Option<Sid>,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Arc<Namespace>) -> Self {
        BroadcastOperator {
            ns,
            rooms: Vec::new(),
            except: Vec::new(),
            except_socket: None,
        }
    }

    /// Adds a target room (a socket id works as a room). No rooms means everyone.
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Excludes the members of `room`.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        self.except.push(room.into());
        self
    }

    pub(crate) fn except_socket(mut self, sid: Sid) -> Self {
        self.except_socket = Some(sid);
        self
    }

    /// The socket ids this operator targets on this node.
    pub fn socket_ids(&self) -> HashSet<Sid> {
        let mut excluded: HashSet<Sid> = self.except_socket.into_iter().collect();
        for room in &self.except {
            self.members_into(room, &mut excluded);
        }
        let mut targets = HashSet::new();
        if self.rooms.is_empty() {
            targets.extend(self.ns.socket_ids());
        } else {
            for room in &self.rooms {
                self.members_into(room, &mut targets);
            }
        }
        targets.retain(|s| !excluded.contains(s));
        targets
    }

    fn members_into(&self, room: &str, out: &mut HashSet<Sid>) {
        let found = self
            .ns
            .rooms
            .with_members(room, |m| m.map(|m| out.extend(m.iter().copied())).is_some());
        // A socket id is a room holding just that socket.
        if !found {
            if let Some(sid) = Sid::parse(room).filter(|s| self.ns.has_socket(s)) {
                out.insert(sid);
            }
        }
    }

    /// Sends the event to every target; returns how many sockets it was queued for.
    /// The packet is encoded once, whatever the number of receivers.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> usize {
        let p = payload.into();
        let packet = Packet::event(&self.ns.name, event, p.args, p.binary.len());
        let frames = encode_frames(&packet, &p.binary);
        let targets = self.socket_ids();
        let mut sent = 0;
        for sid in targets {
            if let Some(socket) = self.ns.get_socket(&sid) {
                if socket.send_frames(&frames) {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// Makes every targeted socket join `room`.
    pub fn sockets_join(&self, room: impl Into<Room>) {
        let room = room.into();
        for sid in self.socket_ids() {
            if let Some(s) = self.ns.get_socket(&sid) {
                s.join(room.clone());
            }
        }
    }

    /// Makes every targeted socket leave `room`.
    pub fn sockets_leave(&self, room: &str) {
        for sid in self.socket_ids() {
            if let Some(s) = self.ns.get_socket(&sid) {
                s.leave(room);
            }
        }
    }

    /// Disconnects every targeted socket.
    pub fn disconnect_sockets(&self, close: bool) {
        for sid in self.socket_ids() {
            if let Some(s) = self.ns.get_socket(&sid) {
                s.disconnect(close);
            }
        }
    }
}
