//! What makes a restore on the streams adapter exact. The replay is read from the stream
//! (XRANGE) while this node goes on applying entries as its reader gets them (its own
//! too: `own_order`) — so, left alone, a packet could reach the
//! restored socket twice (replayed, then live when this node applies it later) or never
//! (applied after the XRANGE read it but before the socket was back in its rooms). Node's
//! streams adapter has both windows; here each stamped broadcast is wholly before or after
//! a restored socket's attach (the adapter's restore gate), and [`Delivery`] keeps what
//! the attach needs:
//!
//! - a restore takes a [`Ticket`] before its XRANGE; while a ticket is out, each
//!   broadcast applied is kept (captured). At the attach, those captured since the
//!   ticket and newer than the last entry the XRANGE saw are sent (the catch-up): stream
//!   ids only grow, so the XRANGE saw every entry up to its last one;
//! - a replayed entry this node has not applied yet is remembered with the socket, and
//!   the socket is left out when the entry is applied. "Not applied yet" is exact
//!   because each origin applies in id order: this node's own entries and the others'
//!   in stream order (the reader, which starts after the stream's last entry and never
//!   applies older ones; an own entry whose XADD reply comes after the reader passed
//!   it is applied then, still after every own entry before it).
//!
//! Nothing is kept while no restore is under way, and a replayed entry that is never
//! applied (its reader failing) is forgotten after [`SKIP_FOR`].

use super::store::id_key;
use crate::server::adapter::{should_include, BroadcastOptions, BroadcastPacket};
use crate::server::Room;
use crate::sid::Sid;
use crate::sync::MutexExt as _;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a replayed entry is waited for before its skip is forgotten: far longer
/// than a reader's lag, short enough that a dead reader leaks nothing.
const SKIP_FOR: Duration = Duration::from_secs(60);
/// The most broadcasts captured while restores are under way (oldest go first).
const CAPTURE_MAX: usize = 65_536;
/// The most replayed entries waited for at once (oldest go first).
const SKIP_MAX: usize = 262_144;

/// Who applied an entry on this node, each in id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// This node's own write.
    Own,
    /// Another node's, applied as the reader read it.
    Stream,
}

/// A broadcast applied while a restore was under way.
struct Captured {
    seq: u64,
    id: String,
    packet: BroadcastPacket,
    opts: BroadcastOptions,
}

/// What restores need to know of the broadcasts applied on this node. See the module
/// docs.
#[derive(Default)]
pub(super) struct Delivery {
    /// Broadcasts applied with an entry id so far.
    seq: u64,
    /// The last own / others' entry applied.
    own: Option<(u64, u64)>,
    others: Option<(u64, u64)>,
    /// Restores under way: how many tickets were taken at each seq.
    open: BTreeMap<u64, usize>,
    /// What was applied since the oldest open ticket, in seq order.
    captured: VecDeque<Captured>,
    /// Broadcasts up to this seq were captured but dropped (over [`CAPTURE_MAX`]).
    dropped_through: u64,
    /// Replayed entries not applied yet: who to leave out when they are.
    skip: HashMap<String, Vec<Sid>>,
    skip_order: VecDeque<(Instant, String)>,
}

/// A restore under way: taken before the replay is read, filled with what it read, and
/// handed to the attach through [`crate::server::adapter::Resume::Ticket`].
pub(super) struct Ticket {
    delivery: Weak<Mutex<Delivery>>,
    /// [`Delivery::seq`] when the ticket was taken.
    since: u64,
    /// The last entry the replay's XRANGE saw (the client's offset when none).
    pub(super) last_seen: String,
    /// The entries replayed to the socket, with who applies them on this node.
    pub(super) replayed: Vec<(String, Origin)>,
}

impl Ticket {
    /// Starts following a restore: broadcasts are captured until the ticket is dropped.
    pub(super) fn take(delivery: &Arc<Mutex<Delivery>>, offset: &str) -> Ticket {
        let mut d = delivery.lock_unpoisoned();
        let since = d.seq;
        *d.open.entry(since).or_default() += 1;
        Ticket {
            delivery: Arc::downgrade(delivery),
            since,
            last_seen: offset.to_owned(),
            replayed: Vec::new(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(delivery) = self.delivery.upgrade() {
            delivery.lock_unpoisoned().close(self.since);
        }
    }
}

impl Delivery {
    /// Broadcast `id` is being applied on this node: the restored sockets it must leave
    /// out (they had it replayed). Call with the restore gate held until it is
    /// delivered.
    pub(super) fn applying(
        &mut self,
        id: &str,
        origin: Origin,
        packet: &BroadcastPacket,
        opts: &BroadcastOptions,
    ) -> Vec<Sid> {
        let key = id_key(id);
        let mark = match origin {
            Origin::Own => &mut self.own,
            Origin::Stream => &mut self.others,
        };
        *mark = Some(mark.map_or(key, |m| m.max(key)));
        self.seq += 1;
        if !self.open.is_empty() {
            self.capture(id, packet, opts);
        }
        self.forget_expired(Instant::now());
        self.skip.remove(id).unwrap_or_default()
    }

    /// A ticket taken at `since` is done: drop what no open ticket needs any more.
    fn close(&mut self, since: u64) {
        if let Some(n) = self.open.get_mut(&since) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&since);
            }
        }
        match self.open.keys().next() {
            None => self.captured.clear(),
            Some(&oldest) => {
                let needed = self.captured.partition_point(|c| c.seq <= oldest);
                self.captured.drain(..needed);
            }
        }
    }

    fn capture(&mut self, id: &str, packet: &BroadcastPacket, opts: &BroadcastOptions) {
        if self.captured.len() >= CAPTURE_MAX {
            if let Some(oldest) = self.captured.pop_front() {
                self.dropped_through = oldest.seq;
            }
        }
        self.captured.push_back(Captured {
            seq: self.seq,
            id: id.to_owned(),
            packet: packet.clone(),
            opts: opts.clone(),
        });
    }

    /// Socket `sid` of `ticket`'s restore is now in `rooms` (call with the restore gate
    /// held alone since before the attach): what it must still be sent — broadcasts applied since
    /// the ticket and after the replay's last entry, stamped — and from now on, the
    /// replayed entries not applied yet leave it out. `reader_from`: where this node's
    /// reader of the stream started (`None`: not started yet).
    pub(super) fn attached(
        &mut self,
        ticket: &Ticket,
        sid: Sid,
        rooms: &[Room],
        reader_from: Option<&str>,
    ) -> Vec<BroadcastPacket> {
        if ticket.since < self.dropped_through {
            tracing::warn!(%sid, "a restore outlasted the capture limit: the socket may miss packets");
        }
        let last_seen = id_key(&ticket.last_seen);
        let first = self.captured.partition_point(|c| c.seq <= ticket.since);
        let catch_up = self
            .captured
            .range(first..)
            .filter(|c| id_key(&c.id) > last_seen)
            .filter(|c| should_include(rooms, &c.opts))
            .map(|c| {
                let mut packet = c.packet.clone();
                packet.push_arg(Value::String(c.id.clone()));
                packet
            })
            .collect();
        let others = match (self.others, reader_from) {
            (None, None) => None,
            (a, b) => a.max(b.map(id_key)),
        };
        let now = Instant::now();
        for (id, origin) in &ticket.replayed {
            let mark = match origin {
                Origin::Own => self.own,
                Origin::Stream => others,
            };
            if mark.is_none_or(|m| id_key(id) > m) {
                self.wait_for(id, sid, now);
            }
        }
        catch_up
    }

    fn wait_for(&mut self, id: &str, sid: Sid, now: Instant) {
        if self.skip_order.len() >= SKIP_MAX {
            if let Some((_, oldest)) = self.skip_order.pop_front() {
                self.skip.remove(&oldest);
            }
        }
        self.skip.entry(id.to_owned()).or_default().push(sid);
        self.skip_order.push_back((now, id.to_owned()));
    }

    fn forget_expired(&mut self, now: Instant) {
        while let Some((at, id)) = self.skip_order.front() {
            if now.duration_since(*at) < SKIP_FOR {
                break;
            }
            self.skip.remove(id);
            self.skip_order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Payload;

    fn packet(name: &str) -> BroadcastPacket {
        BroadcastPacket::event(name, Payload::default())
    }

    fn to(room: &str) -> BroadcastOptions {
        BroadcastOptions::room(room)
    }

    fn names(packets: &[BroadcastPacket]) -> Vec<String> {
        packets.iter().map(|p| p.data[0].to_string()).collect()
    }

    /// The replay read entries 1-0..3-0; 2-0 (another node's) and 3-0 (ours) were not
    /// applied here yet: when they are, the socket is left out, once.
    #[test]
    fn replayed_entries_applied_after_the_attach_skip_the_socket() {
        let delivery = Arc::new(Mutex::new(Delivery::default()));
        let sid = Sid::new();
        let p = packet("m");
        delivery
            .lock_unpoisoned()
            .applying("1-0", Origin::Stream, &p, &to("r"));
        let mut ticket = Ticket::take(&delivery, "0-1");
        ticket.last_seen = "3-0".into();
        ticket.replayed = vec![
            ("1-0".into(), Origin::Stream),
            ("2-0".into(), Origin::Stream),
            ("3-0".into(), Origin::Own),
        ];
        let mut d = delivery.lock_unpoisoned();
        let late = d.attached(&ticket, sid, &["r".into()], Some("0-5"));
        assert!(late.is_empty());
        assert_eq!(d.applying("2-0", Origin::Stream, &p, &to("r")), vec![sid]);
        assert_eq!(d.applying("3-0", Origin::Own, &p, &to("r")), vec![sid]);
        assert!(d.applying("4-0", Origin::Stream, &p, &to("r")).is_empty());
        assert!(d.skip.is_empty() && d.skip_order.len() == 2);
    }

    /// Applied between the ticket and the attach, after the replay's last entry, for the
    /// socket's rooms: caught up, stamped; older ones or other rooms are not.
    #[test]
    fn broadcasts_applied_during_the_restore_are_caught_up() {
        let delivery = Arc::new(Mutex::new(Delivery::default()));
        delivery
            .lock_unpoisoned()
            .applying("1-0", Origin::Own, &packet("before"), &to("r"));
        let mut ticket = Ticket::take(&delivery, "0-1");
        ticket.last_seen = "2-0".into();
        ticket.replayed = vec![("2-0".into(), Origin::Stream)];
        {
            let mut d = delivery.lock_unpoisoned();
            d.applying("2-0", Origin::Stream, &packet("replayed"), &to("r"));
            d.applying("3-0", Origin::Own, &packet("missed"), &to("r"));
            d.applying("4-0", Origin::Stream, &packet("elsewhere"), &to("s"));
        }
        let mut d = delivery.lock_unpoisoned();
        let late = d.attached(&ticket, Sid::new(), &["r".into()], Some("0-0"));
        assert_eq!(names(&late), vec!["\"missed\""]);
        assert_eq!(late[0].data.as_array().unwrap().last(), Some(&json("3-0")));
        assert!(d.skip.is_empty(), "2-0 was applied before the attach");
        drop(d);
        drop(ticket);
        assert!(delivery.lock_unpoisoned().captured.is_empty());
    }

    /// Nothing is captured while no restore is under way; a reader not started yet
    /// applies every replayed entry of others later.
    #[test]
    fn capture_only_during_restores_and_reader_start_counts() {
        let delivery = Arc::new(Mutex::new(Delivery::default()));
        let p = packet("m");
        delivery
            .lock_unpoisoned()
            .applying("1-0", Origin::Own, &p, &to("r"));
        assert!(delivery.lock_unpoisoned().captured.is_empty());
        let mut ticket = Ticket::take(&delivery, "0-1");
        ticket.replayed = vec![("1-5".into(), Origin::Stream)];
        let sid = Sid::new();
        let mut d = delivery.lock_unpoisoned();
        d.attached(&ticket, sid, &["r".into()], Some("2-0"));
        assert!(
            d.skip.is_empty(),
            "older than the reader's start: never applied here"
        );
        d.attached(&ticket, sid, &["r".into()], None);
        assert_eq!(d.skip["1-5"], vec![sid]);
    }

    /// Only what the oldest open restore still needs is kept.
    #[test]
    fn capture_is_pruned_to_the_oldest_open_restore() {
        let delivery = Arc::new(Mutex::new(Delivery::default()));
        let p = packet("m");
        let apply = |id: &str| {
            delivery
                .lock_unpoisoned()
                .applying(id, Origin::Own, &p, &to("r"));
        };
        let first = Ticket::take(&delivery, "0-1");
        apply("1-0");
        let second = Ticket::take(&delivery, "0-1");
        apply("2-0");
        assert_eq!(delivery.lock_unpoisoned().captured.len(), 2);
        drop(first);
        let kept: Vec<String> = delivery
            .lock_unpoisoned()
            .captured
            .iter()
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(kept, vec!["2-0"]);
        drop(second);
        assert!(delivery.lock_unpoisoned().captured.is_empty());
    }

    fn json(s: &str) -> Value {
        Value::String(s.into())
    }
}
