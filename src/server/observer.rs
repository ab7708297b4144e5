//! A watcher of everything sockets do, for tools that show it live (the Admin UI's
//! development mode): connections, disconnections, rooms joined and left, events in and
//! out. Set per namespace with [`super::Namespace::observe`]; unset (the default), each
//! hook point costs one check.

use super::{DisconnectReason, Event, Socket, SocketRef};
use crate::sid::Sid;
use serde_json::Value;

pub trait SocketObserver: Send + Sync + 'static {
    /// `socket` passed every connect step; its CONNECT reply goes out right after.
    fn connected(&self, socket: &SocketRef);
    /// `socket`'s connection moved to another transport (polling → WebSocket).
    fn upgraded(&self, socket: &SocketRef);
    /// `socket`'s data changed after it connected.
    fn data_changed(&self, socket: &Socket);
    /// `socket` left its namespace for `reason`.
    fn disconnected(&self, socket: &SocketRef, reason: DisconnectReason);
    /// Socket `sid` of `nsp` joined `room` (it was not in it).
    fn joined(&self, nsp: &str, room: &str, sid: &Sid);
    /// Socket `sid` of `nsp` left `room`.
    fn left(&self, nsp: &str, room: &str, sid: &Sid);
    /// `socket` received `event` from its client (before the handler runs).
    fn received(&self, socket: &SocketRef, event: &Event);
    /// An event went to socket `sid` of `nsp`: `data` is `[name, ...args]`.
    fn sent(&self, nsp: &str, sid: &Sid, data: &Value);
}
