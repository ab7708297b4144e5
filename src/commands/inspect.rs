//! What `rtctl presence`, `rtctl rooms` and `rtctl nodes` share: where the cluster's
//! Redis is (the server's own flags and environment), one-line connection errors, the
//! spinner, and printing a report as a table or JSON.
//!
//! The commands read presence through the library's [`PresenceStore`] (the same code the
//! nodes write with), so what they show is what the nodes see. Nothing here uses `KEYS`.

use super::Exit;
use crate::presence::{PresenceError, PresenceStore, RedisPresence};
use crate::redis_client::{RedisArgs, RedisLocation, DEFAULT_PRESENCE_PREFIX};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The exit codes of the inspection commands, for their `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  the report was printed
  1  what was asked for was not found (user offline, no such room or namespace, no live node)
  2  usage error, or Redis could not be reached or answered with an error";

/// Where the cluster keeps its state: the same flags and environment variables as
/// `realtime-server` (REDIS_URL, REDIS_HOST/REDIS_PORT or REDIS_SENTINELS, PRESENCE_PREFIX).
#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    #[command(flatten)]
    pub redis: RedisLocation,

    /// Milliseconds to connect and for each Redis command.
    #[arg(long, env = "REDIS_TIMEOUT", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_timeout: u64,

    /// Key prefix of presence in Redis (the nodes' --presence-prefix).
    #[arg(long, env = "PRESENCE_PREFIX", default_value = DEFAULT_PRESENCE_PREFIX)]
    pub presence_prefix: String,

    /// `table` for people, `json` for machines.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

impl InspectArgs {
    fn redis(&self) -> RedisArgs {
        RedisArgs {
            location: self.redis.clone(),
            redis_timeout: self.redis_timeout,
            presence_prefix: self.presence_prefix.clone(),
            ..RedisArgs::default()
        }
    }

    /// Connects to the cluster's presence, or an exit-2 error in one line.
    pub async fn presence(&self) -> Result<Cluster, Exit> {
        let redis = self.redis();
        if !redis.location.is_configured() {
            return Err(Exit::new(
                2,
                "no Redis given: pass --redis-url (or set REDIS_URL, REDIS_HOST and \
                 REDIS_PORT, REDIS_SENTINELS and REDIS_SENTINEL_MASTER, or \
                 REDIS_CLUSTER_NODES) to the cluster's Redis",
            ));
        }
        let bar = indicatif::ProgressBar::hidden();
        let target = redis.location.describe();
        bar.set_message(format!("connecting to Redis at {target}"));
        let conn = super::spinner_after_a_second(&bar, "{spinner} {msg}", redis.connect())
            .await
            .map_err(|e| Exit::new(2, e.to_string()))?
            .ok_or_else(|| Exit::new(2, "no Redis given"))?;
        // The heartbeat only sets the expiry of entries written; these commands only read.
        let store = RedisPresence::new(conn, &self.presence_prefix, Duration::from_secs(10));
        Ok(Cluster { store, target })
    }

    pub fn json(&self) -> bool {
        self.format == "json"
    }
}

/// The cluster's presence, as read from its Redis.
pub struct Cluster {
    pub store: RedisPresence,
    target: String,
}

impl Cluster {
    /// Runs a read with a spinner after a second; a Redis error is an exit-2 line.
    pub async fn read<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, PresenceError>>,
    ) -> Result<T, Exit> {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_message(format!("reading {what} from {}", self.target));
        super::spinner_after_a_second(&bar, "{spinner} {msg}", fut)
            .await
            .map_err(|e| {
                Exit::new(
                    2,
                    format!("cannot read {what} from Redis at {}: {e}", self.target),
                )
            })
    }

    pub fn store(&self) -> &dyn PresenceStore {
        &self.store
    }
}

/// Prints the report: `json` pretty-printed, else the table (each with a final newline).
pub fn print(
    args: &InspectArgs,
    table: impl FnOnce() -> String,
    json: &Value,
) -> anyhow::Result<()> {
    let text = if args.json() {
        let mut s = serde_json::to_string_pretty(json)?;
        s.push('\n');
        s
    } else {
        let mut s = table();
        s.push('\n');
        s
    };
    super::gen::write_output(None, &text)
}

/// A fresh comfy-table in the style `rtctl health` uses.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (`2026-11-25T22:50:01.123Z`).
pub fn rfc3339(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
