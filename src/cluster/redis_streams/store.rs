//! How the streams adapter reaches Redis for what pub/sub cannot do: streams (XADD,
//! XREAD, XRANGE) and session keys (SET PX, MULTI GET DEL EXEC). A small trait
//! ([`StreamStore`]) so the adapter's logic is unit-tested in memory ([`MemoryStreams`])
//! and runs on the `redis` crate in production ([`super::live::LiveStreams`]). Pub/sub
//! (requests, responses, `PUBSUB NUMSUB`) goes through the classic adapter's
//! [`RedisDriver`](crate::cluster::driver::RedisDriver).

use crate::cluster::driver::DriverError;
use crate::protocol::cluster_streams::StreamEntry;
use crate::server::BoxFuture;
use crate::sync::MutexExt as _;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// The fields of one entry, in XADD order.
pub type Fields = Vec<(String, String)>;

/// The adapter's view of Redis streams and keys. See the module docs.
pub trait StreamStore: Send + Sync + 'static {
    /// `XADD <stream> MAXLEN ~ <max_len> * <fields…>` for each entry, in order (one
    /// pipeline): their ids, in the same order.
    fn xadd(
        &self,
        stream: &str,
        max_len: u64,
        entries: &[Fields],
    ) -> BoxFuture<Result<Vec<String>, DriverError>>;

    /// `XREAD COUNT <count> BLOCK <block ms> STREAMS <stream> <after>` on the stream's own
    /// connection (a blocked read holds it): the entries after `after`, none when the
    /// block time passed.
    fn xread(
        &self,
        stream: &str,
        after: &str,
        count: usize,
        block: Duration,
    ) -> BoxFuture<Result<Vec<StreamEntry>, DriverError>>;

    /// `XRANGE <stream> <start> <end> [COUNT <count>]`. Restores read this way; the live
    /// store sends it on a connection of its own, so a burst of restores (every client of
    /// a stopped node at once) never holds up the writes.
    fn xrange(
        &self,
        stream: &str,
        start: &str,
        end: &str,
        count: Option<usize>,
    ) -> BoxFuture<Result<Vec<StreamEntry>, DriverError>>;

    /// The id of the stream's last entry (`XREVRANGE <stream> + - COUNT 1`), `0-0` when
    /// it has none: where a reader that wants only new entries starts.
    fn last_id(&self, stream: &str) -> BoxFuture<Result<String, DriverError>>;

    /// `SET <key> <value> PX <ttl ms>`.
    fn set_px(&self, key: &str, value: String, ttl: Duration)
        -> BoxFuture<Result<(), DriverError>>;

    /// `MULTI` `GET <key>` `DEL <key>` `EXEC`: the value, and it is gone (GETDEL on any
    /// Redis version, as the package does it).
    fn get_del(&self, key: &str) -> BoxFuture<Result<Option<String>, DriverError>>;
}

/// Entry ids compare as `(ms, seq)`.
pub(crate) fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Redis streams and keys in memory, for tests: several adapters on one
/// [`MemoryStreams`] behave like nodes on one Redis. Ids are `<ms>-<seq>` as Redis makes
/// them; [`MemoryStreams::set_up`] simulates an outage.
#[derive(Clone, Default)]
pub struct MemoryStreams {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    added: Notify,
    down: AtomicBool,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, Vec<StreamEntry>>,
    keys: HashMap<String, (String, Instant)>,
    last: (u64, u64),
}

impl MemoryStreams {
    pub fn new() -> Self {
        Self::default()
    }

    /// `false`: every command fails until it is `true` again.
    pub fn set_up(&self, up: bool) {
        self.inner.down.store(!up, Ordering::Relaxed);
    }

    /// Every entry of `stream`, oldest first.
    pub fn entries(&self, stream: &str) -> Vec<StreamEntry> {
        let state = self.inner.state.lock_unpoisoned();
        state.streams.get(stream).cloned().unwrap_or_default()
    }

    /// Whether `key` is set (and not expired).
    pub fn has_key(&self, key: &str) -> bool {
        let state = self.inner.state.lock_unpoisoned();
        state
            .keys
            .get(key)
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    fn check(&self) -> Result<(), DriverError> {
        if self.inner.down.load(Ordering::Relaxed) {
            Err(DriverError::Unavailable("memory streams down".into()))
        } else {
            Ok(())
        }
    }

    fn after(&self, stream: &str, after: (u64, u64), count: usize) -> Vec<StreamEntry> {
        let state = self.inner.state.lock_unpoisoned();
        let entries = state.streams.get(stream).map(Vec::as_slice).unwrap_or(&[]);
        entries
            .iter()
            .filter(|e| id_key(&e.id) > after)
            .take(count)
            .cloned()
            .collect()
    }
}

impl State {
    fn next_id(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last = if now > self.last.0 {
            (now, 0)
        } else {
            (self.last.0, self.last.1 + 1)
        };
        format!("{}-{}", self.last.0, self.last.1)
    }
}

impl StreamStore for MemoryStreams {
    fn xadd(
        &self,
        stream: &str,
        max_len: u64,
        entries: &[Fields],
    ) -> BoxFuture<Result<Vec<String>, DriverError>> {
        let result = self.check().map(|()| {
            let mut state = self.inner.state.lock_unpoisoned();
            let mut ids = Vec::with_capacity(entries.len());
            for fields in entries {
                let id = state.next_id();
                let list = state.streams.entry(stream.to_owned()).or_default();
                list.push(StreamEntry {
                    id: id.clone(),
                    fields: fields.clone(),
                });
                let excess = list.len().saturating_sub(max_len as usize);
                list.drain(..excess);
                ids.push(id);
            }
            ids
        });
        self.inner.added.notify_waiters();
        Box::pin(async move { result })
    }

    fn xread(
        &self,
        stream: &str,
        after: &str,
        count: usize,
        block: Duration,
    ) -> BoxFuture<Result<Vec<StreamEntry>, DriverError>> {
        let this = self.clone();
        let stream = stream.to_owned();
        let after = id_key(after);
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + block;
            loop {
                this.check()?;
                let added = this.inner.added.notified();
                let found = this.after(&stream, after, count);
                if !found.is_empty() {
                    return Ok(found);
                }
                if tokio::time::timeout_at(deadline, added).await.is_err() {
                    return Ok(Vec::new());
                }
            }
        })
    }

    fn xrange(
        &self,
        stream: &str,
        start: &str,
        end: &str,
        count: Option<usize>,
    ) -> BoxFuture<Result<Vec<StreamEntry>, DriverError>> {
        let bound = |s: &str, open: (u64, u64)| match s {
            "-" => (0, 0),
            "+" => (u64::MAX, u64::MAX),
            id if id.contains('-') => id_key(id),
            ms => (ms.parse().unwrap_or(0), open.1),
        };
        let (lo, hi) = (bound(start, (0, 0)), bound(end, (0, u64::MAX)));
        let result = self.check().map(|()| {
            let state = self.inner.state.lock_unpoisoned();
            let entries = state.streams.get(stream).map(Vec::as_slice).unwrap_or(&[]);
            entries
                .iter()
                .filter(|e| (lo..=hi).contains(&id_key(&e.id)))
                .take(count.unwrap_or(usize::MAX))
                .cloned()
                .collect()
        });
        Box::pin(async move { result })
    }

    fn last_id(&self, stream: &str) -> BoxFuture<Result<String, DriverError>> {
        let result = self.check().map(|()| {
            let state = self.inner.state.lock_unpoisoned();
            state
                .streams
                .get(stream)
                .and_then(|l| l.last())
                .map_or_else(|| "0-0".to_owned(), |e| e.id.clone())
        });
        Box::pin(async move { result })
    }

    fn set_px(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> BoxFuture<Result<(), DriverError>> {
        let result = self.check().map(|()| {
            let mut state = self.inner.state.lock_unpoisoned();
            state
                .keys
                .insert(key.to_owned(), (value, Instant::now() + ttl));
        });
        Box::pin(async move { result })
    }

    fn get_del(&self, key: &str) -> BoxFuture<Result<Option<String>, DriverError>> {
        let result = self.check().map(|()| {
            let mut state = self.inner.state.lock_unpoisoned();
            state
                .keys
                .remove(key)
                .filter(|(_, until)| *until > Instant::now())
                .map(|(v, _)| v)
        });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(n: u32) -> Fields {
        vec![("n".into(), n.to_string())]
    }

    #[tokio::test]
    async fn entries_get_increasing_ids_and_reads_see_what_follows() {
        let s = MemoryStreams::new();
        assert_eq!(s.last_id("k").await.unwrap(), "0-0");
        let ids = s.xadd("k", 3, &[fields(1), fields(2)]).await.unwrap();
        assert!(id_key(&ids[0]) < id_key(&ids[1]));
        let read = s
            .xread("k", &ids[0], 10, Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].field("n"), Some("2"));
        // A blocked read wakes on the next XADD.
        let last = s.last_id("k").await.unwrap();
        let waiting = s.xread("k", &last, 10, Duration::from_secs(5));
        let writer = s.clone();
        tokio::spawn(async move { writer.xadd("k", 3, &[fields(3), fields(4)]).await });
        assert_eq!(waiting.await.unwrap().len(), 2);
        // Trimmed to the max length; ranges are inclusive.
        assert_eq!(s.entries("k").len(), 3);
        assert_eq!(
            s.xrange("k", &ids[1], &ids[1], None).await.unwrap().len(),
            1
        );
        assert_eq!(s.xrange("k", "-", "+", None).await.unwrap().len(), 3);
        assert_eq!(s.xrange("k", "-", "+", Some(2)).await.unwrap().len(), 2);
        assert!(s
            .xread(
                "k",
                &s.last_id("k").await.unwrap(),
                10,
                Duration::from_millis(10)
            )
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn keys_expire_and_get_del_takes_them() {
        let s = MemoryStreams::new();
        s.set_px("a", "1".into(), Duration::from_secs(5))
            .await
            .unwrap();
        s.set_px("b", "2".into(), Duration::ZERO).await.unwrap();
        assert_eq!(s.get_del("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(s.get_del("a").await.unwrap(), None);
        assert_eq!(s.get_del("b").await.unwrap(), None);
        s.set_up(false);
        assert!(s.get_del("a").await.is_err());
    }
}
