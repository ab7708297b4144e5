//! A Rust twin of `@socket.io/redis-emitter`: emit to a cluster's sockets from a process
//! that serves none (a job, `rtctl`), in the emitter's exact format (uid `"emitter"`,
//! `lib/index.ts` of socketio/socket.io-redis-emitter).

use super::driver::RedisDriver;
use super::wire::packet_to_wire;
use crate::protocol::cluster::{
    BroadcastFlags, BroadcastMessage, BroadcastOpts, Channels, ClusterPacket, Request, Target,
};
use crate::server::adapter::BroadcastPacket;
use crate::server::Payload;
use serde_json::Value;
use std::sync::Arc;

/// The emitter's uid: nodes never mistake its messages for their own.
pub const EMITTER_UID: &str = "emitter";

/// Emits to one namespace of a cluster. Chain `to` / `except`, then `emit`.
#[derive(Clone)]
pub struct Emitter {
    driver: Arc<dyn RedisDriver>,
    nsp: String,
    channels: Channels,
    opts: BroadcastOpts,
}

impl Emitter {
    /// An emitter for namespace `nsp` with channel prefix `key` (`socket.io` by default
    /// in every Node component).
    pub fn new(driver: Arc<dyn RedisDriver>, key: &str, nsp: &str) -> Self {
        let nsp = if nsp.starts_with('/') {
            nsp.to_owned()
        } else {
            format!("/{nsp}")
        };
        Emitter {
            driver,
            channels: Channels::new(key, &nsp),
            nsp,
            opts: BroadcastOpts {
                rooms: Vec::new(),
                except: Vec::new(),
                flags: Some(BroadcastFlags::default()),
            },
        }
    }

    pub fn to(mut self, room: &str) -> Self {
        if !self.opts.rooms.iter().any(|r| r == room) {
            self.opts.rooms.push(room.to_owned());
        }
        self
    }

    pub fn except(mut self, room: &str) -> Self {
        if !self.opts.except.iter().any(|r| r == room) {
            self.opts.except.push(room.to_owned());
        }
        self
    }

    /// Publishes the event; every node delivers it to its matching sockets.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) {
        let packet = BroadcastPacket::event(event, payload.into());
        self.publish_broadcast(packet_to_wire(&self.nsp, &packet));
    }

    fn publish_broadcast(&self, packet: ClusterPacket) {
        let msg = BroadcastMessage {
            uid: EMITTER_UID.to_owned(),
            packet,
            opts: self.opts.clone(),
        };
        self.driver.publish(
            self.channels.for_rooms(&self.opts.rooms),
            msg.encode_as_emitter(),
        );
    }

    fn targets(&self) -> Target {
        Target::Opts(BroadcastOpts {
            flags: None,
            ..self.opts.clone()
        })
    }

    pub fn sockets_join(&self, rooms: &[&str]) {
        let r = Request::RemoteJoin {
            uid: None,
            request_id: None,
            target: self.targets(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
        };
        self.driver
            .publish(self.channels.request.clone(), r.encode());
    }

    pub fn sockets_leave(&self, rooms: &[&str]) {
        let r = Request::RemoteLeave {
            uid: None,
            request_id: None,
            target: self.targets(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
        };
        self.driver
            .publish(self.channels.request.clone(), r.encode());
    }

    pub fn disconnect_sockets(&self, close: bool) {
        let r = Request::RemoteDisconnect {
            uid: None,
            request_id: None,
            target: self.targets(),
            close,
        };
        self.driver
            .publish(self.channels.request.clone(), r.encode());
    }

    /// A server-side event to every node (no acknowledgements, as in the emitter).
    pub fn server_side_emit(&self, event: &str, args: Vec<Value>) {
        let mut data = vec![Value::String(event.to_owned())];
        data.extend(args);
        let r = Request::ServerSideEmit {
            uid: Some(EMITTER_UID.to_owned()),
            request_id: None,
            data,
        };
        self.driver
            .publish(self.channels.request.clone(), r.encode());
    }
}
