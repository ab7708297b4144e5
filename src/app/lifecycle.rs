//! The one way a node runs and stops: serve until `shutdown`, drain, flush the
//! `presence:update`s the drain queued, close the store. The order matters: the drain's
//! disconnects queue one "offline" per user, and sending them needs the database.

use super::{build, App, BuildError};
use crate::config::Config;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long the queued `presence:update`s may take to go out after the drain.
const PRESENCE_FLUSH: Duration = Duration::from_secs(5);

/// How a node's run ended, once its store is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// `presence:update`s still queued when the store closed (logged as a warning; 0
    /// unless the database was too slow or down during the drain).
    pub presence_updates_unsent: usize,
}

/// Builds the app from `config` and serves it on `listener` until `shutdown` resolves,
/// then drains and closes it: what `rtctl serve` and `realtime-server` run.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, BuildError> {
    Ok(build(config).await?.serve(listener, shutdown).await)
}

impl App {
    /// Serves the Socket.IO server and the HTTP routes on `listener` until `shutdown`
    /// resolves, then drains, flushes the `presence:update`s and closes the store.
    /// Callers that need handles (tests: `state`, `io`) clone them before.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Stopped {
        self.banner.log(&self, &listener);
        crate::server::run_with_routes(self.io, Some(self.routes), listener, shutdown).await;
        // The drain disconnected everyone: tell their chat peers before the pool closes.
        let unsent = self.presence_updates.flush(PRESENCE_FLUSH).await;
        if unsent > 0 {
            tracing::warn!(
                left = unsent,
                "shutting down with presence:updates not sent"
            );
        }
        self.state.store.close().await;
        Stopped {
            presence_updates_unsent: unsent,
        }
    }
}

/// What the "listening" line says about the node, taken from its config at build time.
pub(super) struct Banner {
    path: String,
    role: &'static str,
    namespaces: Vec<String>,
    redis: bool,
    node: String,
}

impl Banner {
    pub(super) fn of(config: &Config) -> Banner {
        Banner {
            path: config.server.engine.path.to_string(),
            role: config.role.as_str(),
            namespaces: config.namespaces.clone(),
            redis: config.redis.location.is_configured(),
            node: config.node_id.clone(),
        }
    }

    fn log(&self, app: &App, listener: &TcpListener) {
        let address = match listener.local_addr() {
            Ok(addr) => addr.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        tracing::info!(
            address = %address,
            path = %self.path,
            role = self.role,
            namespaces = ?self.namespaces,
            database = app.state.store.backend(),
            read_replica = app.state.store.has_replica(),
            redis = self.redis,
            version = env!("CARGO_PKG_VERSION"),
            node = %self.node,
            "realtime server listening"
        );
    }
}
