//! [`SocketEmitter`]: the narrow way an adapter reaches the sockets of its namespace on
//! this node (the shape socketioxide gives the same seam). The namespace implements it;
//! an adapter holds it weakly and never sees a socket's internals, so adapter logic can
//! be unit-tested with a stand-in namespace.

use crate::server::{AckError, BoxFuture, Payload, Room, SocketRef};
use crate::sid::Sid;
use crate::transport::Frame;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::mpsc;

use super::BroadcastPacket;

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

/// One client's answer to an emit with an acknowledgement.
pub type AckFuture = BoxFuture<Result<Payload, AckError>>;

/// An acknowledgement callback for a server-side event from another node: call it
/// once with one argument (later calls are ignored, as in Node).
pub type ServerAck = Box<dyn FnOnce(Value) + Send>;

/// How an adapter acts on this node's sockets of one namespace. Every method takes socket
/// ids; ids of sockets that are gone are skipped.
pub trait SocketEmitter: Send + Sync + 'static {
    /// The namespace's name (`/chat`).
    fn nsp(&self) -> &str;

    /// Whether `sid` is a socket of this namespace on this node.
    fn has_socket(&self, sid: &Sid) -> bool;

    /// Every socket id of this namespace on this node.
    fn socket_ids(&self) -> Vec<Sid>;

    /// Queues the encoded `frames` for each socket; returns how many accepted them.
    fn send_many(&self, sids: &HashSet<Sid>, frames: &[Frame]) -> usize;

    /// Sends `packet` to each socket with an acknowledgement id of its own; one answer
    /// per socket reached. The packets are queued before this returns.
    fn send_many_with_ack(
        &self,
        sids: &HashSet<Sid>,
        packet: &BroadcastPacket,
        timeout: Duration,
    ) -> Vec<AckFuture>;

    /// Whether a watcher follows this namespace's sockets (see
    /// [`crate::server::observer`]); only then is [`Self::observe_sent`] worth calling.
    fn is_watched(&self) -> bool {
        false
    }

    /// Tells the watcher that `data` (`[event, ...args]`) went to each of `sids`.
    fn observe_sent(&self, _sids: &HashSet<Sid>, _data: &serde_json::Value) {}

    /// Makes each socket join `rooms` (the socket's own room list and the adapter's).
    fn join_many(&self, sids: &HashSet<Sid>, rooms: &[Room]);

    /// Makes each socket leave `rooms`.
    fn leave_many(&self, sids: &HashSet<Sid>, rooms: &[Room]);

    /// Disconnects each socket from the namespace (`close`: the whole connection too).
    fn disconnect_many(&self, sids: &HashSet<Sid>, close: bool);

    /// The sockets as other nodes see them in `fetch_sockets`.
    fn remote_sockets(&self, sids: &HashSet<Sid>) -> Vec<RemoteSocket>;

    /// Runs the namespace's handler of a server-side event from another node (`data`
    /// is `[event, ...args]`).
    fn server_event(&self, data: Vec<Value>, ack: Option<ServerAck>);
}
