//! The dynamic subscription modes: a node listens on `<prefix>#<nsp>#<room>#` while it
//! has the room (`create-room` → SSUBSCRIBE, `delete-room` → SUNSUBSCRIBE), for public
//! rooms in `dynamic` mode and for every room, sockets' own ids included, in
//! `dynamic-private`.

use crate::cluster::driver::MessageSink;
use crate::cluster::sharded_driver::ShardedDriver;
use crate::protocol::cluster_sharded::ShardedChannels;
use crate::server::adapter::{RoomEvent, RoomListener, SocketEmitter};
use crate::sid::Sid;
use crate::sync::MutexExt as _;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

/// Which room channels this namespace adapter subscribed, and the means to change that.
/// Cheap to clone: the room listener holds a copy.
#[derive(Clone)]
pub(super) struct RoomChannels {
    driver: Arc<dyn ShardedDriver>,
    channels: ShardedChannels,
    sink: Weak<dyn MessageSink>,
    subscribed: Arc<Mutex<HashSet<String>>>,
}

impl RoomChannels {
    pub(super) fn new(
        driver: Arc<dyn ShardedDriver>,
        channels: ShardedChannels,
        sink: Weak<dyn MessageSink>,
    ) -> Self {
        RoomChannels {
            driver,
            channels,
            sink,
            subscribed: Arc::default(),
        }
    }

    /// The local adapter's room listener: it runs with the room index locked, and only
    /// touches the driver's subscription table (no Redis round trip, no adapter).
    /// `sockets` tells a socket's own-id room (private) from a public one.
    pub(super) fn listener(&self, sockets: Weak<dyn SocketEmitter>) -> RoomListener {
        let me = self.clone();
        Box::new(move |event| match event {
            RoomEvent::Created(room) => {
                let private = Sid::parse(room)
                    .zip(sockets.upgrade())
                    .is_some_and(|(sid, s)| s.has_socket(&sid));
                if me.channels.mode.listens_to_room(private) {
                    me.subscribe(room);
                }
            }
            RoomEvent::Deleted(room) => me.unsubscribe(room),
            RoomEvent::Joined(..) | RoomEvent::Left(..) => {}
        })
    }

    /// A socket's own-id room came (`present`) or went: private rooms have channels in
    /// `dynamic-private` mode only.
    pub(super) fn own_room(&self, sid: Sid, present: bool) {
        if !self.channels.mode.listens_to_room(true) {
            return;
        }
        if present {
            self.subscribe(sid.as_str());
        } else {
            self.unsubscribe(sid.as_str());
        }
    }

    fn subscribe(&self, room: &str) {
        if self.subscribed.lock_unpoisoned().insert(room.to_owned()) {
            self.driver
                .ssubscribe(vec![self.channels.room(room)], self.sink.clone());
        }
    }

    fn unsubscribe(&self, room: &str) {
        if self.subscribed.lock_unpoisoned().remove(room) {
            self.driver.sunsubscribe(vec![self.channels.room(room)]);
        }
    }

    /// Every room channel subscribed now (`close` leaves them all).
    pub(super) fn take_all(&self) -> Vec<String> {
        let rooms = std::mem::take(&mut *self.subscribed.lock_unpoisoned());
        rooms.iter().map(|r| self.channels.room(r)).collect()
    }
}
