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
use std::sync::Arc;
use std::time::SystemTime;

/// The running application: the Socket.IO server and the HTTP routes beside it.
pub struct App {
    pub io: Io,
    pub routes: Routes,
    pub state: State,
    /// Who is online (Redis in a cluster, in-process otherwise).
    pub presence: Arc<crate::presence::Presence>,
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
            let store = crate::presence::RedisPresence::new(conn.clone(), "rt:presence", heartbeat);
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
    let io = builder.build();
    presence.attach(io.clone());
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
    })
}

/// Records every authenticated socket in presence (and sets Node's `socket.data` to
/// `{userId}`, which other nodes see through `fetch_sockets`).
pub fn track_presence(ns: &mut NamespaceBuilder, presence: Arc<crate::presence::Presence>) {
    let p = presence.clone();
    ns.on_connect(move |socket| {
        let p = p.clone();
        async move {
            if let Some(user) = User::of(&socket) {
                socket.set_data(json!({ "userId": user.id }));
                p.track(&socket, &user.id).await;
            }
            Ok(())
        }
    });
    ns.on_disconnect(move |socket, _reason| {
        let Some(user) = User::of(&socket) else {
            return;
        };
        let p = presence.clone();
        tokio::spawn(async move {
            if let Err(e) = p.disconnected(&user.id, socket.id.as_str()).await {
                tracing::warn!(error = %e, "presence: cannot record a disconnection");
            }
        });
    });
}

/// With Redis configured, the adapter that makes this node one of a cluster (the
/// @socket.io/redis-adapter wire format); without, `None` (in-process default).
pub async fn cluster_adapter(
    config: &Config,
) -> anyhow::Result<Option<Arc<dyn crate::cluster::AdapterFactory>>> {
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
