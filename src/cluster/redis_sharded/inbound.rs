//! What this node does with other nodes' messages: `ClusterAdapter.onMessage` (act on
//! local sockets, answer requests) and `onResponse` (answers to our requests).

use super::{publish_response, RedisShardedAdapter};
use crate::cluster::wire::{opts_from_wire, remote_socket_to_wire};
use crate::protocol::cluster::BroadcastOpts;
use crate::protocol::cluster_adapter::{Body, Message};
use crate::server::adapter::{AckEvent, BroadcastPacket, ServerAck};
use crate::server::{Payload, Room};
use crate::sync::MutexExt as _;
use bytes::Bytes;
use serde_json::Value;

impl RedisShardedAdapter {
    /// `onMessage`: a message on the namespace channel or a room channel. Our own come
    /// back from Redis and are skipped; answers that arrive here are answers still.
    pub(super) fn on_cluster_message(&self, message: Message) {
        if message.uid == self.uid {
            return;
        }
        let kind = match message.body.request_id() {
            Some(_) => "request",
            None => "broadcast",
        };
        crate::metrics::cluster().received_of(kind);
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
                self.local.broadcast(packet, &opts_from_wire(opts));
            }
            Body::Broadcast {
                packet,
                opts,
                request_id: Some(id),
            } => self.remote_broadcast_with_ack(&from, id, packet, attachments, opts),
            Body::SocketsJoin { opts, rooms } => self
                .local
                .add_sockets(&opts_from_wire(opts), &rooms_of(rooms)),
            Body::SocketsLeave { opts, rooms } => self
                .local
                .del_sockets(&opts_from_wire(opts), &rooms_of(rooms)),
            Body::DisconnectSockets { opts, close } => {
                self.local.disconnect_sockets(&opts_from_wire(opts), close)
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
            // No heartbeats in this adapter: ClusterAdapter logs them as unknown.
            Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => {}
            body => self.answer(body, attachments),
        }
    }

    /// `onResponse`: a message on our response channel.
    pub(super) fn on_response(&self, message: Message) {
        crate::metrics::cluster().received_of("response");
        self.answer(message.body, message.attachments);
    }

    /// Answers `requester` on its response channel.
    fn respond(&self, requester: &str, body: Body, attachments: Vec<Bytes>) {
        let message = self.message(body, attachments);
        publish_response(&*self.driver, &self.channels, requester, &message);
    }

    /// The acknowledgement of a server-side event that asked for one: its first call
    /// answers (SERVER_SIDE_EMIT_RESPONSE), as Node's callback.
    fn server_ack(&self, requester: &str, request_id: String) -> ServerAck {
        let (driver, channels) = (self.driver.clone(), self.channels.clone());
        let (uid, nsp, requester) = (self.uid.clone(), self.nsp.clone(), requester.to_owned());
        Box::new(move |packet: Value| {
            let message = Message {
                uid,
                nsp,
                body: Body::ServerSideEmitResponse { request_id, packet },
                attachments: Vec::new(),
            };
            publish_response(&*driver, &channels, &requester, &message);
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
        let timeout = opts.flags.timeout.unwrap_or(self.requests_timeout);
        let packet = BroadcastPacket {
            data: packet,
            binary: attachments,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.local.broadcast_with_ack(&packet, &opts, timeout, tx);
        let (driver, channels) = (self.driver.clone(), self.channels.clone());
        let (uid, nsp, requester) = (self.uid.clone(), self.nsp.clone(), requester.to_owned());
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
                publish_response(&*driver, &channels, &requester, &message);
            }
        });
    }

    /// An answer to one of our requests.
    fn answer(&self, body: Body, attachments: Vec<Bytes>) {
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
