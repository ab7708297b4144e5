//! One worker process: its share of the clients (whole rooms), its share of the message
//! and API schedules, and its measurements — reported to the coordinator as JSON lines.
//!
//! Sending lives in `sending.rs`, receiving (the exactly-once accounting) in `receive.rs`.
//!
//! Memory per client is kept small on purpose: a `Member` (state, the writing half of
//! its connection) shared with the scheduler, and one task that reads the connection and
//! owns the receiver's bookkeeping (a bitmap of the room sequence numbers seen).

use super::plan::WorkerConfig;
use super::receive::{on_message, on_notification, on_publish_ack, Bitmap};
use super::schedule::Schedule;
use super::sending::{api_schedule, message_schedule};
use super::stats::{Counters, Histograms, H};
use super::Clock;
use crate::client::frames::{self, Incoming};
use crate::client::{self, Target, Writer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The namespaces.
pub(super) const BENCH: &str = "/bench";
pub(super) const CHAT: &str = "/chat";
pub(super) const NOTIFICATIONS: &str = "/notifications";

/// A line from the coordinator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Start the schedule at this Unix time (ms), the same for every worker.
    Start { at_unix_ms: f64 },
    /// Stop now (the run is aborted).
    Stop,
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub connected: u64,
    pub failed: u64,
    pub dropped: u64,
    pub received: u64,
    pub sent: u64,
}

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
}

pub(super) const CONNECTING: u8 = 0;
pub(super) const READY: u8 = 1;
pub(super) const FAILED: u8 = 2;
pub(super) const DROPPED: u8 = 3;
pub(super) const CLOSED: u8 = 4;

/// One client as the scheduler sees it.
pub(super) struct Member {
    pub(super) state: AtomicU8,
    pub(super) writer: tokio::sync::Mutex<Option<Writer>>,
}

/// A message on its way to its receivers.
pub(super) struct Fanout {
    pub(super) remaining: u64,
    pub(super) sent_ms: f64,
}

/// A notification on its way.
pub(super) struct Pending {
    pub(super) answered_ok: bool,
}

#[derive(Default)]
pub(super) struct Measured {
    pub(super) h: Histograms,
    pub(super) c: Counters,
    pub(super) fanout: HashMap<u64, Fanout>,
    pub(super) notifications: HashMap<u64, Pending>,
    pub(super) notifications_seen: HashSet<u64>,
    pub(super) errors: Vec<String>,
}

impl Measured {
    pub(super) fn error(&mut self, e: String) {
        if self.errors.len() < 5 && !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }
}

pub(super) struct Shared {
    pub(super) cfg: WorkerConfig,
    pub(super) clock: Clock,
    pub(super) members: Box<[Member]>,
    pub(super) m: Mutex<Measured>,
    /// Set when the schedule starts: a client not connected by then has failed.
    pub(super) started: AtomicBool,
    pub(super) stopping: AtomicBool,
    pub(super) schedule: Schedule,
    pub(super) schedule_start: Mutex<Option<Instant>>,
    /// Chat: each pair's room id, set by the member that opened it (0 until then).
    pub(super) chat_rooms: Box<[std::sync::atomic::AtomicI64]>,
}

impl Shared {
    pub(super) fn m(&self) -> std::sync::MutexGuard<'_, Measured> {
        self.m.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn state(&self, i: u64) -> u8 {
        self.members[i as usize].state.load(Ordering::Acquire)
    }
    pub(super) fn room_of(&self, i: u64) -> u64 {
        i / self.cfg.room_size
    }
    pub(super) fn progress(&self) -> Progress {
        let mut p = Progress::default();
        for m in self.members.iter() {
            match m.state.load(Ordering::Relaxed) {
                READY => p.connected += 1,
                FAILED => p.failed += 1,
                DROPPED => p.dropped += 1,
                _ => {}
            }
        }
        let m = self.m();
        p.received = m.c.received + m.c.notifications_received;
        p.sent = m.c.messages_sent + m.c.api_sent;
        p
    }
}

/// Resident memory of this process in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs a worker: config from the first stdin line, commands after it, events to stdout.
pub async fn main() -> anyhow::Result<()> {
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut lines = stdin.lines();
    let first = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no worker configuration on stdin"))?;
    let cfg: WorkerConfig = serde_json::from_str(&first)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(ev) = rx.recv().await {
            let mut line = serde_json::to_string(&ev).expect("events serialize");
            line.push('\n');
            if out.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            let _ = out.flush().await;
        }
    });
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel::<Command>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(cmd) = serde_json::from_str::<Command>(&line) {
                if cmd_tx.send(cmd).is_err() {
                    break;
                }
            }
        }
        // The coordinator is gone: stop.
        let _ = cmd_tx.send(Command::Stop);
    });
    if let Err(e) = run(cfg, tx.clone(), cmd_rx).await {
        let _ = tx.send(Event::Error {
            message: format!("{e:#}"),
        });
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}

pub(super) async fn run(
    cfg: WorkerConfig,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
) -> anyhow::Result<()> {
    let nofile = match client::net::raise_nofile_limit() {
        Ok((soft, _)) => soft,
        Err(_) => 0,
    };
    if nofile > 0 && cfg.clients + 200 > nofile {
        anyhow::bail!(
            "worker {} would hold {} sockets but may open only {nofile} files (RLIMIT_NOFILE hard limit); use more workers",
            cfg.worker,
            cfg.clients
        );
    }
    let members: Box<[Member]> = (0..cfg.clients)
        .map(|_| Member {
            state: AtomicU8::new(CONNECTING),
            writer: tokio::sync::Mutex::new(None),
        })
        .collect();
    let rooms = cfg.rooms();
    let cfg_chat = cfg.scenario == super::Scenario::Chat;
    let shared = Arc::new(Shared {
        schedule: Schedule {
            rate: cfg.message_rate,
            rooms,
        },
        cfg,
        clock: Clock::new(),
        members,
        m: Mutex::new(Measured::default()),
        started: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        schedule_start: Mutex::new(None),
        chat_rooms: (0..if cfg_chat { rooms } else { 0 })
            .map(|_| std::sync::atomic::AtomicI64::new(0))
            .collect(),
    });
    let cfg = &shared.cfg;
    let cpu_start = cpu_seconds();
    let rss_before = rss_bytes();

    // Ramp: clients at `ramp` per second.
    let ramp_start = Instant::now();
    let ramp = cfg.ramp.max(1.0);
    let spawner = {
        let shared = shared.clone();
        tokio::spawn(async move {
            for i in 0..shared.cfg.clients {
                tokio::time::sleep_until(
                    (ramp_start + Duration::from_secs_f64(i as f64 / ramp)).into(),
                )
                .await;
                if shared.stopping.load(Ordering::Relaxed) {
                    break;
                }
                tokio::spawn(client_task(shared.clone(), i));
            }
        })
    };
    let ramp_deadline = ramp_start
        + Duration::from_secs_f64(cfg.clients as f64 / ramp)
        + Duration::from_millis(cfg.connect_timeout_ms + 1000);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let p = shared.progress();
        let settled = p.connected + p.failed + p.dropped >= cfg.clients;
        if settled || Instant::now() > ramp_deadline {
            break;
        }
        let _ = events.send(Event::Progress(p));
        if let Ok(Command::Stop) = commands.try_recv() {
            shared.stopping.store(true, Ordering::Relaxed);
            close_all(&shared).await;
            anyhow::bail!("stopped by the coordinator during the ramp");
        }
    }
    let _ = spawner.await;
    let rss_connected = rss_bytes();
    let _ = events.send(Event::Ready(shared.progress()));

    let Some(Command::Start { at_unix_ms: at }) = commands.recv().await else {
        shared.stopping.store(true, Ordering::Relaxed);
        close_all(&shared).await;
        anyhow::bail!("stopped by the coordinator before the start");
    };
    let start = shared.clock.instant(at);
    tokio::time::sleep_until(start.into()).await;
    shared.started.store(true, Ordering::Release);
    // A client still connecting now takes no part (see the module docs of `loadtest`).
    for m in shared.members.iter() {
        let _ = m
            .state
            .compare_exchange(CONNECTING, FAILED, Ordering::AcqRel, Ordering::Acquire);
    }
    *shared
        .schedule_start
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(start);
    let cpu_run_start = cpu_seconds();
    let duration = Duration::from_millis(cfg.duration_ms);
    let end = start + duration;
    let messages = tokio::spawn(message_schedule(shared.clone(), start, end));
    let api = tokio::spawn(api_schedule(shared.clone(), start, end));
    let mut stopped = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end.into()) => break,
            _ = tick.tick() => { let _ = events.send(Event::Progress(shared.progress())); }
            cmd = commands.recv() => {
                if matches!(cmd, Some(Command::Stop) | None) { stopped = true; break; }
            }
        }
    }
    messages.abort();
    api.abort();
    // Drain: what was sent has up to 5 s more to arrive (later counts as lost).
    let drain_until = Instant::now() + Duration::from_secs(5);
    while !stopped && Instant::now() < drain_until {
        let done = {
            let m = shared.m();
            m.fanout.is_empty() && m.notifications.is_empty()
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run_seconds = start.elapsed().as_secs_f64();
    let cpu_run_seconds = cpu_seconds() - cpu_run_start;
    shared.stopping.store(true, Ordering::Release);
    let result = {
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
                _ => c.failed += 1,
            }
        }
        let m = shared.m();
        c.notifications_expected = c.notifications_received
            + m.notifications.values().filter(|p| p.answered_ok).count() as u64;
        c.api_unanswered = c.api_sent.saturating_sub(c.api_ok + c.api_errors);
        WorkerResult {
            worker: cfg.worker,
            counters: c,
            histograms: m.h.encode(),
            rss_before,
            rss_connected,
            cpu_run_seconds,
            cpu_total_seconds: cpu_seconds() - cpu_start,
            run_seconds,
            nofile_limit: nofile,
            errors: m.errors.clone(),
        }
    };
    let _ = events.send(Event::Result(Box::new(result)));
    close_all(&shared).await;
    Ok(())
}

/// Closes every connection (best effort, bounded in time).
pub(super) async fn close_all(shared: &Arc<Shared>) {
    let closing = async {
        for m in shared.members.iter() {
            m.state.store(CLOSED, Ordering::Release);
            if let Some(mut w) = m.writer.lock().await.take() {
                w.close().await;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;
}

pub(super) fn target(cfg: &WorkerConfig, c: u64) -> Target {
    let node = &cfg.nodes[cfg.node_of(c)];
    Target {
        addr: node.addr,
        authority: node.authority.clone(),
        path: node.path.clone(),
        source: cfg.source_of(c),
    }
}

/// A token for global client `c` (the same code as `rtctl token`, NextAuth v4 format).
pub(super) fn token(cfg: &WorkerConfig, c: u64) -> String {
    let claims = crate::auth::session_claims(
        &cfg.user_of(c),
        None,
        None,
        std::time::SystemTime::now(),
        Duration::from_secs(cfg.duration_ms / 1000 + 3600),
    );
    crate::auth::mint(&cfg.token_secret, crate::auth::TokenFormat::V4, &claims)
}

pub(super) async fn send(
    shared: &Shared,
    i: u64,
    packet: String,
) -> Result<(), client::ClientError> {
    let mut w = shared.members[i as usize].writer.lock().await;
    match w.as_mut() {
        Some(w) => w.send(packet).await,
        None => Err(client::ClientError::Closed),
    }
}

/// Connects client `i`, joins, then reads until the connection ends.
pub(super) async fn client_task(shared: Arc<Shared>, i: u64) {
    let started = Instant::now();
    let cfg = &shared.cfg;
    let c = cfg.first_client + i;
    let timeout = Duration::from_millis(cfg.connect_timeout_ms);
    let member = &shared.members[i as usize];
    let fail = |e: String| {
        if member
            .state
            .compare_exchange(CONNECTING, FAILED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            shared.m().error(e);
        }
    };
    // Nothing of the handshake (open packet, token) outlives it: it would stay in this
    // task's state for the whole run, per client.
    // Boxed: an async fn's state is as large as its largest await, and the WebSocket
    // handshake's would otherwise stay in every client's task for the whole run.
    let (mut reader, writer) =
        match Box::pin(client::connect(&target(cfg, c), cfg.transport, timeout)).await {
            Ok((r, w, _)) => (r, w),
            Err(e) => return fail(format!("connect: {e}")),
        };
    *member.writer.lock().await = Some(writer);
    let mut namespaces = Vec::new();
    let messages_nsp = cfg.scenario.message_namespace();
    if let Some(nsp) = messages_nsp {
        namespaces.push(nsp);
    }
    if cfg.scenario.notifications() {
        namespaces.push(NOTIFICATIONS);
    }
    {
        let auth = json!({ "token": token(cfg, c) });
        for nsp in &namespaces {
            if let Err(e) = send(&shared, i, frames::connect(nsp, &auth)).await {
                return fail(format!("connect {nsp}: {e}"));
            }
        }
    }
    let namespaces = namespaces.len();
    // Handshake: every namespace connected, then (rooms) the join acked.
    let room = shared.room_of(i);
    let members = cfg.room_members(room);
    let slot = i - members.start;
    let paired = members.end - members.start >= 2;
    let joining = async {
        let mut connected = 0;
        let mut joined = messages_nsp.is_none() || (messages_nsp == Some(CHAT) && !paired);
        // Chat: the second member joins the room the first one opened.
        let mut waiting_for_room = false;
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        while connected < namespaces || !joined {
            let packet = tokio::select! {
                p = reader.next() => match p {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("closed by the server while connecting".into()),
                },
                _ = poll.tick(), if waiting_for_room => {
                    let id = shared.chat_rooms[room as usize].load(Ordering::Acquire);
                    if id > 0 {
                        waiting_for_room = false;
                        send(&shared, i, frames::event(CHAT, "room:join", json!({ "roomId": id }), Some(0)))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    continue;
                }
            };
            match frames::parse(&packet).map_err(|e| e.to_string())? {
                Incoming::Ping => {
                    send(&shared, i, frames::PONG.into())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Incoming::Connected { nsp } => {
                    connected += 1;
                    if nsp == BENCH {
                        let name = cfg.room_name(room);
                        send(
                            &shared,
                            i,
                            frames::event(BENCH, "join", json!({ "room": name }), Some(0)),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    } else if nsp == CHAT && paired && slot == 0 {
                        let peer = cfg.user_of(cfg.first_client + members.start + 1);
                        send(
                            &shared,
                            i,
                            frames::event(CHAT, "room:open", json!({ "peerId": peer }), Some(0)),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    } else if nsp == CHAT && paired {
                        waiting_for_room = true;
                    }
                }
                Incoming::ConnectError { nsp, data } => {
                    return Err(format!("{nsp} refused the connection: {data}"))
                }
                Incoming::Ack { nsp, id: 0, args } if Some(nsp.as_str()) == messages_nsp => {
                    let answer = args.first().cloned().unwrap_or_default();
                    if nsp == CHAT && slot == 0 {
                        let id = answer["roomId"]
                            .as_i64()
                            .filter(|id| *id > 0)
                            .ok_or_else(|| format!("room:open refused: {answer}"))?;
                        shared.chat_rooms[room as usize].store(id, Ordering::Release);
                    } else if answer["ok"] != Value::Bool(true) {
                        return Err(format!("joining the room refused: {answer}"));
                    }
                    joined = true;
                }
                Incoming::Close | Incoming::Disconnected { .. } => {
                    return Err("disconnected while connecting".into())
                }
                _ => {}
            }
        }
        Ok(())
    };
    match Box::pin(tokio::time::timeout(timeout, joining)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return fail(e),
        Err(_) => return fail(format!("not connected and joined within {timeout:?}")),
    }
    if member
        .state
        .compare_exchange(CONNECTING, READY, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Too late: the schedule has started without this client.
        if let Some(mut w) = member.writer.lock().await.take() {
            w.close().await;
        }
        return;
    }
    let joined_ms = shared.clock.now_ms();
    shared
        .m()
        .h
        .record(H::Connect, started.elapsed().as_secs_f64() * 1000.0);

    let mut seen = Bitmap::default();
    let end = loop {
        let packet = match reader.next().await {
            Some(Ok(p)) => p,
            Some(Err(e)) => break Some(e.to_string()),
            None => break None,
        };
        let incoming = match frames::parse(&packet) {
            Ok(p) => p,
            Err(e) => break Some(e.to_string()),
        };
        match incoming {
            Incoming::Ping => {
                if let Err(e) = send(&shared, i, frames::PONG.into()).await {
                    break Some(e.to_string());
                }
            }
            Incoming::Event {
                nsp, name, args, ..
            } => {
                let Some(arg) = args.first() else { continue };
                if nsp == BENCH && name == "message" {
                    on_message(&shared, arg, joined_ms, &mut seen);
                } else if nsp == CHAT && name == "message:new" {
                    // The chat message's text carries the loadtest's fields as JSON.
                    match arg["text"].as_str().map(serde_json::from_str::<Value>) {
                        Some(Ok(fields)) => on_message(&shared, &fields, joined_ms, &mut seen),
                        _ => shared
                            .m()
                            .error(format!("message:new without loadtest fields: {arg}")),
                    }
                } else if nsp == NOTIFICATIONS && name == "notification:new" {
                    on_notification(&shared, arg);
                }
            }
            Incoming::Ack { nsp, id, args } if Some(nsp.as_str()) == messages_nsp && id > 0 => {
                on_publish_ack(&shared, id - 1, args.first());
            }
            Incoming::Close => break None,
            Incoming::Disconnected { nsp } => {
                break Some(format!("{nsp}: disconnected by the server"))
            }
            _ => {}
        }
    };
    if member
        .state
        .compare_exchange(READY, DROPPED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
        && !shared.stopping.load(Ordering::Acquire)
    {
        shared.m().error(format!(
            "dropped: {}",
            end.unwrap_or_else(|| "closed by the server".into())
        ));
    }
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
