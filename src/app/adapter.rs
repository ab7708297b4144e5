//! The cluster adapter: with Redis configured, this node is one of a cluster that speaks
//! the `@socket.io/redis-adapter` wire format; without, the server's in-process default.

use super::BuildError;
use crate::cluster::driver::LiveDriver;
use crate::cluster::redis::{RedisAdapterFactory, RedisAdapterOptions};
use crate::config::Config;
use crate::server::adapter::AdapterFactory;
use std::sync::Arc;
use std::time::Duration;

/// With Redis configured, the adapter that makes this node one of a cluster; without,
/// `None` (in-process default). Fails when Redis is unreachable at startup, like the rest
/// of the node's Redis setup.
pub async fn cluster_adapter(
    config: &Config,
) -> Result<Option<Arc<dyn AdapterFactory>>, BuildError> {
    let (Some(url), Some(client)) = (config.redis.url(), config.redis.client()?) else {
        return Ok(None);
    };
    let timeout = Duration::from_millis(config.redis.redis_timeout);
    let driver = LiveDriver::connect_client(client, timeout)
        .await
        .map_err(|source| BuildError::ClusterAdapter {
            url: crate::redis_client::redact(&url),
            source,
        })?;
    let options = RedisAdapterOptions {
        key: config.redis.redis_adapter_key.clone(),
        requests_timeout: Duration::from_millis(config.redis.redis_requests_timeout),
        recovery: config.server.recovery,
        ..Default::default()
    };
    tracing::info!(key = %options.key, node = %config.node_id, "cluster adapter: Redis");
    if options.recovery.is_some() {
        tracing::warn!(
            "connection state recovery with the classic Redis adapter: sessions are kept on the node a client was on, so a client recovers only when it reconnects to the same node (sticky routing); use --adapter redis-streams to recover on any node"
        );
    }
    Ok(Some(Arc::new(RedisAdapterFactory::new(driver, options))))
}
