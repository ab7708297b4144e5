//! What this node sends: the [`Adapter`] methods. Each acts on this node's sockets
//! first (from memory, never waiting for Redis), then tells the other nodes unless the
//! operation is `.local()`.

use super::super::wire::{
    opts_to_wire, packet_to_wire, remote_socket_from_wire, rooms_to_wire, targets_to_wire,
};
use super::{random_id, RedisAdapter};
use crate::protocol::cluster::{BroadcastMessage, Request, RequestType, Target};
use crate::server::adapter::{
    AckSink, Adapter, AdapterError, BroadcastOptions, BroadcastPacket, LocalAdapter, RemoteSocket,
};
use crate::server::{BoxFuture, Room};
use crate::sync::MutexExt as _;
use serde_json::Value;
use std::time::Duration;

impl Adapter for RedisAdapter {
    fn local(&self) -> &LocalAdapter {
        &self.local
    }

    fn broadcast(&self, packet: BroadcastPacket, opts: &BroadcastOptions) -> usize {
        if !opts.is_local() {
            let msg = BroadcastMessage {
                uid: self.uid.clone(),
                packet: packet_to_wire(&self.nsp, &packet),
                opts: opts_to_wire(opts),
            };
            let channel = self.channels.for_rooms(&msg.opts.rooms);
            self.driver.publish(channel, msg.encode());
        }
        self.local.broadcast(packet, opts)
    }

    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        opts: &BroadcastOptions,
        timeout: Duration,
        sink: AckSink,
    ) {
        if !opts.is_local() {
            let request_id = random_id();
            let request = Request::Broadcast {
                uid: Some(self.uid.clone()),
                request_id: request_id.clone(),
                packet: packet_to_wire(&self.nsp, &packet),
                opts: opts_to_wire(opts),
            };
            self.ack_requests
                .lock_unpoisoned()
                .insert(request_id.clone(), sink.clone());
            self.publish_request(request);
            // Node cannot know when every remote answer is in either: forget the request
            // after the broadcast's timeout.
            let acks = self.ack_requests.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                acks.lock_unpoisoned().remove(&request_id);
            });
        }
        self.local.broadcast_with_ack(&packet, opts, timeout, sink)
    }

    fn add_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        self.local.add_sockets(opts, rooms);
        if !opts.is_local() {
            self.publish_request(Request::RemoteJoin {
                uid: Some(self.uid.clone()),
                request_id: None,
                target: Target::Opts(targets_to_wire(opts)),
                rooms: rooms_to_wire(rooms),
            });
        }
    }

    fn del_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        self.local.del_sockets(opts, rooms);
        if !opts.is_local() {
            self.publish_request(Request::RemoteLeave {
                uid: Some(self.uid.clone()),
                request_id: None,
                target: Target::Opts(targets_to_wire(opts)),
                rooms: rooms_to_wire(rooms),
            });
        }
    }

    fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        if !opts.is_local() {
            self.publish_request(Request::RemoteDisconnect {
                uid: Some(self.uid.clone()),
                request_id: None,
                target: Target::Opts(targets_to_wire(opts)),
                close,
            });
        }
        self.local.disconnect_sockets(opts, close);
    }

    fn fetch_sockets(
        &self,
        opts: &BroadcastOptions,
    ) -> BoxFuture<Result<Vec<RemoteSocket>, AdapterError>> {
        let local = self.local.fetch_sockets(opts);
        if opts.is_local() {
            return Box::pin(async move { Ok(local) });
        }
        let uid = self.uid.clone();
        let others = self.ask_others(RequestType::RemoteFetch, |request_id| {
            Request::RemoteFetch {
                uid: Some(uid),
                request_id,
                opts: targets_to_wire(opts),
            }
        });
        Box::pin(async move {
            let mut all = local;
            all.extend(
                others
                    .await?
                    .into_iter()
                    .filter_map(remote_socket_from_wire),
            );
            Ok(all)
        })
    }

    fn all_rooms(&self) -> BoxFuture<Result<Vec<Room>, AdapterError>> {
        let local = self.local.all_rooms();
        let uid = self.uid.clone();
        let others = self.ask_others(RequestType::AllRooms, |request_id| Request::AllRooms {
            uid: Some(uid),
            request_id,
        });
        Box::pin(async move {
            let mut rooms = local;
            for r in others.await?.iter().filter_map(Value::as_str) {
                let r = Room::from(r);
                if !rooms.contains(&r) {
                    rooms.push(r);
                }
            }
            Ok(rooms)
        })
    }

    fn server_side_emit(&self, data: Vec<Value>) {
        self.publish_request(Request::ServerSideEmit {
            uid: Some(self.uid.clone()),
            request_id: None,
            data,
        });
    }

    fn server_side_emit_with_ack(
        &self,
        data: Vec<Value>,
    ) -> BoxFuture<Result<Vec<Value>, AdapterError>> {
        let uid = self.uid.clone();
        self.ask_others(RequestType::ServerSideEmit, |request_id| {
            Request::ServerSideEmit {
                uid: Some(uid),
                request_id: Some(request_id),
                data,
            }
        })
    }

    fn server_count(&self) -> BoxFuture<usize> {
        let f = self.num_sub();
        Box::pin(async move { f.await.unwrap_or(1).max(1) })
    }
}
