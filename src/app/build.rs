//! Connects the services and declares the namespaces: a [`Config`] in, an [`App`] out.

use super::{cluster_adapter, lifecycle::Banner, App, BuildError};
use crate::auth::Verifier;
use crate::cache::UnreadCache;
use crate::config::Config;
use crate::handlers::api::Api;
use crate::handlers::kit::{AppState, State};
use crate::presence::Presence;
use crate::ratelimit::RateLimiter;
use crate::redis_client::RedisConn;
use crate::server::Io;
use crate::store::Store;
use std::sync::Arc;

/// Connects the services and builds the server as `realtime-server` runs it. Nothing
/// listens yet: [`App::serve`] does.
pub async fn build(config: &Config) -> Result<App, BuildError> {
    let redis = config.redis.connect().await?;
    let store = Store::connect(&config.store)
        .await
        .map_err(BuildError::Store)?;
    let state: State = Arc::new(AppState {
        store,
        limiter: RateLimiter::new(config.rate_limits.clone(), redis.clone()),
        unread: UnreadCache::new(redis.clone()),
    });
    let verifier =
        Arc::new(Verifier::new(&config.auth_secret.value).map_err(BuildError::AuthSecret)?);
    let mut builder = Io::builder(config.server.clone());
    if let Some(factory) = cluster_adapter(config).await? {
        builder = builder.adapter(factory);
    }
    let presence = presence_of(config, redis.as_ref());
    for name in &config.namespaces {
        crate::metrics::declare_auth_failures(name, &crate::auth::AuthError::REASONS);
        builder = builder.namespace(name, |ns| {
            super::authenticate(ns, verifier.clone());
            match name.as_str() {
                "/chat" => crate::handlers::chat::register(ns, state.clone()),
                "/notifications" => crate::handlers::notifications::register(ns, state.clone()),
                _ => {}
            }
            // Last connect step: a socket refused by an earlier step is never recorded.
            super::track_presence(ns, presence.clone());
        });
    }
    if let Some(knobs) = &config.loadtest {
        let bench = crate::handlers::bench::NAMESPACE;
        crate::metrics::declare_auth_failures(bench, &crate::auth::AuthError::REASONS);
        // No presence tracking: /bench measures fan-out alone (each client is also on
        // /notifications, which tracks it).
        builder = builder.namespace(crate::handlers::bench::NAMESPACE, |ns| {
            super::authenticate(ns, verifier.clone());
            crate::handlers::bench::register(ns, knobs.clone());
        });
    }
    let admin_ui = config
        .admin_ui
        .clone()
        .map(|cfg| crate::admin_ui::AdminUi::new(cfg, redis.clone()));
    if let Some(admin) = &admin_ui {
        // Its own login, not the app's session token.
        builder = builder.namespace(&admin.config.namespace, |ns| admin.register(ns));
    }
    let io = builder.build();
    presence.attach(io.clone());
    if let Some(admin) = &admin_ui {
        admin.attach(io.clone());
    }
    let presence_updates = super::presence_updates::announce(&presence, io.clone(), state.clone());
    let api = Arc::new(Api::new(
        io.clone(),
        state.clone(),
        config.service_token.value.clone(),
        config.role,
    ));
    let observability = Arc::new(crate::observability::Endpoints::new(
        io.clone(),
        state.store.clone(),
        redis,
        config.node_id.clone(),
        config.health_timeout,
    ));
    Ok(App {
        io,
        routes: super::routes::routes(api, observability),
        banner: Banner::of(config),
        state,
        presence,
        presence_updates,
    })
}

/// Who is online: in Redis when the node has it (the cluster's view), in-process
/// otherwise.
fn presence_of(config: &Config, redis: Option<&RedisConn>) -> Arc<Presence> {
    let Some(conn) = redis else {
        return Presence::in_process(&config.node_id);
    };
    let heartbeat = std::time::Duration::from_millis(config.redis.presence_heartbeat);
    let store =
        crate::presence::RedisPresence::new(conn.clone(), &config.redis.presence_prefix, heartbeat);
    Presence::new(
        Arc::new(store),
        &config.node_id,
        &config.listen.to_string(),
        heartbeat,
    )
}
