//! The cluster adapter: with Redis configured, this node is one of a cluster that speaks
//! the `@socket.io/redis-adapter` wire format (`--adapter redis`, the default) or the
//! `@socket.io/redis-streams-adapter` one (`--adapter redis-streams`); without, the
//! server's in-process default.

use super::BuildError;
use crate::cluster::driver::LiveDriver;
use crate::cluster::redis::{RedisAdapterFactory, RedisAdapterOptions};
use crate::cluster::redis_streams::live::LiveStreams;
use crate::cluster::redis_streams::{RedisStreamsFactory, RedisStreamsOptions};
use crate::config::{AdapterChoice, Config, StreamsSettings};
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
    let timeout = Duration::from_millis(config.redis.redis_timeout);
    let unreachable = |source| BuildError::ClusterAdapter {
        url: target.describe(),
        source,
    };
    let driver = LiveDriver::connect_to(target.clone(), timeout)
        .await
        .map_err(unreachable)?;
    let key = config.redis.redis_adapter_key.clone();
    let requests_timeout = Duration::from_millis(config.redis.redis_requests_timeout);
    let settings = match &config.adapter {
        AdapterChoice::Redis => {
            let options = RedisAdapterOptions {
                key,
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
            return Ok(Some(Arc::new(RedisAdapterFactory::new(driver, options))));
        }
        AdapterChoice::RedisStreams(settings) => settings,
    };
    let streams = LiveStreams::connect_to(target.clone(), timeout)
        .await
        .map_err(unreachable)?;
    let options = streams_options(settings, key, requests_timeout, recovery(config));
    tracing::info!(
        stream = %options.stream_name,
        streams = options.stream_count,
        channels = %options.channel_prefix,
        recovery = options.recovery.is_some(),
        node = %config.node_id,
        "cluster adapter: Redis Streams"
    );
    Ok(Some(Arc::new(RedisStreamsFactory::new(
        driver, streams, options,
    ))))
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
