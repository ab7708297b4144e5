//! The per-socket event budget: a socket may send at most N events per window, whatever
//! their names — the handlers' own limits (`message:send` in the app) guard what an
//! event costs, this guards the server against a socket that floods events nobody
//! limits (`typing`, unknown names, acks it never needed). An event over the budget is
//! not handled: its ack, when it asked for one, says `rate_limited`; after a number of
//! refusals the socket is disconnected (a flood, not a burst).
//!
//! A fixed window per socket, counted with atomics: events of one connection are
//! dispatched one at a time, so the count is exact without a lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The budget: `events` per `per`, and the refusals that end the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventBudget {
    /// 0: no budget.
    pub events: u32,
    pub per: Duration,
    /// Refused events after which the socket is disconnected (0: never).
    pub disconnect_after: u32,
}

impl EventBudget {
    /// `EVENTS/SECONDS` (`100/1`), or `0` for none.
    pub fn parse(s: &str) -> Result<EventBudget, String> {
        let usage = || format!("{s:?} is not an event budget like 100/1 (events/seconds), or 0");
        if s.trim() == "0" {
            return Ok(EventBudget {
                events: 0,
                per: Duration::from_secs(1),
                disconnect_after: 0,
            });
        }
        let (events, secs) = s.trim().split_once('/').ok_or_else(usage)?;
        let events: u32 = events.trim().parse().map_err(|_| usage())?;
        let secs: f64 = secs.trim().parse().map_err(|_| usage())?;
        if events == 0 || !(secs.is_finite() && secs > 0.0) {
            return Err(usage());
        }
        Ok(EventBudget {
            events,
            per: Duration::from_secs_f64(secs),
            disconnect_after: 0,
        })
    }

    pub fn enabled(&self) -> bool {
        self.events > 0
    }
}

/// What one more event of a socket may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spend {
    Handle,
    Refuse,
    /// Refused, and the socket has used up its refusals.
    Disconnect,
}

/// One socket's spending.
#[derive(Debug, Default)]
pub(crate) struct Spending {
    window_start_ms: AtomicU64,
    used: AtomicU32,
    refused: AtomicU32,
}

/// Milliseconds since the first call in this process (a monotonic clock for windows).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Spending {
    pub(crate) fn spend(&self, budget: &EventBudget) -> Spend {
        self.spend_at(budget, now_ms())
    }

    fn spend_at(&self, budget: &EventBudget, now: u64) -> Spend {
        let per = budget.per.as_millis().max(1) as u64;
        if now.saturating_sub(self.window_start_ms.load(Ordering::Relaxed)) >= per {
            self.window_start_ms.store(now, Ordering::Relaxed);
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < budget.events {
            return Spend::Handle;
        }
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if budget.disconnect_after > 0 && refused >= budget.disconnect_after {
            Spend::Disconnect
        } else {
            Spend::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse() {
        let b = EventBudget::parse("100/1").unwrap();
        assert_eq!((b.events, b.per), (100, Duration::from_secs(1)));
        assert!(b.enabled());
        assert!(!EventBudget::parse("0").unwrap().enabled());
        assert_eq!(
            EventBudget::parse("5/0.5").unwrap().per,
            Duration::from_millis(500)
        );
        for bad in ["", "100", "0/1", "10/0", "x/1", "10/-1"] {
            assert!(EventBudget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_window_allows_its_events_then_refuses_until_the_next() {
        let budget = EventBudget {
            events: 3,
            per: Duration::from_millis(1000),
            disconnect_after: 4,
        };
        let s = Spending::default();
        let at = |t| s.spend_at(&budget, t);
        assert_eq!([at(1000), at(1001), at(1500)], [Spend::Handle; 3]);
        assert_eq!(at(1999), Spend::Refuse);
        // A new window: three more.
        assert_eq!([at(2000), at(2001), at(2002)], [Spend::Handle; 3]);
        assert_eq!([at(2003), at(2004)], [Spend::Refuse; 2]);
        // The fourth refusal in all ends the socket.
        assert_eq!(at(2005), Spend::Disconnect);
    }
}
