//! Presence of a single node (the embedded default): everything in this process's memory.

use super::{
    now_ms, BeatOutcome, Change, ChangeKind, Heartbeat, NodeInfo, Presence, PresenceStore, Result,
    RoomCounts, SocketPresence, UsersPage,
};
use crate::server::BoxFuture;
use crate::sync::MutexExt as _;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, Weak};

/// Presence of a single node, in memory.
#[derive(Default)]
pub struct InProcessPresence {
    users: Mutex<HashMap<String, Vec<SocketPresence>>>,
    presence: OnceLock<Weak<Presence>>,
}

impl InProcessPresence {
    pub(super) fn set_presence(&self, p: Weak<Presence>) {
        let _ = self.presence.set(p);
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<SocketPresence>>> {
        self.users.lock_unpoisoned()
    }

    fn ready<T: Send + 'static>(v: T) -> BoxFuture<Result<T>> {
        Box::pin(async move { Ok(v) })
    }
}

impl PresenceStore for InProcessPresence {
    fn apply(&self, node: &str, changes: &[Change]) -> BoxFuture<Result<Vec<bool>>> {
        let mut users = self.users();
        let flips = changes
            .iter()
            .map(|c| match c.kind {
                ChangeKind::Connected => {
                    // Most users have one socket: no room for four until a second.
                    let sockets = users
                        .entry(c.user.clone())
                        .or_insert_with(|| Vec::with_capacity(1));
                    let first = sockets.is_empty();
                    if !sockets.iter().any(|s| s.sid == c.sid) {
                        sockets.push(SocketPresence {
                            sid: c.sid.clone(),
                            node: node.to_owned(),
                        });
                    }
                    first
                }
                ChangeKind::Disconnected => {
                    let last = users.get_mut(&c.user).is_some_and(|sockets| {
                        sockets.retain(|s| s.sid != c.sid);
                        sockets.is_empty()
                    });
                    if last {
                        users.remove(&c.user);
                    }
                    last
                }
            })
            .collect();
        Self::ready(flips)
    }

    fn heartbeat(&self, _beat: Heartbeat) -> BoxFuture<Result<BeatOutcome>> {
        Self::ready(BeatOutcome::default())
    }

    fn is_online(&self, user: &str) -> BoxFuture<Result<bool>> {
        Self::ready(self.users().contains_key(user))
    }

    fn sockets_of(&self, user: &str) -> BoxFuture<Result<Vec<SocketPresence>>> {
        Self::ready(self.users().get(user).cloned().unwrap_or_default())
    }

    fn online_users(&self, after: Option<&str>, limit: usize) -> BoxFuture<Result<UsersPage>> {
        let mut all: Vec<String> = self
            .users()
            .keys()
            .filter(|u| after.is_none_or(|a| u.as_str() > a))
            .cloned()
            .collect();
        all.sort();
        all.truncate(limit);
        let page = all;
        let next_cursor = (page.len() == limit && limit > 0)
            .then(|| page.last().cloned())
            .flatten();
        Self::ready(UsersPage {
            users: page,
            next_cursor,
        })
    }

    fn online_count(&self) -> BoxFuture<Result<usize>> {
        Self::ready(self.users().len())
    }

    fn nodes(&self) -> BoxFuture<Result<Vec<NodeInfo>>> {
        let now = now_ms();
        let node = self
            .presence
            .get()
            .and_then(Weak::upgrade)
            .map(|p| NodeInfo {
                id: p.node_id.clone(),
                address: p.address.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                connections: p.io.get().map_or(0, |io| io.connection_count() as u64),
                started_at: p.started_at,
                heartbeat_at: now,
                indexed: true,
            });
        Self::ready(node.into_iter().collect())
    }

    fn rooms(&self, namespace: &str) -> BoxFuture<Result<RoomCounts>> {
        let rooms = self
            .presence
            .get()
            .and_then(Weak::upgrade)
            .and_then(|p| p.io.get().and_then(|io| io.of(namespace)))
            .map(|ns| {
                ns.rooms()
                    .into_iter()
                    .map(|(r, n)| (r.to_string(), n))
                    .collect()
            })
            .unwrap_or_default();
        Self::ready(rooms)
    }

    fn namespaces(&self) -> BoxFuture<Result<Vec<String>>> {
        let mut names: Vec<String> = self
            .presence
            .get()
            .and_then(Weak::upgrade)
            .and_then(|p| p.io.get().map(|io| io.namespaces()))
            .unwrap_or_default()
            .iter()
            .map(|ns| ns.name.clone())
            .collect();
        names.sort();
        Self::ready(names)
    }
}
