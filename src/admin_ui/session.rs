//! The Admin UI's login sessions, as `@socket.io/admin-ui` keeps them: a login with the
//! right password gets a random 16-hex-digit id (the `session` event), which the page
//! stores and sends instead of the password next time. In a cluster the ids live in
//! Redis under the package's own keys (`socket.io-admin#<id>`, 24 h), so a session made
//! on one node — ours or a Node server's `RedisStore` — is good on every node.

use crate::redis_client::RedisConn;
use crate::sync::MutexExt as _;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The package's `RedisStore` key prefix and session lifetime.
pub const KEY_PREFIX: &str = "socket.io-admin";
pub const SESSION_TTL: Duration = Duration::from_secs(86_400);

/// Where sessions are kept.
pub enum SessionStore {
    /// One node: in memory, each session until its lifetime ends.
    Memory(Mutex<HashMap<String, Instant>>),
    /// A cluster: in Redis, shared with every node.
    Redis(RedisConn),
}

/// A new session id: 8 random bytes as 16 lowercase hex digits (the package's format).
pub fn new_session_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn key(id: &str) -> String {
    format!("{KEY_PREFIX}#{id}")
}

impl SessionStore {
    pub fn new(redis: Option<RedisConn>) -> SessionStore {
        match redis {
            Some(conn) => SessionStore::Redis(conn),
            None => SessionStore::Memory(Mutex::new(HashMap::new())),
        }
    }

    /// Whether `id` is a live session. Redis being away counts as "no": the page then
    /// asks for the password again.
    pub async fn exists(&self, id: &str) -> bool {
        match self {
            SessionStore::Memory(map) => map
                .lock_unpoisoned()
                .get(id)
                .is_some_and(|made| made.elapsed() < SESSION_TTL),
            SessionStore::Redis(conn) => {
                let mut conn = conn.clone();
                conn.exists::<_, bool>(key(id)).await.unwrap_or(false)
            }
        }
    }

    /// Keeps `id` for [`SESSION_TTL`]. A failed Redis write is logged: the session then
    /// only lasts this connection.
    pub async fn save(&self, id: &str) {
        match self {
            SessionStore::Memory(map) => {
                let mut map = map.lock_unpoisoned();
                map.retain(|_, made| made.elapsed() < SESSION_TTL);
                map.insert(id.to_owned(), Instant::now());
            }
            SessionStore::Redis(conn) => {
                let mut conn = conn.clone();
                let saved: redis::RedisResult<()> =
                    conn.set_ex(key(id), 1, SESSION_TTL.as_secs()).await;
                if let Err(e) = saved {
                    tracing::warn!(error = %e, "admin UI: cannot save the login session in Redis");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_are_sixteen_hex_digits_and_kept_in_memory() {
        let id = new_session_id();
        assert_eq!(id.len(), 16);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(id, new_session_id());
        let store = SessionStore::new(None);
        assert!(!store.exists(&id).await);
        store.save(&id).await;
        assert!(store.exists(&id).await);
        assert_eq!(key(&id), format!("socket.io-admin#{id}"));
    }
}
