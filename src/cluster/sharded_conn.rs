//! The sharded subscriber's connection: one RESP3 connection to a single Redis (or the
//! master Sentinel names), or, on a Redis Cluster, the crate's cluster connection, which
//! sends each SSUBSCRIBE to the master of the channel's slot. Either way `smessage`
//! pushes arrive on the channel given to [`SubConn::open`], and a lost connection (to
//! any node) is reported as a `Disconnection` push: the subscriber then starts over,
//! which after a cluster failover finds the new masters.

use crate::redis_client::RedisTarget;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::PushInfo;
use std::time::Duration;
use tokio::sync::mpsc;

pub(super) enum SubConn {
    Server(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl SubConn {
    /// Connects to where `target` says Redis is now, pushes going to `pushes`.
    pub(super) async fn open(
        target: &RedisTarget,
        timeout: Duration,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> redis::RedisResult<SubConn> {
        if let RedisTarget::Cluster(cluster) = target {
            return Ok(SubConn::Cluster(cluster.subscriber(pushes).await?));
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_push_sender(pushes);
        let client = resp3(&target.client().await?)?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(SubConn::Server(conn))
    }

    /// `SSUBSCRIBE` (`subscribe`) or `SUNSUBSCRIBE` of one channel, confirmed.
    pub(super) async fn shard_subscription(
        &mut self,
        subscribe: bool,
        channel: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let name = if subscribe {
            "SSUBSCRIBE"
        } else {
            "SUNSUBSCRIBE"
        };
        let answer = match self {
            SubConn::Server(conn) => {
                let mut cmd = redis::cmd(name);
                cmd.arg(channel);
                match tokio::time::timeout(timeout, cmd.query_async::<redis::Value>(conn)).await {
                    Ok(Ok(redis::Value::ServerError(e))) => Err(format!("{e:?}")),
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".into()),
                }
            }
            SubConn::Cluster(conn) => {
                let sent = async {
                    match subscribe {
                        true => conn.ssubscribe(channel).await,
                        false => conn.sunsubscribe(channel).await,
                    }
                };
                match tokio::time::timeout(timeout, sent).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err("timed out".into()),
                }
            }
        };
        answer.map_err(|e| format!("{name} {channel}: {e}"))
    }

    /// Whether the server still answers PING (a single server; a cluster connection
    /// watches its nodes itself).
    pub(super) async fn alive(&mut self, timeout: Duration) -> bool {
        let SubConn::Server(conn) = self else {
            return true;
        };
        let ping = redis::cmd("PING");
        let pong = ping.query_async::<redis::Value>(conn);
        matches!(tokio::time::timeout(timeout, pong).await, Ok(Ok(_)))
    }
}

/// The same client speaking RESP3 (TLS settings kept: they live in the address).
fn resp3(client: &redis::Client) -> Result<redis::Client, redis::RedisError> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings))
}
