//! What a run tells whoever watches it, as it happens. The library draws nothing: `rtctl
//! loadtest` turns these into a line on stderr and a progress bar on a terminal, a test
//! can ignore them (`&|_: Update<'_>| {}`).

use std::time::Duration;

/// One thing worth showing while the run goes on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Update<'a> {
    /// `--spawn-nodes`: local nodes are being started.
    StartingNodes { count: usize },
    /// The ramp: clients connected and failed so far, of `clients`.
    Connecting {
        connected: u64,
        failed: u64,
        clients: u64,
    },
    /// The schedule: how far into `duration`, with deliveries and drops so far.
    Running {
        elapsed: Duration,
        duration: Duration,
        received: u64,
        dropped: u64,
    },
    /// The schedule is over (or the ramp found nobody): the measuring display can go.
    Measured,
    /// A drill did something (killed, stopped or started a node or Redis).
    Drill(&'a str),
    /// Something odd that does not stop the run (an unreadable worker line, a node that
    /// had to be killed).
    Warning(&'a str),
}

/// Receives a run's [`Update`]s; any `Fn(Update)` is one.
pub trait Observer: Send + Sync {
    fn update(&self, update: Update<'_>);
}

impl<F: Fn(Update<'_>) + Send + Sync> Observer for F {
    fn update(&self, update: Update<'_>) {
        self(update)
    }
}
