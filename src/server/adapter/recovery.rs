//! Connection state recovery kept in this process: the replay log and the sessions of
//! disconnected sockets, for the embedded default and for the classic Redis adapter
//! (whose pub/sub keeps nothing, so sessions recover on the node that kept them).
//!
//! Node's in-memory `SessionAwareAdapter` keeps every replayable broadcast for
//! `maxDisconnectionDuration` with no bound on count, and keeps a session after it was
//! restored (the same session can then be restored twice, and two live sockets share an
//! id — socket.io#4880). Here the log is bounded by age *and* count, and a restore takes
//! the session: a second CONNECT with the same pid gets a fresh socket.
//!
//! The log holds the Engine.IO frames each packet was sent as (shared, reference-counted
//! buffers): keeping a packet costs no copy and no re-encoding, and a replay sends the
//! very bytes live clients received, offset included.

use super::{BroadcastOptions, PersistedSession, RecoveredSession, Resume};
use crate::server::Room;
use crate::sync::MutexExt as _;
use crate::transport::Frame;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The settings of connection state recovery (Node's `connectionStateRecovery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// How long a disconnected socket's session, and the packets it may have missed, are
    /// kept (`maxDisconnectionDuration`).
    pub max_disconnection: Duration,
    /// Whether a recovered socket skips the namespace's middleware (`skipMiddlewares`).
    pub skip_middlewares: bool,
    /// The most packets one namespace's in-process log keeps; older ones go first.
    pub max_packets: usize,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            max_disconnection: Duration::from_millis(120_000),
            skip_middlewares: true,
            max_packets: 10_000,
        }
    }
}

/// One replayable packet: its offset, who it was for, and the frames it was sent as.
struct Logged {
    /// Position in this log (1, 2, …): what a restore's catch-up counts from.
    seq: u64,
    offset: String,
    opts: BroadcastOptions,
    frames: Vec<Frame>,
    at: Instant,
}

struct Kept {
    session: PersistedSession,
    until: Instant,
}

#[derive(Default)]
struct State {
    packets: VecDeque<Logged>,
    /// The seq of the last packet logged (0: none yet).
    last_seq: u64,
    sessions: HashMap<String, Kept>,
    last_sweep: Option<Instant>,
}

/// The replay log and sessions of one namespace. See the module docs.
pub struct RecoveryLog {
    options: RecoveryOptions,
    state: Mutex<State>,
}

/// How often expired sessions are swept (as Node's cleanup timer, but done on the next
/// persist instead of by a timer: nothing runs while nobody disconnects).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl RecoveryLog {
    pub fn new(options: RecoveryOptions) -> Self {
        RecoveryLog {
            options,
            state: Mutex::default(),
        }
    }

    pub fn options(&self) -> &RecoveryOptions {
        &self.options
    }

    /// Keeps a sent packet for replay under `offset`; drops what is too old or too many.
    pub fn record(&self, offset: String, opts: &BroadcastOptions, frames: Vec<Frame>) {
        let now = Instant::now();
        let mut st = self.state.lock_unpoisoned();
        st.last_seq += 1;
        let seq = st.last_seq;
        st.packets.push_back(Logged {
            seq,
            offset,
            opts: opts.clone(),
            frames,
            at: now,
        });
        while st.packets.len() > self.options.max_packets
            || st
                .packets
                .front()
                .is_some_and(|p| now.duration_since(p.at) > self.options.max_disconnection)
        {
            st.packets.pop_front();
        }
    }

    /// Keeps the session of a socket that closed for a recoverable reason.
    pub fn persist(&self, session: PersistedSession) {
        let now = Instant::now();
        let mut st = self.state.lock_unpoisoned();
        if st
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY)
        {
            st.sessions.retain(|_, kept| kept.until > now);
            st.last_sweep = Some(now);
        }
        let until = now + self.options.max_disconnection;
        st.sessions
            .insert(session.pid.as_str().to_owned(), Kept { session, until });
    }

    /// Takes the session of `pid` with every packet after `offset` that was for its
    /// rooms. None when the session is unknown or expired, or the offset is no longer in
    /// the log (the client may have missed packets nobody kept: a fresh socket is honest).
    pub fn restore(&self, pid: &str, offset: &str) -> Option<RecoveredSession> {
        let now = Instant::now();
        let mut st = self.state.lock_unpoisoned();
        let kept = st.sessions.remove(pid)?;
        if kept.until <= now {
            return None;
        }
        let from = st.packets.iter().rposition(|p| p.offset == offset)? + 1;
        let missed = st
            .packets
            .range(from..)
            .filter(|p| should_include(&kept.session.rooms, &p.opts))
            .map(|p| p.frames.clone())
            .collect();
        Some(RecoveredSession {
            session: kept.session,
            missed,
            resume: Some(Resume::Log(st.last_seq)),
        })
    }

    /// Every packet logged after `seq` that was for `rooms`: what a restored socket
    /// missed between its restore and the moment it joined its rooms again.
    pub fn since(&self, seq: u64, rooms: &[Room]) -> Vec<Vec<Frame>> {
        let st = self.state.lock_unpoisoned();
        st.packets
            .iter()
            .filter(|p| p.seq > seq && should_include(rooms, &p.opts))
            .map(|p| p.frames.clone())
            .collect()
    }

    /// Packets and sessions kept now (for tests and metrics).
    pub fn len(&self) -> (usize, usize) {
        let st = self.state.lock_unpoisoned();
        (st.packets.len(), st.sessions.len())
    }
}

/// socket.io's `shouldIncludePacket`: a packet for everyone or for one of the session's
/// rooms (its own id included), unless one of them is excluded.
pub fn should_include(session_rooms: &[Room], opts: &BroadcastOptions) -> bool {
    let included = opts.rooms.is_empty() || session_rooms.iter().any(|r| opts.rooms.contains(r));
    let excluded = session_rooms.iter().any(|r| opts.except.contains(r));
    included && !excluded
}

/// A fresh offset, as socket.io-adapter's `yeast()` makes them: the time in milliseconds
/// in its 64-character alphabet, then `.0`, `.1`, … for more in the same millisecond.
/// One sequence per process, shared by every namespace, so offsets never repeat.
pub fn next_offset() -> String {
    static PREVIOUS: Mutex<(String, u64)> = Mutex::new((String::new(), 0));
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let now = yeast_encode(millis);
    let mut prev = PREVIOUS.lock_unpoisoned();
    if prev.0 != now {
        *prev = (now.clone(), 0);
        return now;
    }
    let seed = prev.1;
    prev.1 += 1;
    format!("{now}.{}", yeast_encode(seed))
}

fn yeast_encode(mut n: u64) -> String {
    const ALPHABET: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";
    let mut out = Vec::new();
    loop {
        out.push(ALPHABET[(n % 64) as usize]);
        n /= 64;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("the alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sid::Sid;
    use serde_json::json;

    fn session(rooms: &[&str]) -> PersistedSession {
        PersistedSession {
            sid: Sid::new(),
            pid: Sid::new(),
            rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
            data: json!({"userId": "u1"}),
            expires_at: None,
        }
    }

    fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
            except: except.iter().map(|r| Room::from(*r)).collect(),
            ..Default::default()
        }
    }

    fn frame(s: &str) -> Vec<Frame> {
        vec![Frame::text(s.to_owned())]
    }

    #[test]
    fn yeast_offsets_match_socket_io_adapter() {
        // Values from socket.io-adapter's yeast(): 1700000000000 → "OlFvMW0".
        assert_eq!(yeast_encode(1_700_000_000_000), "OlFvMW0");
        assert_eq!(yeast_encode(0), "0");
        assert_eq!(yeast_encode(64), "10");
        let (a, b) = (next_offset(), next_offset());
        assert_ne!(a, b);
    }

    #[test]
    fn a_restore_replays_what_followed_the_offset_for_the_sessions_rooms() {
        let log = RecoveryLog::new(RecoveryOptions::default());
        let s = session(&["sid-a", "r1"]);
        let pid = s.pid;
        log.record("o1".into(), &opts(&[], &[]), frame("seen"));
        log.record("o2".into(), &opts(&["r1"], &[]), frame("for r1"));
        log.record("o3".into(), &opts(&["r2"], &[]), frame("for r2"));
        log.record("o4".into(), &opts(&[], &["sid-a"]), frame("not to a"));
        log.record("o5".into(), &opts(&["sid-a"], &[]), frame("to a"));
        log.persist(s);
        let got = log.restore(pid.as_str(), "o1").expect("restored");
        assert_eq!(got.missed, vec![frame("for r1"), frame("to a")]);
        assert_eq!(got.session.data, json!({"userId": "u1"}));
        assert!(
            log.restore(pid.as_str(), "o1").is_none(),
            "a restore takes the session"
        );
    }

    #[test]
    fn an_unknown_offset_or_an_expired_session_restores_nothing() {
        let log = RecoveryLog::new(RecoveryOptions {
            max_disconnection: Duration::from_millis(30),
            ..Default::default()
        });
        let s = session(&[]);
        let pid = s.pid;
        log.record("o1".into(), &opts(&[], &[]), frame("x"));
        log.persist(s.clone());
        assert!(log.restore(pid.as_str(), "nope").is_none());
        log.persist(s);
        std::thread::sleep(Duration::from_millis(40));
        assert!(log.restore(pid.as_str(), "o1").is_none());
    }

    #[test]
    fn the_log_is_bounded_by_count_and_age() {
        let log = RecoveryLog::new(RecoveryOptions {
            max_packets: 3,
            max_disconnection: Duration::from_millis(50),
            ..Default::default()
        });
        for i in 0..5 {
            log.record(format!("o{i}"), &opts(&[], &[]), frame("x"));
        }
        assert_eq!(log.len().0, 3);
        std::thread::sleep(Duration::from_millis(60));
        log.record("new".into(), &opts(&[], &[]), frame("x"));
        assert_eq!(log.len().0, 1);
    }
}
