//! The wire between the coordinator and its worker processes: JSON lines, a
//! [`WorkerConfig`](super::plan::WorkerConfig) then [`Command`]s on the worker's stdin,
//! [`Event`]s on its stdout. Both sides are this crate, so the types are shared.

use super::stats::Counters;
use serde::{Deserialize, Serialize};

/// A line from the coordinator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Start the schedule at this Unix time (ms), the same for every worker.
    Start { at_unix_ms: f64 },
    /// Stop now (the run is aborted).
    Stop,
    /// A drill window opened at `from_unix_ms` (`to_unix_ms`: `None` while it is open;
    /// sent again with the end once known): what is sent inside it is measured apart.
    Window {
        from_unix_ms: f64,
        to_unix_ms: Option<f64>,
    },
}

/// A line to the coordinator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Progress(Progress),
    /// Every client is connected or has failed: ready for `start`.
    Ready(Progress),
    Result(Box<WorkerResult>),
    Error {
        message: String,
    },
}

/// A worker's clients so far.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub connected: u64,
    pub failed: u64,
    pub dropped: u64,
    pub received: u64,
    pub sent: u64,
}

/// A worker's measurements, sent once its schedule has run and drained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerResult {
    pub worker: u32,
    pub counters: Counters,
    pub histograms: Vec<String>,
    /// Resident memory before the first client and once all were connected.
    pub rss_before: u64,
    pub rss_connected: u64,
    /// CPU seconds this process used during the schedule, and in all.
    pub cpu_run_seconds: f64,
    pub cpu_total_seconds: f64,
    pub run_seconds: f64,
    /// The open-files limit the worker runs with.
    pub nofile_limit: u64,
    /// The first few distinct errors, for the report.
    pub errors: Vec<String>,
    /// Chat: the `(from, k)` of every message whose sender had its ack (checked
    /// against the database at the end).
    #[serde(default)]
    pub acked_chat: Vec<[u64; 2]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_events_round_trip_as_json_lines() {
        let line = serde_json::to_string(&Command::Start { at_unix_ms: 5.5 }).unwrap();
        assert_eq!(line, r#"{"cmd":"start","at_unix_ms":5.5}"#);
        let ev: Event = serde_json::from_str(
            &serde_json::to_string(&Event::Ready(Progress {
                connected: 3,
                ..Default::default()
            }))
            .unwrap(),
        )
        .unwrap();
        assert!(matches!(ev, Event::Ready(Progress { connected: 3, .. })));
    }
}
