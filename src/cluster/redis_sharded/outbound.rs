//! What this node sends: the [`Adapter`] methods, as `ClusterAdapter` implements them —
//! publish (unless `local`), then act on local sockets; requests count the nodes first.

use super::requests::Kind;
use super::{random_id, RedisShardedAdapter};
use crate::cluster::wire::{opts_to_wire, remote_socket_from_wire, rooms_to_wire};
use crate::protocol::cluster_adapter::Body;
use crate::server::adapter::{
    AckSink, Adapter, AdapterError, BroadcastOptions, BroadcastPacket, LocalAdapter, RemoteSocket,
};
use crate::server::{BoxFuture, Room};
use crate::sid::Sid;
use crate::sync::MutexExt as _;
use serde_json::Value;
use std::time::Duration;

impl Adapter for RedisShardedAdapter {
    fn local(&self) -> &LocalAdapter {
        &self.local
    }

    fn own_room(&self, sid: Sid, present: bool) {
        self.room_channels.own_room(sid, present)
    }

    fn broadcast(&self, packet: BroadcastPacket, opts: &BroadcastOptions) -> usize {
        if !opts.is_local() {
            let body = Body::Broadcast {
                packet: packet.data.clone(),
                opts: opts_to_wire(opts),
                request_id: None,
            };
            self.publish(&self.message(body, packet.binary.clone()));
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
            self.ack_requests
                .lock_unpoisoned()
                .insert(request_id.clone(), sink.clone());
            let body = Body::Broadcast {
                packet: packet.data.clone(),
                opts: opts_to_wire(opts),
                request_id: Some(request_id.clone()),
            };
            self.publish(&self.message(body, packet.binary.clone()));
            // As Node: no way to know when every remote answer is in; forget the request
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
        if !opts.is_local() {
            let body = Body::SocketsJoin {
                opts: opts_to_wire(opts),
                rooms: rooms_to_wire(rooms),
            };
            self.publish(&self.message(body, Vec::new()));
        }
        self.local.add_sockets(opts, rooms)
    }

    fn del_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        if !opts.is_local() {
            let body = Body::SocketsLeave {
                opts: opts_to_wire(opts),
                rooms: rooms_to_wire(rooms),
            };
            self.publish(&self.message(body, Vec::new()));
        }
        self.local.del_sockets(opts, rooms)
    }

    fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        if !opts.is_local() {
            let body = Body::DisconnectSockets {
                opts: opts_to_wire(opts),
                close,
            };
            self.publish(&self.message(body, Vec::new()));
        }
        self.local.disconnect_sockets(opts, close)
    }

    fn fetch_sockets(
        &self,
        opts: &BroadcastOptions,
    ) -> BoxFuture<Result<Vec<RemoteSocket>, AdapterError>> {
        let local = self.local.fetch_sockets(opts);
        if opts.is_local() {
            return Box::pin(async move { Ok(local) });
        }
        // `opts.flags.timeout || DEFAULT_TIMEOUT`
        let timeout = opts.flags.timeout.unwrap_or(self.requests_timeout);
        let wire = opts_to_wire(opts);
        let others = self.ask_others(Kind::FetchSockets, timeout, |request_id| {
            Body::FetchSockets {
                opts: wire,
                request_id,
            }
        });
        Box::pin(async move {
            let mut all = local;
            let remote = others.await?;
            all.extend(remote.into_iter().filter_map(remote_socket_from_wire));
            Ok(all)
        })
    }

    fn server_side_emit(&self, data: Vec<Value>) {
        let body = Body::ServerSideEmit {
            request_id: None,
            packet: data,
        };
        self.publish(&self.message(body, Vec::new()));
    }

    fn server_side_emit_with_ack(
        &self,
        data: Vec<Value>,
    ) -> BoxFuture<Result<Vec<Value>, AdapterError>> {
        self.ask_others(Kind::ServerSideEmit, self.requests_timeout, |request_id| {
            Body::ServerSideEmit {
                request_id: Some(request_id),
                packet: data,
            }
        })
    }

    /// `PUBSUB SHARDNUMSUB <prefix>#<nsp>#`; 1 (this node) when Redis does not answer.
    fn server_count(&self) -> BoxFuture<usize> {
        let f = self.shard_num_sub();
        Box::pin(async move { f.await.unwrap_or(1).max(1) })
    }

    /// `close`: SUNSUBSCRIBE the namespace, response and room channels.
    fn close(&self) {
        let mut channels = vec![self.channels.main.clone(), self.channels.response.clone()];
        channels.extend(self.room_channels.take_all());
        self.driver.sunsubscribe(channels);
    }
}
