//! The room index of one namespace on this node: room → member socket ids.
//!
//! A socket's own-id room is not stored: [`super::LocalAdapter`] resolves a room name
//! that is a socket id directly. That saves one set per connection, which at 100k
//! connections is most of what an index like Node's costs.

use crate::server::Room;
use crate::sid::Sid;
use crate::sync::RwLockExt as _;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// A change of the index, as socket.io-adapter emits it (`create-room`, `join-room`,
/// `leave-room`, `delete-room`). An adapter that subscribes per room (the sharded Redis
/// adapter) follows `Created` / `Deleted`; the admin UI follows `Joined` / `Left`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomEvent<'a> {
    Created(&'a Room),
    Joined(&'a Room, Sid),
    Left(&'a Room, Sid),
    Deleted(&'a Room),
}

/// Hears every [`RoomEvent`], in order. It is called with the index locked — that is
/// what keeps a room's `Deleted` and a new `Created` of the same name in the order they
/// happened — so it must be quick and must not touch the adapter (send to a channel).
pub type RoomListener = Box<dyn Fn(RoomEvent<'_>) + Send + Sync>;

#[derive(Default)]
#[allow(clippy::len_without_is_empty)]
pub struct RoomIndex {
    rooms: RwLock<HashMap<Room, HashSet<Sid>>>,
    listener: Option<RoomListener>,
    /// Bumped by every join and leave: a reader that saw this number has seen the rooms
    /// as they are while it stays the same (presence skips unchanged room snapshots).
    version: AtomicU64,
}

impl RoomIndex {
    /// An index that reports its changes to `listener`.
    pub fn with_listener(listener: RoomListener) -> Self {
        RoomIndex {
            rooms: RwLock::default(),
            listener: Some(listener),
            version: AtomicU64::new(0),
        }
    }

    fn emit(&self, event: RoomEvent<'_>) {
        if let Some(listener) = &self.listener {
            listener(event);
        }
    }

    pub fn add(&self, room: &Room, sid: Sid) {
        let mut rooms = self.rooms.write_unpoisoned();
        let members = match rooms.get_mut(room) {
            Some(members) => members,
            None => {
                self.emit(RoomEvent::Created(room));
                rooms.entry(room.clone()).or_default()
            }
        };
        if members.insert(sid) {
            self.version.fetch_add(1, Ordering::Release);
            self.emit(RoomEvent::Joined(room, sid));
        }
    }

    pub fn remove(&self, room: &str, sid: Sid) {
        let mut rooms = self.rooms.write_unpoisoned();
        let Some(members) = rooms.get_mut(room) else {
            return;
        };
        if !members.remove(&sid) {
            return;
        }
        self.version.fetch_add(1, Ordering::Release);
        if !members.is_empty() {
            if let Some((name, _)) = rooms.get_key_value(room) {
                self.emit(RoomEvent::Left(name, sid));
            }
        } else if let Some((name, _)) = rooms.remove_entry(room) {
            self.emit(RoomEvent::Left(&name, sid));
            self.emit(RoomEvent::Deleted(&name));
        }
    }

    /// Calls `f` with the members of `room` while holding the read lock (no copy).
    pub fn with_members<R>(&self, room: &str, f: impl FnOnce(Option<&HashSet<Sid>>) -> R) -> R {
        let rooms = self.rooms.read_unpoisoned();
        f(rooms.get(room))
    }

    /// Room names with their member counts.
    pub fn list(&self) -> Vec<(Room, usize)> {
        let rooms = self.rooms.read_unpoisoned();
        rooms.iter().map(|(r, m)| (r.clone(), m.len())).collect()
    }

    pub fn len(&self) -> usize {
        self.rooms.read_unpoisoned().len()
    }

    /// Changes so far (see the field).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn empty_rooms_disappear() {
        let idx = RoomIndex::default();
        let (a, b) = (Sid::new(), Sid::new());
        idx.add(&"r".into(), a);
        idx.add(&"r".into(), b);
        assert_eq!(idx.list(), vec![("r".into(), 2)]);
        idx.remove("r", a);
        assert_eq!(idx.with_members("r", |m| m.map(|m| m.len())), Some(1));
        idx.remove("r", b);
        assert_eq!(idx.len(), 0);
        idx.remove("nope", a);
    }

    #[test]
    fn changes_are_reported_in_order_once_each() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let idx = RoomIndex::with_listener(Box::new(move |e| {
            let line = match e {
                RoomEvent::Created(r) => format!("create {r}"),
                RoomEvent::Joined(r, _) => format!("join {r}"),
                RoomEvent::Left(r, _) => format!("leave {r}"),
                RoomEvent::Deleted(r) => format!("delete {r}"),
            };
            log.lock().unwrap().push(line);
        }));
        let (a, b) = (Sid::new(), Sid::new());
        let room: Room = "r".into();
        idx.add(&room, a);
        idx.add(&room, a); // already a member: nothing
        idx.add(&room, b);
        idx.remove("r", a);
        idx.remove("r", a); // not a member any more: nothing
        idx.remove("r", b);
        idx.add(&room, a);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "create r", "join r", "join r", "leave r", "leave r", "delete r", "create r",
                "join r"
            ]
        );
    }
}
