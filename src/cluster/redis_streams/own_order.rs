//! With connection state recovery on, this node's own stream writes reach its sockets in
//! stream order, together with the other nodes' — through the reader, not as each XADD
//! returns.
//!
//! Why: a socket's recovery offset is the id of the last broadcast it received, and a
//! restore replays the stream *after* that id. Applied as their XADDs return (what Node's
//! streams adapter does), own broadcasts overtake the other nodes' earlier entries that
//! the reader has not delivered yet, so a socket's last id can go back: a socket that
//! received own entry 7 and then another node's entry 5 holds offset 5, and a restore
//! replays 7 again (a duplicate); one that dropped between the two holds offset 7, and 5
//! is never replayed (a loss). Measured by a rolling restart at 1,000 clients: 285
//! deliveries lost and 39 duplicated in recovered sessions before this.
//!
//! How: once an XADD returns, each write's local part waits here under its entry id
//! ([`OwnOrder::written`]); the reader, reaching an entry of ours, takes the local part
//! and applies it at that place in the stream ([`OwnOrder::claim`]). The reader may read
//! an entry before the XADD's reply reaches the writer (both replies leave Redis in the
//! same event loop turn): it then waits for the writer, at most [`CLAIM_WAIT`], and goes
//! on without it after that — the write's local part is then applied as soon as the
//! writer has its id, late rather than never (a reply lost with its connection makes the
//! writer treat the write as refused: applied at once without an id, held for a retry).
//!
//! Writes that never wait: those Redis refused (applied at once without an id; when the
//! held entry is written later, its new id is [`OwnOrder::applied`] so the reader skips
//! it), and those the reader has passed or will never read (at or before where it
//! started).

use super::outbox::Local;
use super::store::id_key;
use crate::sync::MutexExt as _;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// How long the reader waits for the writer to learn the id of an entry it has already
/// read: far above the gap between the two replies of one Redis event loop turn, short
/// enough that a slow or lost reply holds other deliveries back only briefly.
pub(super) const CLAIM_WAIT: Duration = Duration::from_millis(100);

/// What happens to an own entry once written.
enum Part {
    /// Its local part waits for the reader.
    Waiting(Local),
    /// Its local part was done already; the reader skips the entry.
    Applied,
}

#[derive(Default)]
struct State {
    parts: BTreeMap<(u64, u64), Part>,
    /// The last own entry the reader reached.
    read_through: Option<(u64, u64)>,
}

#[derive(Default)]
pub(super) struct OwnOrder {
    state: Mutex<State>,
    registered: Notify,
}

impl OwnOrder {
    /// Entries `ids` were written with local parts `thens`; `reader_from` is where the
    /// reader started (`None`: not yet). Returns the parts to apply now: those the reader
    /// has passed or will never read, or all of them while it has not started (then
    /// remembered as applied, in case it reads them).
    pub(super) fn written(
        &self,
        ids: Vec<String>,
        thens: Vec<Local>,
        reader_from: Option<&str>,
    ) -> Vec<(String, Local)> {
        let mut now = Vec::new();
        let mut state = self.state.lock_unpoisoned();
        let passed = reader_from.map(id_key).max(state.read_through);
        for (id, then) in ids.into_iter().zip(thens) {
            let key = id_key(&id);
            match passed {
                Some(passed) if key <= passed => now.push((id, then)),
                Some(_) => {
                    state.parts.insert(key, Part::Waiting(then));
                }
                None => {
                    state.parts.insert(key, Part::Applied);
                    now.push((id, then));
                }
            }
        }
        drop(state);
        self.registered.notify_waiters();
        now
    }

    /// Entries `ids` were written whose local parts were done already (held writes).
    pub(super) fn applied(&self, ids: &[String]) {
        let mut state = self.state.lock_unpoisoned();
        for id in ids {
            state.parts.insert(id_key(id), Part::Applied);
        }
        drop(state);
        self.registered.notify_waiters();
    }

    /// The reader reached own entry `id`: the local parts to apply now, in order — any
    /// still waiting before it (entries the reader will not read any more), then its own
    /// unless it was applied already, or not known within [`CLAIM_WAIT`].
    pub(super) async fn claim(&self, id: &str) -> Vec<(String, Local)> {
        let key = id_key(id);
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        loop {
            let registered = self.registered.notified();
            tokio::pin!(registered);
            registered.as_mut().enable();
            if let Some(parts) = self.take_through(key, true) {
                return parts;
            }
            if tokio::time::timeout_at(deadline, registered).await.is_err() {
                tracing::debug!(%id, "own cluster stream entry read before its write returned; applied when it does");
                return self.take_through(key, false).unwrap_or_default();
            }
        }
    }

    /// Takes every part up to `key` and marks the reader past it; `None` (and nothing
    /// taken) when `known` is asked for and `key` itself is not known yet.
    fn take_through(&self, key: (u64, u64), known: bool) -> Option<Vec<(String, Local)>> {
        let mut state = self.state.lock_unpoisoned();
        if known && !state.parts.contains_key(&key) {
            return None;
        }
        state.read_through = state.read_through.max(Some(key));
        let later = state.parts.split_off(&(key.0, key.1 + 1));
        let through = std::mem::replace(&mut state.parts, later);
        Some(
            through
                .into_iter()
                .filter_map(|((ms, seq), part)| match part {
                    Part::Waiting(local) => Some((format!("{ms}-{seq}"), local)),
                    Part::Applied => None,
                })
                .collect(),
        )
    }

    /// How many writes are remembered (for tests).
    #[cfg(test)]
    pub(super) fn remembered(&self) -> usize {
        self.state.lock_unpoisoned().parts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done() -> Local {
        Local::Done
    }

    #[tokio::test]
    async fn the_reader_applies_own_writes_at_their_place_in_the_stream() {
        let order = OwnOrder::default();
        assert!(order
            .written(
                vec!["5-0".into(), "7-0".into()],
                vec![done(), done()],
                Some("1-0")
            )
            .is_empty());
        assert_eq!(order.claim("5-0").await.len(), 1);
        assert_eq!(order.remembered(), 1);
        assert_eq!(order.claim("7-0").await.len(), 1);
        assert_eq!(order.remembered(), 0);
    }

    #[tokio::test]
    async fn before_the_reader_starts_writes_apply_at_once_and_are_skipped_if_read() {
        let order = OwnOrder::default();
        let now = order.written(vec!["5-0".into()], vec![done()], None);
        assert_eq!(now.len(), 1);
        assert!(order.claim("5-0").await.is_empty(), "applied already");
        // At or before the reader's start: never read, so applied now and not kept.
        let now = order.written(vec!["6-0".into()], vec![done()], Some("6-0"));
        assert_eq!((now.len(), order.remembered()), (1, 0));
    }

    #[tokio::test]
    async fn a_read_that_overtakes_the_xadd_reply_waits_for_it() {
        let order = std::sync::Arc::new(OwnOrder::default());
        let writer = order.clone();
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            writer.written(vec!["9-0".into()], vec![done()], Some("1-0"));
        });
        assert_eq!(order.claim("9-0").await.len(), 1);
        late.await.unwrap();
        order.applied(&["10-0".into()]);
        assert!(
            order.claim("10-0").await.is_empty(),
            "held write, applied already"
        );
    }

    #[tokio::test]
    async fn a_write_confirmed_after_the_reader_passed_it_applies_at_once() {
        let order = OwnOrder::default();
        order.written(vec!["3-0".into()], vec![done()], Some("1-0"));
        // 4-0 is read before its write returns: 3-0 (before it) still comes out, in order,
        // and the reader goes on after the wait.
        let started = tokio::time::Instant::now();
        let parts = order.claim("4-0").await;
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, "3-0");
        assert!(started.elapsed() >= CLAIM_WAIT);
        // The write returns late: applied now, not kept.
        let now = order.written(vec!["4-0".into()], vec![done()], Some("1-0"));
        assert_eq!((now.len(), order.remembered()), (1, 0));
    }
}
