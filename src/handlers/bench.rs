//! The `/bench` namespace (`--loadtest-namespace`): what `rtctl loadtest` drives to measure
//! the realtime layer alone — rooms, fan-out and the cluster adapter — with no database.
//! The protocol, shared with the Node reference server (tests/interop/reference-server.mjs):
//!
//! - `join {room}` + ack → `{ok: true}`; the socket joins `bench:<room>`.
//! - `publish {room, ...}` → `message` with the same arguments (binary attachments
//!   included, so binary fan-out can be measured and tested across nodes) to
//!   `bench:<room>` except the sender, cluster-wide; then `{ok: true}` if an ack was
//!   asked. The server never looks at the other fields (the client's `seq`, `sentAt`,
//!   `from`).
//!
//! Two test-only knobs make the loadtest's own failure detection testable: drop every Nth
//! broadcast (still acked) and delay each broadcast.

use crate::server::{AckSender, NamespaceBuilder};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `/bench` settings (`--loadtest-namespace` and its knobs, checked by the config): the
/// test-only fault knobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadtestNamespace {
    /// Skip the broadcast of every Nth publish (N >= 1).
    pub drop_every: Option<u64>,
    /// Delay each broadcast by this much.
    pub delay: Option<std::time::Duration>,
}

/// The namespace's name.
pub const NAMESPACE: &str = "/bench";

/// The longest room name a client may use.
pub const MAX_ROOM_CHARS: usize = 64;

/// The Socket.IO room of a bench room.
pub fn room_name(room: &str) -> String {
    format!("bench:{room}")
}

/// The valid `room` field of the object argument, or the reason it is not valid.
fn room_arg(args: &[Value]) -> Result<&str, &'static str> {
    let room = args
        .first()
        .and_then(Value::as_object)
        .ok_or("expected an object argument {room}")?
        .get("room")
        .and_then(Value::as_str)
        .ok_or("room must be a string")?;
    let chars = room.chars().count();
    if chars == 0 || chars > MAX_ROOM_CHARS {
        return Err("room must be 1 to 64 characters");
    }
    Ok(room)
}

fn invalid(message: &str) -> Value {
    json!({ "error": "invalid", "message": message })
}

fn answer(ack: Option<AckSender>, value: Value) {
    if let Some(ack) = ack {
        ack.send(value);
    }
}

/// Whether the `n`th publish (counted from 1) is dropped by `--loadtest-drop-every`.
fn dropped(drop_every: Option<u64>, n: u64) -> bool {
    drop_every.is_some_and(|every| n % every == 0)
}

pub fn register(ns: &mut NamespaceBuilder, knobs: LoadtestNamespace) {
    ns.on("join", |socket, event, ack| async move {
        let reply = match room_arg(event.args()) {
            Ok(room) => {
                socket.join(room_name(room));
                json!({ "ok": true })
            }
            Err(message) => invalid(message),
        };
        answer(ack, reply);
    });

    let published = Arc::new(AtomicU64::new(0));
    ns.on("publish", move |socket, event, ack| {
        let published = published.clone();
        let knobs = knobs.clone();
        async move {
            let room = match room_arg(event.args()) {
                Ok(room) => room,
                Err(message) => return answer(ack, invalid(message)),
            };
            let n = published.fetch_add(1, Ordering::Relaxed) + 1;
            if !dropped(knobs.drop_every, n) {
                let op = socket.to(room_name(room));
                let payload = event.payload.clone();
                match knobs.delay {
                    None => {
                        op.emit("message", payload);
                    }
                    Some(delay) => {
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            op.emit("message", payload);
                        });
                    }
                }
            }
            answer(ack, json!({ "ok": true }));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_argument_is_validated() {
        let args = |v: Value| vec![v];
        assert_eq!(room_arg(&args(json!({"room": "r1"}))).unwrap(), "r1");
        let long = "é".repeat(MAX_ROOM_CHARS);
        assert!(room_arg(&args(json!({ "room": long }))).is_ok());
        for bad in [
            json!({}),
            json!({"room": ""}),
            json!({"room": 5}),
            json!({"room": "x".repeat(MAX_ROOM_CHARS + 1)}),
            json!("r1"),
        ] {
            assert!(room_arg(&args(bad.clone())).is_err(), "{bad}");
        }
        assert!(room_arg(&[]).is_err());
    }

    #[test]
    fn drop_every_n_drops_exactly_the_multiples() {
        let drops: Vec<u64> = (1..=10).filter(|n| dropped(Some(3), *n)).collect();
        assert_eq!(drops, vec![3, 6, 9]);
        assert!((1..=10).all(|n| !dropped(None, n)));
        assert!((1..=10).all(|n| dropped(Some(1), n)));
    }
}
