//! The coordinator's side of a remote worker (`rtctl loadtest worker --listen` on another
//! machine): connect, check versions and the key, measure the worker's clock against
//! ours, then hand over the stream for the ordinary worker lines.
//!
//! Clocks: every time a worker reads (the schedule's start, drill windows, each message's
//! `sentAt` and its arrival) must be on one clock, or latencies across machines carry
//! their clock difference. The coordinator sends [`PROBES`] probes and keeps the one with
//! the shortest round trip: offset = worker's reading − the midpoint of the probe's send
//! and reply, accurate to half that round trip (which the report shows). The worker
//! subtracts the offset from its own clock.

use super::error::LoadtestError;
use super::ipc::Handshake;
use super::processes::{CommandSink, EventSource};
use serde::Serialize;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Clock probes per connection.
pub const PROBES: u32 = 8;
/// How long connecting and each handshake reply may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// A remote worker as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteWorker {
    /// As given to `--workers`.
    pub addr: String,
    /// Its host name, as it said.
    pub host: String,
    /// The shards (worker indices) it ran.
    pub shards: Vec<u32>,
    /// Its wall clock minus ours (ms), from the best probe.
    pub clock_offset_ms: f64,
    /// The best probe's round trip (ms): the offset is right to within half of it.
    pub rtt_ms: f64,
    /// Our clock minus the worker's corrected clock when its result arrived (ms): the
    /// transit time plus whatever error the correction left; near 0 when clocks agree.
    /// The largest over its shards.
    pub clock_check_ms: Option<f64>,
}

impl RemoteWorker {
    /// Folds another connection's measurement into this one (the same worker, another shard).
    pub fn merge(&mut self, other: RemoteWorker) {
        self.shards.extend(other.shards);
        if other.rtt_ms < self.rtt_ms {
            self.clock_offset_ms = other.clock_offset_ms;
            self.rtt_ms = other.rtt_ms;
        }
    }
}

fn failed(addr: &str, problem: impl std::fmt::Display) -> LoadtestError {
    LoadtestError::RemoteWorker {
        addr: addr.to_owned(),
        problem: problem.to_string(),
    }
}

/// Connects to the worker at `addr` and runs the handshake; the stream then carries the
/// worker's configuration and commands one way, its events the other.
pub(super) async fn connect(
    addr: &str,
    key: Option<&str>,
) -> Result<(CommandSink, EventSource, RemoteWorker), LoadtestError> {
    let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| failed(addr, "no answer within 5 s"))?
        .map_err(|e| {
            failed(
                addr,
                format!("{e}; start one there with `rtctl loadtest worker --listen {addr}`"),
            )
        })?;
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let hello = Handshake::Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        key: key.map(str::to_owned),
    };
    let host = match exchange(addr, &mut write, &mut lines, &hello).await? {
        Handshake::Welcome { host, .. } => host,
        Handshake::Refused { message } => return Err(failed(addr, message)),
        other => return Err(failed(addr, format!("unexpected answer {other:?}"))),
    };
    let mut best: Option<(f64, f64)> = None;
    for seq in 0..PROBES {
        let sent = now_ms();
        let reply = exchange(addr, &mut write, &mut lines, &Handshake::ClockProbe { seq }).await?;
        let back = now_ms();
        let Handshake::ClockReply { seq: s, unix_ms } = reply else {
            return Err(failed(
                addr,
                format!("unexpected answer {reply:?} to a clock probe"),
            ));
        };
        if s != seq {
            return Err(failed(addr, format!("clock reply {s} to probe {seq}")));
        }
        let rtt = back - sent;
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, unix_ms - (sent + back) / 2.0));
        }
    }
    let (rtt_ms, clock_offset_ms) = best.expect("at least one probe");
    send(addr, &mut write, &Handshake::Begin).await?;
    let info = RemoteWorker {
        addr: addr.to_owned(),
        host,
        shards: Vec::new(),
        clock_offset_ms,
        rtt_ms,
        clock_check_ms: None,
    };
    Ok((Box::new(write), Box::new(lines.into_inner()), info))
}

impl RemoteWorker {
    /// Records the clock check of shard `worker`'s result (see [`Self::clock_check_ms`]).
    pub fn check_clock(&mut self, result: &super::ipc::WorkerResult) {
        let error = now_ms() - result.clock_ms;
        if self.clock_check_ms.is_none_or(|e| error.abs() > e.abs()) {
            self.clock_check_ms = Some(error);
        }
    }
}

fn now_ms() -> f64 {
    super::unix_ms(std::time::SystemTime::now())
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(
    addr: &str,
    w: &mut W,
    msg: &Handshake,
) -> Result<(), LoadtestError> {
    let mut line = serde_json::to_string(msg).expect("handshake lines serialize");
    line.push('\n');
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| failed(addr, format!("connection lost: {e}")))
}

/// Sends `msg` and reads the worker's answer.
async fn exchange<W, R>(
    addr: &str,
    w: &mut W,
    lines: &mut tokio::io::Lines<R>,
    msg: &Handshake,
) -> Result<Handshake, LoadtestError>
where
    W: tokio::io::AsyncWrite + Unpin,
    R: tokio::io::AsyncBufRead + Unpin,
{
    send(addr, w, msg).await?;
    let line = tokio::time::timeout(STEP_TIMEOUT, lines.next_line())
        .await
        .map_err(|_| failed(addr, "no answer to the handshake within 5 s"))?
        .map_err(|e| failed(addr, format!("connection lost: {e}")))?
        .ok_or_else(|| failed(addr, "closed the connection during the handshake"))?;
    serde_json::from_str(&line)
        .map_err(|e| failed(addr, format!("is not a loadtest worker ({e}): {line}")))
}
