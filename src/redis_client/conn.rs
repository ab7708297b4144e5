//! The command connection every Redis user of the server shares (rate limits, caches,
//! presence, the adapters' commands): the crate's [`ConnectionManager`] — multiplexed,
//! reconnecting — plus one thing it cannot do: follow a master that moved.
//!
//! A `ConnectionManager` reconnects to the address it was made for. Behind Sentinel that
//! address may now be a dead server or a demoted replica (`READONLY` on every write). So
//! when a command fails in a way a failover explains, [`RedisConn`] asks the
//! [`RedisTarget`] where the master is and, if it moved, swaps in a manager for the new
//! address. The failed command is not retried (a write may have happened): its caller
//! sees the error, as during any outage, and the next command goes to the new master.
//!
//! On a Redis Cluster the connection is the crate's cluster connection instead: it sends
//! each command to the master of its key's slot and refreshes the slot map itself when a
//! master dies and a replica takes over.

use super::target::{address_of, RedisTarget};
use crate::sync::RwLockExt as _;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The shortest time between two lookups of the master: errors come in bursts during a
/// failover, and the Sentinels need a moment to agree anyway.
const LOOKUP_EVERY: Duration = Duration::from_millis(250);

/// A Redis command connection that follows failovers. Cheap to clone (all clones share
/// the connection).
#[derive(Clone)]
pub struct RedisConn(Arc<Inner>);

struct Inner {
    target: RedisTarget,
    config: ConnectionManagerConfig,
    current: RwLock<Current>,
    /// A lookup is running (at most one at a time).
    looking: AtomicBool,
}

struct Current {
    address: String,
    manager: Backend,
}

/// One server's reconnecting connection, or a whole cluster's.
#[derive(Clone)]
enum Backend {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects to where `target` says Redis is now; fails when it cannot be reached, as
    /// the server's Redis setup does at start.
    pub async fn connect(
        target: RedisTarget,
        config: ConnectionManagerConfig,
    ) -> Result<RedisConn, RedisError> {
        let (address, manager) = match &target {
            RedisTarget::Cluster(cluster) => (
                target.describe(),
                Backend::Cluster(cluster.connect().await?),
            ),
            _ => {
                let client = target.client().await?;
                let address = address_of(&client);
                let manager = ConnectionManager::new_with_config(client, config.clone()).await?;
                (address, Backend::Server(manager))
            }
        };
        Ok(RedisConn(Arc::new(Inner {
            target,
            config,
            current: RwLock::new(Current { address, manager }),
            looking: AtomicBool::new(false),
        })))
    }

    /// Where commands go now (`redis://host:port`, or the cluster's description).
    pub fn address(&self) -> String {
        self.0.current.read_unpoisoned().address.clone()
    }

    /// Whether this is a Redis Cluster connection (pipelines must stay in one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.0.target, RedisTarget::Cluster(_))
    }

    /// Where Redis is configured to be (for messages).
    pub fn target(&self) -> &RedisTarget {
        &self.0.target
    }

    fn manager(&self) -> Backend {
        self.0.current.read_unpoisoned().manager.clone()
    }

    /// After a failed command: look the master up again if a failover may explain it.
    fn failed(&self, error: &RedisError) {
        if !self.0.target.follows_failover() || !failover_may_explain(error) {
            return;
        }
        if self.0.looking.swap(true, Ordering::AcqRel) {
            return;
        }
        let conn = self.clone();
        tokio::spawn(async move {
            conn.follow_master().await;
            tokio::time::sleep(LOOKUP_EVERY).await;
            conn.0.looking.store(false, Ordering::Release);
        });
    }

    /// Asks where the master is; when it moved, later commands go there.
    async fn follow_master(&self) {
        let client = match self.0.target.client().await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(target_redis = %self.0.target.describe(), error = %e, "cannot find the Redis master; retrying on the next failed command");
                return;
            }
        };
        let address = address_of(&client);
        let before = self.address();
        if address == before {
            return;
        }
        // Lazy: connects on first use, so a lookup never blocks on the new master.
        match ConnectionManager::new_lazy_with_config(client, self.0.config.clone()) {
            Ok(manager) => {
                *self.0.current.write_unpoisoned() = Current {
                    address: address.clone(),
                    manager: Backend::Server(manager),
                };
                crate::metrics::redis_master_switch();
                tracing::warn!(from = %before, to = %address, "Redis master moved (Sentinel failover): commands go to the new master");
            }
            Err(e) => {
                tracing::warn!(to = %address, error = %e, "cannot connect to the new Redis master")
            }
        }
    }
}

/// Errors a failover explains: the server is gone or refuses, it no longer answers, or
/// it is a replica now (`READONLY`, `MASTERDOWN`, a `LOADING` restart).
fn failover_may_explain(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        return true;
    }
    use redis::{ErrorKind::Server, ServerErrorKind as K};
    matches!(
        e.kind(),
        Server(K::ReadOnly | K::MasterDown | K::BusyLoading)
    )
}

impl ConnectionLike for Backend {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Backend::Server(m) => m.req_packed_command(cmd),
            Backend::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Backend::Server(m) => m.req_packed_commands(pipeline, offset, count),
            Backend::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Backend::Server(m) => m.get_db(),
            Backend::Cluster(c) => c.get_db(),
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.manager().req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.failed(e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .manager()
                .req_packed_commands(pipeline, offset, count)
                .await;
            if let Err(e) = &result {
                self.failed(e);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errors_a_failover_explains() {
        use redis::{ErrorKind, ServerErrorKind};
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        assert!(failover_may_explain(&io(
            std::io::ErrorKind::ConnectionRefused
        )));
        assert!(failover_may_explain(&io(
            std::io::ErrorKind::ConnectionReset
        )));
        let server = |kind| RedisError::from((ErrorKind::Server(kind), "from the server"));
        assert!(failover_may_explain(&server(ServerErrorKind::ReadOnly)));
        assert!(failover_may_explain(&server(ServerErrorKind::MasterDown)));
        assert!(!failover_may_explain(&server(ServerErrorKind::NoScript)));
        assert!(!failover_may_explain(&server(
            ServerErrorKind::ResponseError
        )));
    }
}
