//! Raw Engine.IO activity as running totals: connections opened, closed (by reason),
//! message packets and bytes in and out. The Admin UI charts them per second (its
//! "aggregated events"); it samples these totals instead of being told of each packet, so
//! they cost a relaxed atomic add per packet whether the UI is on or not, and are kept
//! whether Prometheus metrics are enabled or not.

use crate::sync::MutexExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The running totals since the process started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub opened: u64,
    /// Closed connections per close reason (Engine.IO's names: `transport close`, …).
    pub closed: Vec<(&'static str, u64)>,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

struct Totals {
    opened: AtomicU64,
    closed: Mutex<Vec<(&'static str, u64)>>,
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

static TOTALS: Totals = Totals {
    opened: AtomicU64::new(0),
    closed: Mutex::new(Vec::new()),
    packets_in: AtomicU64::new(0),
    packets_out: AtomicU64::new(0),
    bytes_in: AtomicU64::new(0),
    bytes_out: AtomicU64::new(0),
};

/// An Engine.IO connection opened.
pub fn engine_opened() {
    TOTALS.opened.fetch_add(1, Ordering::Relaxed);
}

/// An Engine.IO connection closed for `reason` (once per connection, so a lock is fine).
pub fn engine_closed(reason: &'static str) {
    let mut closed = TOTALS.closed.lock_unpoisoned();
    match closed.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => closed.push((reason, 1)),
    }
}

/// `n` message packets read from clients.
#[inline]
pub fn packets_in(n: u64) {
    TOTALS.packets_in.fetch_add(n, Ordering::Relaxed);
}

/// `n` message packets queued for clients.
#[inline]
pub fn packets_out(n: u64) {
    TOTALS.packets_out.fetch_add(n, Ordering::Relaxed);
}

/// Bytes read from clients (Engine.IO frames as they arrive).
#[inline]
pub fn tally_bytes_in(n: usize) {
    TOTALS.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
}

/// Bytes written to clients.
#[inline]
pub fn tally_bytes_out(n: usize) {
    TOTALS.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
}

/// The totals now.
pub fn tally() -> Tally {
    Tally {
        opened: TOTALS.opened.load(Ordering::Relaxed),
        closed: TOTALS.closed.lock_unpoisoned().clone(),
        packets_in: TOTALS.packets_in.load(Ordering::Relaxed),
        packets_out: TOTALS.packets_out.load(Ordering::Relaxed),
        bytes_in: TOTALS.bytes_in.load(Ordering::Relaxed),
        bytes_out: TOTALS.bytes_out.load(Ordering::Relaxed),
    }
}
