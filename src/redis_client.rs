//! The shared Redis connection settings and client.
//!
//! One multiplexed, auto-reconnecting connection ([`ConnectionManager`]) serves rate
//! limits, caches and presence; pub/sub gets its own connections (see `cluster/`).

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Redis settings. Without any of them the server runs on in-process state (one node).
#[derive(clap::Args, Debug, Clone)]
pub struct RedisArgs {
    /// Redis URL (`redis://host:6379/0`); switches rate limits, caches, presence and the
    /// adapter to Redis.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis host (the Node app's REDIS_HOST), used when REDIS_URL is not set.
    #[arg(long, env = "REDIS_HOST")]
    pub redis_host: Option<String>,

    /// Redis port (the Node app's REDIS_PORT).
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,

    /// Milliseconds a Redis command may take before it counts as failed.
    #[arg(long, env = "REDIS_TIMEOUT", default_value_t = 1000)]
    pub redis_timeout: u64,

    /// Channel prefix of the cluster adapter: the `key` option of Node's
    /// @socket.io/redis-adapter and redis-emitter (nodes sharing a cluster must agree).
    #[arg(long, env = "REDIS_ADAPTER_KEY", default_value = "socket.io")]
    pub redis_adapter_key: String,

    /// Milliseconds a cluster request (fetch_sockets, server_side_emit with acks, all
    /// rooms) waits for every node's answer (the adapter's `requestsTimeout`).
    #[arg(long, env = "REDIS_REQUESTS_TIMEOUT", default_value_t = 5000)]
    pub redis_requests_timeout: u64,

    /// Milliseconds between presence heartbeats; a node that dies without a word has its
    /// users shown offline within twice this.
    #[arg(long, env = "PRESENCE_HEARTBEAT", default_value_t = 10_000)]
    pub presence_heartbeat: u64,

    /// Key prefix of presence in Redis (users, sockets, nodes, room snapshots); `rtctl
    /// presence|rooms|nodes` must be given the same.
    #[arg(long, env = "PRESENCE_PREFIX", default_value = DEFAULT_PRESENCE_PREFIX)]
    pub presence_prefix: String,
}

/// Where presence lives in Redis unless `--presence-prefix` says otherwise.
pub const DEFAULT_PRESENCE_PREFIX: &str = "rt:presence";

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("REDIS_URL {url:?} is not a valid Redis URL: {source}")]
    InvalidUrl {
        url: String,
        source: redis::RedisError,
    },
    #[error(
        "cannot connect to Redis at {target}: {source} (is redis-server running? check REDIS_URL)"
    )]
    Unreachable {
        target: String,
        source: redis::RedisError,
    },
}

impl Default for RedisArgs {
    fn default() -> Self {
        RedisArgs {
            redis_url: None,
            redis_host: None,
            redis_port: 6379,
            redis_timeout: 1000,
            redis_adapter_key: "socket.io".into(),
            redis_requests_timeout: 5000,
            presence_heartbeat: 10_000,
            presence_prefix: DEFAULT_PRESENCE_PREFIX.into(),
        }
    }
}

impl RedisArgs {
    /// The URL to use, if Redis is configured at all.
    pub fn url(&self) -> Option<String> {
        if let Some(url) = &self.redis_url {
            return Some(url.clone());
        }
        self.redis_host
            .as_ref()
            .map(|h| format!("redis://{h}:{}", self.redis_port))
    }

    /// Connects, or `Ok(None)` when Redis is not configured. The connection reconnects
    /// by itself after an outage; a command during the outage fails fast (timeout).
    pub async fn connect(&self) -> Result<Option<ConnectionManager>, RedisSetupError> {
        let Some(url) = self.url() else {
            return Ok(None);
        };
        let client =
            redis::Client::open(url.as_str()).map_err(|source| RedisSetupError::InvalidUrl {
                url: redact(&url),
                source,
            })?;
        let timeout = Duration::from_millis(self.redis_timeout);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        ConnectionManager::new_with_config(client, config)
            .await
            .map(Some)
            .map_err(|source| RedisSetupError::Unreachable {
                target: redact(&url),
                source,
            })
    }
}

/// A URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_make_a_url_and_passwords_are_redacted() {
        let a = RedisArgs {
            redis_host: Some("cache".into()),
            redis_port: 6380,
            ..Default::default()
        };
        assert_eq!(a.url().as_deref(), Some("redis://cache:6380"));
        assert_eq!(RedisArgs::default().url(), None);
        assert_eq!(
            redact("redis://:s3cret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
