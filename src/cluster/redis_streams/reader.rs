//! One read loop per stream (`startPolling`): `XREAD COUNT <readCount> BLOCK
//! <blockTime> STREAMS <stream> <last id>` on the stream's own connection, each entry
//! handed to the adapter of its namespace on this node (entries of namespaces this node
//! does not serve are skipped; with recovery on, the adapter applies its own entries here
//! too, in stream order: [`super::own_order`]).
//!
//! It starts after the stream's last entry at start (what `$` means, without the
//! package's gap between two `$` reads) and always advances to the last id seen, so
//! after a Redis outage it resumes where it stopped. Errors are counted and retried with
//! backoff (100 ms doubling to 5 s). It ends once every adapter of the node is gone.

use super::Shared;
use crate::protocol::cluster_streams::StreamEntry;
use crate::sync::MutexExt as _;
use std::sync::Weak;
use std::time::Duration;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(super) async fn read_loop(shared: Weak<Shared>, stream: String) {
    let mut after: Option<String> = None;
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        // Not held across the blocking read: dropping the adapters ends the loop.
        let Some((store, count, block)) = shared.upgrade().map(|s| {
            let o = &s.options;
            (s.store.clone(), o.read_count, o.block_time)
        }) else {
            return;
        };
        let result = match &after {
            None => store.last_id(&stream).await.map(|id| {
                if let Some(shared) = shared.upgrade() {
                    let mut from = shared.reader_from.lock_unpoisoned();
                    from.insert(stream.clone(), id.clone());
                }
                after = Some(id);
                Vec::new()
            }),
            Some(last) => store.xread(&stream, last, count, block).await,
        };
        match result {
            Ok(entries) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(%stream, "cluster stream reader is back on Redis");
                }
                backoff = BACKOFF_MIN;
                if let Some(last) = entries.last() {
                    after = Some(last.id.clone());
                }
                dispatch(&shared, &stream, &entries).await;
            }
            Err(e) => {
                crate::metrics::redis_error("adapter");
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%stream, error = %e, "cluster stream reader cannot read from Redis; retrying");
                }
                let jitter = Duration::from_millis(rand::random::<u64>() % 50);
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Hands each entry, in order, to its namespace's adapter on this node.
async fn dispatch(shared: &Weak<Shared>, stream: &str, entries: &[StreamEntry]) {
    let metrics = crate::metrics::cluster();
    for entry in entries {
        metrics.received(stream);
        let adapter = shared.upgrade().and_then(|s| s.route(entry.field("nsp")?));
        if let Some(adapter) = adapter {
            adapter.on_entry(entry).await;
        }
    }
}
