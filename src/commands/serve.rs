//! `rtctl serve` (and `realtime-server`): run the server until SIGTERM or ctrl-c.

use crate::config::{Config, ServeArgs};
use anyhow::Context as _;

#[derive(clap::Args, Debug)]
pub struct ServeCommand {
    #[command(flatten)]
    pub args: ServeArgs,
}

impl ServeCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let config = Config::from_args(&self.args)?;
        crate::telemetry::init_logging(&config.log_format, &config.log_level);
        // Process-wide, so set here and not in `app::build` (tests build many apps in one
        // process).
        crate::metrics::set_enabled(config.metrics_enabled);
        if !config.metrics_enabled {
            tracing::warn!("metrics are disabled (--metrics-enabled false): /metrics answers 404");
        }
        let listener = crate::transport::listener::bind(config.listen).with_context(|| {
                format!(
                    "cannot listen on {} (is another server using it? choose another with --listen or LISTEN_ADDR)",
                    config.listen
                )
            })?;
        announce_generated_secrets(&config);
        let app = crate::app::build(&config).await?;
        tracing::info!(
            address = %listener.local_addr()?,
            path = %config.server.engine.path,
            namespaces = ?config.namespaces,
            database = app.state.store.backend(),
            read_replica = app.state.store.has_replica(),
            redis = config.redis.url().is_some(),
            version = env!("CARGO_PKG_VERSION"),
            node = %config.node_id,
            "realtime server listening"
        );
        crate::server::run_with_routes(app.io, Some(app.routes), listener, shutdown_signal()).await;
        // The drain disconnected everyone: tell their chat peers before the pool closes.
        let left = app
            .presence_updates
            .flush(std::time::Duration::from_secs(5))
            .await;
        if left > 0 {
            tracing::warn!(left, "shutting down with presence:updates not sent");
        }
        app.state.store.close().await;
        Ok(())
    }
}

/// In development, secrets nobody configured are generated; print them once so a person
/// can mint tokens (`rtctl token --secret …`) and call the API.
fn announce_generated_secrets(config: &Config) {
    if config.auth_secret.generated {
        tracing::warn!(
            secret = %config.auth_secret.value,
            "NEXTAUTH_SECRET not set: generated a development secret (set NEXTAUTH_SECRET to your Next.js app's)"
        );
    }
    if config.service_token.generated {
        tracing::warn!(
            token = %config.service_token.value,
            "RT_SERVICE_TOKEN not set: generated a development token for the HTTP API"
        );
    }
}

/// Resolves on ctrl-c or SIGTERM (what systemd, Kubernetes and `docker stop` send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
