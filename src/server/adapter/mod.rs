//! The adapter: how a namespace reaches sockets, on this node or on every node.
//!
//! Each namespace has one [`Adapter`]. Every broadcast, room join and leave, cluster-wide
//! join/leave/disconnect, socket fetch and server-side emit goes through it, as in Node's
//! socket.io, whose `Adapter` class the trait mirrors. The server owns the contract; the
//! adapters that leave the process (in `src/cluster/`) implement it:
//!
//! - [`LocalAdapter`] is the embedded default and the node-local half of every other
//!   adapter: the room index, and delivery to this node's sockets through
//!   [`SocketEmitter`], which the namespace implements.
//! - A cluster adapter does the same locally, then tells the other nodes in its own wire
//!   format. Only it converts [`BroadcastPacket`] / [`BroadcastOptions`] to and from wire
//!   types: a single-node emit is encoded once, straight into Engine.IO frames.
//!
//! The contract also carries what the adapters to come need: the number of nodes
//! ([`Adapter::server_count`]), room lifecycle events for per-room subscriptions
//! ([`RoomEvent`], through [`LocalAdapter::with_room_listener`], and [`Adapter::own_room`]
//! for the sockets' own-id rooms, which the index does not keep), and connection state
//! recovery: an adapter that can recover sessions stamps each replayable broadcast with
//! an offset ([`Adapter::broadcast`]), keeps disconnected sessions
//! ([`Adapter::persist_session`]) and hands them back with the packets they missed
//! ([`Adapter::restore_session`]). The defaults are Node's base `Adapter`: no offsets, no
//! sessions kept, so a reconnecting client gets a fresh socket.

mod broadcast;
mod emitter;
mod local;
mod recovery;
mod rooms;

pub use broadcast::{BroadcastFlags, BroadcastOptions, BroadcastPacket};
pub use emitter::{AckEvent, AckFuture, AckSink, RemoteSocket, ServerAck, SocketEmitter};
pub use local::LocalAdapter;
pub use recovery::{next_offset, should_include, RecoveryLog, RecoveryOptions};
pub use rooms::{RoomEvent, RoomListener};

use super::{BoxFuture, Room};
use crate::sid::Sid;
use serde_json::Value;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Why a cluster-wide operation could not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    #[error("timeout reached while waiting for {what} responses ({received} of {expected})")]
    Timeout {
        what: &'static str,
        received: usize,
        expected: usize,
    },
    /// The adapter's backend failed; the message names it (`redis: …`).
    #[error("{0}")]
    Backend(String),
}

/// A disconnected socket's state, kept for connection state recovery (Node's `Session`:
/// the socket id, the private id the client proves itself with, rooms — its own id
/// included — and data).
#[derive(Debug, Clone, PartialEq)]
pub struct PersistedSession {
    pub sid: Sid,
    pub pid: Sid,
    pub rooms: Vec<Room>,
    pub data: Value,
    /// When the credentials the socket connected with stop being valid: a session past
    /// it is not restored, so a recovered socket (which skips the auth middleware by
    /// default) never outlives its token. None: no expiry known.
    pub expires_at: Option<std::time::SystemTime>,
}

/// A session found again, with the packets broadcast to its rooms since the offset the
/// client last saw, oldest first — each as the Engine.IO frames that carry it, offset
/// included (a [`BroadcastPacket`] becomes them with `into_frames(nsp, None)`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredSession {
    pub session: PersistedSession,
    pub missed: Vec<Vec<crate::transport::Frame>>,
    /// Where the replay stopped, for [`Adapter::attach_restored`]'s catch-up (`None`:
    /// nothing to catch up on).
    pub resume: Option<Resume>,
}

/// Where a restore's replay stopped: what the same adapter's
/// [`Adapter::attach_restored`] needs to hand the socket exactly what it has not had.
#[derive(Clone)]
pub enum Resume {
    /// This node's replay log position when `missed` was taken.
    Log(u64),
    /// A restore the adapter follows until the attach, in the adapter's own type (a
    /// shared log, read while this node goes on delivering). Dropping the last clone ends
    /// it, so a restore that never attaches costs nothing afterwards.
    Ticket(Arc<dyn std::any::Any + Send + Sync>),
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resume::Log(seq) => f.debug_tuple("Log").field(seq).finish(),
            Resume::Ticket(_) => f.write_str("Ticket"),
        }
    }
}

impl PartialEq for Resume {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Resume::Log(a), Resume::Log(b)) => a == b,
            (Resume::Ticket(a), Resume::Ticket(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The seam between a namespace and the cluster. See the module docs.
pub trait Adapter: Send + Sync + 'static {
    /// This node's sockets and rooms.
    fn local(&self) -> &LocalAdapter;

    /// Adds `sid` to `rooms` (socket.join).
    fn add_all(&self, sid: Sid, rooms: &[Room]) {
        self.local().add_all(sid, rooms)
    }

    /// Removes `sid` from `room` (socket.leave, and every room on disconnect).
    fn del(&self, sid: Sid, room: &str) {
        self.local().del(sid, room)
    }

    /// Socket `sid` of this node entered the namespace (`present`) or left it: Node's
    /// join and leave of the socket's own-id room, which the room index does not store
    /// (see [`RoomEvent`]). An adapter that listens per private room follows it (the
    /// sharded adapter in `dynamic-private` mode).
    fn own_room(&self, _sid: Sid, _present: bool) {}

    /// Sends `packet` to the targets of `opts`; returns how many sockets of this node it
    /// was queued for. An adapter that recovers sessions appends the packet's offset as
    /// its last argument first, unless the packet is volatile.
    fn broadcast(&self, packet: BroadcastPacket, opts: &BroadcastOptions) -> usize {
        self.local().broadcast(packet, opts)
    }

    /// Sends `packet` expecting an acknowledgement from every client; each node reports
    /// its client count and then the answers into `sink`.
    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        opts: &BroadcastOptions,
        timeout: Duration,
        sink: AckSink,
    ) {
        self.local()
            .broadcast_with_ack(&packet, opts, timeout, sink)
    }

    /// Makes the targeted sockets join `rooms`.
    fn add_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        self.local().add_sockets(opts, rooms)
    }

    /// Makes the targeted sockets leave `rooms`.
    fn del_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        self.local().del_sockets(opts, rooms)
    }

    /// Disconnects the targeted sockets.
    fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        self.local().disconnect_sockets(opts, close)
    }

    /// The targeted sockets, on every node.
    fn fetch_sockets(
        &self,
        opts: &BroadcastOptions,
    ) -> BoxFuture<Result<Vec<RemoteSocket>, AdapterError>> {
        let local = self.local().fetch_sockets(opts);
        Box::pin(async move { Ok(local) })
    }

    /// Every room name, on every node (as in Node, socket ids count as rooms).
    fn all_rooms(&self) -> BoxFuture<Result<Vec<Room>, AdapterError>> {
        let rooms = self.local().all_rooms();
        Box::pin(async move { Ok(rooms) })
    }

    /// Emits `[event, ...args]` to the *other* nodes' server-side handlers.
    fn server_side_emit(&self, _data: Vec<Value>) {}

    /// Same, waiting for one answer from every other node.
    fn server_side_emit_with_ack(
        &self,
        _data: Vec<Value>,
    ) -> BoxFuture<Result<Vec<Value>, AdapterError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// How many nodes serve this namespace (this one included).
    fn server_count(&self) -> BoxFuture<usize> {
        Box::pin(async { 1 })
    }

    /// Keeps a disconnected socket's session for connection state recovery. The default
    /// keeps it in this node's [`RecoveryLog`] when the local adapter has one, else
    /// nowhere (Node's base `Adapter`).
    fn persist_session(&self, session: PersistedSession) {
        self.local().persist_session(session)
    }

    /// The session of private id `pid` with what it missed after `offset`, if it is still
    /// kept and the offset is still known (taken: a session is restored once). The
    /// default asks this node's [`RecoveryLog`].
    fn restore_session(
        &self,
        pid: &str,
        offset: &str,
    ) -> BoxFuture<Result<Option<RecoveredSession>, AdapterError>> {
        let found = self.local().restore_session(pid, offset);
        Box::pin(async move { Ok(found) })
    }

    /// Returns once the writes this adapter started and nobody awaits are done — the
    /// sessions it persisted as the drain closed its sockets, broadcasts still queued —
    /// so a node that stops leaves them in the cluster. The server calls it after the
    /// drain, bounded by a timeout. The default has nothing in flight.
    fn flush(&self) -> BoxFuture<()> {
        Box::pin(async {})
    }

    /// Runs `attach` — which makes restored socket `sid` reachable: registers it and
    /// joins its rooms — while no broadcast of this node is between being logged and
    /// being sent, then returns what was broadcast to `rooms` after `resume` and is not
    /// in `missed`. With `missed` from [`Adapter::restore_session`] sent first, every
    /// packet reaches the socket exactly once: replayed, caught up, or live.
    fn attach_restored(
        &self,
        _sid: &Sid,
        rooms: &[Room],
        resume: Option<Resume>,
        attach: &mut dyn FnMut(),
    ) -> Vec<Vec<crate::transport::Frame>> {
        self.local().attach_restored(rooms, resume, attach)
    }

    /// Stops listening to the cluster (namespace teardown).
    fn close(&self) {}
}

/// Creates the adapter of each namespace when the server is built. An adapter holds its
/// namespace weakly (the namespace owns the adapter).
pub trait AdapterFactory: Send + Sync + 'static {
    fn create(&self, sockets: Weak<dyn SocketEmitter>, nsp: &str) -> Arc<dyn Adapter>;
}
