//! Connection state recovery on Redis, as the package does it, so a session persisted by
//! any node (Node's or ours) restores on any other:
//!
//! - persist (`persistSession`): `SET <sessionKeyPrefix><pid> base64(msgpack{sid, pid,
//!   rooms, data}) PX <maxDisconnectionDuration ms>`, not awaited;
//! - restore (`restoreSession`): the offset must look like an entry id; `MULTI GET DEL
//!   EXEC` (the session is taken) beside `XRANGE <stream> <offset> <offset>` (the offset
//!   must still be in the stream, not trimmed); then `XRANGE <stream> <next id> +` pages,
//!   at most 100, keeping this namespace's broadcasts (type `"3"`) that the session's
//!   rooms would have received, each with its entry id appended;
//! - unlike the package, the replay is exact: nothing this node applies while it is read
//!   is lost or sent twice (`restoring`).
//!
//! Like the package, the replay filter does not look at the volatile flag: a volatile
//! broadcast in the stream is replayed (live clients got it without an offset).

use super::restoring::{Origin, Ticket};
use super::RedisStreamsAdapter;
use crate::protocol::cluster_streams::{
    is_offset, next_offset, should_include, Body, Message, SessionRecord, StreamEntry,
};
use crate::server::adapter::{
    AdapterError, BroadcastPacket, PersistedSession, RecoveredSession, Resume,
};
use crate::server::{BoxFuture, Room};
use crate::sid::Sid;
use crate::transport::Frame;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `RESTORE_SESSION_MAX_XRANGE_CALLS`: a restore reads at most this many pages.
const MAX_XRANGE_CALLS: usize = 100;

fn backend(e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Backend(format!("redis: {e}"))
}

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The record stored for `session`. (One place maps the server's session type to the
/// wire's, so a field added to one is added here.)
fn record_of(session: &PersistedSession) -> SessionRecord {
    SessionRecord {
        sid: session.sid.as_str().to_owned(),
        pid: session.pid.as_str().to_owned(),
        rooms: session.rooms.iter().map(|r| r.to_string()).collect(),
        data: session.data.clone(),
        expires_at_ms: session.expires_at.map(epoch_ms),
    }
}

/// The server's session from a stored record; `None` when its ids are not ones we issue
/// (Node's base64id and ours have the same shape). Its expiry, if any, is the server's to
/// check (`server::connection`), whoever restores it.
fn session_of(record: SessionRecord) -> Option<PersistedSession> {
    Some(PersistedSession {
        sid: Sid::parse(&record.sid)?,
        pid: Sid::parse(&record.pid)?,
        rooms: record
            .rooms
            .iter()
            .map(|r| Room::from(r.as_str()))
            .collect(),
        data: record.data,
        expires_at: record
            .expires_at_ms
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
    })
}

impl RedisStreamsAdapter {
    fn session_key(&self, pid: &str) -> String {
        format!("{}{pid}", self.options().session_key_prefix)
    }

    /// Keeps `session` in Redis for the max disconnection duration (nothing when
    /// recovery is off). Not awaited, as in Node: a failure is counted and logged; a
    /// stopping node waits for it (`flush`).
    pub(super) fn persist(&self, session: PersistedSession) {
        let Some(ttl) = self.options().recovery else {
            return;
        };
        let key = self.session_key(session.pid.as_str());
        let write = self
            .shared
            .store
            .set_px(&key, record_of(&session).encode(), ttl);
        let pending = self.in_flight.start();
        tokio::spawn(async move {
            let _pending = pending;
            if let Err(e) = write.await {
                crate::metrics::redis_error("adapter");
                tracing::warn!(error = %e, "cannot keep a session for recovery in Redis: it will reconnect as a new socket");
            }
        });
    }

    /// The session of `pid` with every broadcast it missed after `offset`; `None` when
    /// either is gone (or recovery is off), which the server answers with a fresh socket.
    pub(super) fn restore(
        &self,
        pid: &str,
        offset: &str,
    ) -> BoxFuture<Result<Option<RecoveredSession>, AdapterError>> {
        if self.options().recovery.is_none() || !is_offset(offset) {
            return Box::pin(async { Ok(None) });
        }
        let shared = self.shared.clone();
        let delivery = self.delivery.clone();
        let key = self.session_key(pid);
        let (stream, nsp, uid) = (self.stream.clone(), self.nsp.clone(), self.uid.clone());
        let page_size = self.options().read_count.max(1);
        let offset = offset.to_owned();
        Box::pin(async move {
            // Every client of a stopped node restores at once: a few at a time.
            let _turn = shared.restores.acquire().await;
            // Before the replay is read: what this node applies meanwhile is followed.
            let mut ticket = Ticket::take(&delivery, &offset);
            let store = shared.store.clone();
            let taken = store.get_del(&key);
            let known = store.xrange(&stream, &offset, &offset, Some(1));
            let (raw, known) = futures_util::future::join(taken, known).await;
            let (Some(raw), false) = (raw.map_err(backend)?, known.map_err(backend)?.is_empty())
            else {
                return Ok(None);
            };
            let record = match SessionRecord::decode(&raw) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "ignoring a malformed recovery session");
                    return Ok(None);
                }
            };
            let mut missed = Vec::new();
            let mut after = offset;
            for _ in 0..MAX_XRANGE_CALLS {
                let page = store
                    .xrange(&stream, &next_offset(&after), "+", Some(page_size))
                    .await
                    .map_err(backend)?;
                let Some(last) = page.last() else { break };
                after = last.id.clone();
                for entry in &page {
                    if let Some(frames) = missed_by(&record, &nsp, entry) {
                        missed.push(frames);
                        ticket
                            .replayed
                            .push((entry.id.clone(), origin(entry, &uid)));
                    }
                }
                if page.len() < page_size {
                    break; // the stream's end
                }
            }
            ticket.last_seen = after;
            Ok(session_of(record).map(|session| RecoveredSession {
                session,
                missed,
                resume: Some(Resume::Ticket(Arc::new(ticket))),
            }))
        })
    }
}

/// Who applies `entry` on the node of adapter `uid`.
fn origin(entry: &StreamEntry, uid: &str) -> Origin {
    if entry.field("uid") == Some(uid) {
        Origin::Own
    } else {
        Origin::Stream
    }
}

/// The packet of `entry`, its id appended, if it is a broadcast of namespace `nsp` that
/// the session would have received.
fn missed_by(record: &SessionRecord, nsp: &str, entry: &StreamEntry) -> Option<Vec<Frame>> {
    if entry.field("nsp") != Some(nsp) || entry.field("type") != Some("3") {
        return None;
    }
    let message = Message::from_entry(entry).ok()?;
    let Body::Broadcast { packet, opts, .. } = message.body else {
        return None;
    };
    if !should_include(&record.rooms, &opts) {
        return None;
    }
    let mut packet = BroadcastPacket {
        data: packet,
        binary: message.attachments,
    };
    packet.push_arg(Value::String(entry.id.clone()));
    Some(packet.into_frames(nsp, None))
}
