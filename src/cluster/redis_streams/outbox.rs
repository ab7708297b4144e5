//! The namespace's stream writes, in order: a queue drained by one task that pipelines
//! whatever is queued as XADDs, then hands each write's local part, with the entry id it
//! got, to the reader ([`super::own_order`]): a node's own sockets see its broadcasts
//! stamped with their ids and in stream order among the other nodes' entries, so their
//! recovery offsets only grow. (Node's `await this.publishAndReturnOffset(…)` applies them
//! as the XADD returns, out of stream order.) With recovery off, local parts were done
//! before the write.
//!
//! Never waits on the caller's side: a failed XADD, or Redis known to be down, means the
//! local part runs at once without an id (this node's clients are served; none of them
//! can replay that write) and the entry is held and retried in order ([`super::held`]),
//! so the other nodes get it once Redis is back. Only a full queue drops a write for
//! the other nodes at once (counted, logged).

use super::held::Held;
use super::restoring::Origin;
use super::store::{Fields, StreamStore};
use super::RedisStreamsAdapter;
use crate::server::adapter::{BroadcastOptions, BroadcastPacket};
use crate::server::Room;
use crate::sync::{InFlight, InFlightGuard};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
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

/// Drains the queue: one pipeline of XADDs per batch, then each local part in order;
/// while writes are held, new ones queue behind them and a retry runs when due.
async fn writer(
    mut rx: mpsc::Receiver<Write>,
    store: Arc<dyn StreamStore>,
    stream: String,
    max_len: u64,
    adapter: Weak<RedisStreamsAdapter>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut held = Held::default();
    loop {
        let received = if held.is_empty() {
            rx.recv_many(&mut batch, BATCH).await
        } else {
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => n,
                _ = tokio::time::sleep_until(held.retry_at()) => {
                    let written = held.retry(&*store, &stream, max_len).await;
                    confirm_held(&adapter, &written);
                    continue;
                }
            }
        };
        if received == 0 {
            return;
        }
        let mut pending = Vec::with_capacity(batch.len());
        let (fields, thens): (Vec<Fields>, Vec<Local>) = batch
            .drain(..)
            .map(|w| {
                pending.push(w._pending);
                (w.fields, w.then)
            })
            .unzip();
        if !held.is_empty() && Instant::now() >= held.retry_at() {
            let written = held.retry(&*store, &stream, max_len).await;
            confirm_held(&adapter, &written);
        }
        let ids = if held.is_empty() {
            write(&*store, &stream, max_len, &fields).await
        } else {
            None
        };
        if ids.is_none() {
            held.hold(fields);
        }
        let Some(adapter) = adapter.upgrade() else {
            return;
        };
        match ids {
            Some(ids) if adapter.recovering() => {
                let from = adapter.shared.reader_from(&stream);
                for (id, then) in adapter.own_order.written(ids, thens, from.as_deref()) {
                    adapter.apply_local(then, Some((&id, Origin::Own)));
                }
            }
            Some(_) => {} // local parts done before the write
            None => thens
                .into_iter()
                .for_each(|then| adapter.apply_local(then, None)),
        }
        drop(pending); // done: written (or held for a retry), delivered or handed over
    }
}

/// Held writes were written (`ids`): their local parts ran when Redis refused them, so
/// the reader skips them.
fn confirm_held(adapter: &Weak<RedisStreamsAdapter>, ids: &[String]) {
    if let Some(adapter) = adapter.upgrade().filter(|a| a.recovering()) {
        adapter.own_order.applied(ids);
    }
}

/// One pipeline of XADDs; the entry ids, or `None` when Redis refused it (logged).
async fn write(
    store: &dyn StreamStore,
    stream: &str,
    max_len: u64,
    fields: &[Fields],
) -> Option<Vec<String>> {
    match store.xadd(stream, max_len, fields).await {
        Ok(ids) if ids.len() == fields.len() => {
            crate::metrics::cluster().published("broadcast", ids.len() as u64);
            Some(ids)
        }
        result => {
            crate::metrics::redis_error("adapter");
            let error = result.err().map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(%stream, %error, "cluster stream write to Redis failed; held for a retry, other nodes get it once Redis is back");
            None
        }
    }
}
