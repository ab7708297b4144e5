//! Test helpers for the codecs checked against fixtures the npm packages wrote
//! (tests/interop/*-fixtures.mjs): a fixture's steps name the call a package made, in
//! JSON, with binary written `{"$binary": [bytes]}`; these turn a step into our codec's
//! arguments.

use super::cluster::{BroadcastFlags, BroadcastOpts};
use bytes::Bytes;
use serde_json::Value;

/// The step called `name` of fixture `f`.
pub(crate) fn step(f: &Value, name: &str) -> Value {
    f["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}"))
        .clone()
}

/// The adapter uid the fixture recorded for `who` (`A`, `B`, `A_chat`).
pub(crate) fn uid(f: &Value, who: &str) -> String {
    f["uids"][who].as_str().unwrap().to_owned()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `v` with each `{"$binary": [bytes]}` made a placeholder, its bytes an attachment.
pub(crate) fn with_placeholders(v: &Value, out: &mut Vec<Bytes>) -> Value {
    match v {
        Value::Object(m) if m.contains_key("$binary") => {
            let bytes: Vec<u8> = m["$binary"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8)
                .collect();
            out.push(Bytes::from(bytes));
            crate::protocol::socketio::placeholder(out.len() - 1)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), with_placeholders(v, out)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| with_placeholders(v, out)).collect()),
        other => other.clone(),
    }
}

/// The step's `[event, ...args]` and attachments.
pub(crate) fn packet(call: &Value) -> (Value, Vec<Bytes>) {
    let mut data = vec![call["event"].clone()];
    data.extend(call["args"].as_array().cloned().unwrap_or_default());
    let mut attachments = Vec::new();
    let data = with_placeholders(&Value::Array(data), &mut attachments);
    (data, attachments)
}

/// The step's `{rooms, except, flags}` (`in` names the rooms of join/leave/disconnect).
pub(crate) fn opts(call: &Value) -> BroadcastOpts {
    let list = |k: &str| -> Vec<String> {
        call[k]
            .as_array()
            .map(|a| a.iter().map(|r| r.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let rooms = if call.get("op").is_some() && call["op"] != "emitWithAck" {
        list("in")
    } else {
        list("rooms")
    };
    let flags = &call["flags"];
    BroadcastOpts {
        rooms,
        except: list("except"),
        flags: Some(BroadcastFlags {
            volatile: flags["volatile"].as_bool(),
            timeout: flags["timeout"].as_u64(),
            ..Default::default()
        }),
    }
}
