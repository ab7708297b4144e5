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
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (is another server using it? choose another with --listen or LISTEN_ADDR)",
                    config.listen
                )
            })?;
        let io = crate::app::build(&config);
        tracing::info!(
            address = %listener.local_addr()?,
            path = %config.server.engine.path,
            namespaces = ?config.namespaces,
            version = env!("CARGO_PKG_VERSION"),
            "realtime server listening"
        );
        crate::server::run(io, listener, shutdown_signal()).await;
        Ok(())
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
