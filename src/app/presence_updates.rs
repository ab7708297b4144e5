//! `presence:update`: chat peers hear when a user comes online or goes offline. The
//! queue lives here, not in `chat`, because its end belongs to the lifecycle: a draining
//! node's disconnects queue one "offline" per user, and they must go out before the store
//! closes.

use crate::handlers::kit::State;
use crate::presence::Presence;
use crate::server::Io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Changes queued at most; beyond it they are dropped (counted), never held in memory.
const QUEUE: usize = 10_000;

/// Changes announced per database query at most.
const BATCH: usize = 256;

/// The `presence:update`s queued but not yet sent. [`PresenceUpdates::flush`] lets them go
/// out before the store closes, instead of failing against a closed pool.
#[derive(Clone, Default)]
pub struct PresenceUpdates {
    pending: Arc<AtomicUsize>,
    /// Set when the node gives up on the rest (its store is about to close).
    stopped: Arc<AtomicBool>,
}

impl PresenceUpdates {
    /// Updates queued and not sent yet.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Waits until the queue is empty or `within` has passed, then stops sending (what
    /// is left would only fail against the closing store, one log line each); returns
    /// how many were left unsent.
    pub async fn flush(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stopped.store(true, Ordering::Release);
        self.pending()
    }
}

/// Tells chat peers of every presence change (see [`crate::handlers::chat::announce_presence`]).
/// One task sends the changes in the order presence saw them, so a quick connect +
/// disconnect reaches peers as online, then offline; what queued up meanwhile goes out
/// together, its peers read in one query. The queue is bounded: when the
/// database is too slow to keep up, changes beyond it are dropped rather than held in
/// memory (presence itself stays exact). Drops and database failures are logged once when
/// they start and once with the count when they stop, never one line per user: a 2,000
/// connects/s ramp would otherwise log thousands.
pub(super) fn announce(presence: &Presence, io: Io, state: State) -> PresenceUpdates {
    let updates = PresenceUpdates::default();
    let (tx, rx) = mpsc::channel::<(String, bool)>(QUEUE);
    let dropped = Arc::new(AtomicUsize::new(0));
    let (pending, drops) = (updates.pending.clone(), dropped.clone());
    presence.on_change(Arc::new(move |user, online| {
        pending.fetch_add(1, Ordering::AcqRel);
        if tx.try_send((user, online)).is_err() {
            pending.fetch_sub(1, Ordering::AcqRel);
            if drops.fetch_add(1, Ordering::AcqRel) == 0 {
                tracing::warn!(
                    queued = QUEUE,
                    "presence: the database is not keeping up; presence:updates are dropped (counted) until it does"
                );
            }
        }
    }));
    tokio::spawn(send_in_order(rx, updates.clone(), dropped, io, state));
    updates
}

/// The sending task: one change at a time, in order, until the channel closes.
async fn send_in_order(
    mut rx: mpsc::Receiver<(String, bool)>,
    updates: PresenceUpdates,
    dropped: Arc<AtomicUsize>,
    io: Io,
    state: State,
) {
    let mut failed = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let taken = batch.len();
        if updates.stopped.load(Ordering::Acquire) {
            batch.clear();
            updates.pending.fetch_sub(taken, Ordering::AcqRel);
            continue;
        }
        let lost = dropped.swap(0, Ordering::AcqRel);
        if lost > 0 {
            tracing::warn!(lost, "presence: the update queue has room again");
        }
        match crate::handlers::chat::announce_presence(&io, &state, &batch).await {
            Ok(_) if failed > 0 => {
                tracing::warn!(
                    failed,
                    "presence: peers can be told again; updates were lost meanwhile"
                );
                failed = 0;
            }
            Ok(_) => {}
            Err(e) => {
                if failed == 0 {
                    tracing::warn!(changes = taken, error = %e.message, "presence: cannot tell peers (further failures are counted, not logged)");
                }
                failed += taken as u64;
            }
        }
        batch.clear();
        updates.pending.fetch_sub(taken, Ordering::AcqRel);
    }
}
