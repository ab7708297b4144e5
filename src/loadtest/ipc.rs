//! The wire between the coordinator and its worker processes: JSON lines, a
//! [`WorkerConfig`](super::plan::WorkerConfig) then [`Command`]s on the worker's stdin,
//! [`Event`]s on its stdout. Both sides are this crate, so the types are shared.

use super::late::LateBySecond;
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

/// What a remote worker (`rtctl loadtest worker --listen`) and the coordinator say over
/// TCP before the worker's configuration: the coordinator's `Hello`, the worker's
/// `Welcome` (or `Refused`, and the connection closes), then `ClockProbe`s the worker
/// answers at once with its wall clock, so the coordinator can measure the offset between
/// the machines; `Begin` ends it, and the stream carries the same lines as a local
/// worker's stdin and stdout from then on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Handshake {
    Hello {
        /// The coordinator's crate version; the types on the wire are this crate's, so
        /// both sides must run the same one.
        version: String,
        /// The key the worker was started with (`--key`), if it asks for one.
        key: Option<String>,
    },
    Welcome {
        version: String,
        /// The worker's host name, for the report.
        host: String,
    },
    Refused {
        message: String,
    },
    ClockProbe {
        seq: u32,
    },
    ClockReply {
        seq: u32,
        unix_ms: f64,
    },
    Begin,
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
    /// Room messages that arrived late, by the second of the schedule they were sent in.
    #[serde(default)]
    pub late: LateBySecond,
    /// The worker's clock (on the coordinator's time) as it sent this result: the
    /// coordinator compares it with its own on arrival, which checks the clock offset
    /// end to end.
    #[serde(default)]
    pub clock_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remote_handshake_is_one_json_object_per_line() {
        let hello = Handshake::Hello {
            version: "1.2.3".into(),
            key: None,
        };
        let line = serde_json::to_string(&hello).unwrap();
        assert_eq!(line, r#"{"op":"hello","version":"1.2.3","key":null}"#);
        assert_eq!(serde_json::from_str::<Handshake>(&line).unwrap(), hello);
        let begin: Handshake = serde_json::from_str(r#"{"op":"begin"}"#).unwrap();
        assert_eq!(begin, Handshake::Begin);
        // A worker configuration is not a handshake line: the two cannot be confused.
        assert!(serde_json::from_str::<Handshake>(r#"{"worker":0}"#).is_err());
    }

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
