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
//! memory stays exact and the next heartbeat rewrites every live socket and the node's
//! index; a lost disconnect of a socket ends with that rewrite (the index no longer lists
//! it, so nothing keeps it) or, at the latest, with its lease.

use super::{BeatOutcome, Heartbeat, Presence, PresenceError, PresenceStore, Result};
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
    Beat(Heartbeat, oneshot::Sender<Result<BeatOutcome>>),
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
    let writer = Writer {
        presence,
        store,
        node,
        failures,
    };
    tokio::spawn(async move {
        let mut jobs = Vec::with_capacity(BATCH);
        let mut batch = Batch::default();
        while rx.recv_many(&mut jobs, BATCH).await > 0 {
            for job in jobs.drain(..) {
                match job {
                    Job::Change(change, done) => {
                        batch.changes.push(change);
                        batch.waiters.push(done);
                    }
                    Job::Beat(beat, done) => {
                        // Everything queued before the snapshot goes first.
                        writer.flush(&mut batch).await;
                        let _ = done.send(writer.store.heartbeat(beat).await);
                    }
                }
            }
            writer.flush(&mut batch).await;
        }
    });
}

struct Writer {
    presence: Weak<Presence>,
    store: Arc<dyn PresenceStore>,
    node: String,
    failures: Arc<Failures>,
}

/// Changes gathered for one store call, and who waits for each.
#[derive(Default)]
struct Batch {
    changes: Vec<Change>,
    waiters: Vec<Option<oneshot::Sender<Result<bool>>>>,
}

impl Writer {
    /// Writes the batch in one store call, tells the listener who came online or went
    /// offline, answers the waiters, and leaves the batch empty.
    async fn flush(&self, batch: &mut Batch) {
        if batch.changes.is_empty() {
            return;
        }
        let result = self.store.apply(&self.node, &batch.changes).await;
        match &result {
            Ok(flips) => {
                let failed = self.failures.failed_batches.swap(0, Ordering::Relaxed);
                if failed > 0 {
                    tracing::info!(
                        failed_batches = failed,
                        dropped = self.failures.dropped.swap(0, Ordering::Relaxed),
                        "presence store reachable again; the next heartbeat rewrites this node's sockets"
                    );
                }
                if let Some(p) = self.presence.upgrade() {
                    for (change, flipped) in batch.changes.iter().zip(flips) {
                        if *flipped {
                            p.changed(&change.user, change.kind == ChangeKind::Connected);
                        }
                    }
                }
            }
            Err(e) => {
                crate::metrics::redis_error("presence");
                if let Some(p) = self.presence.upgrade() {
                    p.needs_full.store(true, Ordering::Relaxed);
                }
                if self.failures.failed_batches.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        error = %e,
                        changes = batch.changes.len(),
                        "presence: cannot record connects/disconnects; further failures are counted until the store answers again"
                    );
                }
            }
        }
        for (i, done) in batch.waiters.drain(..).enumerate() {
            if let Some(done) = done {
                let answer = match &result {
                    Ok(flips) => Ok(flips.get(i).copied().unwrap_or(false)),
                    Err(e) => Err(e.clone()),
                };
                let _ = done.send(answer);
            }
        }
        batch.changes.clear();
    }
}

/// The answer of a job the writer dropped (it ended, or the queue was full).
pub(super) fn gone() -> PresenceError {
    PresenceError::Unavailable("the presence writer is not running".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{NodeInfo, RoomCounts, SocketPresence, UsersPage};
    use crate::server::BoxFuture;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    use std::time::Duration;

    /// What the writer asked of the store, in order.
    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Apply(Vec<(ChangeKind, String)>),
        /// The socket ids of a full beat; `None` for an ordinary one.
        Beat(Option<Vec<String>>),
    }

    /// A store that records the calls, answers "first/last" for every change, and fails
    /// `apply` while `down` is set.
    #[derive(Default)]
    struct Recording {
        calls: Mutex<Vec<Call>>,
        down: AtomicBool,
    }

    fn ok<T: Send + 'static>(v: T) -> BoxFuture<Result<T>> {
        Box::pin(async move { Ok(v) })
    }

    impl PresenceStore for Recording {
        fn apply(&self, _node: &str, changes: &[Change]) -> BoxFuture<Result<Vec<bool>>> {
            if self.down.load(Ordering::Relaxed) {
                return Box::pin(async { Err(PresenceError::Unavailable("down".into())) });
            }
            let seen = changes.iter().map(|c| (c.kind, c.sid.clone())).collect();
            self.calls.lock().unwrap().push(Call::Apply(seen));
            ok(vec![true; changes.len()])
        }
        fn heartbeat(&self, beat: Heartbeat) -> BoxFuture<Result<BeatOutcome>> {
            let mut sids: Option<Vec<String>> = beat
                .sockets
                .map(|all| all.into_iter().map(|(_, s)| s).collect());
            if let Some(sids) = &mut sids {
                sids.sort();
            }
            self.calls.lock().unwrap().push(Call::Beat(sids));
            ok(BeatOutcome::default())
        }
        fn is_online(&self, _: &str) -> BoxFuture<Result<bool>> {
            ok(false)
        }
        fn sockets_of(&self, _: &str) -> BoxFuture<Result<Vec<SocketPresence>>> {
            ok(Vec::new())
        }
        fn online_users(&self, _: Option<&str>, _: usize) -> BoxFuture<Result<UsersPage>> {
            ok(UsersPage {
                users: Vec::new(),
                next_cursor: None,
            })
        }
        fn online_count(&self) -> BoxFuture<Result<usize>> {
            ok(0)
        }
        fn nodes(&self) -> BoxFuture<Result<Vec<NodeInfo>>> {
            ok(Vec::new())
        }
        fn rooms(&self, _: &str) -> BoxFuture<Result<RoomCounts>> {
            ok(Vec::new())
        }
        fn namespaces(&self) -> BoxFuture<Result<Vec<String>>> {
            ok(Vec::new())
        }
    }

    fn node(store: Arc<Recording>) -> Arc<Presence> {
        Presence::new(store, "n1", "127.0.0.1:0", Duration::from_secs(3600))
    }

    fn applied(store: &Recording) -> Vec<(ChangeKind, String)> {
        let calls = store.calls.lock().unwrap();
        calls
            .iter()
            .filter_map(|c| match c {
                Call::Apply(changes) => Some(changes.clone()),
                Call::Beat(_) => None,
            })
            .flatten()
            .collect()
    }

    #[tokio::test]
    async fn changes_reach_the_store_in_order_and_in_batches() {
        let store = Arc::new(Recording::default());
        let p = node(store.clone());
        let mut want = Vec::new();
        for i in 0..300 {
            let sid = format!("s{i}");
            p.record(ChangeKind::Connected, "u", &sid, None);
            want.push((ChangeKind::Connected, sid.clone()));
            if i % 2 == 0 {
                p.untrack("u", &sid);
                want.push((ChangeKind::Disconnected, sid));
            }
        }
        // Waiting for the last change waits for every change before it.
        p.connected("u", "last").await.unwrap();
        want.push((ChangeKind::Connected, "last".into()));
        assert_eq!(applied(&store), want);
        let calls = store.calls.lock().unwrap().len();
        assert!(
            calls < want.len() / 10,
            "{calls} store calls for {} changes",
            want.len()
        );
    }

    #[tokio::test]
    async fn a_heartbeat_comes_after_the_changes_before_it() {
        let store = Arc::new(Recording::default());
        let p = node(store.clone());
        p.record(ChangeKind::Connected, "u", "gone", None);
        p.record(ChangeKind::Connected, "u", "stays", None);
        p.untrack("u", "gone");
        p.beat().await.unwrap();
        let calls = store.calls.lock().unwrap().clone();
        let beat = calls
            .iter()
            .position(|c| matches!(c, Call::Beat(_)))
            .expect("a heartbeat");
        // The departed socket's removal was written before the snapshot without it.
        assert_eq!(calls[beat], Call::Beat(Some(vec!["stays".into()])));
        let before: Vec<_> = calls[..beat].to_vec();
        assert!(
            before.iter().any(|c| matches!(c, Call::Apply(ch) if ch.contains(&(ChangeKind::Disconnected, "gone".into())))),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_store_keeps_memory_exact_and_the_next_beat_rewrites_it() {
        let store = Arc::new(Recording::default());
        let p = node(store.clone());
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        p.on_change(Arc::new(move |user, online| {
            h.lock().unwrap().push((user, online))
        }));
        // The first beat sends every socket; the next ones none.
        p.beat().await.unwrap();
        p.beat().await.unwrap();
        assert_eq!(store.calls.lock().unwrap().last(), Some(&Call::Beat(None)));
        store.down.store(true, Ordering::Relaxed);
        assert!(p.connected("u", "s1").await.is_err());
        p.record(ChangeKind::Connected, "u", "s2", None);
        assert!(p.disconnected("u", "s2").await.is_err());
        assert!(
            heard.lock().unwrap().is_empty(),
            "nothing written, nothing announced"
        );
        store.down.store(false, Ordering::Relaxed);
        p.beat().await.unwrap();
        assert_eq!(
            store.calls.lock().unwrap().last(),
            Some(&Call::Beat(Some(vec!["s1".into()]))),
            "a failed write makes the next beat a full one"
        );
        assert!(p.connected("v", "s3").await.unwrap());
        assert_eq!(*heard.lock().unwrap(), vec![("v".to_owned(), true)]);
    }
}
