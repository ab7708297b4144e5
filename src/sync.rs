//! Locks that outlive a panic elsewhere, and work in flight a shutdown waits for.
//!
//! A handler that panics while holding a `std::sync` lock poisons it, and every later
//! `lock().unwrap()` would panic too — one bad request would take a namespace, a session
//! or the adapter down for everyone. Every lock in this crate guards data that is whole
//! between statements (a map insert, a list push, a counter), so the right answer is to
//! keep going with the data as it is. This is the one place that says so.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::Notify;

/// [`Mutex::lock`], ignoring poison (see the module docs).
pub trait MutexExt<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// [`RwLock::read`] / [`RwLock::write`], ignoring poison (see the module docs).
pub trait RwLockExt<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes started and not awaited by anyone (a spawned `SET`, a queued `XADD`), counted
/// so that a node stopping can wait for them: a process that exits with a session still
/// on its way to Redis loses it, and the client it belonged to cannot recover.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One piece of work of an [`InFlight`]; dropping it marks it done.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    /// Counts one more piece of work until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns once nothing is in flight (at once when nothing is).
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_locked_does_not_lock_everyone_out() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("a handler panicked");
        })
        .join();
        assert!(m.is_poisoned());
        *m.lock_unpoisoned() += 1;
        assert_eq!(*m.lock_unpoisoned(), 2);
        let rw = RwLock::new(0);
        *rw.write_unpoisoned() = 3;
        assert_eq!(*rw.read_unpoisoned(), 3);
    }

    #[tokio::test]
    async fn idle_waits_for_every_guard() {
        let work = Arc::new(InFlight::default());
        work.idle().await; // nothing in flight
        let (a, b) = (work.start(), work.start());
        assert_eq!(work.len(), 2);
        let waiter = tokio::spawn({
            let work = work.clone();
            async move { work.idle().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("idle returns once the last guard is dropped")
            .unwrap();
    }
}
