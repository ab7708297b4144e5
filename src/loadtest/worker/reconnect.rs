//! A client the churn dropped comes back as socket.io-client 4.8 does: it waits its
//! backoff delay ([`crate::client::backoff`]), opens a new Engine.IO session and sends
//! each namespace's CONNECT with the recovery auth (`{pid, offset, token}`). The events
//! the server replays before its CONNECT reply are what the client missed: they are
//! counted like live ones (a copy it already had is a duplicate). A socket the server did
//! not recover is a fresh one: it joins its room again, as a new client would, and what
//! was sent to the room meanwhile stays lost.
//!
//! Until it is back in its room the client is AWAY: still in session, so messages sent
//! to its room meanwhile are expected of it.
//!
//! Where it reconnects: a client the churn dropped tries its own node first (the node is
//! up; only its transport went). A client whose node closed or lost its connection
//! (drills) starts at a random other node, as a load balancer with that node marked down
//! would send it. Each failed attempt moves on to the next node in the list.

use super::handshake::{open, send};
use super::session::Session;
use super::state::{Shared, AWAY, BENCH, CHAT, READY};
use crate::client::backoff::Backoff;
use crate::client::frames::{self, Incoming};
use crate::client::recovery::Event;
use crate::client::Reader;
use crate::loadtest::stats::H;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// socket.io-client retries without end; a run has one: past this many attempts the
/// client stays away (counted at the end).
const MAX_ATTEMPTS: u32 = 100;

/// Reconnects dropped client `i` and brings it back into its room; its new reader, or
/// `None` when the worker stops first (or every attempt failed). `moved`: its node is
/// gone, start at another.
pub(super) async fn come_back(
    shared: &Shared,
    i: u64,
    session: &mut Session,
    dropped_at: Instant,
    moved: bool,
) -> Option<Reader> {
    let nodes = shared.cfg.nodes.len();
    let first = if moved && nodes > 1 {
        rand::random_range(1..nodes)
    } else {
        0
    };
    let mut backoff = Backoff::new(shared.cfg.reconnection);
    while backoff.attempts() < MAX_ATTEMPTS {
        let shift = first + backoff.attempts() as usize;
        tokio::time::sleep(backoff.next_delay()).await;
        if shared.stopping.load(Ordering::Acquire) {
            return None;
        }
        match attempt(shared, i, session, shift).await {
            Ok((reader, recovered)) => return back(shared, i, reader, recovered, dropped_at).await,
            Err(e) => {
                {
                    let mut m = shared.m();
                    m.c.reconnect_errors += 1;
                    m.error(format!("reconnecting: {e}"));
                }
                shared.drop_writer(i).await;
                session.on_close();
            }
        }
    }
    None
}

/// Back in its room: the client takes part again (unless the worker closed everything
/// meanwhile), and the reconnection is counted.
async fn back(
    shared: &Shared,
    i: u64,
    reader: Reader,
    recovered: bool,
    dropped_at: Instant,
) -> Option<Reader> {
    let member = &shared.members[i as usize];
    let ready = member
        .state
        .compare_exchange(AWAY, READY, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if !ready {
        if let Some(mut w) = member.writer.lock().await.take() {
            w.close().await;
        }
        return None;
    }
    shared.mark_back(i);
    let mut m = shared.m();
    m.c.reconnects += 1;
    if recovered {
        m.c.recovered += 1;
    } else {
        m.c.not_recovered += 1;
    }
    m.h.record(H::Reconnect, dropped_at.elapsed().as_secs_f64() * 1000.0);
    Some(reader)
}

/// One attempt, within the connect timeout, on the node `shift` places after the
/// client's own: the new session, the CONNECTs and, for a fresh room socket, the join.
/// Whether the room socket was recovered.
async fn attempt(
    shared: &Shared,
    i: u64,
    session: &mut Session,
    shift: usize,
) -> Result<(Reader, bool), String> {
    let timeout = Duration::from_millis(shared.cfg.connect_timeout_ms);
    let mut reader = Box::pin(open(shared, i, session, timeout, shift)).await?;
    match tokio::time::timeout(timeout, rejoin(shared, i, &mut reader, session)).await {
        Ok(Ok(recovered)) => Ok((reader, recovered)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("not back in the room within {timeout:?}")),
    }
}

/// Reads until every namespace answered its CONNECT and the room socket is recovered or
/// joined again; counts what arrives meanwhile.
async fn rejoin(
    shared: &Shared,
    i: u64,
    reader: &mut Reader,
    session: &mut Session,
) -> Result<bool, String> {
    let messages_nsp = shared.cfg.scenario.message_namespace();
    let room_nsp = shared.namespaces().first().copied();
    let (mut connected, mut joined, mut recovered) = (0, messages_nsp.is_none(), false);
    while connected < session.namespaces() || !joined {
        let packet = match reader.next().await {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed by the server while reconnecting".into()),
        };
        match frames::parse(&packet).map_err(|e| e.to_string())? {
            Incoming::Ping => send(shared, i, frames::PONG.into()).await?,
            Incoming::Connected { nsp, sid, pid } => {
                let Some(c) = session.on_connected(&nsp, sid, pid) else {
                    continue;
                };
                connected += 1;
                session.deliver_missed(shared, i, &nsp, &c.missed);
                if Some(nsp.as_str()) == room_nsp {
                    recovered = c.recovered;
                }
                if Some(nsp.as_str()) == messages_nsp && !c.recovered {
                    send(shared, i, join_again(shared, i, &nsp)?).await?;
                } else if Some(nsp.as_str()) == messages_nsp {
                    joined = true;
                }
            }
            Incoming::Event {
                nsp,
                name,
                args,
                id,
            } => session.on_event(shared, i, &nsp, Event { name, args, id }),
            Incoming::Ack { nsp, id: 0, args } if Some(nsp.as_str()) == messages_nsp => {
                let answer = args.first().cloned().unwrap_or_default();
                if answer["ok"] != Value::Bool(true) {
                    return Err(format!("joining the room again refused: {answer}"));
                }
                joined = true;
            }
            Incoming::ConnectError { nsp, data } => {
                return Err(format!("{nsp} refused the connection: {data}"))
            }
            Incoming::Close | Incoming::Disconnected { .. } => {
                return Err("disconnected while reconnecting".into())
            }
            _ => {}
        }
    }
    Ok(recovered)
}

/// The join of a fresh room socket (ack id 0): a /bench room by name, a chat pair's room
/// (opened before the run) by id — both members join, neither opens it again.
fn join_again(shared: &Shared, i: u64, nsp: &str) -> Result<String, String> {
    let room = shared.room_of(i);
    if nsp == CHAT {
        let id = shared.chat_rooms[room as usize].load(Ordering::Acquire);
        if id <= 0 {
            return Err("the chat room was never opened".into());
        }
        return Ok(frames::event(
            CHAT,
            "room:join",
            json!({ "roomId": id }),
            Some(0),
        ));
    }
    let name = shared.cfg.room_name(room);
    Ok(frames::event(
        BENCH,
        "join",
        json!({ "room": name }),
        Some(0),
    ))
}
