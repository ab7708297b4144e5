//! What one client keeps across its connections: the room messages it has seen (so a
//! message the server replays after a reconnection counts once, however often it comes)
//! and each namespace socket's recovery state (pid, last offset, events held until the
//! CONNECT reply: [`crate::client::recovery`]).
//!
//! Every event a client reads goes through here, live or replayed, so the exactly-once
//! accounting and the offsets socket.io-client would keep see the same stream.

use super::receive::{on_message, on_notification, Bitmap};
use super::state::{Shared, BENCH, CHAT, NOTIFICATIONS};
use crate::client::recovery::{Connected, Event, SocketState};
use serde_json::Value;
use std::sync::atomic::Ordering;

pub(super) struct Session {
    seen: Bitmap,
    /// Each namespace socket, the room messages' first (as [`Shared::namespaces`]).
    sockets: Vec<(&'static str, SocketState)>,
    /// When the client first joined: messages sent before are not for it.
    pub(super) joined_ms: f64,
}

impl Session {
    pub(super) fn new(shared: &Shared) -> Session {
        Session {
            seen: Bitmap::default(),
            sockets: shared
                .namespaces()
                .into_iter()
                .map(|nsp| (nsp, SocketState::default()))
                .collect(),
            joined_ms: 0.0,
        }
    }

    /// How many namespaces the client opens.
    pub(super) fn namespaces(&self) -> usize {
        self.sockets.len()
    }

    /// The CONNECT packet of every namespace: `auth`, with `pid` and `offset` first once
    /// the socket holds them (socket.io-client's recovery auth).
    pub(super) fn connect_packets(&self, auth: &Value) -> Vec<(&'static str, String)> {
        self.sockets
            .iter()
            .map(|(nsp, s)| (*nsp, s.connect_packet(nsp, auth)))
            .collect()
    }

    /// The CONNECT reply of `nsp` (None for a namespace the client did not open).
    pub(super) fn on_connected(
        &mut self,
        nsp: &str,
        sid: Option<String>,
        pid: Option<String>,
    ) -> Option<Connected> {
        let (_, s) = self.sockets.iter_mut().find(|(n, _)| *n == nsp)?;
        Some(s.on_connected(sid, pid))
    }

    /// An event of local client `i`: counted now when its socket is connected, else
    /// held until the socket's CONNECT reply.
    pub(super) fn on_event(&mut self, shared: &Shared, i: u64, nsp: &str, event: Event) {
        let Some((_, s)) = self.sockets.iter_mut().find(|(n, _)| *n == nsp) else {
            return;
        };
        if let Some(e) = s.on_event(event) {
            deliver(shared, i, nsp, &e, self.joined_ms, &mut self.seen, false);
        }
    }

    /// The events `nsp` missed while away, replayed before its CONNECT reply.
    pub(super) fn deliver_missed(&mut self, shared: &Shared, i: u64, nsp: &str, missed: &[Event]) {
        for e in missed {
            deliver(shared, i, nsp, e, self.joined_ms, &mut self.seen, true);
        }
    }

    /// The connection is gone: each socket keeps its pid and offset for the next CONNECT.
    pub(super) fn on_close(&mut self) {
        for (_, s) in &mut self.sockets {
            s.on_close();
        }
    }
}

/// A server event: a room message (/bench, or /chat with the loadtest's fields in its
/// text) or a notification.
fn deliver(
    shared: &Shared,
    i: u64,
    nsp: &str,
    e: &Event,
    joined_ms: f64,
    seen: &mut Bitmap,
    replayed: bool,
) {
    let Some(arg) = e.args.first() else { return };
    let room_message = |msg: &Value, seen: &mut Bitmap| {
        shared.members[i as usize]
            .received
            .store(true, Ordering::Release);
        on_message(shared, i, msg, joined_ms, seen, replayed);
    };
    if nsp == BENCH && e.name == "message" {
        room_message(arg, seen);
    } else if nsp == CHAT && e.name == "message:new" {
        match arg["text"].as_str().map(serde_json::from_str::<Value>) {
            Some(Ok(fields)) => room_message(&fields, seen),
            _ => shared
                .m()
                .error(format!("message:new without loadtest fields: {arg}")),
        }
    } else if nsp == NOTIFICATIONS && e.name == "notification:new" {
        on_notification(shared, arg);
    }
}
