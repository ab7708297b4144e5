//! Structured logging with `tracing`: human-readable or one JSON object per line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
/// Logs go to stderr so that stdout stays clean for command output.
pub fn init_logging(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests, embedding) is not an error worth failing over.
    let _ = match format {
        "json" => builder.json().flatten_event(true).try_init(),
        _ => builder.try_init(),
    };
}

/// Lets a warning that can fire once per request (a store or Redis failure under load)
/// through at most once per interval, with the count of those held back since the last
/// one: an outage at 1,000 requests/s logs one line a second, not a thousand, and the
/// failures are still counted exactly by the metrics.
pub struct LogThrottle {
    every_ms: u64,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub const fn new(every: Duration) -> Self {
        LogThrottle {
            every_ms: every.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last line)` when this occurrence may be logged now.
    pub fn allow(&self) -> Option<u64> {
        static START: LazyLock<Instant> = LazyLock::new(Instant::now);
        self.allow_at(START.elapsed().as_millis() as u64)
    }

    fn allow_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let t = LogThrottle::new(Duration::from_secs(1));
        assert_eq!(t.allow_at(5), Some(0));
        assert_eq!(t.allow_at(6), None);
        assert_eq!(t.allow_at(500), None);
        assert_eq!(t.allow_at(1004), None);
        assert_eq!(t.allow_at(1005), Some(3));
        assert_eq!(t.allow_at(1006), None);
        assert_eq!(t.allow_at(9000), Some(1));
    }
}
