//! Emitting to many sockets: `to(room)`, `except(room)`, the whole namespace — through the
//! namespace's adapter, so the same call reaches every node of a cluster.

use super::adapter::{AckEvent, AdapterError, BroadcastOptions, BroadcastPacket, RemoteSocket};
use super::namespace::Namespace;
use super::payload::Payload;
use super::Room;
use crate::sid::Sid;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The default wait of [`BroadcastOperator::emit_with_ack`] without `.timeout()`.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Chooses the receivers of an emit. Built by [`Namespace::to`] or
/// [`super::Socket::to`]; [`BroadcastOperator::emit`] sends. Mirrors socket.io's
/// `BroadcastOperator`: rooms, except-rooms and flags, handed to the adapter as-is.
#[derive(Clone)]
pub struct BroadcastOperator {
    ns: Arc<Namespace>,
    opts: BroadcastOptions,
}

/// A broadcast with acknowledgements that did not get every answer in time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("operation has timed out ({} answers arrived)", responses.len())]
pub struct BroadcastAckTimeout {
    /// The answers that did arrive.
    pub responses: Vec<Payload>,
}

impl BroadcastOperator {
    /// Targets every socket of `ns`, on every node; narrow it with [`Self::to`],
    /// [`Self::except`] or [`Self::local`].
    pub fn new(ns: Arc<Namespace>) -> Self {
        BroadcastOperator {
            ns,
            opts: BroadcastOptions::default(),
        }
    }

    /// Adds a target room (a socket id works as a room). No rooms means everyone.
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        let room: Room = room.into();
        if !self.opts.rooms.contains(&room) {
            self.opts.rooms.push(room);
        }
        self
    }

    /// Excludes the members of `room`.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        let room: Room = room.into();
        if !self.opts.except.contains(&room) {
            self.opts.except.push(room);
        }
        self
    }

    /// Only this node's sockets (Node's `.local`).
    pub fn local(mut self) -> Self {
        self.opts.flags.local = true;
        self
    }

    /// Node's `.volatile` flag (carried to other nodes; every send here is already
    /// dropped rather than queued without bound for a slow client).
    pub fn volatile(mut self) -> Self {
        self.opts.flags.volatile = true;
        self
    }

    /// How long [`BroadcastOperator::emit_with_ack`] waits.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.flags.timeout = Some(timeout);
        self
    }

    /// Excludes one socket: Node's `socket.to(room)` puts the socket's own-id room in
    /// `except`, and so does the wire format.
    pub(crate) fn except_socket(self, sid: Sid) -> Self {
        self.except(sid.as_str())
    }

    /// What this operator targets, as the adapter receives it.
    pub fn options(&self) -> &BroadcastOptions {
        &self.opts
    }

    /// The socket ids this operator targets on this node.
    pub fn socket_ids(&self) -> HashSet<Sid> {
        self.ns.adapter().local().socket_ids(&self.opts)
    }

    /// Sends the event to every target, on every node; returns how many sockets of this
    /// node it was queued for. The packet is encoded once, whatever the number of
    /// receivers, and other nodes are told in the background (never waits for Redis).
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> usize {
        let packet = BroadcastPacket::event(event, payload.into());
        self.ns
            .metrics
            .broadcast(self.ns.adapter().broadcast(packet, &self.opts))
    }

    /// Sends the event and waits for every targeted client's acknowledgement, on every
    /// node (Node's `emitWithAck` on a broadcast). Each answer is the client's ack
    /// arguments; answers from other nodes carry the first argument only, as Node's
    /// adapter forwards it. Fails with the answers so far when `.timeout()` (default
    /// 5 s) passes first.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
    ) -> Result<Vec<Payload>, BroadcastAckTimeout> {
        let mut opts = self.opts.clone();
        let timeout = *opts.flags.timeout.get_or_insert(DEFAULT_ACK_TIMEOUT);
        let packet = BroadcastPacket::event(event, payload.into());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let adapter = self.ns.adapter().clone();
        let local_only = opts.is_local();
        adapter.broadcast_with_ack(packet, &opts, timeout, tx);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut responses = Vec::new();
        let collect = async {
            let expected_servers = if local_only {
                1
            } else {
                adapter.server_count().await
            };
            let (mut servers, mut clients) = (0usize, 0usize);
            loop {
                if servers >= expected_servers && responses.len() >= clients {
                    return;
                }
                match rx.recv().await {
                    Some(AckEvent::ClientCount(n)) => {
                        servers += 1;
                        clients += n;
                    }
                    Some(AckEvent::Ack(p)) => responses.push(p),
                    None => return,
                }
            }
        };
        match tokio::time::timeout_at(deadline, collect).await {
            Ok(()) => Ok(responses),
            Err(_) => Err(BroadcastAckTimeout { responses }),
        }
    }

    /// The targeted sockets on every node (Node's `fetchSockets`).
    pub async fn fetch_sockets(&self) -> Result<Vec<RemoteSocket>, AdapterError> {
        self.ns.adapter().fetch_sockets(&self.opts).await
    }

    /// Makes every targeted socket, on every node, join `room`.
    pub fn sockets_join(&self, room: impl Into<Room>) {
        self.ns.adapter().add_sockets(&self.opts, &[room.into()]);
    }

    /// Makes every targeted socket, on every node, leave `room`.
    pub fn sockets_leave(&self, room: impl Into<Room>) {
        self.ns.adapter().del_sockets(&self.opts, &[room.into()]);
    }

    /// Disconnects every targeted socket, on every node.
    pub fn disconnect_sockets(&self, close: bool) {
        self.ns.adapter().disconnect_sockets(&self.opts, close);
    }
}
