//! The codec against bytes written by the real `@socket.io/redis-streams-adapter` 0.3.1
//! (tests/interop/streams-fixtures.mjs made the fixture): every entry, pub/sub payload
//! and session decodes and re-encodes to the same bytes, and the same calls made on our
//! codec write exactly what the package wrote.

use super::*;
use crate::protocol::fixtures::{hex, opts, packet, step, uid, unhex};
use bytes::Bytes;
use serde_json::{json, Value};

const FIXTURE: &str = include_str!("../../../tests/interop/fixtures/redis-streams-0.3.1.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("the fixture is JSON")
}

fn entry(v: &Value) -> StreamEntry {
    StreamEntry {
        id: v["id"].as_str().unwrap().to_owned(),
        fields: ["uid", "nsp", "type", "data"]
            .iter()
            .map(|k| (k.to_string(), v[k].as_str().unwrap().to_owned()))
            .collect(),
    }
}

#[test]
fn every_captured_entry_decodes_and_encodes_to_the_same_fields() {
    let f = fixture();
    let mut n = 0;
    for s in f["steps"].as_array().unwrap() {
        for e in s["entries"].as_array().unwrap() {
            let entry = entry(e);
            let msg = Message::from_entry(&entry).unwrap_or_else(|err| panic!("{e}: {err}"));
            assert!(!msg.body.is_ephemeral());
            assert_eq!(msg.to_entry(), entry.fields, "step {}", s["name"]);
            n += 1;
        }
    }
    assert_eq!(n, 10);
}

#[test]
fn our_broadcasts_are_the_entries_the_package_writes() {
    let f = fixture();
    for name in [
        "plain",
        "binary",
        "nested-binary",
        "json-text",
        "volatile",
        "socket-emit",
        "chat",
    ] {
        let s = step(&f, name);
        let call = &s["call"];
        let (data, attachments) = packet(call);
        let nsp = call["nsp"].as_str().unwrap_or("/");
        let msg = Message {
            uid: uid(&f, if nsp == "/chat" { "A_chat" } else { "A" }),
            nsp: nsp.to_owned(),
            body: Body::Broadcast {
                packet: data,
                opts: opts(call),
                request_id: None,
            },
            attachments,
        };
        assert_eq!(msg.to_entry(), entry(&s["entries"][0]).fields, "{name}");
    }
}

#[test]
fn our_room_operations_are_the_entries_the_package_writes() {
    let f = fixture();
    let room_list = |call: &Value| -> Vec<String> {
        call["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    for (name, kind) in [
        ("sockets-join", 4),
        ("sockets-leave", 5),
        ("disconnect-sockets", 6),
    ] {
        let s = step(&f, name);
        let call = &s["call"];
        let body = match kind {
            4 => Body::SocketsJoin {
                opts: opts(call),
                rooms: room_list(call),
            },
            5 => Body::SocketsLeave {
                opts: opts(call),
                rooms: room_list(call),
            },
            _ => Body::DisconnectSockets {
                opts: opts(call),
                close: call["close"].as_bool().unwrap(),
            },
        };
        let msg = Message {
            uid: uid(&f, "A"),
            nsp: "/".into(),
            body,
            attachments: vec![],
        };
        assert_eq!(msg.to_entry(), entry(&s["entries"][0]).fields, "{name}");
    }
}

#[test]
fn every_captured_pubsub_payload_decodes_and_encodes_to_the_same_bytes() {
    let f = fixture();
    let mut n = 0;
    for s in f["steps"].as_array().unwrap() {
        for p in s["pubsub"].as_array().unwrap() {
            let bytes = unhex(p["hex"].as_str().unwrap());
            let msg = Message::decode_msgpack(&bytes).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(msg.body.is_ephemeral());
            assert_eq!(hex(&msg.encode_msgpack()), p["hex"], "step {}", s["name"]);
            // Requests on the public channel, responses on the requester's.
            let channel = p["channel"].as_str().unwrap();
            let requester = uid(&f, "A");
            match msg.body {
                Body::ServerSideEmit { .. }
                | Body::FetchSockets { .. }
                | Body::Broadcast { .. } => assert_eq!(channel, public_channel("socket.io", "/")),
                _ => assert_eq!(channel, private_channel("socket.io", "/", &requester)),
            }
            n += 1;
        }
    }
    assert_eq!(n, 11);
}

/// The decoded message of the step's `i`th pub/sub payload.
fn pubsub(s: &Value, i: usize) -> (Message, String) {
    let h = s["pubsub"][i]["hex"].as_str().unwrap().to_owned();
    (Message::decode_msgpack(&unhex(&h)).unwrap(), h)
}

#[test]
fn our_requests_and_responses_are_the_package_bytes() {
    let f = fixture();
    let (a, b) = (uid(&f, "A"), uid(&f, "B"));
    let msg = |uid: &str, body: Body, attachments: Vec<Bytes>| Message {
        uid: uid.to_owned(),
        nsp: "/".into(),
        body,
        attachments,
    };

    let s = step(&f, "server-side-emit");
    let ours = msg(
        &a,
        Body::ServerSideEmit {
            request_id: None,
            packet: vec![json!("ping"), json!(1)],
        },
        vec![],
    );
    assert_eq!(hex(&ours.encode_msgpack()), pubsub(&s, 0).1);

    let s = step(&f, "server-side-emit-with-ack");
    let (theirs, bytes) = pubsub(&s, 0);
    let id = theirs.body.request_id().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    let ours = msg(
        &a,
        Body::ServerSideEmit {
            request_id: Some(id.clone()),
            packet: vec![json!("ping"), json!(2)],
        },
        vec![],
    );
    assert_eq!(hex(&ours.encode_msgpack()), bytes);
    let answer = msg(
        &b,
        Body::ServerSideEmitResponse {
            request_id: id,
            packet: json!("pong-from-B"),
        },
        vec![],
    );
    assert_eq!(hex(&answer.encode_msgpack()), pubsub(&s, 1).1);

    let s = step(&f, "fetch-sockets");
    let (theirs, bytes) = pubsub(&s, 0);
    let id = theirs.body.request_id().unwrap().to_owned();
    let ours = msg(
        &a,
        Body::FetchSockets {
            opts: opts(&s["call"]),
            request_id: id.clone(),
        },
        vec![],
    );
    assert_eq!(hex(&ours.encode_msgpack()), bytes);
    let Body::FetchSocketsResponse {
        request_id,
        sockets,
    } = pubsub(&s, 1).0.body
    else {
        panic!("a fetch response");
    };
    assert_eq!(request_id, id);
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0]["data"], json!({}));
    assert_eq!(sockets[0]["rooms"][1], json!("room3"));

    for (name, client_ack) in [
        ("broadcast-with-ack", (json!("ack-from-client-B"), vec![])),
        (
            "broadcast-with-binary-ack",
            (
                crate::protocol::socketio::placeholder(0),
                vec![Bytes::from_static(&[0xca, 0xfe])],
            ),
        ),
    ] {
        let s = step(&f, name);
        let (theirs, bytes) = pubsub(&s, 0);
        let id = theirs.body.request_id().unwrap().to_owned();
        let (data, attachments) = packet(&s["call"]);
        let ours = msg(
            &a,
            Body::Broadcast {
                packet: data,
                opts: opts(&s["call"]),
                request_id: Some(id.clone()),
            },
            attachments,
        );
        assert_eq!(hex(&ours.encode_msgpack()), bytes, "{name}");
        let count = msg(
            &b,
            Body::BroadcastClientCount {
                request_id: id.clone(),
                client_count: 1,
            },
            vec![],
        );
        assert_eq!(hex(&count.encode_msgpack()), pubsub(&s, 1).1, "{name}");
        let ack = msg(
            &b,
            Body::BroadcastAck {
                request_id: id,
                packet: client_ack.0,
            },
            client_ack.1,
        );
        assert_eq!(hex(&ack.encode_msgpack()), pubsub(&s, 2).1, "{name}");
    }
}

#[test]
fn sessions_read_and_write_as_the_package_stores_them() {
    let f = fixture();
    for s in f["sessions"].as_array().unwrap() {
        let value = s["value"].as_str().unwrap();
        let record = SessionRecord::decode(value).unwrap();
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            record,
            SessionRecord {
                sid: s["sid"].as_str().unwrap().to_owned(),
                pid: s["pid"].as_str().unwrap().to_owned(),
                rooms: list(&s["rooms"]),
                data: s["data"].clone(),
                expires_at_ms: None,
            }
        );
        assert_eq!(record.encode(), value);
        assert_eq!(s["key"], format!("sio:session:{}", record.pid));
        // Ours may add when it expires, after `data`; it reads back, and Node reads
        // the four keys it knows from it.
        let ours = SessionRecord {
            expires_at_ms: Some(1_796_230_286_462),
            ..record.clone()
        };
        let encoded = ours.encode();
        assert!(encoded.len() > value.len());
        assert_eq!(SessionRecord::decode(&encoded).unwrap(), ours);
    }
}

#[test]
fn namespaces_map_to_streams_as_the_package_hashes_them() {
    let f = fixture();
    for (nsp, hash) in f["hashes"].as_object().unwrap() {
        assert_eq!(i64::from(hash_code(nsp)), hash.as_i64().unwrap(), "{nsp}");
    }
    assert_eq!(stream_name("socket.io", 1, "/notifications"), "socket.io");
    assert_eq!(stream_name("socket.io", 4, "/"), "socket.io-3");
    assert_eq!(stream_name("socket.io", 4, "/admin"), "socket.io-0");
    // The upstream quirk kept on purpose: a negative hash gives a negative index.
    assert_eq!(
        stream_name("socket.io", 4, "/notifications"),
        "socket.io--3"
    );
    assert_eq!(reader_streams("s", 1), ["s"]);
    assert_eq!(reader_streams("s", 3), ["s-0", "s-1", "s-2"]);
}

#[test]
fn offsets_and_the_replay_filter_follow_the_package() {
    assert!(is_offset("1796230226767-0"));
    for bad in ["", "-", "1-", "-1", "1-2-3", "Q8tgPWu", "1 -2", "1-x"] {
        assert!(!is_offset(bad), "{bad}");
    }
    assert_eq!(next_offset("1796230226767-0"), "1796230226767-1");
    assert_eq!(next_offset("5-41"), "5-42");

    let session = vec!["sid1".to_owned(), "room1".to_owned()];
    let to = |rooms: &[&str], except: &[&str]| BroadcastOpts {
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        except: except.iter().map(|r| r.to_string()).collect(),
        flags: None,
    };
    assert!(should_include(&session, &to(&[], &[])));
    assert!(should_include(&session, &to(&["room1", "x"], &[])));
    assert!(should_include(&session, &to(&["sid1"], &["other"])));
    assert!(!should_include(&session, &to(&["x"], &[])));
    assert!(!should_include(&session, &to(&[], &["sid1"])));
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let e = |fields: &[(&str, &str)]| StreamEntry {
        id: "1-0".into(),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(
        Message::from_entry(&e(&[("uid", "u"), ("nsp", "/"), ("type", "14")])),
        Err(DecodeError::UnknownType(14))
    );
    // A heartbeat has no data; 0.3.x never writes one, and ignores it.
    assert_eq!(
        Message::from_entry(&e(&[("uid", "u"), ("nsp", "/"), ("type", "2")]))
            .unwrap()
            .body,
        Body::Heartbeat
    );
    assert!(Message::from_entry(&e(&[("uid", "u"), ("type", "3")])).is_err());
    assert_eq!(
        Message::from_entry(&e(&[("nsp", "/"), ("type", "3"), ("data", "{nope")])),
        Err(DecodeError::Json)
    );
    assert_eq!(
        Message::from_entry(&e(&[("nsp", "/"), ("type", "3"), ("data", "!!")])),
        Err(DecodeError::Base64)
    );
    assert!(Message::from_entry(&e(&[("nsp", "/"), ("type", "3"), ("data", "{}")])).is_err());
    assert!(Message::decode_msgpack(b"\x93\x01").is_err());
    assert!(Message::decode_msgpack(&[0x81, 0xa4, b't', b'y', b'p', b'e', 0x0e]).is_err());
    assert!(SessionRecord::decode("gA==").is_err());
}

#[test]
fn integral_floats_are_written_as_javascript_writes_them() {
    let msg = Message {
        uid: "u".into(),
        nsp: "/".into(),
        body: Body::Broadcast {
            packet: serde_json::from_str(r#"["e",1.0,-2.0,1.5]"#).unwrap(),
            opts: BroadcastOpts::default(),
            request_id: None,
        },
        attachments: vec![],
    };
    let data = &msg.to_entry()[3].1;
    assert!(data.contains(r#"["e",1,-2,1.5]"#), "{data}");
}
