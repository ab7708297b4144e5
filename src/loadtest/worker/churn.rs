//! `--churn`: during the schedule, and only then, this worker drops its share of random
//! clients per second. A drop marks the client AWAY and signals its task, which closes
//! the transport without a word (a network blip: the server sees the transport close, a
//! reason it may recover from) and comes back ([`super::reconnect`]).
//!
//! Who may be dropped: a client in a room of two or more, connected, that has received a
//! room message (so it holds an offset to recover from, as a browser would; a socket
//! with none cannot be recovered by socket.io either), with no publish awaiting its ack
//! and no notification on its way (a drop there loses what recovery cannot bring back:
//! the publish itself, or a notification to a socket that holds no offset yet). The same
//! rule holds with recovery on or off, so the two runs drop the same kind of client.

use super::state::{Measured, Shared, AWAY, READY};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Random clients looked at per drop before it counts as skipped.
const PICK_TRIES: u32 = 64;

/// Drops the worker's share of clients per second from `start` until `end`.
pub(super) async fn churn_schedule(shared: Arc<Shared>, start: Instant, end: Instant) {
    let rate = shared.cfg.churn_per_s;
    if rate <= 0.0 || shared.cfg.clients == 0 {
        return;
    }
    for k in 0..drops_in(rate, end - start) {
        // Half a period in: the first drop does not land on the schedule's first instant.
        let due = start + Duration::from_secs_f64((k as f64 + 0.5) / rate);
        tokio::time::sleep_until(due.into()).await;
        let picked = {
            let mut m = shared.m();
            let picked = pick(&shared, &m);
            match picked {
                Some(_) => m.c.churn_drops += 1,
                None => m.c.churn_skipped += 1,
            }
            picked
        };
        if let Some(i) = picked {
            shared.members[i as usize].kick.notify_one();
        }
    }
}

/// How many drops `rate` per second makes in `window` (each at (k + ½) / rate).
fn drops_in(rate: f64, window: Duration) -> u64 {
    (window.as_secs_f64() * rate).round().max(0.0) as u64
}

/// A random client that may be dropped, marked AWAY; called under the measurements'
/// lock, which the schedules hold while they count a client as a message's receiver or
/// sender, or a notification's target.
fn pick(shared: &Shared, m: &Measured) -> Option<u64> {
    let pending: HashSet<u64> = m.notifications.values().map(|p| p.target).collect();
    let cfg = &shared.cfg;
    for _ in 0..PICK_TRIES {
        let i = rand::random_range(0..cfg.clients);
        let member = &shared.members[i as usize];
        let room = cfg.room_members(shared.room_of(i));
        let droppable = room.end - room.start >= 2
            && member.received.load(Ordering::Acquire)
            && member.publishing.load(Ordering::Acquire) == 0
            && !pending.contains(&i);
        if droppable
            && member
                .state
                .compare_exchange(READY, AWAY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_the_window() {
        assert_eq!(drops_in(20.0, Duration::from_secs(4)), 80);
        assert_eq!(drops_in(2.5, Duration::from_secs(1)), 3);
        assert_eq!(drops_in(0.1, Duration::from_secs(4)), 0);
        assert_eq!(drops_in(50.0, Duration::from_millis(10)), 1);
    }
}
