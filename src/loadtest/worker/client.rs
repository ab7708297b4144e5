//! One load-test client's life: connect, open its namespaces, join its room (within the
//! connect timeout), then read until the connection ends, counting what arrives.
//!
//! The phases are separate functions, but one task runs them all: the connecting phases
//! are awaited behind a `Box` so their state (the WebSocket handshake, the token) is
//! freed once joined instead of staying in every client's task for the whole run.

use super::receive::{on_message, on_notification, on_publish_ack, Bitmap};
use super::state::{Shared, BENCH, CHAT, CONNECTING, DROPPED, FAILED, NOTIFICATIONS, READY};
use crate::client::frames::{self, Incoming};
use crate::client::{self, Reader};
use crate::loadtest::stats::H;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connects client `i`, joins, then reads until the connection ends.
pub(super) async fn client_task(shared: Arc<Shared>, i: u64) {
    let started = Instant::now();
    let mut reader = match Box::pin(connect_and_join(&shared, i)).await {
        Ok(reader) => reader,
        Err(e) => return fail(&shared, i, e),
    };
    if !mark_ready(&shared, i).await {
        return;
    }
    let joined_ms = shared.clock.now_ms();
    shared
        .m()
        .h
        .record(H::Connect, started.elapsed().as_secs_f64() * 1000.0);
    let end = receive_until_closed(&shared, i, &mut reader, joined_ms).await;
    note_if_dropped(&shared, i, end);
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

/// Opens the connection and every namespace, then waits for the namespaces and the room
/// join to be acknowledged, all within the connect timeout.
async fn connect_and_join(shared: &Shared, i: u64) -> Result<Reader, String> {
    let timeout = Duration::from_millis(shared.cfg.connect_timeout_ms);
    let (mut reader, namespaces) = open(shared, i, timeout).await?;
    match tokio::time::timeout(timeout, handshake(shared, i, &mut reader, namespaces)).await {
        Ok(Ok(())) => Ok(reader),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("not connected and joined within {timeout:?}")),
    }
}

/// The Engine.IO connection, and a Socket.IO connect for each namespace the scenario
/// uses (sent at once, answered in the handshake). Returns how many were asked.
async fn open(shared: &Shared, i: u64, timeout: Duration) -> Result<(Reader, usize), String> {
    let cfg = &shared.cfg;
    let c = cfg.first_client + i;
    let (reader, writer, _) = client::connect(&shared.target(c), cfg.transport, timeout)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    *shared.members[i as usize].writer.lock().await = Some(writer);
    let namespaces: Vec<&str> = cfg
        .scenario
        .message_namespace()
        .into_iter()
        .chain(cfg.scenario.notifications().then_some(NOTIFICATIONS))
        .collect();
    let auth = json!({ "token": shared.token(c) });
    for nsp in &namespaces {
        shared
            .send(i, frames::connect(nsp, &auth))
            .await
            .map_err(|e| format!("connect {nsp}: {e}"))?;
    }
    Ok((reader, namespaces.len()))
}

/// Where one client's handshake stands.
struct Handshake {
    /// Namespaces asked for and connected so far.
    namespaces: usize,
    connected: usize,
    /// The room is joined (or the scenario has none to join).
    joined: bool,
    /// Chat: the second member waits for the first to open their room.
    waiting_for_room: bool,
    room: u64,
    /// This client's place in its room (0 opens a chat room).
    slot: u64,
    /// The room has a second member (a chat pair needs one).
    paired: bool,
}

/// Reads until every namespace is connected and the room joined.
async fn handshake(
    shared: &Shared,
    i: u64,
    reader: &mut Reader,
    namespaces: usize,
) -> Result<(), String> {
    let messages_nsp = shared.cfg.scenario.message_namespace();
    let room = shared.room_of(i);
    let members = shared.cfg.room_members(room);
    let paired = members.end - members.start >= 2;
    let mut h = Handshake {
        namespaces,
        connected: 0,
        joined: messages_nsp.is_none() || (messages_nsp == Some(CHAT) && !paired),
        waiting_for_room: false,
        room,
        slot: i - members.start,
        paired,
    };
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    while h.connected < h.namespaces || !h.joined {
        let packet = tokio::select! {
            p = reader.next() => match p {
                Some(Ok(p)) => p,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed by the server while connecting".into()),
            },
            _ = poll.tick(), if h.waiting_for_room => {
                h.join_opened_chat_room(shared, i).await?;
                continue;
            }
        };
        let incoming = frames::parse(&packet).map_err(|e| e.to_string())?;
        h.on_packet(shared, i, incoming).await?;
    }
    Ok(())
}

impl Handshake {
    async fn on_packet(
        &mut self,
        shared: &Shared,
        i: u64,
        incoming: Incoming,
    ) -> Result<(), String> {
        let messages_nsp = shared.cfg.scenario.message_namespace();
        match incoming {
            Incoming::Ping => send(shared, i, frames::PONG.into()).await,
            Incoming::Connected { nsp } => {
                self.connected += 1;
                self.on_namespace_connected(shared, i, &nsp).await
            }
            Incoming::ConnectError { nsp, data } => {
                Err(format!("{nsp} refused the connection: {data}"))
            }
            Incoming::Ack { nsp, id: 0, args } if Some(nsp.as_str()) == messages_nsp => {
                let answer = args.first().cloned().unwrap_or_default();
                self.on_join_answer(shared, &nsp, &answer)?;
                self.joined = true;
                Ok(())
            }
            Incoming::Close | Incoming::Disconnected { .. } => {
                Err("disconnected while connecting".into())
            }
            _ => Ok(()),
        }
    }

    /// Once in the room's namespace: /bench joins its room, a chat pair's first member
    /// opens the pair's room, the second waits for it.
    async fn on_namespace_connected(
        &mut self,
        shared: &Shared,
        i: u64,
        nsp: &str,
    ) -> Result<(), String> {
        let cfg = &shared.cfg;
        if nsp == BENCH {
            let name = cfg.room_name(self.room);
            let join = frames::event(BENCH, "join", json!({ "room": name }), Some(0));
            send(shared, i, join).await
        } else if nsp == CHAT && self.paired && self.slot == 0 {
            let members = cfg.room_members(self.room);
            let peer = cfg.user_of(cfg.first_client + members.start + 1);
            let open = frames::event(CHAT, "room:open", json!({ "peerId": peer }), Some(0));
            send(shared, i, open).await
        } else {
            if nsp == CHAT && self.paired {
                self.waiting_for_room = true;
            }
            Ok(())
        }
    }

    /// The answer to the join (ack id 0): a chat opener publishes the room id for its
    /// peer; anything but `ok` refuses the client.
    fn on_join_answer(&self, shared: &Shared, nsp: &str, answer: &Value) -> Result<(), String> {
        if nsp == CHAT && self.slot == 0 {
            let id = answer["roomId"]
                .as_i64()
                .filter(|id| *id > 0)
                .ok_or_else(|| format!("room:open refused: {answer}"))?;
            shared.chat_rooms[self.room as usize].store(id, Ordering::Release);
            Ok(())
        } else if answer["ok"] != Value::Bool(true) {
            Err(format!("joining the room refused: {answer}"))
        } else {
            Ok(())
        }
    }

    /// Chat, second member: joins the room once its peer has opened it.
    async fn join_opened_chat_room(&mut self, shared: &Shared, i: u64) -> Result<(), String> {
        let id = shared.chat_rooms[self.room as usize].load(Ordering::Acquire);
        if id > 0 {
            self.waiting_for_room = false;
            let join = frames::event(CHAT, "room:join", json!({ "roomId": id }), Some(0));
            send(shared, i, join).await?;
        }
        Ok(())
    }
}

async fn send(shared: &Shared, i: u64, packet: String) -> Result<(), String> {
    shared.send(i, packet).await.map_err(|e| e.to_string())
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

/// Reads until the connection ends, counting each delivery; returns why it ended
/// (`None`: closed by the server).
async fn receive_until_closed(
    shared: &Shared,
    i: u64,
    reader: &mut Reader,
    joined_ms: f64,
) -> Option<String> {
    let messages_nsp = shared.cfg.scenario.message_namespace();
    let mut seen = Bitmap::default();
    loop {
        let packet = match reader.next().await {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Some(e.to_string()),
            None => return None,
        };
        let incoming = match frames::parse(&packet) {
            Ok(p) => p,
            Err(e) => return Some(e.to_string()),
        };
        match incoming {
            Incoming::Ping => {
                if let Err(e) = shared.send(i, frames::PONG.into()).await {
                    return Some(e.to_string());
                }
            }
            Incoming::Event {
                nsp, name, args, ..
            } => {
                if let Some(arg) = args.first() {
                    on_event(shared, &nsp, &name, arg, joined_ms, &mut seen);
                }
            }
            Incoming::Ack { nsp, id, args } if Some(nsp.as_str()) == messages_nsp && id > 0 => {
                on_publish_ack(shared, id - 1, args.first());
            }
            Incoming::Close => return None,
            Incoming::Disconnected { nsp } => {
                return Some(format!("{nsp}: disconnected by the server"))
            }
            _ => {}
        }
    }
}

/// A server event: a room message (/bench, or /chat with the loadtest's fields in its
/// text) or a notification.
fn on_event(
    shared: &Shared,
    nsp: &str,
    name: &str,
    arg: &Value,
    joined_ms: f64,
    seen: &mut Bitmap,
) {
    if nsp == BENCH && name == "message" {
        on_message(shared, arg, joined_ms, seen);
    } else if nsp == CHAT && name == "message:new" {
        match arg["text"].as_str().map(serde_json::from_str::<Value>) {
            Some(Ok(fields)) => on_message(shared, &fields, joined_ms, seen),
            _ => shared
                .m()
                .error(format!("message:new without loadtest fields: {arg}")),
        }
    } else if nsp == NOTIFICATIONS && name == "notification:new" {
        on_notification(shared, arg);
    }
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
