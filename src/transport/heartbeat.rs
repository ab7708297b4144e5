//! Heartbeats for every session of an engine, in one schedule run by one task.
//!
//! Engine.IO v4 heartbeats go server → client: every `pingInterval` the server sends `2`,
//! and the client must answer `3` within `pingTimeout` or the session is dead. A timer
//! per session (a task or a future holding a `Sleep`) costs every idle connection
//! several hundred bytes and a wake-up of its own; here a session costs one entry in an
//! ordered map (about 50 bytes) and two atomics.
//!
//! Each session has exactly one entry at a time: when its next ping is due, or, once the
//! ping is out, when its pong is overdue. A pong moves the entry to the next ping (an
//! interval after the ping it answers was due: see [`Heartbeats::pong`]) and a close
//! removes it, so nothing stale piles up (with FIFO queues, every answered ping
//! would leave its deadline behind for `pingTimeout`: more than two entries per session
//! at the defaults of 25 s and 60 s). Times are whole milliseconds from the schedule's
//! creation, rounded up, so no deadline fires early.
//!
//! Pings go out early by a random part of the interval: a session's first ping anywhere
//! in the second half of the interval, each later one up to a twentieth early, on 20 ms
//! ticks. Sessions that opened together (the last connects of a ramp, every client of a
//! restarted node coming back at once) would otherwise be pinged together every
//! interval for as long as they live: a burst of pings and pongs that every message
//! waits behind (phase 3 on one box: 5,000–16,000 pings in one second every 25 s, and
//! messages sent then arrived up to 240 ms late). Early, never late: a client allows
//! `pingInterval + pingTimeout` from its last ping, and the pong deadline counts from the
//! ping's (earlier) due time. The later pings' random parts add up beat after beat, so a
//! group keeps spreading; and since each next ping counts from the last one's due time,
//! not from its pong, a stall that holds many pongs back cannot line them up again.
//!
//! A session's beat state is the beat number shifted left by one, with the low bit set
//! while a ping awaits its pong; an entry carries the beat it was made for.

use super::{CloseReason, Frame, Session};
use crate::sid::Sid;
use crate::sync::MutexExt as _;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A session's place in the heartbeat. Changed only under the schedule's lock.
#[derive(Debug, Default)]
pub struct Beat {
    state: AtomicU32,
    /// The key of the session's entry (milliseconds from the schedule's epoch).
    due: AtomicU64,
}

impl Beat {
    fn waiting(beat: u32) -> u32 {
        beat << 1
    }

    fn awaiting_pong(beat: u32) -> u32 {
        (beat << 1) | 1
    }

    fn state(&self) -> u32 {
        self.state.load(Ordering::Relaxed)
    }
}

/// Entries by (due time, session): the value is the beat the entry was made for.
type Entries = BTreeMap<(u64, Sid), u32>;

struct Schedule {
    entries: Entries,
    /// When the task will look again (`None`: not until woken). An entry due earlier
    /// wakes it.
    sleeping_until: Option<u64>,
}

/// The heartbeat of all of an engine's sessions.
pub struct Heartbeats {
    schedule: Mutex<Schedule>,
    wake: Notify,
    epoch: Instant,
    interval: Duration,
    timeout: Duration,
    /// How much earlier than the interval a session's first ping may go, and each later
    /// one (see the module docs).
    first_spread: Duration,
    spread: Duration,
}

/// A session's first ping goes out at most this share of the interval early; each later
/// one at most [`SPREAD_DIVISOR`]'s.
const FIRST_SPREAD_DIVISOR: u32 = 2;
const SPREAD_DIVISOR: u32 = 20;

/// Pings are due on whole ticks of this share of the interval (20 ms at 25 s), rounded
/// down: spread, every distinct millisecond would be a wake-up of its own (600 a second
/// at 16,000 sessions a node); on ticks, the pings of one tick go out in one.
const TICK_DIVISOR: u64 = 1_250;

impl Heartbeats {
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        let first_spread = interval / FIRST_SPREAD_DIVISOR;
        Self::with_spread(interval, timeout, first_spread, interval / SPREAD_DIVISOR)
    }

    /// Pings spread over `first_spread` (a session's first) and `spread` (the others)
    /// before the interval; zero: exactly at the interval.
    fn with_spread(
        interval: Duration,
        timeout: Duration,
        first_spread: Duration,
        spread: Duration,
    ) -> Self {
        Heartbeats {
            schedule: Mutex::new(Schedule {
                entries: BTreeMap::new(),
                sleeping_until: None,
            }),
            wake: Notify::new(),
            epoch: Instant::now(),
            interval,
            timeout,
            first_spread,
            spread,
        }
    }

    /// `ms` rounded down to a whole tick (see [`TICK_DIVISOR`]).
    fn on_tick(&self, ms: u64) -> u64 {
        let tick = (self.interval.as_millis() as u64 / TICK_DIVISOR).max(1);
        ms - ms % tick
    }

    /// How much earlier than the interval a ping goes: a random part of `spread` (ms).
    fn early(spread: Duration) -> u64 {
        match spread.as_millis() as u64 {
            0 => 0,
            spread => rand::random_range(0..=spread),
        }
    }

    /// Milliseconds from the epoch to `at`, rounded up: an entry never fires early.
    fn ms_ceil(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.epoch);
        d.as_millis() as u64 + u64::from(d.subsec_nanos() % 1_000_000 != 0)
    }

    fn ms_floor(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Schedules a new session's first ping, `pingInterval` after `opened` (when its
    /// handshake was queued: a busy scheduler cannot stretch the deadline), less up to
    /// half of it.
    pub fn start<D>(&self, session: &Session<D>, opened: Instant) {
        let due = self.ms_ceil(opened + self.interval) - Self::early(self.first_spread);
        let due = self.on_tick(due);
        let mut s = self.schedule.lock_unpoisoned();
        self.schedule_entry(&mut s, session, due, Beat::waiting(0));
    }

    /// A pong arrived: the next ping is due `pingInterval` after the one it answers was
    /// due (less the spread), or now if the pong came later than that. A pong nobody
    /// asked for (none pending) changes nothing, so it cannot answer a later ping in
    /// advance.
    ///
    /// The cadence is the session's own, whenever its pongs come. Counted from each pong
    /// instead, one stall that holds many pongs back (a busy load generator, a busy node)
    /// would line all their sessions up: their next pings in one burst an interval later,
    /// that burst a stall of its own, and so on. Phase 3 on one box showed exactly that:
    /// 16,000 pings in one second every 25 s.
    pub fn pong<D>(&self, session: &Session<D>) {
        self.pong_at(session, Instant::now());
    }

    /// [`Self::pong`], answered at `now`.
    fn pong_at<D>(&self, session: &Session<D>, now: Instant) {
        let now = self.ms_ceil(now);
        let mut s = self.schedule.lock_unpoisoned();
        let state = session.beat.state();
        if state & 1 == 0 {
            return;
        }
        let deadline = session.beat.due.load(Ordering::Relaxed);
        s.entries.remove(&(deadline, session.sid));
        let answered = deadline - self.timeout.as_millis() as u64;
        let due = answered + self.interval.as_millis() as u64 - Self::early(self.spread);
        let due = self.on_tick(due);
        let next = (state >> 1).wrapping_add(1);
        self.schedule_entry(&mut s, session, due.max(now), Beat::waiting(next));
    }

    /// Drops a closed session's entry.
    pub fn forget<D>(&self, session: &Session<D>) {
        let mut s = self.schedule.lock_unpoisoned();
        s.entries
            .remove(&(session.beat.due.load(Ordering::Relaxed), session.sid));
    }

    fn schedule_entry<D>(&self, s: &mut Schedule, session: &Session<D>, due: u64, state: u32) {
        session.beat.state.store(state, Ordering::Relaxed);
        session.beat.due.store(due, Ordering::Relaxed);
        s.entries.insert((due, session.sid), state >> 1);
        if s.sleeping_until.is_none_or(|t| due < t) {
            s.sleeping_until = Some(due);
            self.wake.notify_one();
        }
    }

    /// Sends the pings due by `now` and closes the sessions whose pong is overdue.
    /// `session` finds an open session by id. Returns when the next entry is due (`None`:
    /// no session is waiting for anything).
    pub fn fire_due<D>(
        &self,
        now: Instant,
        session: impl Fn(&Sid) -> Option<Arc<Session<D>>>,
    ) -> Option<Instant> {
        let now = self.ms_floor(now);
        let mut s = self.schedule.lock_unpoisoned();
        // This task is awake: what it schedules below needs no wake-up.
        s.sleeping_until = Some(0);
        while let Some(entry) = s.entries.first_entry() {
            let (due, sid) = *entry.key();
            if due > now {
                break;
            }
            let beat = entry.remove();
            let Some(session) = session(&sid) else {
                continue;
            };
            let state = session.beat.state();
            if state == Beat::waiting(beat) && !session.is_closed() {
                session.send(Frame::text("2"));
                let deadline = due + self.timeout.as_millis() as u64;
                self.schedule_entry(&mut s, &session, deadline, Beat::awaiting_pong(beat));
            } else if state == Beat::awaiting_pong(beat) {
                session.close(CloseReason::PingTimeout);
            }
        }
        let next = s.entries.first_key_value().map(|(&(due, _), _)| due);
        s.sleeping_until = next;
        next.map(|ms| self.instant(ms))
    }

    /// Waits until `next` (from [`Self::fire_due`]) or until a session is scheduled earlier.
    pub async fn wait(&self, next: Option<Instant>) {
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = self.wake.notified() => {}
                }
            }
            None => self.wake.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::engineio::TransportKind;
    use crate::transport::session::Drain;
    use crate::transport::RequestInfo;
    use std::collections::{HashMap, HashSet};
    use tokio::sync::mpsc;

    const INTERVAL: Duration = Duration::from_millis(300);
    const TIMEOUT: Duration = Duration::from_millis(200);

    struct Fixture {
        beats: Heartbeats,
        sessions: HashMap<Sid, Arc<Session<()>>>,
        closed: mpsc::UnboundedReceiver<Sid>,
        tx: mpsc::UnboundedSender<Sid>,
        t0: Instant,
    }

    impl Fixture {
        fn new() -> Self {
            let (tx, closed) = mpsc::unbounded_channel();
            let beats = Heartbeats::with_spread(INTERVAL, TIMEOUT, Duration::ZERO, Duration::ZERO);
            // Times in whole milliseconds from the schedule's epoch, as it counts them.
            let t0 = beats.epoch;
            Fixture {
                beats,
                sessions: HashMap::new(),
                closed,
                tx,
                t0,
            }
        }

        fn open(&mut self) -> Arc<Session<()>> {
            let info = RequestInfo {
                transport: TransportKind::Websocket,
                headers: Default::default(),
                query: vec![],
                remote_addr: "127.0.0.1:1".parse().unwrap(),
                client_ip: "127.0.0.1".parse().unwrap(),
                slot: None,
                issued: std::time::SystemTime::now(),
            };
            let s = Arc::new(Session::new(Sid::new(), info, (), 1 << 20, self.tx.clone()));
            self.beats.start(&s, self.t0);
            self.sessions.insert(s.sid, s.clone());
            s
        }

        fn fire_at(&self, ms: u64) -> Option<Instant> {
            let now = self.t0 + Duration::from_millis(ms);
            self.beats
                .fire_due(now, |sid| self.sessions.get(sid).cloned())
        }
    }

    fn queued(s: &Session<()>) -> Vec<Frame> {
        match s.drain() {
            Drain::Frames(f) => f,
            _ => vec![],
        }
    }

    #[tokio::test]
    async fn pings_at_the_interval_and_again_an_interval_after_each_pong() {
        let mut f = Fixture::new();
        let s = f.open();
        assert_eq!(
            f.fire_at(299),
            Some(f.t0 + INTERVAL),
            "nothing before the interval"
        );
        assert!(queued(&s).is_empty());
        f.fire_at(300);
        assert_eq!(queued(&s), vec![Frame::text("2")]);
        f.beats.pong(&s);
        // The next ping counts from when the first was due (the pong came before 600).
        let next = f.fire_at(300).expect("the next ping is scheduled");
        assert_eq!(next, f.t0 + 2 * INTERVAL);
        // The pong replaced the pong deadline with the next ping: one entry, beat 1.
        let entries: Vec<_> = f
            .beats
            .schedule
            .lock_unpoisoned()
            .entries
            .clone()
            .into_iter()
            .collect();
        assert_eq!(entries, vec![((f.beats.ms_ceil(next), s.sid), 1)]);
        assert!(!s.is_closed());
        assert!(f.closed.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_missing_pong_closes_the_session_at_interval_plus_timeout() {
        let mut f = Fixture::new();
        let s = f.open();
        f.fire_at(300);
        assert_eq!(f.fire_at(499), Some(f.t0 + INTERVAL + TIMEOUT));
        assert!(!s.is_closed());
        f.fire_at(500);
        assert_eq!(s.close_reason(), Some(CloseReason::PingTimeout));
        assert_eq!(
            f.closed.try_recv().ok(),
            Some(s.sid),
            "the housekeeper is told"
        );
    }

    #[tokio::test]
    async fn a_pong_nobody_asked_for_does_not_answer_the_next_ping() {
        let mut f = Fixture::new();
        let s = f.open();
        f.beats.pong(&s);
        f.fire_at(300);
        assert_eq!(queued(&s), vec![Frame::text("2")]);
        f.fire_at(500);
        assert_eq!(s.close_reason(), Some(CloseReason::PingTimeout));
    }

    #[tokio::test]
    async fn a_closed_session_is_not_pinged_and_its_entries_are_dropped() {
        let mut f = Fixture::new();
        let gone = f.open();
        let kept = f.open();
        gone.close(CloseReason::TransportClose);
        f.sessions.remove(&gone.sid);
        f.fire_at(300);
        assert!(queued(&gone).is_empty() || gone.is_closed());
        assert_eq!(queued(&kept), vec![Frame::text("2")]);
        f.beats.pong(&kept);
        let s = f.beats.schedule.lock_unpoisoned();
        let entries: Vec<_> = s
            .entries
            .iter()
            .map(|(&(_, sid), &beat)| (sid, beat))
            .collect();
        assert_eq!(
            entries,
            vec![(kept.sid, 1)],
            "one entry per open session, none stale"
        );
    }

    #[tokio::test]
    async fn a_forgotten_session_leaves_no_entry() {
        let mut f = Fixture::new();
        let s = f.open();
        f.beats.forget(&s);
        assert!(f.beats.schedule.lock_unpoisoned().entries.is_empty());
        assert_eq!(f.fire_at(1_000), None);
    }

    #[tokio::test]
    async fn sessions_opened_together_are_pinged_apart_and_never_late() {
        let mut f = Fixture::new();
        f.beats = Heartbeats::new(Duration::from_secs(25), Duration::from_secs(20));
        f.t0 = f.beats.epoch;
        let sessions: Vec<_> = (0..1_000).map(|_| f.open()).collect();
        let due = |s: &Arc<Session<()>>| s.beat.due.load(Ordering::Relaxed);
        // The first pings: in the second half of the 25 s after they opened.
        let first: Vec<u64> = sessions.iter().map(due).collect();
        assert!(
            first.iter().all(|d| (12_500..=25_000).contains(d)),
            "{first:?}"
        );
        let distinct: HashSet<u64> = first.iter().copied().collect();
        // On 20 ms ticks: 626 possible, about 500 expected.
        assert!(
            distinct.len() > 400 && first.iter().all(|d| d % 20 == 0),
            "1,000 sessions opened in the same millisecond are first pinged in {} distinct ones",
            distinct.len()
        );
        assert_eq!(
            f.fire_at(12_499)
                .map(|t| t >= f.t0 + Duration::from_millis(12_500)),
            Some(true)
        );
        f.fire_at(25_000);
        assert!(sessions.iter().all(|s| queued(s) == vec![Frame::text("2")]));
        // Each next ping is due 25 s after the one answered, up to a twentieth (and a
        // tick) earlier.
        for s in &sessions {
            f.beats.pong(s);
        }
        for (s, first) in sessions.iter().zip(first) {
            let next = due(s);
            assert!(
                (first + 23_740..=first + 25_000).contains(&next) && next % 20 == 0,
                "{first} then {next}"
            );
        }
    }

    /// The cadence is the session's own: a pong that comes late (the client or this
    /// node was busy) does not move the next ping, unless it came after it was due.
    #[tokio::test]
    async fn a_late_pong_keeps_the_cadence() {
        let mut f = Fixture::new();
        let s = f.open();
        f.fire_at(300);
        assert_eq!(queued(&s), vec![Frame::text("2")]);
        // Answered at 450 ms: the next ping is due at 300 + the interval all the same.
        f.beats.pong_at(&s, f.t0 + Duration::from_millis(450));
        assert_eq!(s.beat.due.load(Ordering::Relaxed), 600);
        f.fire_at(600);
        assert_eq!(queued(&s), vec![Frame::text("2")]);
        f.beats.pong_at(&s, f.t0 + Duration::from_millis(650));
        assert_eq!(s.beat.due.load(Ordering::Relaxed), 900);
        f.fire_at(900);
        assert_eq!(queued(&s), vec![Frame::text("2")]);
        // Answered at 1,250 ms, after 900 + the interval: the next ping is due at once.
        f.beats.pong_at(&s, f.t0 + Duration::from_millis(1_250));
        assert_eq!(s.beat.due.load(Ordering::Relaxed), 1_250);
    }

    #[tokio::test]
    async fn an_earlier_deadline_wakes_a_sleeping_task() {
        let mut f = Fixture::new();
        assert_eq!(f.fire_at(0), None, "nothing scheduled: sleep until woken");
        let _s = f.open();
        tokio::time::timeout(Duration::from_secs(1), f.beats.wait(None))
            .await
            .expect("a new session's first ping wakes the task");
        let _later = f.open();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), f.beats.wait(None))
                .await
                .is_err(),
            "a ping due after the one the task waits for does not wake it"
        );
    }
}
