//! What other nodes (and emitters) send: broadcasts for this node's sockets, requests
//! to answer, and responses to our own requests.

use super::super::wire::{opts_from_wire, packet_from_wire, remote_socket_to_wire, rooms_to_wire};
use super::RedisAdapter;
use crate::protocol::cluster::{
    BroadcastMessage, BroadcastOpts, ClusterPacket, Request, RequestType, Response, Target,
};
use crate::server::adapter::{AckEvent, BroadcastOptions, ServerAck};
use crate::server::{Payload, Room};
use crate::sid::Sid;
use crate::sync::MutexExt as _;
use serde_json::Value;
use std::collections::HashSet;

impl RedisAdapter {
    /// `onmessage`: a broadcast from another node.
    pub(super) fn on_broadcast(&self, room: &str, payload: &[u8]) {
        // Cheap check first: a room channel nobody here is in — unless this node keeps a
        // replay log, where a broadcast for sockets that are away right now is exactly
        // what a recovering client will ask for.
        if !room.is_empty() && self.local.recovery().is_none() && !self.local.has_room(room) {
            return;
        }
        let msg = match BroadcastMessage::decode(payload) {
            Ok(m) => m,
            Err(e) => return tracing::debug!(error = %e, "ignoring malformed broadcast"),
        };
        if msg.uid == self.uid || msg.packet.nsp != self.nsp {
            return;
        }
        self.local
            .broadcast(packet_from_wire(msg.packet), &opts_from_wire(msg.opts));
    }

    /// `onrequest`: a request from another node or from an emitter.
    pub(super) fn on_request(&self, payload: &[u8]) {
        let request = match Request::decode(payload) {
            Ok(Some(r)) => r,
            Ok(None) => return tracing::debug!("ignoring unknown request type"),
            Err(e) => return tracing::debug!(error = %e, "ignoring malformed request"),
        };
        let own = request.uid() == Some(self.uid.as_str());
        let requester = request.uid().map(str::to_owned);
        let requester = requester.as_deref();
        match request {
            Request::Sockets {
                request_id, rooms, ..
            } => {
                if self.is_own_request(&request_id) {
                    return;
                }
                let opts = BroadcastOptions {
                    rooms: rooms.into_iter().map(Room::from).collect(),
                    ..Default::default()
                };
                let ids: Vec<String> = self
                    .local
                    .socket_ids(&opts)
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect();
                self.publish_response(requester, Response::sockets_ids(&request_id, &ids));
            }
            Request::AllRooms { request_id, .. } => {
                if self.is_own_request(&request_id) {
                    return;
                }
                let rooms = rooms_to_wire(&self.local.all_rooms());
                self.publish_response(requester, Response::all_rooms(&request_id, &rooms));
            }
            Request::RemoteJoin {
                request_id,
                target,
                rooms,
                ..
            } => self.remote_rooms(true, own, requester, request_id, target, rooms),
            Request::RemoteLeave {
                request_id,
                target,
                rooms,
                ..
            } => self.remote_rooms(false, own, requester, request_id, target, rooms),
            Request::RemoteDisconnect {
                request_id,
                target,
                close,
                ..
            } => self.remote_disconnect(own, requester, request_id, target, close),
            Request::RemoteFetch {
                request_id, opts, ..
            } => {
                if self.is_own_request(&request_id) {
                    return;
                }
                let sockets = self
                    .local
                    .fetch_sockets(&opts_from_wire(opts))
                    .iter()
                    .map(remote_socket_to_wire)
                    .collect();
                self.publish_response(requester, Response::fetched(&request_id, sockets));
            }
            Request::ServerSideEmit {
                request_id, data, ..
            } => {
                if !own {
                    self.local.server_event(data, self.server_ack(request_id));
                }
            }
            Request::Broadcast {
                request_id,
                packet,
                opts,
                ..
            } => self.remote_broadcast_with_ack(requester, request_id, packet, opts),
        }
    }

    /// The acknowledgement of a server-side event that asked for one. The answer goes to
    /// the shared response channel, as Node's callback publishes it (not through
    /// publishResponse).
    fn server_ack(&self, request_id: Option<String>) -> Option<ServerAck> {
        request_id.map(|id| {
            let driver = self.driver.clone();
            let channel = self.channels.response.clone();
            Box::new(move |arg: Value| {
                driver.publish(channel, Response::server_side_emit(&id, &arg));
            }) as ServerAck
        })
    }

    /// This node's sockets of a per-socket request (older nodes name one `sid`).
    fn socket_set(&self, sid: &str) -> Option<HashSet<Sid>> {
        let sid = Sid::parse(sid)?;
        let sockets = self.local.sockets()?;
        sockets.has_socket(&sid).then(|| HashSet::from([sid]))
    }

    /// REMOTE_JOIN / REMOTE_LEAVE: by options (8.x, no answer) or for one socket (older
    /// nodes, answered with `{requestId}`).
    fn remote_rooms(
        &self,
        join: bool,
        own: bool,
        requester: Option<&str>,
        request_id: Option<String>,
        target: Target,
        rooms: Vec<String>,
    ) {
        let rooms: Vec<Room> = rooms.into_iter().map(Room::from).collect();
        match target {
            Target::Opts(_) if own => {} // applied when we sent it
            Target::Opts(opts) if join => self.local.add_sockets(&opts_from_wire(opts), &rooms),
            Target::Opts(opts) => self.local.del_sockets(&opts_from_wire(opts), &rooms),
            Target::Socket(sid) => {
                let (Some(sids), Some(sockets)) = (self.socket_set(&sid), self.local.sockets())
                else {
                    return;
                };
                if join {
                    sockets.join_many(&sids, &rooms)
                } else {
                    sockets.leave_many(&sids, &rooms)
                }
                if let Some(id) = request_id {
                    self.publish_response(requester, Response::done(&id));
                }
            }
        }
    }

    /// REMOTE_DISCONNECT: by options (8.x) or for one socket (older nodes, answered).
    fn remote_disconnect(
        &self,
        own: bool,
        requester: Option<&str>,
        request_id: Option<String>,
        target: Target,
        close: bool,
    ) {
        match target {
            Target::Opts(_) if own => {} // applied when we sent it
            Target::Opts(opts) => self.local.disconnect_sockets(&opts_from_wire(opts), close),
            Target::Socket(sid) => {
                let (Some(sids), Some(sockets)) = (self.socket_set(&sid), self.local.sockets())
                else {
                    return;
                };
                sockets.disconnect_many(&sids, close);
                if let Some(id) = request_id {
                    self.publish_response(requester, Response::done(&id));
                }
            }
        }
    }

    /// BROADCAST with acknowledgements from another node: send to our sockets, then
    /// report our client count and each answer back to the requester.
    fn remote_broadcast_with_ack(
        &self,
        requester: Option<&str>,
        request_id: String,
        packet: ClusterPacket,
        opts: BroadcastOpts,
    ) {
        if self
            .ack_requests
            .lock_unpoisoned()
            .contains_key(&request_id)
        {
            return; // our own
        }
        let opts = opts_from_wire(opts);
        let timeout = opts.flags.timeout.unwrap_or(self.options.requests_timeout);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.local
            .broadcast_with_ack(&packet_from_wire(packet), &opts, timeout, tx);
        let driver = self.driver.clone();
        let channel = self.response_channel(requester);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let bytes = match event {
                    AckEvent::ClientCount(n) => Response::client_count(&request_id, n as u64),
                    // Node's ack callback takes the client's first argument.
                    AckEvent::Ack(p) => {
                        let first = p.args.first().cloned().unwrap_or(Value::Null);
                        Response::broadcast_ack(&request_id, &first, &p.binary)
                    }
                };
                driver.publish(channel.clone(), bytes);
            }
        });
    }

    /// `onresponse`: an answer to one of our requests.
    pub(super) fn on_response(&self, payload: &[u8]) {
        let response = match Response::decode(payload) {
            Ok(r) => r,
            Err(e) => return tracing::debug!(error = %e, "ignoring malformed response"),
        };
        if let Some(sink) = self
            .ack_requests
            .lock_unpoisoned()
            .get(&response.request_id)
        {
            let event = match response.kind {
                Some(RequestType::BroadcastClientCount) => {
                    AckEvent::ClientCount(response.client_count.unwrap_or(0) as usize)
                }
                Some(RequestType::BroadcastAck) => AckEvent::Ack(Payload {
                    args: vec![response.packet.unwrap_or(Value::Null)],
                    binary: response.attachments,
                }),
                _ => return,
            };
            let _ = sink.send(event);
            return;
        }
        self.on_request_answer(response);
    }
}
