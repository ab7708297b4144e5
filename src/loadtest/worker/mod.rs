//! One worker process: its share of the clients (whole rooms), its share of the message
//! and API schedules, and its measurements — reported to the coordinator as JSON lines
//! ([`super::ipc`]).
//!
//! A worker runs in phases, one function each: check its open-files limit, ramp its
//! clients up ([`client`]: one task per client), wait for the coordinator's start, run
//! the schedules ([`sending`], and [`churn`]'s drops) while clients count what arrives
//! ([`receive`]: the exactly-once accounting, kept across reconnections by [`session`]),
//! drain, and report.
//!
//! Memory per client is kept small on purpose: a `Member` (state, the writing half of
//! its connection) shared with the scheduler, and one task that reads the connection and
//! owns the receiver's bookkeeping (a bitmap of the room sequence numbers seen).

mod churn;
mod client;
mod handshake;
pub mod process;
mod receive;
mod reconnect;
pub mod remote;
mod sending;
mod session;
mod state;

use super::ipc::{Command, Event, WorkerResult};
use super::plan::WorkerConfig;
use crate::client::net::raise_nofile_limit;
use crate::sync::MutexExt as _;
use process::{cpu_seconds, rss_bytes};
use sending::{api_schedule, message_schedule};
use state::{Shared, AWAY, CONNECTING, DROPPED, FAILED, READY};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Why a worker stopped before reporting a result (sent to the coordinator as an
/// [`Event::Error`], which shows it as `worker N: …`).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot read the worker configuration: {0}")]
    Read(std::io::Error),
    #[error("no worker configuration came (workers are driven by `rtctl loadtest`)")]
    NoConfig,
    #[error("the worker configuration is not valid JSON: {0}")]
    BadConfig(serde_json::Error),
    #[error(
        "worker {worker} would hold {clients} sockets but may open only {nofile} files \
         (RLIMIT_NOFILE hard limit); use more workers"
    )]
    TooFewFiles {
        worker: u32,
        clients: u64,
        nofile: u64,
    },
    #[error("refused the coordinator: {0}")]
    Refused(String),
    #[error("stopped by the coordinator during the ramp")]
    StoppedDuringRamp,
    #[error("stopped by the coordinator before the start")]
    StoppedBeforeStart,
}

/// Runs a worker: config from the first stdin line, commands after it, events to stdout.
pub async fn main() -> Result<(), WorkerError> {
    let lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    serve(lines, tokio::io::stdout(), |_| {}).await
}

/// Runs one worker over a line stream: its configuration first (`adjust` may correct
/// it, e.g. a remote worker's clock), then the coordinator's commands; its events go to
/// `out`. An error before the configuration is returned; one after it is also sent to
/// the coordinator as an [`Event::Error`].
pub async fn serve<R, W>(
    mut lines: tokio::io::Lines<R>,
    out: W,
    adjust: impl FnOnce(&mut WorkerConfig),
) -> Result<(), WorkerError>
where
    R: tokio::io::AsyncBufRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let first = lines
        .next_line()
        .await
        .map_err(WorkerError::Read)?
        .ok_or(WorkerError::NoConfig)?;
    let mut cfg: WorkerConfig = serde_json::from_str(&first).map_err(WorkerError::BadConfig)?;
    adjust(&mut cfg);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let writer = tokio::spawn(write_events(rx, out));
    let commands = read_commands(lines);
    if let Err(e) = run(cfg, tx.clone(), commands).await {
        let _ = tx.send(Event::Error {
            message: e.to_string(),
        });
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}

/// Writes each event as a JSON line, until the last sender is gone.
async fn write_events<W: tokio::io::AsyncWrite + Unpin>(
    mut rx: UnboundedReceiver<Event>,
    mut out: W,
) {
    while let Some(ev) = rx.recv().await {
        let mut line = serde_json::to_string(&ev).expect("events serialize");
        line.push('\n');
        if out.write_all(line.as_bytes()).await.is_err() {
            break;
        }
        let _ = out.flush().await;
    }
}

/// The coordinator's commands; a closed stream (the coordinator is gone) is a `Stop`.
fn read_commands<R>(mut lines: tokio::io::Lines<R>) -> UnboundedReceiver<Command>
where
    R: tokio::io::AsyncBufRead + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Command>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(cmd) = serde_json::from_str::<Command>(&line) {
                if tx.send(cmd).is_err() {
                    break;
                }
            }
        }
        let _ = tx.send(Command::Stop);
    });
    rx
}

/// A worker's phases, in order; the result goes to the coordinator as an event.
async fn run(
    cfg: WorkerConfig,
    events: UnboundedSender<Event>,
    mut commands: UnboundedReceiver<Command>,
) -> Result<(), WorkerError> {
    let nofile = open_files_for(&cfg)?;
    let shared = Arc::new(Shared::new(cfg));
    let cpu_start = cpu_seconds();
    let rss_before = rss_bytes();
    ramp(&shared, &events, &mut commands).await?;
    let rss_connected = rss_bytes();
    let _ = events.send(Event::Ready(shared.progress()));
    let start = wait_for_start(&shared, &mut commands).await?;
    let cpu_run_start = cpu_seconds();
    let stopped = run_schedule(&shared, start, &events, &mut commands).await;
    if !stopped {
        drain(&shared).await;
    }
    let run_seconds = start.elapsed().as_secs_f64();
    let cpu_run_seconds = cpu_seconds() - cpu_run_start;
    shared.stopping.store(true, Ordering::Release);
    let result = WorkerResult {
        rss_before,
        rss_connected,
        cpu_run_seconds,
        cpu_total_seconds: cpu_seconds() - cpu_start,
        run_seconds,
        nofile_limit: nofile,
        ..measurements(&shared)
    };
    let _ = events.send(Event::Result(Box::new(result)));
    shared.close_all().await;
    Ok(())
}

/// Raises the open-files limit; refuses to start when it cannot hold every client (the
/// coordinator sizes workers so it can).
fn open_files_for(cfg: &WorkerConfig) -> Result<u64, WorkerError> {
    let nofile = match raise_nofile_limit() {
        Ok((soft, _)) => soft,
        Err(_) => 0,
    };
    if nofile > 0 && cfg.clients + 200 > nofile {
        return Err(WorkerError::TooFewFiles {
            worker: cfg.worker,
            clients: cfg.clients,
            nofile,
        });
    }
    Ok(nofile)
}

/// Connects the clients at the configured rate (one task each) and reports progress
/// until every client is connected or failed, or the ramp's deadline passes.
async fn ramp(
    shared: &Arc<Shared>,
    events: &UnboundedSender<Event>,
    commands: &mut UnboundedReceiver<Command>,
) -> Result<(), WorkerError> {
    let cfg = &shared.cfg;
    let ramp_start = Instant::now();
    let rate = cfg.ramp.max(1.0);
    let spawner = tokio::spawn(spawn_clients(shared.clone(), ramp_start, rate));
    let deadline = ramp_start
        + Duration::from_secs_f64(cfg.clients as f64 / rate)
        + Duration::from_millis(cfg.connect_timeout_ms + 1000);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let p = shared.progress();
        let settled = p.connected + p.failed + p.dropped >= cfg.clients;
        if settled || Instant::now() > deadline {
            break;
        }
        let _ = events.send(Event::Progress(p));
        if let Ok(Command::Stop) = commands.try_recv() {
            shared.stopping.store(true, Ordering::Relaxed);
            shared.close_all().await;
            return Err(WorkerError::StoppedDuringRamp);
        }
    }
    let _ = spawner.await;
    Ok(())
}

/// Starts client `i` at `ramp_start + i / rate`.
async fn spawn_clients(shared: Arc<Shared>, ramp_start: Instant, rate: f64) {
    for i in 0..shared.cfg.clients {
        let at = ramp_start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        if shared.stopping.load(Ordering::Relaxed) {
            break;
        }
        tokio::spawn(client::client_task(shared.clone(), i));
    }
}

/// Waits for the coordinator's start time and sleeps until it; from then on a client
/// still connecting takes no part (see the module docs of `loadtest`).
async fn wait_for_start(
    shared: &Shared,
    commands: &mut UnboundedReceiver<Command>,
) -> Result<Instant, WorkerError> {
    let Some(Command::Start { at_unix_ms: at }) = commands.recv().await else {
        shared.stopping.store(true, Ordering::Relaxed);
        shared.close_all().await;
        return Err(WorkerError::StoppedBeforeStart);
    };
    let start = shared.clock.instant(at);
    tokio::time::sleep_until(start.into()).await;
    shared.started.store(true, Ordering::Release);
    for m in shared.members.iter() {
        let _ = m
            .state
            .compare_exchange(CONNECTING, FAILED, Ordering::AcqRel, Ordering::Acquire);
    }
    *shared.schedule_start.lock_unpoisoned() = Some(start);
    shared.m().start_ms = Some(at);
    Ok(start)
}

/// Runs the message and API schedules for the configured duration, reporting progress;
/// true when the coordinator stopped the run early.
async fn run_schedule(
    shared: &Arc<Shared>,
    start: Instant,
    events: &UnboundedSender<Event>,
    commands: &mut UnboundedReceiver<Command>,
) -> bool {
    let end = start + Duration::from_millis(shared.cfg.duration_ms);
    let messages = tokio::spawn(message_schedule(shared.clone(), start, end));
    let api = tokio::spawn(api_schedule(shared.clone(), start, end));
    let churn = tokio::spawn(churn::churn_schedule(shared.clone(), start, end));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let stopped = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end.into()) => break false,
            _ = tick.tick() => { let _ = events.send(Event::Progress(shared.progress())); }
            cmd = commands.recv() => match cmd {
                Some(Command::Window { from_unix_ms, to_unix_ms }) => {
                    shared.set_window(from_unix_ms, to_unix_ms);
                }
                Some(Command::Start { .. }) => {}
                Some(Command::Stop) | None => break true,
            }
        }
    };
    messages.abort();
    api.abort();
    churn.abort();
    stopped
}

/// What was sent has up to 5 s more to arrive (later counts as lost); with churn or
/// drills, clients still away get their longest backoff delay more to come back.
async fn drain(shared: &Shared) {
    let mut wait = Duration::from_secs(5);
    if shared.cfg.churn_per_s > 0.0 || shared.cfg.reconnect_on_close {
        wait += shared.cfg.reconnection.delay_max;
    }
    let until = Instant::now() + wait;
    while Instant::now() < until {
        let done = {
            let m = shared.m();
            m.fanout.is_empty() && m.notifications.is_empty()
        } && shared.away() == 0;
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Why each expected delivery that never came was lost, and what else was left without
/// an answer (see the fields of [`super::stats::Counters`]).
fn losses_by_cause(shared: &Shared, m: &state::Measured, c: &mut super::stats::Counters) {
    for f in m.fanout.values() {
        for r in f.missing() {
            if shared.interrupted_since(r, f.sent_ms) {
                c.lost_reconnecting += 1;
            } else if f.acked {
                c.lost_acked += 1;
            } else {
                c.lost_unacked += 1;
            }
        }
    }
    c.unacked = m.awaiting_ack.len() as u64;
    for p in m.notifications.values() {
        if p.answered_ok && shared.interrupted_since(p.target, p.sent_ms) {
            c.notifications_lost_reconnecting += 1;
        } else if !p.answered_ok && shared.in_drill(p.sent_ms) {
            c.api_failed_in_drill += 1;
        }
    }
}

/// The counters and histograms of the run, each client counted by its final state; the
/// process figures are the caller's to fill in.
fn measurements(shared: &Shared) -> WorkerResult {
    let cfg = &shared.cfg;
    let mut c = shared.m().c.clone();
    c.clients = cfg.clients;
    for m in shared.members.iter() {
        match m.state.load(Ordering::Acquire) {
            READY => {
                c.connected += 1;
                c.held += 1;
            }
            DROPPED => {
                c.connected += 1;
                c.dropped += 1;
            }
            AWAY => {
                c.connected += 1;
                c.away_at_end += 1;
            }
            _ => c.failed += 1,
        }
    }
    let m = shared.m();
    c.notifications_expected = c.notifications_received
        + m.notifications.values().filter(|p| p.answered_ok).count() as u64;
    c.api_unanswered = c.api_sent.saturating_sub(c.api_ok + c.api_errors);
    losses_by_cause(shared, &m, &mut c);
    WorkerResult {
        worker: cfg.worker,
        counters: c,
        histograms: m.h.encode(),
        rss_before: 0,
        rss_connected: 0,
        cpu_run_seconds: 0.0,
        cpu_total_seconds: 0.0,
        run_seconds: 0.0,
        nofile_limit: 0,
        errors: m.errors.clone(),
        acked_chat: m.acked_chat.clone(),
        late: m.late.clone(),
        clock_ms: shared.clock.now_ms(),
    }
}
