//! The one task that writes a node's presence into its store, in the order things
//! happened here.
//!
//! Why a queue and not a Redis call per connect: a connect must not wait for Redis (at
//! 2,000 connects/s a round trip per socket, behind heartbeat traffic, timed out by the
//! thousand), and one script call per batch of changes costs Redis a fraction of one
//! call per change. Why one task: the store must see a socket's connect before its
//! disconnect, and a heartbeat must not revive a socket that left after its snapshot
//! was taken — the snapshot is queued behind every change that preceded it.
//!
//! A change that cannot be written (Redis down, queue full) is not retried: the node's
//! memory stays exact and the next heartbeat rewrites every live socket, while a lost
//! disconnect expires with its entry (2 × heartbeat).

use super::{Heartbeat, Presence, PresenceError, PresenceStore, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// Changes queued at most; beyond this, changes are dropped (and counted) until the
/// store catches up. 64k changes ≈ half a minute of a 2,000 connects/s ramp.
pub(super) const QUEUE: usize = 65_536;

/// Changes written in one store call at most.
const BATCH: usize = 512;

/// What happened to one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Connected,
    Disconnected,
}

/// One socket's change, as the store applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub user: String,
    pub sid: String,
}

/// A queued piece of work, with an optional waiter for its result.
pub(super) enum Job {
    Change(Change, Option<oneshot::Sender<Result<bool>>>),
    Beat(Heartbeat, oneshot::Sender<Result<Vec<String>>>),
}

/// Counts what the writer could not write, so a long outage logs two lines, not one per
/// socket.
#[derive(Default)]
pub(super) struct Failures {
    failed_batches: AtomicU64,
    pub(super) dropped: AtomicU64,
}

/// Starts the writer; it ends when `presence` is gone (the queue's sender with it).
pub(super) fn spawn(
    presence: Weak<Presence>,
    store: Arc<dyn PresenceStore>,
    node: String,
    failures: Arc<Failures>,
    mut rx: mpsc::Receiver<Job>,
) {
    tokio::spawn(async move {
        let mut jobs = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut jobs, BATCH).await > 0 {
            let mut changes = Vec::new();
            let mut waiters = Vec::new();
            for job in jobs.drain(..) {
                match job {
                    Job::Change(change, done) => {
                        changes.push(change);
                        waiters.push(done);
                    }
                    Job::Beat(beat, done) => {
                        // Everything queued before the snapshot goes first.
                        flush(
                            &presence,
                            &*store,
                            &node,
                            &failures,
                            &mut changes,
                            &mut waiters,
                        )
                        .await;
                        let _ = done.send(store.heartbeat(beat).await);
                    }
                }
            }
            flush(
                &presence,
                &*store,
                &node,
                &failures,
                &mut changes,
                &mut waiters,
            )
            .await;
        }
    });
}

/// Writes `changes` in one store call, tells the listener who came online or went
/// offline, and answers the waiters.
async fn flush(
    presence: &Weak<Presence>,
    store: &dyn PresenceStore,
    node: &str,
    failures: &Failures,
    changes: &mut Vec<Change>,
    waiters: &mut Vec<Option<oneshot::Sender<Result<bool>>>>,
) {
    if changes.is_empty() {
        return;
    }
    let result = store.apply(node, changes).await;
    match &result {
        Ok(flips) => {
            let failed = failures.failed_batches.swap(0, Ordering::Relaxed);
            if failed > 0 {
                tracing::info!(
                    failed_batches = failed,
                    dropped = failures.dropped.swap(0, Ordering::Relaxed),
                    "presence store reachable again; the next heartbeat rewrites this node's sockets"
                );
            }
            if let Some(p) = presence.upgrade() {
                for (change, flipped) in changes.iter().zip(flips) {
                    if *flipped {
                        p.changed(&change.user, change.kind == ChangeKind::Connected);
                    }
                }
            }
        }
        Err(e) => {
            crate::metrics::redis_error("presence");
            if failures.failed_batches.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    error = %e,
                    changes = changes.len(),
                    "presence: cannot record connects/disconnects; further failures are counted until the store answers again"
                );
            }
        }
    }
    for (i, done) in waiters.drain(..).enumerate() {
        if let Some(done) = done {
            let answer = match &result {
                Ok(flips) => Ok(flips.get(i).copied().unwrap_or(false)),
                Err(e) => Err(e.clone()),
            };
            let _ = done.send(answer);
        }
    }
    changes.clear();
}

/// The answer of a job the writer dropped (it ended, or the queue was full).
pub(super) fn gone() -> PresenceError {
    PresenceError::Unavailable("the presence writer is not running".into())
}
