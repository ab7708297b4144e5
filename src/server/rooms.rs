//! The room index of one namespace on this node: room → member socket ids.
//!
//! A socket's own-id room is not stored: [`super::broadcast`] resolves a room name that
//! is a socket id directly. That saves one set per connection, which at 100k connections
//! is most of what an index like Node's costs.

use super::Room;
use crate::sid::Sid;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

#[derive(Default)]
#[allow(clippy::len_without_is_empty)]
pub struct RoomIndex {
    rooms: RwLock<HashMap<Room, HashSet<Sid>>>,
}

impl RoomIndex {
    pub fn add(&self, room: Room, sid: Sid) {
        self.rooms
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(room)
            .or_default()
            .insert(sid);
    }

    pub fn remove(&self, room: &str, sid: Sid) {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&sid);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Calls `f` with the members of `room` while holding the read lock (no copy).
    pub fn with_members<R>(&self, room: &str, f: impl FnOnce(Option<&HashSet<Sid>>) -> R) -> R {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        f(rooms.get(room))
    }

    /// Room names with their member counts.
    pub fn list(&self) -> Vec<(Room, usize)> {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        rooms.iter().map(|(r, m)| (r.clone(), m.len())).collect()
    }

    pub fn len(&self) -> usize {
        self.rooms.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_rooms_disappear() {
        let idx = RoomIndex::default();
        let (a, b) = (Sid::new(), Sid::new());
        idx.add("r".into(), a);
        idx.add("r".into(), b);
        assert_eq!(idx.list(), vec![("r".into(), 2)]);
        idx.remove("r", a);
        assert_eq!(idx.with_members("r", |m| m.map(|m| m.len())), Some(1));
        idx.remove("r", b);
        assert_eq!(idx.len(), 0);
        idx.remove("nope", a);
    }
}
