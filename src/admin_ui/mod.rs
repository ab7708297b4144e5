//! The server side of the official Socket.IO Admin UI (`@socket.io/admin-ui` 0.5.1's
//! `instrument()`), so a team keeps that page when it moves to this server, across a
//! cluster of our nodes and Node servers alike.
//!
//! On the UI's namespace (`--admin-ui-namespace`, default `/admin`):
//! - login ([`session`]): the package's basic auth — a bcrypt-checked password gives a
//!   session id (`session` event) the page sends instead next time; sessions in Redis
//!   under the package's keys when the node has Redis, so any node accepts them;
//! - on connect: `config {supportedFeatures}`;
//! - every 2 s, to every UI of the cluster (through the adapter): `server_stats`
//!   ([`stats`]);
//! - the UI's commands ([`commands`]): `emit`, `join`, `leave`, `_disconnect`, acting on
//!   the whole cluster; none with `--admin-ui-readonly`.
//!
//! Production mode costs nothing per event: the per-second figures are sampled from the
//! engine's running totals. Development mode ([`live`]) also streams every socket's
//! connections, rooms and events, and lists the cluster's sockets to each UI.

pub mod commands;
pub mod config;
pub mod live;
pub mod page;
pub mod session;
pub mod stats;

use crate::server::Io;
use crate::server::{ConnectRefusal, NamespaceBuilder, SocketRef};
use config::{AdminUiConfig, Login};
use serde_json::{json, Value};
use session::SessionStore;
use stats::Identity;
use std::sync::{Arc, OnceLock};

/// The message the UI recognises to ask for the password again.
pub const INVALID_CREDENTIALS: &str = "invalid credentials";

/// One node's Admin UI service.
pub struct AdminUi {
    pub config: AdminUiConfig,
    sessions: SessionStore,
    identity: Identity,
    io: OnceLock<Io>,
}

impl AdminUi {
    pub fn new(config: AdminUiConfig, redis: Option<crate::redis_client::RedisConn>) -> Arc<Self> {
        Arc::new(AdminUi {
            identity: Identity::new(config.server_id.clone()),
            config,
            sessions: SessionStore::new(redis),
            io: OnceLock::new(),
        })
    }

    /// What the UI may do here, in the package's order (see its `detectSupportedFeatures`).
    pub fn features(&self) -> Vec<&'static str> {
        let mut features = if self.config.readonly {
            Vec::new()
        } else {
            commands::FEATURES.to_vec()
        };
        features.push("AGGREGATED_EVENTS");
        if self.config.development {
            features.push("ALL_EVENTS");
        }
        features
    }

    /// Declares the namespace's login, greeting and commands.
    pub fn register(self: &Arc<Self>, ns: &mut NamespaceBuilder) {
        let admin = self.clone();
        ns.on_connect(move |socket| {
            let admin = admin.clone();
            async move {
                admin.log_in(&socket).await?;
                socket.emit("config", json!({ "supportedFeatures": admin.features() }));
                if admin.config.development {
                    // Cluster-wide, so not in the way of the CONNECT reply.
                    tokio::spawn(async move {
                        let sockets = live::all_sockets(&admin).await;
                        socket.emit("all_sockets", Value::Array(sockets));
                    });
                }
                Ok(())
            }
        });
        if !self.config.readonly {
            commands::register(ns, self.clone());
        }
    }

    /// Starts the stats once the server exists (the namespaces are declared before it).
    pub fn attach(self: &Arc<Self>, io: Io) {
        if self.io.set(io.clone()).is_ok() {
            if self.config.development {
                let live = live::Live::new(self);
                for ns in io.namespaces() {
                    ns.observe(live.clone());
                }
            }
            tokio::spawn(stats_loop(self.clone(), io));
        }
    }

    fn io(&self) -> Option<&Io> {
        self.io.get()
    }

    /// The package's login: a live session id, else the username and a password that
    /// matches the bcrypt hash (which then gets a new session, sent as `session` right
    /// after CONNECT, when the page is listening).
    async fn log_in(&self, socket: &SocketRef) -> Result<(), ConnectRefusal> {
        let Login::Basic { username, hash } = &self.config.login else {
            return Ok(());
        };
        let auth = socket.auth();
        if let Some(id) = auth.get("sessionId").and_then(Value::as_str) {
            if !id.is_empty() && self.sessions.exists(id).await {
                return Ok(());
            }
        }
        let given = (
            auth.get("username").and_then(Value::as_str),
            auth.get("password").and_then(Value::as_str),
        );
        let (Some(user), Some(password)) = given else {
            return Err(ConnectRefusal::new(INVALID_CREDENTIALS));
        };
        if user != username || !password_matches(password, hash).await {
            return Err(ConnectRefusal::new(INVALID_CREDENTIALS));
        }
        let id = session::new_session_id();
        self.sessions.save(&id).await;
        socket.emit("session", json!(id));
        Ok(())
    }
}

/// A bcrypt hash of `password` (cost 10, `$2b$`), for `--admin-ui-password-hash`.
pub fn hash_password(password: &str) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(password, 10)
}

/// bcrypt is slow on purpose (~50–100 ms at cost 10): off the async threads.
async fn password_matches(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// Samples the engine's totals every second; every [`stats::STATS_EVERY`], broadcasts
/// `server_stats` with what was sampled since. Ends when the server shuts down.
async fn stats_loop(admin: Arc<AdminUi>, io: Io) {
    let Some(ns) = io.of(&admin.config.namespace) else {
        return;
    };
    let mut last = crate::metrics::tally();
    let mut pending = Vec::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let per_stats = stats::STATS_EVERY.as_secs().max(1);
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        if io.is_shutting_down() {
            return;
        }
        let now = crate::metrics::tally();
        pending.extend(stats::deltas(&last, &now, std::time::SystemTime::now()));
        last = now;
        if ticks % per_stats == 0 {
            let payload = stats::server_stats(&io, &admin.identity, &pending);
            pending.clear();
            ns.emit("server_stats", payload);
        }
        ticks += 1;
    }
}
