//! The adapter: how a namespace reaches sockets, on this node or on every node.
//!
//! Each namespace has one [`Adapter`]. Every broadcast, room join and leave, remote
//! join/leave/disconnect, socket fetch and server-side emit of the server goes through it,
//! as in Node's socket.io, whose `Adapter` class this trait mirrors:
//!
//! - [`InProcess`] (the embedded default) is a [`LocalAdapter`] and nothing else: what a
//!   single node does with its own sockets and room index.
//! - [`redis::RedisAdapter`] does the same locally, then tells the other nodes through
//!   Redis pub/sub in the wire format of `@socket.io/redis-adapter` 8.x, so Node and Rust
//!   nodes, and `@socket.io/redis-emitter`, form one cluster.
//!
//! A node's own sockets are always served from memory: a broadcast reaches local
//! sockets at once and hands the cluster copy to a background publisher, so a Redis
//! outage never blocks or fails a local emit (the remote copy is lost — pub/sub keeps
//! nothing for absent listeners).

pub mod driver;
pub mod emitter;
mod local;
pub mod redis;

pub use crate::protocol::cluster::{BroadcastFlags, BroadcastOpts, ClusterPacket};
pub(crate) use local::packet_of as local_packet_of;
pub use local::LocalAdapter;

use crate::server::{BoxFuture, Namespace, Payload, Room, SocketRef};
use crate::sid::Sid;
use serde_json::Value;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a cluster-wide operation could not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    #[error("timeout reached while waiting for {what} responses ({received} of {expected})")]
    Timeout {
        what: &'static str,
        received: usize,
        expected: usize,
    },
    #[error("redis: {0}")]
    Redis(String),
}

/// A socket as `fetch_sockets` returns it: the details every node can send (Node's
/// `RemoteSocket`: id, handshake, rooms, data), plus the socket itself when it is local.
#[derive(Debug, Clone)]
pub struct RemoteSocket {
    pub id: String,
    pub handshake: Value,
    pub rooms: Vec<Room>,
    pub data: Value,
    pub local: Option<SocketRef>,
}

/// What a broadcast with acknowledgements reports, per node: how many clients it was
/// sent to, then each client's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AckEvent {
    ClientCount(usize),
    Ack(Payload),
}

/// The sink a broadcast-with-ack reports into.
pub type AckSink = mpsc::UnboundedSender<AckEvent>;

/// An acknowledgement callback for a server-side event from another node: call it
/// once with one argument (later calls are ignored, as in Node).
pub type ServerAck = Box<dyn FnOnce(Value) + Send>;

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

    /// Sends `packet` to the targets of `opts`; returns how many sockets of this node it
    /// was queued for.
    fn broadcast(&self, packet: ClusterPacket, opts: &BroadcastOpts) -> usize {
        self.local().broadcast(&packet, opts)
    }

    /// Sends `packet` expecting an acknowledgement from every client; each node reports
    /// its client count and then the answers into `sink`.
    fn broadcast_with_ack(
        &self,
        packet: ClusterPacket,
        opts: &BroadcastOpts,
        timeout: Duration,
        sink: AckSink,
    ) {
        self.local()
            .broadcast_with_ack(&packet, opts, timeout, sink)
    }

    /// Makes the targeted sockets join `rooms`.
    fn add_sockets(&self, opts: &BroadcastOpts, rooms: &[Room]) {
        self.local().add_sockets(opts, rooms)
    }

    /// Makes the targeted sockets leave `rooms`.
    fn del_sockets(&self, opts: &BroadcastOpts, rooms: &[Room]) {
        self.local().del_sockets(opts, rooms)
    }

    /// Disconnects the targeted sockets.
    fn disconnect_sockets(&self, opts: &BroadcastOpts, close: bool) {
        self.local().disconnect_sockets(opts, close)
    }

    /// The targeted sockets, on every node.
    fn fetch_sockets(
        &self,
        opts: &BroadcastOpts,
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

    /// Stops listening to the cluster (namespace teardown).
    fn close(&self) {}
}

/// Creates the adapter of each namespace when the server is built.
pub trait AdapterFactory: Send + Sync + 'static {
    fn create(&self, ns: Weak<Namespace>, name: &str) -> Arc<dyn Adapter>;
}

/// The embedded default: one node, nothing leaves the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct InProcess;

struct InProcessAdapter(LocalAdapter);

impl Adapter for InProcessAdapter {
    fn local(&self) -> &LocalAdapter {
        &self.0
    }
}

impl AdapterFactory for InProcess {
    fn create(&self, ns: Weak<Namespace>, _name: &str) -> Arc<dyn Adapter> {
        Arc::new(InProcessAdapter(LocalAdapter::new(ns)))
    }
}
