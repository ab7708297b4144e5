//! `rtctl serve` (and `realtime-server`): run the server until SIGTERM or ctrl-c. The
//! lifecycle itself is the library's ([`crate::app::serve`]); this command sets up what
//! belongs to the process (logging, metrics, the listening socket) and reports errors.

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
        // The unsent presence:updates, if any, were logged by the lifecycle.
        let _stopped = crate::app::serve(&config, listener, crate::app::shutdown_signal()).await?;
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
