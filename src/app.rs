//! Wires the product onto a Socket.IO server: auth on every namespace, `/chat`,
//! `/notifications`, the HTTP API, and the services they use (store, Redis, limits,
//! caches).

use crate::api::Api;
use crate::auth::Verifier;
use crate::cache::UnreadCache;
use crate::config::Config;
use crate::domain::{AppState, State, User};
use crate::ratelimit::RateLimiter;
use crate::server::{ConnectRefusal, Io, NamespaceBuilder, Routes};
use crate::store::Store;
use anyhow::Context as _;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// The running application: the Socket.IO server and the HTTP routes beside it.
pub struct App {
    pub io: Io,
    pub routes: Routes,
    pub state: State,
    /// Who is online (Redis in a cluster, in-process otherwise).
    pub presence: Arc<crate::presence::Presence>,
    /// `presence:update`s still to be sent; flushed before the database closes.
    pub presence_updates: PresenceUpdates,
}

/// Connects the services and builds the server as `realtime-server` runs it.
pub async fn build(config: &Config) -> anyhow::Result<App> {
    let redis = config.redis.connect().await?;
    let store = Store::connect(&config.store)
        .await
        .context("cannot open the database (check DATABASE_URL)")?;
    let state: State = Arc::new(AppState {
        store,
        limiter: RateLimiter::new(config.rate_limits.clone(), redis.clone()),
        unread: UnreadCache::new(redis.clone()),
    });
    let verifier = Arc::new(
        Verifier::new(&config.auth_secret.value).context("NEXTAUTH_SECRET must not be empty")?,
    );
    let mut builder = Io::builder(config.server.clone());
    if let Some(factory) = cluster_adapter(config).await? {
        builder = builder.adapter(factory);
    }
    let presence = match &redis {
        Some(conn) => {
            let heartbeat = std::time::Duration::from_millis(config.redis.presence_heartbeat);
            let store = crate::presence::RedisPresence::new(
                conn.clone(),
                &config.redis.presence_prefix,
                heartbeat,
            );
            crate::presence::Presence::new(
                Arc::new(store),
                &config.node_id,
                &config.listen.to_string(),
                heartbeat,
            )
        }
        None => crate::presence::Presence::in_process(&config.node_id),
    };
    for name in &config.namespaces {
        builder = builder.namespace(name, |ns| {
            authenticate(ns, verifier.clone());
            match name.as_str() {
                "/chat" => crate::chat::register(ns, state.clone()),
                "/notifications" => crate::notifications::register(ns, state.clone()),
                _ => {}
            }
            // Last connect step: a socket refused by an earlier step is never recorded.
            track_presence(ns, presence.clone());
        });
    }
    if let Some(knobs) = &config.loadtest {
        // No presence tracking: /bench measures fan-out alone (each client is also on
        // /notifications, which tracks it).
        builder = builder.namespace(crate::loadtest_namespace::NAMESPACE, |ns| {
            authenticate(ns, verifier.clone());
            crate::loadtest_namespace::register(ns, knobs.clone());
        });
    }
    let io = builder.build();
    presence.attach(io.clone());
    let presence_updates = announce_presence_changes(&presence, io.clone(), state.clone());
    let api = Arc::new(Api::new(
        io.clone(),
        state.clone(),
        config.service_token.value.clone(),
    ));
    let observability = Arc::new(crate::health::Endpoints::new(
        io.clone(),
        state.store.clone(),
        redis,
        config.node_id.clone(),
        config.health_timeout,
    ));
    let routes: Routes = Arc::new(move |req, _remote| {
        let api = api.clone();
        let observability = observability.clone();
        Box::pin(async move {
            if let Some(res) = observability.handle(req.method(), req.uri().path()).await {
                res
            } else if req.uri().path().starts_with("/api/") {
                api.handle(req).await
            } else {
                crate::server::not_found()
            }
        })
    });
    Ok(App {
        io,
        routes,
        state,
        presence,
        presence_updates,
    })
}

/// How long a connect waits for presence to have its socket (one writer batch, a few
/// milliseconds normally). Within it, a client that is connected is online cluster-wide
/// — a second tab opened and the first closed never flaps offline/online to peers; past
/// it (Redis slow or down) the connect goes ahead and the write follows in order.
const PRESENCE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Records every authenticated socket in presence.
pub fn track_presence(ns: &mut NamespaceBuilder, presence: Arc<crate::presence::Presence>) {
    let p = presence.clone();
    ns.on_connect(move |socket| {
        let p = p.clone();
        async move {
            if let Some(user) = User::of(&socket) {
                // A failed write is counted and logged by presence's writer.
                let recorded = p.connected(&user.id, socket.id.as_str());
                let _ = tokio::time::timeout(PRESENCE_WAIT, recorded).await;
            }
            Ok(())
        }
    });
    ns.on_disconnect(move |socket, _reason| {
        let Some(user) = User::of(&socket) else {
            return;
        };
        presence.untrack(&user.id, socket.id.as_str());
    });
}

/// Tells chat peers when a user comes online or goes offline (`presence:update`, see
/// [`crate::chat::announce_presence`]). One task sends the changes in the order presence
/// saw them, so a quick connect + disconnect reaches peers as online, then offline. The
/// queue is bounded: when the database is too slow to keep up, changes beyond it are
/// dropped rather than held in memory (presence itself stays exact). Drops and database
/// failures are logged once when they start and once with the count when they stop,
/// never one line per user: a 2,000 connects/s ramp would otherwise log thousands.
fn announce_presence_changes(
    presence: &crate::presence::Presence,
    io: Io,
    state: State,
) -> PresenceUpdates {
    const QUEUE: usize = 10_000;
    let updates = PresenceUpdates::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, bool)>(QUEUE);
    let pending = updates.pending.clone();
    let dropped = Arc::new(AtomicUsize::new(0));
    let drops = dropped.clone();
    presence.on_change(Arc::new(move |user, online| {
        pending.fetch_add(1, Ordering::AcqRel);
        if tx.try_send((user, online)).is_err() {
            pending.fetch_sub(1, Ordering::AcqRel);
            if drops.fetch_add(1, Ordering::AcqRel) == 0 {
                tracing::warn!(
                    queued = QUEUE,
                    "presence: the database is not keeping up; presence:updates are dropped (counted) until it does"
                );
            }
        }
    }));
    let pending = updates.pending.clone();
    let stopped = updates.stopped.clone();
    tokio::spawn(async move {
        let mut failed = 0u64;
        while let Some((user, online)) = rx.recv().await {
            if stopped.load(Ordering::Acquire) {
                pending.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let lost = dropped.swap(0, Ordering::AcqRel);
            if lost > 0 {
                tracing::warn!(lost, "presence: the update queue has room again");
            }
            match crate::chat::announce_presence(&io, &state, &user, online).await {
                Ok(_) if failed > 0 => {
                    tracing::warn!(
                        failed,
                        "presence: peers can be told again; updates were lost meanwhile"
                    );
                    failed = 0;
                }
                Ok(_) => {}
                Err(e) => {
                    if failed == 0 {
                        tracing::warn!(user, online, error = %e.message, "presence: cannot tell peers (further failures are counted, not logged)");
                    }
                    failed += 1;
                }
            }
            pending.fetch_sub(1, Ordering::AcqRel);
        }
    });
    updates
}

/// The `presence:update`s queued but not yet sent. A draining node's disconnects queue
/// one "offline" per user; [`PresenceUpdates::flush`] lets them go out before the store
/// closes, instead of failing against a closed pool.
#[derive(Clone, Default)]
pub struct PresenceUpdates {
    pending: Arc<AtomicUsize>,
    /// Set when the node gives up on the rest (its store is about to close).
    stopped: Arc<AtomicBool>,
}

impl PresenceUpdates {
    /// Updates queued and not sent yet.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Waits until the queue is empty or `within` has passed, then stops sending (what
    /// is left would only fail against the closing store, one log line each); returns
    /// how many were left unsent.
    pub async fn flush(&self, within: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.stopped.store(true, Ordering::Release);
        self.pending()
    }
}

/// With Redis configured, the adapter that makes this node one of a cluster (the
/// @socket.io/redis-adapter wire format); without, `None` (in-process default).
pub async fn cluster_adapter(
    config: &Config,
) -> anyhow::Result<Option<Arc<dyn crate::server::adapter::AdapterFactory>>> {
    use crate::cluster::redis::{RedisAdapterFactory, RedisAdapterOptions};
    let (Some(url), Some(client)) = (config.redis.url(), config.redis.client()?) else {
        return Ok(None);
    };
    let timeout = std::time::Duration::from_millis(config.redis.redis_timeout);
    let driver = crate::cluster::driver::LiveDriver::connect_client(client, timeout)
        .await
        .with_context(|| {
            format!(
                "cannot connect the cluster adapter to Redis at {}",
                crate::redis_client::redact(&url)
            )
        })?;
    let options = RedisAdapterOptions {
        key: config.redis.redis_adapter_key.clone(),
        requests_timeout: std::time::Duration::from_millis(config.redis.redis_requests_timeout),
        ..Default::default()
    };
    tracing::info!(key = %options.key, node = %config.node_id, "cluster adapter: Redis");
    Ok(Some(Arc::new(RedisAdapterFactory::new(driver, options))))
}

/// The auth middleware: a NextAuth v4 / Auth.js v5 / HS256 token from the handshake, the
/// `Authorization` header or the session cookie. On failure the client gets
/// `connect_error` `{message: "unauthorized", data: {reason}}` and no socket exists.
/// An accepted socket carries its [`User`] and Node's `socket.data` `{userId}` (what a
/// Node app's auth middleware sets, and what every node sees through `fetchSockets`).
pub fn authenticate(ns: &mut NamespaceBuilder, verifier: Arc<Verifier>) {
    ns.use_middleware(move |socket| {
        let verifier = verifier.clone();
        async move {
            let identity = verifier
                .authenticate(&socket.auth, &socket.handshake().headers, SystemTime::now())
                .map_err(|e| {
                    crate::metrics::auth_failure(socket.nsp(), e.reason());
                    tracing::debug!(
                        nsp = socket.nsp(),
                        reason = e.reason(),
                        "connection refused: authentication failed"
                    );
                    ConnectRefusal::new("unauthorized").with_data(json!({ "reason": e.reason() }))
                })?;
            socket.set_data(json!({ "userId": identity.user_id }));
            socket
                .extensions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(User {
                    id: identity.user_id,
                    name: identity.name,
                    email: identity.email,
                });
            Ok(())
        }
    });
}
