//! What this node does with other nodes' messages (`ClusterAdapter.onMessage`): stream
//! entries (broadcasts, joins, leaves, disconnects, with the entry id as offset) and
//! pub/sub requests and responses — and the local part of its own stream writes.

use super::outbox::Local;
use super::restoring::Origin;
use super::RedisStreamsAdapter;
use crate::cluster::wire::{opts_from_wire, remote_socket_to_wire};
use crate::protocol::cluster::BroadcastOpts;
use crate::protocol::cluster_streams::{private_channel, Body, Message, StreamEntry};
use crate::server::adapter::{AckEvent, BroadcastPacket, ServerAck};
use crate::server::{Payload, Room};
use crate::sync::{MutexExt as _, RwLockExt as _};
use bytes::Bytes;
use serde_json::Value;

impl RedisStreamsAdapter {
    /// An entry of this namespace read from the stream. Our own entries: with recovery
    /// on, their local parts are applied here, at their place in the stream; with it
    /// off, they were applied when written.
    pub(super) async fn on_entry(&self, entry: &StreamEntry) {
        if entry.field("uid") == Some(self.uid.as_str()) {
            if self.recovering() {
                for (id, local) in self.own_order.claim(&entry.id).await {
                    self.apply_local(local, Some((&id, Origin::Own)));
                }
            }
            return;
        }
        match Message::from_entry(entry) {
            Ok(message) => self.handle(message, Some(&entry.id)),
            Err(e) => {
                tracing::debug!(error = %e, id = %entry.id, "ignoring malformed stream entry")
            }
        }
    }

    /// A message from another node; `offset` is its entry id when read from the stream.
    pub(super) fn handle(&self, message: Message, offset: Option<&str>) {
        if message.uid == self.uid {
            return;
        }
        let from = message.uid;
        let attachments = message.attachments;
        match message.body {
            Body::Broadcast {
                packet,
                opts,
                request_id: None,
            } => {
                let packet = BroadcastPacket {
                    data: packet,
                    binary: attachments,
                };
                let offset = offset.map(|id| (id, Origin::Stream));
                self.apply_local(Local::Broadcast(packet, opts_from_wire(opts)), offset);
            }
            Body::Broadcast {
                packet,
                opts,
                request_id: Some(id),
            } => self.remote_broadcast_with_ack(&from, id, packet, attachments, opts),
            Body::SocketsJoin { opts, rooms } => {
                self.apply_local(Local::Join(opts_from_wire(opts), rooms_of(rooms)), None)
            }
            Body::SocketsLeave { opts, rooms } => {
                self.apply_local(Local::Leave(opts_from_wire(opts), rooms_of(rooms)), None)
            }
            Body::DisconnectSockets { opts, close } => {
                self.apply_local(Local::Disconnect(opts_from_wire(opts), close), None)
            }
            Body::FetchSockets { opts, request_id } => {
                let sockets = self
                    .local
                    .fetch_sockets(&opts_from_wire(opts))
                    .iter()
                    .map(remote_socket_to_wire)
                    .collect();
                let body = Body::FetchSocketsResponse {
                    request_id,
                    sockets,
                };
                self.respond(&from, body, Vec::new());
            }
            Body::ServerSideEmit { request_id, packet } => {
                let ack = request_id.map(|id| self.server_ack(&from, id));
                self.local.server_event(packet, ack);
            }
            response => self.on_response(response, attachments),
        }
    }

    /// Acts on this node's sockets. With recovery on, a broadcast with an entry id
    /// (`offset`, and who applies it) is stamped with it first when socket.io would
    /// store it (`addOffsetIfNecessary`: an EVENT without ack id — all broadcasts here —
    /// that is not volatile), and delivered under the restore gate, leaving out the
    /// restored sockets that had it replayed (`restoring`).
    pub(super) fn apply_local(&self, local: Local, offset: Option<(&str, Origin)>) {
        match local {
            Local::Done => {}
            Local::Broadcast(mut packet, mut opts) => {
                let Some((id, origin)) = offset.filter(|_| self.recovering()) else {
                    self.local.broadcast(packet, &opts);
                    return;
                };
                let _not_attaching = self.restore_gate.read_unpoisoned();
                let replayed_to = self
                    .delivery
                    .lock_unpoisoned()
                    .applying(id, origin, &packet, &opts);
                opts.except
                    .extend(replayed_to.iter().map(|sid| Room::from(sid.as_str())));
                if !opts.flags.volatile {
                    packet.push_arg(Value::String(id.to_owned()));
                }
                self.local.broadcast(packet, &opts);
            }
            Local::Join(opts, rooms) => self.local.add_sockets(&opts, &rooms),
            Local::Leave(opts, rooms) => self.local.del_sockets(&opts, &rooms),
            Local::Disconnect(opts, close) => self.local.disconnect_sockets(&opts, close),
        }
    }

    /// Answers `requester` on its private channel.
    fn respond(&self, requester: &str, body: Body, attachments: Vec<Bytes>) {
        let channel = private_channel(&self.options().channel_prefix, &self.nsp, requester);
        self.publish(channel, &self.message(body, attachments));
    }

    /// The acknowledgement of a server-side event that asked for one: its first call
    /// answers (SERVER_SIDE_EMIT_RESPONSE), as Node's callback.
    fn server_ack(&self, requester: &str, request_id: String) -> ServerAck {
        let pubsub = self.shared.pubsub.clone();
        let channel = private_channel(&self.options().channel_prefix, &self.nsp, requester);
        let (uid, nsp) = (self.uid.clone(), self.nsp.clone());
        Box::new(move |packet: Value| {
            let message = Message {
                uid,
                nsp,
                body: Body::ServerSideEmitResponse { request_id, packet },
                attachments: Vec::new(),
            };
            pubsub.publish(channel, message.encode_msgpack());
        })
    }

    /// A broadcast with acknowledgements from another node: send to our sockets, then
    /// report our client count and each client's answer to the requester.
    fn remote_broadcast_with_ack(
        &self,
        requester: &str,
        request_id: String,
        packet: Value,
        attachments: Vec<Bytes>,
        opts: BroadcastOpts,
    ) {
        let opts = opts_from_wire(opts);
        let timeout = opts
            .flags
            .timeout
            .unwrap_or(self.options().requests_timeout);
        let packet = BroadcastPacket {
            data: packet,
            binary: attachments,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.local.broadcast_with_ack(&packet, &opts, timeout, tx);
        let pubsub = self.shared.pubsub.clone();
        let channel = private_channel(&self.options().channel_prefix, &self.nsp, requester);
        let (uid, nsp) = (self.uid.clone(), self.nsp.clone());
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let request_id = request_id.clone();
                let (body, attachments) = match event {
                    AckEvent::ClientCount(n) => (
                        Body::BroadcastClientCount {
                            request_id,
                            client_count: n as u64,
                        },
                        Vec::new(),
                    ),
                    // Node's ack callback forwards the client's first argument.
                    AckEvent::Ack(p) => (
                        Body::BroadcastAck {
                            request_id,
                            packet: p.args.first().cloned().unwrap_or(Value::Null),
                        },
                        p.binary,
                    ),
                };
                let message = Message {
                    uid: uid.clone(),
                    nsp: nsp.clone(),
                    body,
                    attachments,
                };
                pubsub.publish(channel.clone(), message.encode_msgpack());
            }
        });
    }

    /// An answer to one of our requests (`onResponse`).
    fn on_response(&self, body: Body, attachments: Vec<Bytes>) {
        let Some(id) = body.request_id().map(str::to_owned) else {
            return;
        };
        match body {
            Body::BroadcastClientCount { client_count, .. } => {
                if let Some(sink) = self.ack_requests.lock_unpoisoned().get(&id) {
                    let _ = sink.send(AckEvent::ClientCount(client_count as usize));
                }
            }
            Body::BroadcastAck { packet, .. } => {
                if let Some(sink) = self.ack_requests.lock_unpoisoned().get(&id) {
                    let _ = sink.send(AckEvent::Ack(Payload {
                        args: vec![packet],
                        binary: attachments,
                    }));
                }
            }
            Body::FetchSocketsResponse { sockets, .. } => self.on_answer(&id, sockets),
            Body::ServerSideEmitResponse { packet, .. } => self.on_answer(&id, vec![packet]),
            _ => {}
        }
    }
}

fn rooms_of(rooms: Vec<String>) -> Vec<Room> {
    rooms.into_iter().map(Room::from).collect()
}
