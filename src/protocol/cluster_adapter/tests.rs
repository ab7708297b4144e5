//! The ClusterAdapter messages against bytes the real `createShardedAdapter` of
//! `@socket.io/redis-adapter` 8.3.0 SPUBLISHed (tests/interop/sharded-fixtures.mjs made
//! the fixture): every message decodes and re-encodes to the same bytes, the same calls
//! made on our codec write exactly what the package wrote, on the channel it chose.

use super::*;
use crate::protocol::cluster_sharded::{ShardedChannels, SubscriptionMode};
use crate::protocol::fixtures::{hex, opts, packet, step, uid, unhex};

const FIXTURE: &str = include_str!("../../../tests/interop/fixtures/redis-sharded-8.3.0.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("the fixture is JSON")
}

/// The step's `i`th message: decoded, its bytes (hex) and its channel.
fn sent(s: &Value, i: usize) -> (Message, String, String) {
    let m = &s["messages"][i];
    let h = m["hex"].as_str().unwrap().to_owned();
    let msg = Message::decode_sharded(&unhex(&h)).unwrap();
    (msg, h, m["channel"].as_str().unwrap().to_owned())
}

fn channels(f: &Value, who: &str, nsp: &str) -> ShardedChannels {
    ShardedChannels::new("socket.io", nsp, &uid(f, who), SubscriptionMode::Dynamic)
}

#[test]
fn every_captured_message_decodes_and_encodes_to_the_same_bytes() {
    let f = fixture();
    let mut n = 0;
    for s in f["steps"].as_array().unwrap() {
        for m in s["messages"].as_array().unwrap() {
            let bytes = unhex(m["hex"].as_str().unwrap());
            let msg = Message::decode_sharded(&bytes).unwrap_or_else(|e| panic!("{m}: {e}"));
            // JSON unless binary: the fixture has the text exactly for the JSON ones.
            assert_eq!(m.get("text").is_some(), msg.attachments.is_empty(), "{m}");
            assert_eq!(hex(&msg.encode_sharded()), m["hex"], "step {}", s["name"]);
            // Each goes where the sender's adapter computes (dynamic mode).
            let who = if msg.nsp == "/chat" { "A_chat" } else { "A" };
            let channel = if msg.body.kind().is_response() {
                channels(&f, who, &msg.nsp).response_to(&uid(&f, "A"))
            } else {
                channels(&f, who, &msg.nsp).for_message(&msg)
            };
            assert_eq!(channel, m["channel"], "step {}", s["name"]);
            n += 1;
        }
    }
    assert_eq!(n, 22);
}

#[test]
fn our_broadcasts_are_the_messages_the_package_publishes() {
    let f = fixture();
    for name in [
        "plain",
        "binary",
        "nested-binary",
        "json-text",
        "volatile",
        "two-rooms",
        "socket-id-room",
        "chat",
    ] {
        let s = step(&f, name);
        let call = &s["call"];
        let (data, attachments) = packet(call);
        let nsp = call["nsp"].as_str().unwrap_or("/");
        let who = if nsp == "/chat" { "A_chat" } else { "A" };
        let msg = Message {
            uid: uid(&f, who),
            nsp: nsp.to_owned(),
            body: Body::Broadcast {
                packet: data,
                opts: opts(call),
                request_id: None,
            },
            attachments,
        };
        let (_, bytes, channel) = sent(&s, 0);
        assert_eq!(hex(&msg.encode_sharded()), bytes, "{name}");
        assert_eq!(channels(&f, who, nsp).for_message(&msg), channel, "{name}");
    }
}

#[test]
fn our_room_operations_are_the_messages_the_package_publishes() {
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
        ("sockets-join", MessageType::SocketsJoin),
        ("sockets-leave", MessageType::SocketsLeave),
        ("disconnect-sockets", MessageType::DisconnectSockets),
    ] {
        let s = step(&f, name);
        let call = &s["call"];
        let body = match kind {
            MessageType::SocketsJoin => Body::SocketsJoin {
                opts: opts(call),
                rooms: room_list(call),
            },
            MessageType::SocketsLeave => Body::SocketsLeave {
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
        let (_, bytes, channel) = sent(&s, 0);
        assert_eq!(hex(&msg.encode_sharded()), bytes, "{name}");
        assert_eq!(channel, "socket.io#/#");
    }
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
    let bytes = |m: &Message| hex(&m.encode_sharded());

    let s = step(&f, "server-side-emit");
    let ours = msg(
        &a,
        Body::ServerSideEmit {
            request_id: None,
            packet: vec![json!("ping"), json!(1)],
        },
        vec![],
    );
    assert_eq!(bytes(&ours), sent(&s, 0).1);

    let s = step(&f, "server-side-emit-with-ack");
    let (theirs, request, _) = sent(&s, 0);
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
    assert_eq!(bytes(&ours), request);
    let answer = msg(
        &b,
        Body::ServerSideEmitResponse {
            request_id: id,
            packet: json!("pong-from-B"),
        },
        vec![],
    );
    assert_eq!(bytes(&answer), sent(&s, 1).1);
    assert_eq!(sent(&s, 1).2, format!("socket.io#/#{a}#"));

    let s = step(&f, "fetch-sockets");
    let (theirs, request, _) = sent(&s, 0);
    let id = theirs.body.request_id().unwrap().to_owned();
    let ours = msg(
        &a,
        Body::FetchSockets {
            opts: opts(&s["call"]),
            request_id: id.clone(),
        },
        vec![],
    );
    assert_eq!(bytes(&ours), request);
    let Body::FetchSocketsResponse {
        request_id,
        sockets,
    } = sent(&s, 1).0.body
    else {
        panic!("a fetch response");
    };
    assert_eq!(request_id, id);
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0]["id"], f["sids"]["b"]);
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
        let (theirs, request, channel) = sent(&s, 0);
        // With acks, even a single room goes to the namespace channel.
        assert_eq!(channel, "socket.io#/#", "{name}");
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
        assert_eq!(bytes(&ours), request, "{name}");
        let count = msg(
            &b,
            Body::BroadcastClientCount {
                request_id: id.clone(),
                client_count: 1,
            },
            vec![],
        );
        assert_eq!(bytes(&count), sent(&s, 1).1, "{name}");
        let ack = msg(
            &b,
            Body::BroadcastAck {
                request_id: id,
                packet: client_ack.0,
            },
            client_ack.1,
        );
        assert_eq!(bytes(&ack), sent(&s, 2).1, "{name}");
    }
}

#[test]
fn dynamic_mode_subscribed_public_rooms_only_and_two_servers_count() {
    let f = fixture();
    let (a, b) = (uid(&f, "A"), uid(&f, "B"));
    let mut expected = vec![
        "socket.io#/#".to_owned(),
        format!("socket.io#/#{a}#"),
        format!("socket.io#/#{b}#"),
        "socket.io#/#room1#".to_owned(),
        "socket.io#/chat#".to_owned(),
        format!("socket.io#/chat#{}#", uid(&f, "A_chat")),
    ];
    let listed: Vec<String> = f["shardChannels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    // B's /chat response channel: the only uid the fixture does not name.
    let chat_b = listed
        .iter()
        .filter(|c| c.starts_with("socket.io#/chat#") && !c.contains(&uid(&f, "A_chat")))
        .find(|c| c.len() == "socket.io#/chat#".len() + 17)
        .cloned()
        .expect("B's /chat response channel");
    expected.push(chat_b);
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(f["serverCount"], 2);
    let mode = SubscriptionMode::Dynamic;
    assert!(mode.listens_to_room(false) && !mode.listens_to_room(true));
    assert!(SubscriptionMode::DynamicPrivate.listens_to_room(true));
    assert!(!SubscriptionMode::Static.listens_to_room(false));
}

#[test]
fn channels_follow_compute_channel_in_every_mode() {
    let to = |rooms: &[&str], request_id: Option<&str>| Message {
        uid: "u".into(),
        nsp: "/".into(),
        body: Body::Broadcast {
            packet: json!(["e"]),
            opts: BroadcastOpts {
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
                ..Default::default()
            },
            request_id: request_id.map(str::to_owned),
        },
        attachments: vec![],
    };
    let sid = "MGClx45mAj3JkW5yAAAA";
    let ch = |mode| ShardedChannels::new("p", "/", "u", mode);
    use SubscriptionMode::*;
    for (mode, msg, channel) in [
        (Dynamic, to(&["r"], None), "p#/#r#"),
        (Dynamic, to(&[sid], None), "p#/#"),
        (Dynamic, to(&["r", "s"], None), "p#/#"),
        (Dynamic, to(&["r"], Some("id")), "p#/#"),
        (Dynamic, to(&[], None), "p#/#"),
        (
            DynamicPrivate,
            to(&[sid], None),
            "p#/#MGClx45mAj3JkW5yAAAA#",
        ),
        (DynamicPrivate, to(&["r"], Some("id")), "p#/#"),
        (Static, to(&["r"], None), "p#/#"),
    ] {
        assert_eq!(ch(mode).for_message(&msg), channel, "{mode:?} {msg:?}");
    }
    // 20 UTF-16 units, as JavaScript counts: "é" is one, "😀" two.
    assert!(crate::protocol::cluster_sharded::looks_like_a_socket_id(
        "ééééééééééééééééé😀x"
    ));
    assert_eq!(ch(Static).response_to("abc"), "p#/#abc#");
    assert_eq!(ch(Static).response, "p#/#u#");
}

#[test]
fn messages_without_data_and_malformed_input() {
    let beat = Message {
        uid: "u".into(),
        nsp: "/".into(),
        body: Body::Heartbeat,
        attachments: vec![],
    };
    assert_eq!(beat.encode_sharded(), br#"{"type":2,"uid":"u","nsp":"/"}"#);
    assert_eq!(
        Message::decode_sharded(&beat.encode_msgpack()).unwrap(),
        beat
    );
    assert_eq!(
        Message::decode_sharded(br#"{"type":13,"uid":"u","nsp":"/"}"#)
            .unwrap()
            .body,
        Body::AdapterClose
    );
    assert_eq!(
        Message::decode_sharded(br#"{"type":14,"uid":"u","nsp":"/"}"#),
        Err(DecodeError::UnknownType(14))
    );
    assert_eq!(Message::decode_sharded(b"{nope"), Err(DecodeError::Json));
    assert_eq!(Message::decode_sharded(b""), Err(DecodeError::Msgpack));
    assert!(Message::decode_sharded(br#"{"type":3,"data":{}}"#).is_err());
    assert!(Message::decode_sharded(br#"{"data":{}}"#).is_err());
    assert!(Message::decode_sharded(b"\x93\x01").is_err());
}
