//! The cluster adapter: with Redis configured, this node is one of a cluster that speaks
//! the `@socket.io/redis-adapter` wire format (`--adapter redis`, the default), the
//! `@socket.io/redis-streams-adapter` one (`--adapter redis-streams`) or that of
//! `createShardedAdapter` (`--adapter redis-sharded`); without, the server's in-process
//! default.

use super::BuildError;
use crate::cluster::driver::LiveDriver;
use crate::cluster::redis::{RedisAdapterFactory, RedisAdapterOptions};
use crate::cluster::redis_sharded::{RedisShardedFactory, RedisShardedOptions};
use crate::cluster::redis_streams::live::LiveStreams;
use crate::cluster::redis_streams::{RedisStreamsFactory, RedisStreamsOptions};
use crate::cluster::sharded_driver::LiveShardedDriver;
use crate::config::{AdapterChoice, Config, StreamsSettings};
use crate::protocol::cluster_sharded::SubscriptionMode;
use crate::redis_client::RedisTarget;
use crate::server::adapter::AdapterFactory;
use std::sync::Arc;
use std::time::Duration;

/// With Redis configured, the adapter that makes this node one of a cluster; without,
/// `None` (in-process default). Fails when Redis is unreachable at startup, like the rest
/// of the node's Redis setup.
pub async fn cluster_adapter(
    config: &Config,
) -> Result<Option<Arc<dyn AdapterFactory>>, BuildError> {
    let Some(target) = config.redis.target()? else {
        return Ok(None);
    };
    let unreachable = |source| BuildError::ClusterAdapter {
        url: target.describe(),
        source,
    };
    let on_cluster = matches!(target, RedisTarget::Cluster(_));
    let factory = match &config.adapter {
        AdapterChoice::RedisStreams(_) if on_cluster => {
            return Err(BuildError::AdapterOnCluster("redis-streams"))
        }
        AdapterChoice::Redis => classic(config, target.clone()).await,
        AdapterChoice::RedisStreams(settings) => streams(config, settings, target.clone()).await,
        AdapterChoice::RedisSharded(mode) => sharded(config, *mode, target.clone()).await,
    };
    factory.map(Some).map_err(unreachable)
}

fn timeouts(config: &Config) -> (Duration, Duration) {
    (
        Duration::from_millis(config.redis.redis_timeout),
        Duration::from_millis(config.redis.redis_requests_timeout),
    )
}

/// `--adapter redis`: pub/sub, `@socket.io/redis-adapter` 8.x.
async fn classic(
    config: &Config,
    target: RedisTarget,
) -> Result<Arc<dyn AdapterFactory>, redis::RedisError> {
    let (timeout, requests_timeout) = timeouts(config);
    let driver = LiveDriver::connect_to(target, timeout).await?;
    let options = RedisAdapterOptions {
        key: config.redis.redis_adapter_key.clone(),
        requests_timeout,
        recovery: config.server.recovery,
        ..Default::default()
    };
    tracing::info!(key = %options.key, node = %config.node_id, "cluster adapter: Redis");
    if options.recovery.is_some() {
        tracing::warn!(
            "connection state recovery with the classic Redis adapter: sessions are kept on the node a client was on, so a client recovers only when it reconnects to the same node (sticky routing); use --adapter redis-streams to recover on any node"
        );
    }
    Ok(Arc::new(RedisAdapterFactory::new(driver, options)))
}

/// `--adapter redis-streams`: `@socket.io/redis-streams-adapter` 0.3.x (streams, and
/// requests on the classic pub/sub driver).
async fn streams(
    config: &Config,
    settings: &StreamsSettings,
    target: RedisTarget,
) -> Result<Arc<dyn AdapterFactory>, redis::RedisError> {
    let (timeout, requests_timeout) = timeouts(config);
    let driver = LiveDriver::connect_to(target.clone(), timeout).await?;
    let streams = LiveStreams::connect_to(target, timeout).await?;
    let key = config.redis.redis_adapter_key.clone();
    let options = streams_options(settings, key, requests_timeout, recovery(config));
    tracing::info!(
        stream = %options.stream_name,
        streams = options.stream_count,
        channels = %options.channel_prefix,
        recovery = options.recovery.is_some(),
        node = %config.node_id,
        "cluster adapter: Redis Streams"
    );
    Ok(Arc::new(RedisStreamsFactory::new(driver, streams, options)))
}

/// `--adapter redis-sharded`: sharded pub/sub, `createShardedAdapter` of
/// `@socket.io/redis-adapter` 8.3 (Redis 7 or later).
async fn sharded(
    config: &Config,
    mode: SubscriptionMode,
    target: RedisTarget,
) -> Result<Arc<dyn AdapterFactory>, redis::RedisError> {
    let (timeout, requests_timeout) = timeouts(config);
    let driver = LiveShardedDriver::connect_to(target, timeout).await?;
    let options = RedisShardedOptions {
        channel_prefix: config.redis.redis_adapter_key.clone(),
        subscription_mode: mode,
        requests_timeout,
        recovery: config.server.recovery,
    };
    tracing::info!(
        channels = %options.channel_prefix,
        mode = mode.as_str(),
        node = %config.node_id,
        "cluster adapter: Redis sharded pub/sub"
    );
    if options.recovery.is_some() {
        tracing::warn!(
            "connection state recovery with the sharded Redis adapter: sessions are kept on the node a client was on (sticky routing needed), and in the dynamic subscription modes a node leaves a room's channel with the room's last local member; use --adapter redis-streams to recover on any node"
        );
    }
    Ok(Arc::new(RedisShardedFactory::new(driver, options)))
}

/// The streams adapter's options from the configuration (the package's defaults for
/// what is not configurable: XREAD COUNT 100, BLOCK 5000).
fn streams_options(
    s: &StreamsSettings,
    channel_prefix: String,
    requests_timeout: Duration,
    recovery: Option<Duration>,
) -> RedisStreamsOptions {
    RedisStreamsOptions {
        stream_name: s.stream_name.clone(),
        stream_count: s.stream_count,
        channel_prefix,
        max_len: s.max_len,
        session_key_prefix: s.session_key_prefix.clone(),
        requests_timeout,
        recovery,
        ..Default::default()
    }
}

/// How long the streams adapter keeps a session (its key's `PX`), when recovery is on.
fn recovery(config: &Config) -> Option<Duration> {
    config.server.recovery.map(|r| r.max_disconnection)
}
