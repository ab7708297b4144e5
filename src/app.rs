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
        unread: UnreadCache::new(redis),
    });
    let verifier = Arc::new(
        Verifier::new(&config.auth_secret.value).context("NEXTAUTH_SECRET must not be empty")?,
    );
    let mut builder = Io::builder(config.server.clone());
    for name in &config.namespaces {
        builder = builder.namespace(name, |ns| {
            authenticate(ns, verifier.clone());
            match name.as_str() {
                "/chat" => crate::chat::register(ns, state.clone()),
                "/notifications" => crate::notifications::register(ns, state.clone()),
                _ => {}
            }
        });
    }
    let io = builder.build();
    let api = Arc::new(Api::new(
        io.clone(),
        state.clone(),
        config.service_token.value.clone(),
    ));
    let routes: Routes = Arc::new(move |req, _remote| {
        let api = api.clone();
        Box::pin(async move {
            if req.uri().path().starts_with("/api/") {
                api.handle(req).await
            } else {
                crate::server::not_found()
            }
        })
    });
    Ok(App { io, routes, state })
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
