//! [`StreamStore`] on the `redis` crate: one auto-reconnecting command connection for
//! XADD, SET and MULTI (the package's `redisClient`), one for the restores' XRANGEs (a
//! burst of replays, megabytes when a whole node's clients come back, never delays a
//! write), and one dedicated connection per stream for its blocking XREAD (the package's
//! read-only clients), so a blocked read never delays a write either. Every command has a deadline; failures are
//! counted as Redis errors of the adapter and reported to the caller, which retries.

use super::store::{Fields, StreamStore};
use crate::cluster::driver::DriverError;
use crate::protocol::cluster_streams::StreamEntry;
use crate::redis_client::{RedisConn, RedisTarget};
use crate::server::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The production stream store. See the module docs.
pub struct LiveStreams {
    inner: Arc<Inner>,
}

struct Inner {
    target: RedisTarget,
    commands: RedisConn,
    /// The restores' XRANGEs.
    replays: RedisConn,
    readers: tokio::sync::Mutex<HashMap<String, ConnectionManager>>,
    timeout: Duration,
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2))
}

impl LiveStreams {
    /// [`LiveStreams::connect_to`] a plain URL; for tools and tests.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Arc<Self>, redis::RedisError> {
        Self::connect_to(
            RedisTarget::Single(Box::new(redis::Client::open(url)?)),
            timeout,
        )
        .await
    }

    /// Connects the command connection (fails when Redis is unreachable at start, like
    /// the rest of the node's Redis setup). Reader connections are made from `target`
    /// on first use, so TLS settings apply to them too.
    pub async fn connect_to(
        target: RedisTarget,
        timeout: Duration,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let commands = RedisConn::connect(target.clone(), manager_config(timeout)).await?;
        let replays = RedisConn::connect(target.clone(), manager_config(timeout)).await?;
        Ok(Arc::new(LiveStreams {
            inner: Arc::new(Inner {
                target,
                commands,
                replays,
                readers: tokio::sync::Mutex::default(),
                timeout,
            }),
        }))
    }
}

impl Inner {
    /// Runs `cmd` (or a pipeline) on the command connection within the deadline.
    async fn run<T: redis::FromRedisValue>(
        &self,
        query: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, DriverError> {
        deadline(self.timeout, query).await
    }

    /// The stream's reader connection, made on first use; its response deadline covers
    /// the block time.
    async fn reader(
        &self,
        stream: &str,
        block: Duration,
    ) -> Result<ConnectionManager, DriverError> {
        let mut readers = self.readers.lock().await;
        if let Some(conn) = readers.get(stream) {
            return Ok(conn.clone());
        }
        let config = manager_config(self.timeout).set_response_timeout(Some(block + self.timeout));
        let conn = deadline(self.timeout, async {
            let client = self.target.client().await?;
            ConnectionManager::new_with_config(client, config).await
        })
        .await?;
        readers.insert(stream.to_owned(), conn.clone());
        Ok(conn)
    }
}

async fn deadline<T>(
    within: Duration,
    query: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, DriverError> {
    match tokio::time::timeout(within, query).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(DriverError::Unavailable(e.to_string())),
        Err(_) => Err(DriverError::Timeout),
    }
}

impl StreamStore for LiveStreams {
    fn xadd(
        &self,
        stream: &str,
        max_len: u64,
        entries: &[Fields],
    ) -> BoxFuture<Result<Vec<String>, DriverError>> {
        let this = self.inner.clone();
        let mut pipe = redis::pipe();
        for fields in entries {
            let cmd = pipe
                .cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(max_len)
                .arg("*");
            for (k, v) in fields {
                cmd.arg(k).arg(v);
            }
        }
        Box::pin(async move {
            let mut conn = this.commands.clone();
            this.run(pipe.query_async::<Vec<String>>(&mut conn)).await
        })
    }

    fn xread(
        &self,
        stream: &str,
        after: &str,
        count: usize,
        block: Duration,
    ) -> BoxFuture<Result<Vec<StreamEntry>, DriverError>> {
        let this = self.inner.clone();
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(stream)
            .arg(after);
        let stream = stream.to_owned();
        Box::pin(async move {
            let mut conn = this.reader(&stream, block).await?;
            let reply = deadline(
                block + this.timeout,
                cmd.query_async::<redis::Value>(&mut conn),
            )
            .await?;
            Ok(xread_entries(reply))
        })
    }

    fn xrange(
        &self,
        stream: &str,
        start: &str,
        end: &str,
        count: Option<usize>,
    ) -> BoxFuture<Result<Vec<StreamEntry>, DriverError>> {
        let this = self.inner.clone();
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(stream).arg(start).arg(end);
        if let Some(count) = count {
            cmd.arg("COUNT").arg(count);
        }
        Box::pin(async move {
            let mut conn = this.replays.clone();
            let reply = this.run(cmd.query_async::<redis::Value>(&mut conn)).await?;
            Ok(entries(reply))
        })
    }

    fn last_id(&self, stream: &str) -> BoxFuture<Result<String, DriverError>> {
        let this = self.inner.clone();
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(stream).arg("+").arg("-").arg("COUNT").arg(1);
        Box::pin(async move {
            let mut conn = this.commands.clone();
            let reply = this.run(cmd.query_async::<redis::Value>(&mut conn)).await?;
            Ok(entries(reply)
                .pop()
                .map_or_else(|| "0-0".to_owned(), |e| e.id))
        })
    }

    fn set_px(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> BoxFuture<Result<(), DriverError>> {
        let this = self.inner.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        Box::pin(async move {
            let mut conn = this.commands.clone();
            this.run(cmd.query_async::<()>(&mut conn)).await
        })
    }

    fn get_del(&self, key: &str) -> BoxFuture<Result<Option<String>, DriverError>> {
        let this = self.inner.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(key)
            .cmd("DEL")
            .arg(key)
            .ignore();
        Box::pin(async move {
            let mut conn = this.commands.clone();
            let (value,): (Option<String>,) = this.run(pipe.query_async(&mut conn)).await?;
            Ok(value)
        })
    }
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

fn items(v: redis::Value) -> Vec<redis::Value> {
    match v {
        redis::Value::Array(items) | redis::Value::Set(items) => items,
        redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, …]], …]` (XRANGE, XREVRANGE).
fn entries(reply: redis::Value) -> Vec<StreamEntry> {
    items(reply)
        .into_iter()
        .filter_map(|entry| {
            let mut parts = items(entry).into_iter();
            let id = text(&parts.next()?);
            let flat: Vec<String> = items(parts.next()?).iter().map(text).collect();
            let fields = flat
                .chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            Some(StreamEntry { id, fields })
        })
        .collect()
}

/// `[[stream, entries]]`, or nil when the block time passed (XREAD of one stream).
fn xread_entries(reply: redis::Value) -> Vec<StreamEntry> {
    items(reply)
        .into_iter()
        .flat_map(|stream| {
            items(stream)
                .into_iter()
                .nth(1)
                .map(entries)
                .unwrap_or_default()
        })
        .collect()
}
