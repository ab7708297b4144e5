//! One load-test client's life: connect, open its namespaces, join its room (within the
//! connect timeout: [`super::handshake`]), then read until the connection ends, counting
//! what arrives. A client the churn drops comes back ([`super::reconnect`]) and reads on;
//! so does, during drills, a client whose connection ended on its own — to another node
//! first, since its own was just killed or drained.
//!
//! The phases are separate functions, but one task runs them all: the connecting phases
//! are awaited behind a `Box` so their state (the WebSocket handshake, the token) is
//! freed once joined instead of staying in every client's task for the whole run.

use super::handshake::connect_and_join;
use super::receive::on_publish_ack;
use super::reconnect::come_back;
use super::session::Session;
use super::state::{Shared, AWAY, CONNECTING, DROPPED, FAILED, READY};
use crate::client::frames::{self, Incoming};
use crate::client::recovery::Event;
use crate::client::Reader;
use crate::loadtest::stats::H;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// How a connection's reading ended.
enum End {
    /// The churn dropped the client: it reconnects.
    Kicked,
    /// The connection ended on its own (why, or `None`: closed by the server).
    Closed(Option<String>),
}

/// Connects client `i`, joins, then reads until the connection ends; after each churn
/// drop, reconnects and reads on.
pub(super) async fn client_task(shared: Arc<Shared>, i: u64) {
    let started = Instant::now();
    let mut session = Session::new(&shared);
    let mut reader = match Box::pin(connect_and_join(&shared, i, &mut session)).await {
        Ok(reader) => reader,
        Err(e) => return fail(&shared, i, e),
    };
    if !mark_ready(&shared, i).await {
        return;
    }
    session.joined_ms = shared.clock.now_ms();
    shared
        .m()
        .h
        .record(H::Connect, started.elapsed().as_secs_f64() * 1000.0);
    loop {
        let end = read_until_closed(&shared, i, &mut reader, &mut session).await;
        let moved = match end {
            End::Kicked => false,
            // A drop that raced the connection's own end is still a drop: the churn
            // counted the client away.
            End::Closed(_) if shared.state(i) == AWAY => false,
            End::Closed(_) if went_away(&shared, i) => true,
            End::Closed(why) => return note_if_dropped(&shared, i, why),
        };
        shared.mark_away(i);
        let dropped_at = Instant::now();
        // No close frame, no Engine.IO close: the socket just goes, as in a network blip.
        shared.drop_writer(i).await;
        drop(reader);
        session.on_close();
        let back = come_back(&shared, i, &mut session, dropped_at, moved);
        reader = match Box::pin(back).await {
            Some(reader) => reader,
            None => return,
        };
    }
}

/// During drills, a connection that ended on its own while the client was in session
/// makes it reconnect (true); its unacked publishes will never be acked on the old
/// connection.
fn went_away(shared: &Shared, i: u64) -> bool {
    if !shared.cfg.reconnect_on_close || shared.stopping.load(Ordering::Acquire) {
        return false;
    }
    let member = &shared.members[i as usize];
    let away = member
        .state
        .compare_exchange(READY, AWAY, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if away {
        member.publishing.store(0, Ordering::Release);
        shared.m().c.disconnects += 1;
    }
    away
}

/// A client that could not connect and join has failed (unless the schedule already
/// counted it failed): the first few reasons go to the report.
fn fail(shared: &Shared, i: u64, e: String) {
    let won = shared.members[i as usize]
        .state
        .compare_exchange(CONNECTING, FAILED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if won {
        shared.m().error(e);
    }
}

/// Connected and joined: the client takes part, unless the schedule started without it
/// (then its connection is closed and it stays failed). True when it takes part.
async fn mark_ready(shared: &Shared, i: u64) -> bool {
    let member = &shared.members[i as usize];
    let ready = member
        .state
        .compare_exchange(CONNECTING, READY, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if !ready {
        if let Some(mut w) = member.writer.lock().await.take() {
            w.close().await;
        }
    }
    ready
}

/// Reads until the connection ends or the churn drops the client, counting each
/// delivery.
async fn read_until_closed(
    shared: &Shared,
    i: u64,
    reader: &mut Reader,
    session: &mut Session,
) -> End {
    let member = &shared.members[i as usize];
    let kicked = member.kick.notified();
    tokio::pin!(kicked);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut kicked => {
                if shared.state(i) == AWAY {
                    return End::Kicked;
                }
                // A signal left from a drop that raced a closing connection: not for
                // this connection.
                kicked.set(member.kick.notified());
                continue;
            }
            next = reader.next() => next,
        };
        let packet = match next {
            Some(Ok(p)) => p,
            Some(Err(e)) => return End::Closed(Some(e.to_string())),
            None => return End::Closed(None),
        };
        if let Some(end) = on_packet(shared, i, session, &packet).await {
            return end;
        }
    }
}

/// One packet of a joined client; `Some` when the connection ends with it.
async fn on_packet(shared: &Shared, i: u64, session: &mut Session, packet: &str) -> Option<End> {
    let messages_nsp = shared.cfg.scenario.message_namespace();
    let incoming = match frames::parse(packet) {
        Ok(p) => p,
        Err(e) => return Some(End::Closed(Some(e.to_string()))),
    };
    match incoming {
        Incoming::Ping => {
            if let Err(e) = shared.send(i, frames::PONG.into()).await {
                return Some(End::Closed(Some(e.to_string())));
            }
        }
        Incoming::Event {
            nsp,
            name,
            args,
            id,
        } => session.on_event(shared, i, &nsp, Event { name, args, id }),
        Incoming::Ack { nsp, id, args } if Some(nsp.as_str()) == messages_nsp && id > 0 => {
            on_publish_ack(shared, i, id - 1, args.first());
        }
        Incoming::Close => return Some(End::Closed(None)),
        Incoming::Disconnected { nsp } => {
            return Some(End::Closed(Some(format!(
                "{nsp}: disconnected by the server"
            ))))
        }
        _ => {}
    }
    None
}

/// A connection that ended while the client was counted in: dropped (and why, unless the
/// worker itself is closing everything).
fn note_if_dropped(shared: &Shared, i: u64, end: Option<String>) {
    let dropped = shared.members[i as usize]
        .state
        .compare_exchange(READY, DROPPED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if dropped && !shared.stopping.load(Ordering::Acquire) {
        shared.m().error(format!(
            "dropped: {}",
            end.unwrap_or_else(|| "closed by the server".into())
        ));
    }
}
