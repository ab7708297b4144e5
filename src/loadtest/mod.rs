//! `rtctl loadtest`: many Socket.IO clients ([`crate::client`]) against one or more
//! nodes, an open-model message schedule, exact loss/duplicate accounting, HdrHistograms
//! merged over worker processes, and the phase 1–3 success criteria as a gate.
//!
//! This is library code: it takes its settings ([`run::Options`]), a shutdown future and
//! an [`observe::Observer`], and returns a [`run::Verdict`] or a [`error::LoadtestError`];
//! the command prints and picks the exit code; nothing here depends on the CLI layer.
//!
//! The coordinator (this process), in the order it runs:
//! - [`setup`]: secrets, the nodes to load, the split into workers ([`plan`]);
//! - [`spawn`]: local nodes (and Redis) for `--spawn-nodes`;
//! - [`processes`]: the worker processes, driven over [`ipc`] (JSON lines);
//! - [`drill`]: failures made during the schedule (nodes killed or restarted, Redis
//!   restarted), each with its window;
//! - [`scrape`] and [`machine`]: the nodes' and the machine's own figures, and
//!   [`memory`]: their memory over a long run;
//! - [`stored`]: the chat scenario's messages in the database, each acked one once;
//! - [`merge`]: results into one [`report::Report`], judged by [`gate`];
//! - [`run`]: the phases above in order.
//!
//! Each worker process ([`worker`]) holds its clients and runs its share of the
//! [`schedule`], measuring into [`stats`].
//!
//! ## What counts as lost
//! A room message (a /bench room's, or a /chat 1:1 room's) is *expected* by each other member of its room that was connected
//! (joined) at the moment its sender wrote the publish. Every client joins before the
//! schedule starts, and a client that is not connected by then is *failed* and takes no
//! part, so the expected set of a message is known when it is sent. A receiver counts a
//! message once (a second copy is a *duplicate*); *lost* = expected − distinct received.
//! A receiver that drops after a message was sent to it and before it arrived counts that
//! message as lost (it is also counted as a *dropped* client). A notification is expected
//! when the API answered 201 for a connected target.

pub mod drill;
pub mod error;
pub mod gate;
pub mod ipc;
pub mod junit;
pub mod late;
pub mod machine;
pub mod memory;
mod merge;
pub mod observe;
pub mod plan;
pub mod postgres;
mod processes;
pub mod procwatch;
pub mod remote;
pub mod report;
pub mod run;
pub mod schedule;
pub mod scrape;
mod setup;
pub mod spawn;
pub mod stats;
pub mod stored;
pub mod worker;

pub use error::LoadtestError;
pub use observe::{Observer, Update};
pub use run::{run, Options, Verdict};
pub use setup::node_target;

use serde::{Deserialize, Serialize};

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Real /chat 1:1 rooms: room:open + message:send (stored), the peer gets message:new.
    Chat,
    /// /bench rooms of K members: pure fan-out, no database.
    Rooms,
    /// POST /api/notifications → notification:new on the target's socket.
    Notifications,
    /// rooms + notifications (the gates' workload).
    Mixed,
}

impl Scenario {
    /// Clients in /bench rooms.
    pub fn rooms(self) -> bool {
        matches!(self, Scenario::Rooms | Scenario::Mixed)
    }
    /// Clients exchange room messages (/bench rooms or /chat pairs).
    pub fn messages(self) -> bool {
        matches!(self, Scenario::Rooms | Scenario::Mixed | Scenario::Chat)
    }
    /// The namespace room messages go through.
    pub fn message_namespace(self) -> Option<&'static str> {
        match self {
            Scenario::Rooms | Scenario::Mixed => Some("/bench"),
            Scenario::Chat => Some("/chat"),
            Scenario::Notifications => None,
        }
    }
    pub fn notifications(self) -> bool {
        matches!(self, Scenario::Notifications | Scenario::Mixed)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Chat => "chat",
            Scenario::Rooms => "rooms",
            Scenario::Notifications => "notifications",
            Scenario::Mixed => "mixed",
        }
    }
}

/// Milliseconds since the Unix epoch, as the wire carries `sentAt`.
pub fn unix_ms(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// A monotonic clock read as Unix milliseconds: the wall clock read once, then advanced
/// by `Instant`, so a clock step during a run cannot distort latencies.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: std::time::Instant,
    base_ms: f64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            base: std::time::Instant::now(),
            base_ms: unix_ms(std::time::SystemTime::now()),
        }
    }
    /// A clock `ms` ahead of this machine's wall clock: a remote worker's clock put on
    /// the coordinator's time (`ms` = minus the measured offset).
    pub fn shifted(ms: f64) -> Clock {
        let mut clock = Clock::new();
        clock.base_ms += ms;
        clock
    }
    pub fn now_ms(&self) -> f64 {
        self.at_ms(std::time::Instant::now())
    }
    pub fn at_ms(&self, t: std::time::Instant) -> f64 {
        self.base_ms + t.saturating_duration_since(self.base).as_secs_f64() * 1000.0
            - self.base.saturating_duration_since(t).as_secs_f64() * 1000.0
    }
    /// The instant of a Unix time in milliseconds.
    pub fn instant(&self, ms: f64) -> std::time::Instant {
        let d = ms - self.base_ms;
        if d >= 0.0 {
            self.base + std::time::Duration::from_secs_f64(d / 1000.0)
        } else {
            self.base
                .checked_sub(std::time::Duration::from_secs_f64(-d / 1000.0))
                .unwrap_or(self.base)
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock_maps_instants_and_unix_milliseconds_both_ways() {
        let clock = Clock::new();
        let now = std::time::Instant::now();
        let ms = clock.at_ms(now);
        let wall = unix_ms(std::time::SystemTime::now());
        assert!((ms - wall).abs() < 1000.0, "{ms} vs {wall}");
        let later = clock.instant(ms + 1500.0);
        let d = later.duration_since(now).as_secs_f64();
        assert!((d - 1.5).abs() < 0.001, "{d}");
        // Before the clock's base: still monotonic and consistent.
        let earlier = clock.instant(clock.now_ms() - 10.0);
        assert!(earlier <= std::time::Instant::now());
        assert!((clock.at_ms(now + Duration::from_millis(250)) - ms - 250.0).abs() < 0.01);
    }
}
