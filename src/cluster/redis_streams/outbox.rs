//! The namespace's stream writes, in order: a queue drained by one task that pipelines
//! whatever is queued as XADDs, then does each write's local part with the entry id it
//! got — so a node's own sockets see its broadcasts in XADD order, each stamped with its
//! id, as Node's `await this.publishAndReturnOffset(…)` gives.
//!
//! Never waits on the caller's side: a full queue, a failed XADD, or Redis known to be
//! down (the task then retries only after a backoff) means the local part runs at once
//! without an id — the other nodes miss that write and no client can replay it, but this
//! node's clients are served (counted, logged).

use super::restoring::Origin;
use super::store::{Fields, StreamStore};
use super::RedisStreamsAdapter;
use crate::server::adapter::{BroadcastOptions, BroadcastPacket};
use crate::server::Room;
use crate::sync::{InFlight, InFlightGuard};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What to do on this node once a write has its entry id (`None`: it has none).
#[derive(Debug)]
pub(super) enum Local {
    /// Nothing: done already (recovery off acts before writing).
    Done,
    Broadcast(BroadcastPacket, BroadcastOptions),
    Join(BroadcastOptions, Vec<Room>),
    Leave(BroadcastOptions, Vec<Room>),
    Disconnect(BroadcastOptions, bool),
}

struct Write {
    fields: Fields,
    then: Local,
    /// Counted until its local part ran, so a stopping node waits for it.
    _pending: InFlightGuard,
}

/// The queue's capacity: about a second of heavy traffic.
const QUEUE: usize = 65_536;
/// The most XADDs sent in one pipeline.
const BATCH: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(super) struct Outbox {
    tx: mpsc::Sender<Write>,
    adapter: Weak<RedisStreamsAdapter>,
    dropped: Arc<AtomicU64>,
    in_flight: Arc<InFlight>,
}

impl Outbox {
    /// Starts the writer task of `stream` for `adapter` (call within a tokio runtime).
    pub(super) fn start(
        store: Arc<dyn StreamStore>,
        stream: String,
        max_len: u64,
        adapter: Weak<RedisStreamsAdapter>,
        in_flight: Arc<InFlight>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(rx, store, stream, max_len, adapter.clone()));
        Outbox {
            tx,
            adapter,
            dropped: Arc::default(),
            in_flight,
        }
    }

    /// Queues an XADD of `fields`, then `then`. When the queue is full, `then` runs now
    /// and the entry is dropped.
    pub(super) fn push(&self, fields: Fields, then: Local) {
        let write = Write {
            fields,
            then,
            _pending: self.in_flight.start(),
        };
        if let Err(e) = self.tx.try_send(write) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "cluster stream queue full (is Redis down?): other nodes miss these writes"
                );
            }
            let write = match e {
                mpsc::error::TrySendError::Full(w) | mpsc::error::TrySendError::Closed(w) => w,
            };
            if let Some(adapter) = self.adapter.upgrade() {
                adapter.apply_local(write.then, None);
            }
        }
    }
}

/// Drains the queue: one pipeline of XADDs per batch, then each local part in order.
async fn writer(
    mut rx: mpsc::Receiver<Write>,
    store: Arc<dyn StreamStore>,
    stream: String,
    max_len: u64,
    adapter: Weak<RedisStreamsAdapter>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut backoff = BACKOFF_MIN;
    let mut retry_at: Option<Instant> = None;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pending = Vec::with_capacity(batch.len());
        let (fields, thens): (Vec<Fields>, Vec<Local>) = batch
            .drain(..)
            .map(|w| {
                pending.push(w._pending);
                (w.fields, w.then)
            })
            .unzip();
        let n = fields.len() as u64;
        let ids = match retry_at {
            Some(at) if Instant::now() < at => None,
            _ => match store.xadd(&stream, max_len, fields).await {
                Ok(ids) if ids.len() as u64 == n => {
                    if retry_at.take().is_some() {
                        tracing::info!(%stream, "cluster stream writes to Redis work again");
                    }
                    backoff = BACKOFF_MIN;
                    crate::metrics::cluster().published("broadcast", n);
                    Some(ids)
                }
                result => {
                    crate::metrics::redis_error("adapter");
                    if retry_at.is_none() {
                        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
                        tracing::warn!(%stream, %error, "cluster stream write to Redis failed; other nodes miss writes until Redis is back");
                    }
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    None
                }
            },
        };
        let Some(adapter) = adapter.upgrade() else {
            return;
        };
        match ids {
            Some(ids) => {
                for (then, id) in thens.into_iter().zip(ids) {
                    adapter.apply_local(then, Some((&id, Origin::Own)));
                }
            }
            None => thens
                .into_iter()
                .for_each(|then| adapter.apply_local(then, None)),
        }
        drop(pending); // done: written (or given up on) and delivered here
    }
}
