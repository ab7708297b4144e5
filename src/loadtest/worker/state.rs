//! What a worker's tasks share: each client's state and writer, the measurements, and
//! the schedule. Kept small per client on purpose (see the module docs of [`super`]).

use crate::client::{self, Target, Writer};
use crate::loadtest::ipc::Progress;
use crate::loadtest::late::LateBySecond;
use crate::loadtest::plan::WorkerConfig;
use crate::loadtest::schedule::Schedule;
use crate::loadtest::stats::{Counters, Histograms};
use crate::loadtest::{Clock, Scenario};
use crate::sync::MutexExt as _;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The namespaces.
pub(super) const BENCH: &str = "/bench";
pub(super) const CHAT: &str = "/chat";
pub(super) const NOTIFICATIONS: &str = "/notifications";

/// A client's state ([`Member::state`]).
pub(super) const CONNECTING: u8 = 0;
pub(super) const READY: u8 = 1;
pub(super) const FAILED: u8 = 2;
pub(super) const DROPPED: u8 = 3;
pub(super) const CLOSED: u8 = 4;
/// Dropped by the churn, or its connection ended during a drill, and reconnecting: still
/// in session, so messages sent to its room meanwhile are expected (recovered, or lost).
pub(super) const AWAY: u8 = 5;

/// One client as the scheduler sees it.
pub(super) struct Member {
    pub(super) state: AtomicU8,
    pub(super) writer: tokio::sync::Mutex<Option<Writer>>,
    /// The churn's signal to the client's task: drop the transport now.
    pub(super) kick: Notify,
    /// It has received a room message, so (with recovery on) it holds an offset.
    pub(super) received: AtomicBool,
    /// Its publishes not yet acked: the churn leaves it alone until they are (a drop
    /// would lose the publish itself, a loss on the sender's side recovery cannot undo).
    pub(super) publishing: AtomicU32,
    /// When its latest interruption ended (`f64` bits, Unix ms): 0 if it never had one,
    /// infinity while it is away. A delivery it misses counts against the interruption
    /// when this is later than the message's send time.
    back_ms: AtomicU64,
}

/// A message on its way to its receivers.
pub(super) struct Fanout {
    pub(super) remaining: u64,
    pub(super) sent_ms: f64,
    /// The sender has its ack.
    pub(super) acked: bool,
    /// The local index of the room's first member, and one bit per member (by its place
    /// in the room) still expected to receive it.
    pub(super) room_start: u64,
    pub(super) missing: Vec<u64>,
}

impl Fanout {
    /// Clears `offset`'s bit; true when it was still expected.
    pub(super) fn arrived(&mut self, offset: u64) -> bool {
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        match self.missing.get_mut(word) {
            Some(w) if *w & (1 << bit) != 0 => {
                *w &= !(1 << bit);
                self.remaining -= 1;
                true
            }
            _ => false,
        }
    }

    /// The local indices of the receivers still missing it.
    pub(super) fn missing(&self) -> impl Iterator<Item = u64> + '_ {
        self.missing.iter().enumerate().flat_map(move |(w, bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| self.room_start + w as u64 * 64 + b)
        })
    }
}

/// The bits of `offsets` (places in a room), for [`Fanout::missing`].
pub(super) fn bits(offsets: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut words = Vec::new();
    for o in offsets {
        let (word, bit) = ((o / 64) as usize, o % 64);
        if word >= words.len() {
            words.resize(word + 1, 0);
        }
        words[word] |= 1 << bit;
    }
    words
}

/// A notification on its way.
pub(super) struct Pending {
    pub(super) answered_ok: bool,
    /// The local client it is for.
    pub(super) target: u64,
    pub(super) sent_ms: f64,
}

#[derive(Default)]
pub(super) struct Measured {
    pub(super) h: Histograms,
    pub(super) c: Counters,
    pub(super) fanout: HashMap<u64, Fanout>,
    pub(super) notifications: HashMap<u64, Pending>,
    pub(super) notifications_seen: HashSet<u64>,
    /// Publishes (by schedule index) whose ack has not come.
    pub(super) awaiting_ack: HashSet<u64>,
    /// Chat: `(from, k)` of each publish acknowledged without an error.
    pub(super) acked_chat: Vec<[u64; 2]>,
    pub(super) errors: Vec<String>,
    /// When the schedule started (Unix ms, the coordinator's time, the same in every
    /// worker), once it has.
    pub(super) start_ms: Option<f64>,
    /// Room messages over [`crate::loadtest::late::LATE_MS`], by the second they were
    /// sent in.
    pub(super) late: LateBySecond,
}

impl Measured {
    /// Keeps the first five distinct errors, for the report.
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
    pub(super) chat_rooms: Box<[AtomicI64]>,
    /// The coordinator's drill windows (Unix ms; an open one has no end yet).
    windows: Mutex<Vec<(f64, Option<f64>)>>,
}

impl Shared {
    /// Every client connecting, nothing measured yet.
    pub(super) fn new(cfg: WorkerConfig) -> Shared {
        let members: Box<[Member]> = (0..cfg.clients)
            .map(|_| Member {
                state: AtomicU8::new(CONNECTING),
                writer: tokio::sync::Mutex::new(None),
                kick: Notify::new(),
                received: AtomicBool::new(false),
                publishing: AtomicU32::new(0),
                back_ms: AtomicU64::new(0f64.to_bits()),
            })
            .collect();
        let rooms = cfg.rooms();
        let chat_rooms = if cfg.scenario == Scenario::Chat {
            rooms
        } else {
            0
        };
        Shared {
            schedule: Schedule {
                rate: cfg.message_rate,
                rooms,
            },
            clock: Clock::shifted(-cfg.clock_offset_ms),
            cfg,
            members,
            m: Mutex::new(Measured::default()),
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            schedule_start: Mutex::new(None),
            chat_rooms: (0..chat_rooms).map(|_| AtomicI64::new(0)).collect(),
            windows: Mutex::new(Vec::new()),
        }
    }

    /// Local client `i` lost its connection (it is away until [`Shared::mark_back`]).
    pub(super) fn mark_away(&self, i: u64) {
        let member = &self.members[i as usize];
        member
            .back_ms
            .store(f64::INFINITY.to_bits(), Ordering::Release);
    }

    /// Local client `i` is back in its room.
    pub(super) fn mark_back(&self, i: u64) {
        let now = self.clock.now_ms();
        self.members[i as usize]
            .back_ms
            .store(now.to_bits(), Ordering::Release);
    }

    /// Whether local client `i` lost its connection after `sent_ms` (or was away then):
    /// a message sent at `sent_ms` that it misses went down with a connection.
    pub(super) fn interrupted_since(&self, i: u64, sent_ms: f64) -> bool {
        f64::from_bits(self.members[i as usize].back_ms.load(Ordering::Acquire)) > sent_ms
    }

    /// The coordinator opened (or closed) the drill window starting at `from`.
    pub(super) fn set_window(&self, from: f64, to: Option<f64>) {
        let mut windows = self.windows.lock_unpoisoned();
        match windows.iter_mut().find(|(f, _)| *f == from) {
            Some(w) => w.1 = to,
            None => windows.push((from, to)),
        }
    }

    /// Whether something sent at `ms` was sent inside a drill window.
    pub(super) fn in_drill(&self, ms: f64) -> bool {
        let windows = self.windows.lock_unpoisoned();
        windows
            .iter()
            .any(|(from, to)| ms >= *from && to.is_none_or(|to| ms < to))
    }

    pub(super) fn m(&self) -> std::sync::MutexGuard<'_, Measured> {
        self.m.lock_unpoisoned()
    }
    pub(super) fn state(&self, i: u64) -> u8 {
        self.members[i as usize].state.load(Ordering::Acquire)
    }
    /// Connected, or away for a moment by the churn: messages to its room are for it.
    pub(super) fn in_session(&self, i: u64) -> bool {
        matches!(self.state(i), READY | AWAY)
    }
    /// How many clients the churn dropped that are not back yet.
    pub(super) fn away(&self) -> usize {
        let away = |m: &&Member| m.state.load(Ordering::Relaxed) == AWAY;
        self.members.iter().filter(away).count()
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

    /// Where global client `c` connects: its own node, or (`shift` > 0) the one `shift`
    /// places after it.
    pub(super) fn target(&self, c: u64, shift: usize) -> Target {
        let node = &self.cfg.nodes[self.cfg.node_after(c, shift)];
        Target {
            addr: node.addr,
            authority: node.authority.clone(),
            path: node.path.clone(),
            source: self.cfg.source_of(c),
        }
    }

    /// A token for global client `c` (the same code as `rtctl token`, NextAuth v4 format).
    pub(super) fn token(&self, c: u64) -> String {
        let claims = crate::auth::session_claims(
            &self.cfg.user_of(c),
            None,
            None,
            std::time::SystemTime::now(),
            Duration::from_secs(self.cfg.duration_ms / 1000 + 3600),
        );
        crate::auth::mint(
            &self.cfg.token_secret,
            crate::auth::TokenFormat::V4,
            &claims,
        )
    }

    /// The namespaces a client of this run opens, the room messages' first.
    pub(super) fn namespaces(&self) -> Vec<&'static str> {
        let s = self.cfg.scenario;
        s.message_namespace()
            .into_iter()
            .chain(s.notifications().then_some(NOTIFICATIONS))
            .collect()
    }

    /// Closes local client `i`'s connection at once, without a close frame: with the
    /// reader gone too (the caller drops it), the TCP connection is closed under the
    /// server, as a network blip would.
    pub(super) async fn drop_writer(&self, i: u64) {
        drop(self.members[i as usize].writer.lock().await.take());
    }

    /// Sends an Engine.IO packet on local client `i`'s connection.
    pub(super) async fn send(&self, i: u64, packet: String) -> Result<(), client::ClientError> {
        let mut w = self.members[i as usize].writer.lock().await;
        match w.as_mut() {
            Some(w) => w.send(packet).await,
            None => Err(client::ClientError::Closed),
        }
    }

    /// Closes every connection (best effort, bounded in time).
    pub(super) async fn close_all(&self) {
        let closing = async {
            for m in self.members.iter() {
                m.state.store(CLOSED, Ordering::Release);
                if let Some(mut w) = m.writer.lock().await.take() {
                    w.close().await;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;
    }
}
