//! The receiving side of a worker: what a client does with each room message,
//! notification and publish ack — exactly-once accounting (a bitmap per receiver) and the
//! latency histograms.

use super::state::Shared;
use crate::loadtest::stats::H;
use crate::loadtest::Scenario;
use crate::sync::MutexExt as _;
use serde_json::Value;
use std::sync::atomic::Ordering;

/// Which room sequence numbers a receiver has seen.
#[derive(Default)]
pub(super) struct Bitmap(Vec<u64>);

impl Bitmap {
    /// Marks `n`; false when it was already marked.
    pub(super) fn insert(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let fresh = self.0[word] & (1 << bit) == 0;
        self.0[word] |= 1 << bit;
        fresh
    }
}

/// A room message for local client `i`, which joined at `joined_ms`: counted once (a
/// second copy is a duplicate, however it came); `replayed`: it came before its socket's
/// CONNECT reply, missed while the client was away and sent again by the server.
pub(super) fn on_message(
    shared: &Shared,
    i: u64,
    msg: &Value,
    joined_ms: f64,
    seen: &mut Bitmap,
    replayed: bool,
) {
    let now = shared.clock.now_ms();
    let (Some(seq), Some(sent), Some(k)) = (
        msg["seq"].as_u64(),
        msg["sentAt"].as_f64(),
        msg["k"].as_u64(),
    ) else {
        shared
            .m()
            .error(format!("message without seq/sentAt/k: {msg}"));
        return;
    };
    let mut m = shared.m();
    if sent < joined_ms {
        m.c.unexpected += 1;
        return;
    }
    if !seen.insert(seq) {
        m.c.duplicates += 1;
        return;
    }
    m.c.received += 1;
    if replayed {
        m.c.replayed += 1;
    }
    let latency = if shared.in_drill(sent) {
        H::LatencyDrill
    } else {
        if shared.cfg.scenario == Scenario::Chat {
            m.h.record(H::ChatLatency, now - sent);
        }
        if let Some(start) = m.start_ms {
            m.late.record(sent - start, now - sent);
        }
        H::Latency
    };
    m.h.record(latency, now - sent);
    let place = i % shared.cfg.room_size;
    let complete = match m.fanout.get_mut(&k) {
        Some(f) => (f.arrived(place) && f.remaining == 0).then_some(f.sent_ms),
        None => None,
    };
    if let Some(sent_ms) = complete {
        m.fanout.remove(&k);
        m.h.record(H::Fanout, now - sent_ms);
    }
}

pub(super) fn on_notification(shared: &Shared, n: &Value) {
    let now = shared.clock.now_ms();
    let data = &n["data"];
    let (Some(seq), Some(sent)) = (data["seq"].as_u64(), data["sentAt"].as_f64()) else {
        return;
    };
    let mut m = shared.m();
    if m.notifications.remove(&seq).is_some() {
        m.notifications_seen.insert(seq);
        m.c.notifications_received += 1;
        m.h.record(H::ApiToSocket, now - sent);
    } else if m.notifications_seen.contains(&seq) {
        m.c.notifications_duplicated += 1;
    }
}

/// The server's answer to publish `k` of local client `i`: its round trip, or (an error
/// answer, e.g. a chat rate limit) the message was refused and its receivers expect
/// nothing.
pub(super) fn on_publish_ack(shared: &Shared, i: u64, k: u64, answer: Option<&Value>) {
    let publishing = &shared.members[i as usize].publishing;
    let _ = publishing.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    let due = shared
        .schedule_start
        .lock_unpoisoned()
        .map(|s| s + shared.schedule.due(k));
    let Some(due) = due else { return };
    let ms = shared.clock.now_ms() - shared.clock.at_ms(due);
    let mut m = shared.m();
    m.c.acks += 1;
    m.h.record(H::Ack, ms);
    m.awaiting_ack.remove(&k);
    if let Some(f) = m.fanout.get_mut(&k) {
        f.acked = true;
    }
    if let Some(err) = answer.filter(|a| a.get("error").is_some()) {
        m.c.send_failed += 1;
        m.c.messages_sent -= 1;
        if let Some(f) = m.fanout.remove(&k) {
            m.c.expected -= f.remaining;
        }
        m.error(format!("publish refused: {err}"));
    } else if shared.cfg.scenario == Scenario::Chat {
        m.acked_chat.push([shared.cfg.first_client + i, k]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_reports_repeats() {
        let mut b = Bitmap::default();
        assert!(b.insert(0));
        assert!(b.insert(130));
        assert!(!b.insert(130));
        assert!(!b.insert(0));
        assert!(b.insert(1));
    }
}
