//! The `/chat` namespace: 1:1 rooms, messages, history, typing.
//!
//! A message that was acked is a message that was stored: the insert on the primary
//! completes before the broadcast and the ack. History reads go to the read replica.

use crate::handlers::kit::{
    check_rate, id_field, limit_field, object_arg, on_request, Failure, State, User,
};
use crate::handlers::notifications::user_room;
use crate::server::{Io, NamespaceBuilder};
use crate::store::{ChatRoom, Message};
use serde_json::{json, Value};

/// The longest message body, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// The Socket.IO room of a chat room.
pub fn room_name(id: i64) -> String {
    format!("room:{id}")
}

pub fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "roomId": m.room_id,
        "senderId": m.sender_id,
        "text": m.body,
        "createdAt": m.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// Checks a message body: a non-empty string of at most [`MAX_MESSAGE_CHARS`].
pub fn validate_text(v: Option<&Value>) -> Result<&str, Failure> {
    let text = v
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::invalid("text must be a string"))?;
    if text.trim().is_empty() {
        return Err(Failure::invalid("text must not be empty"));
    }
    crate::handlers::kit::no_nul("text", text)?;
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(Failure::new(
            "payload_too_large",
            format!("text is longer than {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    Ok(text)
}

/// A room the user belongs to (primary: membership right after creation must be seen).
pub async fn member_room(state: &State, room_id: i64, user: &str) -> Result<ChatRoom, Failure> {
    let room = state
        .store
        .room(room_id)
        .await?
        .ok_or_else(|| Failure::new("not_found", "no such room"))?;
    if !room.has_member(user) {
        return Err(Failure::new(
            "forbidden",
            "you are not a member of this room",
        ));
    }
    Ok(room)
}

/// Stores a message from a member of the room: one statement checks the membership and
/// inserts (a round trip less on every message). Only when nothing was stored does it ask
/// why, to answer `not_found` or `forbidden` as [`member_room`] does.
pub async fn store_member_message(
    state: &State,
    room_id: i64,
    user: &str,
    text: &str,
) -> Result<Message, Failure> {
    if let Some(message) = state
        .store
        .insert_member_message(room_id, user, text)
        .await?
    {
        return Ok(message);
    }
    member_room(state, room_id, user).await?;
    // Rooms are never deleted and their members never change: the check above fails.
    Err(Failure::new("not_found", "no such room"))
}

/// Tells each user's chat peers (everyone sharing a room with them) that the user came
/// online (`true`) or went offline: `presence:update {userId, online}` to each peer's
/// `user:<id>` room in `/chat`, through the adapter, so peers on every node hear it —
/// in the order of `changes`, with the peers of all of them read in one query.
/// Returns how many peers were addressed.
pub async fn announce_presence(
    io: &Io,
    state: &State,
    changes: &[(String, bool)],
) -> Result<usize, Failure> {
    let Some(ns) = io.of("/chat") else {
        return Ok(0);
    };
    let mut users: Vec<&str> = changes.iter().map(|(u, _)| u.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let mut peers: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (user, peer) in state.store.peers_of_each(&users).await? {
        peers.entry(user).or_default().push(peer);
    }
    let mut addressed = 0;
    for (user, online) in changes {
        let Some(peers) = peers.get(user) else {
            continue;
        };
        let mut to = crate::server::BroadcastOperator::new(ns.clone());
        for peer in peers {
            to = to.to(user_room(peer));
        }
        to.emit(
            "presence:update",
            json!({ "userId": user, "online": online }),
        );
        addressed += peers.len();
    }
    Ok(addressed)
}

pub fn register(ns: &mut NamespaceBuilder, state: State) {
    // Each socket joins its user's room, where presence updates for the user arrive.
    ns.on_connect(|socket| async move {
        if let Some(user) = User::of(&socket) {
            socket.join(user_room(&user.id));
        }
        Ok(())
    });

    on_request(
        ns,
        &state,
        "room:open",
        |st, socket, user, event| async move {
            let args = object_arg(event.args())?;
            let peer = args
                .get("peerId")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| Failure::invalid("peerId must be a non-empty string"))?;
            let peer = crate::handlers::kit::no_nul("peerId", peer)?;
            if peer == user.id {
                return Err(Failure::invalid("cannot open a room with yourself"));
            }
            let room = st.store.find_or_create_room(&user.id, peer).await?;
            socket.join(room_name(room.id));
            Ok(json!({ "roomId": room.id }))
        },
    );

    on_request(
        ns,
        &state,
        "room:join",
        |st, socket, user, event| async move {
            let room_id = id_field(object_arg(event.args())?, "roomId")?;
            member_room(&st, room_id, &user.id).await?;
            socket.join(room_name(room_id));
            Ok(json!({ "ok": true, "roomId": room_id }))
        },
    );

    on_request(
        ns,
        &state,
        "message:send",
        |st, socket, user, event| async move {
            let args = object_arg(event.args())?;
            let room_id = id_field(args, "roomId")?;
            let text = validate_text(args.get("text"))?;
            check_rate(&st, "message:send", &user.id).await?;
            let message = store_member_message(&st, room_id, &user.id, text).await?;
            socket
                .to(room_name(room_id))
                .emit("message:new", message_json(&message));
            Ok(json!({
                "id": message.id,
                "createdAt": message_json(&message)["createdAt"],
            }))
        },
    );

    on_request(
        ns,
        &state,
        "message:history",
        |st, _socket, user, event| async move {
            let args = object_arg(event.args())?;
            let room_id = id_field(args, "roomId")?;
            let limit = limit_field(args, 100, 50)?;
            let before = match args.get("before") {
                None | Some(Value::Null) => None,
                Some(_) => Some(id_field(args, "before")?),
            };
            member_room(&st, room_id, &user.id).await?;
            let messages = st.store.history(room_id, before, limit).await?;
            let next = (messages.len() as u32 == limit)
                .then(|| messages.last().map(|m| m.id))
                .flatten();
            Ok(json!({
                "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
                "nextBefore": next,
            }))
        },
    );

    // Volatile: not stored, not acked; only to rooms the socket has joined (no database
    // round trip per keystroke).
    ns.on("typing", move |socket, event, _ack| async move {
        let Some(user) = User::of(&socket) else {
            return;
        };
        let Ok(args) = object_arg(event.args()) else {
            return;
        };
        let Ok(room_id) = id_field(args, "roomId") else {
            return;
        };
        let room = room_name(room_id);
        if socket.rooms().iter().any(|r| **r == *room) {
            socket
                .to(room)
                .emit("typing", json!({ "roomId": room_id, "userId": user.id }));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_validation_counts_characters_not_bytes() {
        assert!(validate_text(Some(&json!("hi"))).is_ok());
        assert_eq!(
            validate_text(Some(&json!("  "))).unwrap_err().code,
            "invalid_input"
        );
        assert_eq!(
            validate_text(Some(&json!(5))).unwrap_err().code,
            "invalid_input"
        );
        assert_eq!(validate_text(None).unwrap_err().code, "invalid_input");
        assert_eq!(
            validate_text(Some(&json!("a\u{0}b"))).unwrap_err().code,
            "invalid_input"
        );
        let max = "é".repeat(MAX_MESSAGE_CHARS);
        assert!(validate_text(Some(&json!(max))).is_ok());
        let over = "a".repeat(MAX_MESSAGE_CHARS + 1);
        assert_eq!(
            validate_text(Some(&json!(over))).unwrap_err().code,
            "payload_too_large"
        );
    }
}
