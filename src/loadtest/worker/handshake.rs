//! A client's first connection: the Engine.IO session, a CONNECT for each namespace the
//! scenario uses, and the room join (a chat pair's first member opens the pair's room,
//! the second waits for it), all within the connect timeout.

use super::session::Session;
use super::state::{Shared, BENCH, CHAT};
use crate::client::frames::{self, Incoming};
use crate::client::{self, Reader};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Opens the connection and every namespace, then waits for the namespaces and the room
/// join to be acknowledged, all within the connect timeout.
pub(super) async fn connect_and_join(
    shared: &Shared,
    i: u64,
    session: &mut Session,
) -> Result<Reader, String> {
    let timeout = Duration::from_millis(shared.cfg.connect_timeout_ms);
    let mut reader = open(shared, i, session, timeout, 0).await?;
    match tokio::time::timeout(timeout, handshake(shared, i, &mut reader, session)).await {
        Ok(Ok(())) => Ok(reader),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("not connected and joined within {timeout:?}")),
    }
}

/// The Engine.IO connection (its writer shared as the client's) to the node `shift`
/// places after the client's own, and a Socket.IO connect for each namespace the
/// scenario uses (sent at once, answered in the handshake). A reconnection opens the
/// same way, with the recovery auth.
pub(super) async fn open(
    shared: &Shared,
    i: u64,
    session: &Session,
    timeout: Duration,
    shift: usize,
) -> Result<Reader, String> {
    let cfg = &shared.cfg;
    let c = cfg.first_client + i;
    let (reader, writer, _) = client::connect(&shared.target(c, shift), cfg.transport, timeout)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    *shared.members[i as usize].writer.lock().await = Some(writer);
    let auth = json!({ "token": shared.token(c) });
    for (nsp, packet) in session.connect_packets(&auth) {
        shared
            .send(i, packet)
            .await
            .map_err(|e| format!("connect {nsp}: {e}"))?;
    }
    Ok(reader)
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
    session: &mut Session,
) -> Result<(), String> {
    let messages_nsp = shared.cfg.scenario.message_namespace();
    let room = shared.room_of(i);
    let members = shared.cfg.room_members(room);
    let paired = members.end - members.start >= 2;
    let mut h = Handshake {
        namespaces: session.namespaces(),
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
        h.on_packet(shared, i, session, incoming).await?;
    }
    Ok(())
}

impl Handshake {
    async fn on_packet(
        &mut self,
        shared: &Shared,
        i: u64,
        session: &mut Session,
        incoming: Incoming,
    ) -> Result<(), String> {
        let messages_nsp = shared.cfg.scenario.message_namespace();
        match incoming {
            Incoming::Ping => send(shared, i, frames::PONG.into()).await,
            Incoming::Connected { nsp, sid, pid } => {
                self.connected += 1;
                let with_pid = pid.is_some();
                session.on_connected(&nsp, sid, pid);
                if with_pid && Some(nsp.as_str()) == shared.namespaces().first().copied() {
                    shared.m().c.pid_connects += 1;
                }
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

pub(super) async fn send(shared: &Shared, i: u64, packet: String) -> Result<(), String> {
    shared.send(i, packet).await.map_err(|e| e.to_string())
}
