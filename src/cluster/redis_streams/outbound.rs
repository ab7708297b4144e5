//! What this node sends: the [`Adapter`] methods (`ClusterAdapter`'s). Stream writes
//! go through the outbox (see the module docs of `outbox` for their order), requests and
//! broadcasts with acknowledgements go to the public channel.

use super::outbox::Local;
use super::requests::Kind;
use super::restoring::Ticket;
use super::{random_id, RedisStreamsAdapter};
use crate::cluster::wire::{opts_to_wire as opts_for_wire, remote_socket_from_wire, rooms_to_wire};
use crate::protocol::cluster_streams::Body;
use crate::server::adapter::{
    AckSink, Adapter, AdapterError, BroadcastOptions, BroadcastPacket, LocalAdapter,
    PersistedSession, RecoveredSession, RemoteSocket, Resume,
};
use crate::server::{BoxFuture, Room};
use crate::sid::Sid;
use crate::sync::{MutexExt as _, RwLockExt as _};
use crate::transport::Frame;
use serde_json::Value;
use std::time::Duration;

impl RedisStreamsAdapter {
    /// Writes `body` to the stream; `local` is this node's part. With recovery on it runs
    /// after the XADD (in XADD order, a broadcast stamped with its id); with recovery
    /// off it runs now.
    fn write(&self, body: Body, attachments: Vec<bytes::Bytes>, local: Local) {
        let fields = self.message(body, attachments).to_entry();
        if self.recovering() {
            self.outbox.push(fields, local);
        } else {
            self.apply_local(local, None);
            self.outbox.push(fields, Local::Done);
        }
    }
}

impl Adapter for RedisStreamsAdapter {
    fn local(&self) -> &LocalAdapter {
        &self.local
    }

    fn broadcast(&self, packet: BroadcastPacket, opts: &BroadcastOptions) -> usize {
        if opts.is_local() {
            return self.local.broadcast(packet, opts);
        }
        let body = Body::Broadcast {
            packet: packet.data.clone(),
            opts: opts_for_wire(opts),
            request_id: None,
        };
        let fields = self.message(body, packet.binary.clone()).to_entry();
        if self.recovering() {
            // Delivery waits for the entry id: report the targets it will have.
            let targets = self.local.socket_ids(opts).len();
            self.outbox
                .push(fields, Local::Broadcast(packet, opts.clone()));
            targets
        } else {
            let sent = self.local.broadcast(packet, opts);
            self.outbox.push(fields, Local::Done);
            sent
        }
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
            let body = Body::Broadcast {
                packet: packet.data.clone(),
                opts: opts_for_wire(opts),
                request_id: Some(request_id.clone()),
            };
            self.ack_requests
                .lock_unpoisoned()
                .insert(request_id.clone(), sink.clone());
            self.publish(
                self.public.clone(),
                &self.message(body, packet.binary.clone()),
            );
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
        if opts.is_local() {
            return self.local.add_sockets(opts, rooms);
        }
        let body = Body::SocketsJoin {
            opts: opts_for_wire(opts),
            rooms: rooms_to_wire(rooms),
        };
        self.write(body, Vec::new(), Local::Join(opts.clone(), rooms.to_vec()));
    }

    fn del_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        if opts.is_local() {
            return self.local.del_sockets(opts, rooms);
        }
        let body = Body::SocketsLeave {
            opts: opts_for_wire(opts),
            rooms: rooms_to_wire(rooms),
        };
        self.write(body, Vec::new(), Local::Leave(opts.clone(), rooms.to_vec()));
    }

    fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        if opts.is_local() {
            return self.local.disconnect_sockets(opts, close);
        }
        let body = Body::DisconnectSockets {
            opts: opts_for_wire(opts),
            close,
        };
        self.write(body, Vec::new(), Local::Disconnect(opts.clone(), close));
    }

    fn fetch_sockets(
        &self,
        opts: &BroadcastOptions,
    ) -> BoxFuture<Result<Vec<RemoteSocket>, AdapterError>> {
        let local = self.local.fetch_sockets(opts);
        if opts.is_local() {
            return Box::pin(async move { Ok(local) });
        }
        // `opts.flags.timeout || 5000`
        let timeout = opts
            .flags
            .timeout
            .unwrap_or(self.options().requests_timeout);
        let wire = opts_for_wire(opts);
        let others = self.ask_others(Kind::FetchSockets, timeout, |request_id| {
            Body::FetchSockets {
                opts: wire,
                request_id,
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

    fn server_side_emit(&self, data: Vec<Value>) {
        let body = Body::ServerSideEmit {
            request_id: None,
            packet: data,
        };
        self.publish(self.public.clone(), &self.message(body, Vec::new()));
    }

    fn server_side_emit_with_ack(
        &self,
        data: Vec<Value>,
    ) -> BoxFuture<Result<Vec<Value>, AdapterError>> {
        let timeout = self.options().requests_timeout;
        self.ask_others(Kind::ServerSideEmit, timeout, |request_id| {
            Body::ServerSideEmit {
                request_id: Some(request_id),
                packet: data,
            }
        })
    }

    fn server_count(&self) -> BoxFuture<usize> {
        let f = self.num_sub();
        Box::pin(async move { f.await.unwrap_or(1).max(1) })
    }

    fn persist_session(&self, session: PersistedSession) {
        self.persist(session)
    }

    fn restore_session(
        &self,
        pid: &str,
        offset: &str,
    ) -> BoxFuture<Result<Option<RecoveredSession>, AdapterError>> {
        self.restore(pid, offset)
    }

    fn attach_restored(
        &self,
        sid: &Sid,
        rooms: &[Room],
        resume: Option<Resume>,
        attach: &mut dyn FnMut(),
    ) -> Vec<Vec<Frame>> {
        let ticket = match resume {
            Some(Resume::Ticket(t)) => t.downcast::<Ticket>().ok(),
            _ => None,
        };
        let Some(ticket) = ticket else {
            attach();
            return Vec::new();
        };
        let reader_from = self.shared.reader_from(&self.stream);
        let alone = self.restore_gate.write_unpoisoned();
        attach();
        let late =
            self.delivery
                .lock_unpoisoned()
                .attached(&ticket, *sid, rooms, reader_from.as_deref());
        drop(alone);
        late.into_iter()
            .map(|packet| packet.into_frames(&self.nsp, None))
            .collect()
    }

    fn flush(&self) -> BoxFuture<()> {
        let in_flight = self.in_flight.clone();
        Box::pin(async move { in_flight.idle().await })
    }

    fn close(&self) {
        let mut routes = self.shared.routes.write_unpoisoned();
        if routes
            .get(&self.nsp)
            .is_some_and(|a| std::ptr::eq(a.as_ptr(), self))
        {
            routes.remove(&self.nsp);
        }
    }
}
