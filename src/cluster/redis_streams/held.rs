//! Writes the stream refused, kept for a retry: a Redis restart or failover then costs
//! the other nodes a delay, not the writes. The local part of each write has run already
//! (without an entry id), so nothing on this node waits for Redis.
//!
//! Order is kept: while anything is held, new writes queue behind it, and a retry sends
//! the oldest first. What stays held longer than [`HOLD`] (Redis down that long), or
//! beyond [`HOLD_MAX`] entries, is dropped — counted and logged, the loss the outage
//! causes.
//!
//! One thing a retry cannot rule out: a pipeline Redis applied whose replies the broken
//! connection lost is written again, so readers that read the first copy see a second.

use super::store::{Fields, StreamStore};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// How long a refused write is retried before it is given up.
pub(super) const HOLD: Duration = Duration::from_secs(30);
/// The most writes held.
pub(super) const HOLD_MAX: usize = 65_536;
/// The most held writes sent in one retry.
const RETRY_BATCH: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

pub(super) struct Held {
    entries: VecDeque<(Instant, Fields)>,
    retry_at: Instant,
    backoff: Duration,
    dropped: u64,
}

impl Default for Held {
    fn default() -> Self {
        Held {
            entries: VecDeque::new(),
            retry_at: Instant::now(),
            backoff: BACKOFF_MIN,
            dropped: 0,
        }
    }
}

impl Held {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the next retry is due.
    pub(super) fn retry_at(&self) -> Instant {
        self.retry_at
    }

    /// Keeps `fields` (refused, or behind refused ones) for a retry, dropping the
    /// oldest beyond [`HOLD_MAX`].
    pub(super) fn hold(&mut self, fields: Vec<Fields>) {
        let now = Instant::now();
        if self.entries.is_empty() {
            self.retry_at = now + self.backoff;
        }
        self.entries.extend(fields.into_iter().map(|f| (now, f)));
        let excess = self.entries.len().saturating_sub(HOLD_MAX);
        self.drop_oldest(excess);
    }

    /// A write failed: the next retry waits longer.
    fn failed(&mut self) {
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Sends what is held, oldest first, until it is all written or a write fails; what
    /// is too old is given up first. The ids of the entries written.
    pub(super) async fn retry(
        &mut self,
        store: &dyn StreamStore,
        stream: &str,
        max_len: u64,
    ) -> Vec<String> {
        let mut written = Vec::new();
        let expired = self
            .entries
            .iter()
            .take_while(|(at, _)| at.elapsed() > HOLD)
            .count();
        self.drop_oldest(expired);
        while !self.entries.is_empty() {
            let n = self.entries.len().min(RETRY_BATCH);
            let batch: Vec<Fields> = self
                .entries
                .iter()
                .take(n)
                .map(|(_, f)| f.clone())
                .collect();
            match store.xadd(stream, max_len, &batch).await {
                Ok(ids) if ids.len() == n => {
                    self.entries.drain(..n);
                    crate::metrics::cluster().published("broadcast", n as u64);
                    written.extend(ids);
                }
                _ => {
                    crate::metrics::redis_error("adapter");
                    self.failed();
                    return written;
                }
            }
        }
        tracing::info!(
            %stream,
            "cluster stream writes to Redis work again; the writes held meanwhile are written"
        );
        self.backoff = BACKOFF_MIN;
        written
    }

    fn drop_oldest(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.entries.drain(..n);
        self.dropped += n as u64;
        tracing::warn!(
            dropped = self.dropped,
            hold_s = HOLD.as_secs(),
            "cluster stream writes given up after Redis stayed away: other nodes miss them"
        );
    }
}
