//! Socket.IO v5 over a raw WebSocket: CONNECT and its errors, the connect timeout,
//! malformed packets, binary events and acks, DISCONNECT, and connect/event ordering.

use crate::common::raw::{quiet_options, wait_until, Closed, Ws, QUICK};
use crate::common::TestServer;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

const PH0: &str = r#"{"_placeholder":true,"num":0}"#;
const PH1: &str = r#"{"_placeholder":true,"num":1}"#;

/// Parses a CONNECT reply `40<nsp,>{"sid":"…"}` for `prefix` (`40` or `40/chat,`) and
/// returns the socket id; the object must have exactly the key `sid`.
fn connect_reply_sid(msg: &str, prefix: &str) -> String {
    let json = msg
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected a CONNECT reply {prefix}…, got {msg:?}"));
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("{msg:?}"));
    assert_eq!(obj.len(), 1, "only sid (no pid): {msg:?}");
    let sid = obj["sid"].as_str().expect("sid is a string").to_owned();
    assert_eq!(sid.len(), 20, "{sid:?}");
    sid
}

/// A WebSocket session connected to namespace `nsp` ("/" or "/chat").
async fn connected(server: &TestServer, nsp: &str) -> (Ws, String) {
    let (mut ws, _) = Ws::open(server.addr).await;
    let (packet, prefix) = if nsp == "/" {
        ("40".to_owned(), "40".to_owned())
    } else {
        (format!("40{nsp},"), format!("40{nsp},"))
    };
    ws.send_text(&packet).await;
    let sid = connect_reply_sid(&ws.recv_text(QUICK).await, &prefix);
    (ws, sid)
}

// ---------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_replies_with_socket_sid() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, open) = Ws::open(server.addr).await;
    ws.send_text("40").await;
    let sid = connect_reply_sid(&ws.recv_text(QUICK).await, "40");
    assert_ne!(
        sid,
        open["sid"].as_str().unwrap(),
        "socket id is not the engine id"
    );
    let root = server.io.of("/").unwrap();
    wait_until(QUICK, "socket registered", || root.socket_count() == 1).await;

    // with auth, and to a custom namespace with and without the trailing comma
    ws.send_text(r#"40/chat,{"token":"123"}"#).await;
    let chat_sid = connect_reply_sid(&ws.recv_text(QUICK).await, "40/chat,");
    assert_ne!(chat_sid, sid);
    ws.send_text("40/notifications").await;
    connect_reply_sid(&ws.recv_text(QUICK).await, "40/notifications,");

    // a duplicate CONNECT is ignored: the next message is the echo's ack
    ws.send_text("40/chat,").await;
    ws.send_text(r#"42/chat,5["echo","after dup"]"#).await;
    assert_eq!(ws.recv_text(QUICK).await, r#"43/chat,5["after dup"]"#);
    assert_eq!(server.io.of("/chat").unwrap().socket_count(), 1);
    ws.expect_silence(Duration::from_millis(100)).await;
    ws.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_unknown_namespace_is_connect_error() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_text("40/nope,").await;
    assert_eq!(
        ws.recv_text(QUICK).await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    ws.send_text("40/random").await;
    assert_eq!(
        ws.recv_text(QUICK).await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    ws.send_text(r#"40/nope,{"token":"x"}"#).await;
    assert_eq!(
        ws.recv_text(QUICK).await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    // The connection stays usable.
    ws.send_text("40").await;
    connect_reply_sid(&ws.recv_text(QUICK).await, "40");
    assert_eq!(server.io.connection_count(), 1);
    ws.close().await;
    server.stop().await;
}

/// Without a CONNECT within connectTimeout (1 s) the connection is closed, even though
/// the client answers every ping (so it is not the ping timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connect_within_connect_timeout_closes() {
    // A generous ping timeout, so a pong delayed by a busy machine cannot be the cause.
    let mut options = crate::common::fast_options();
    options.engine.ping_timeout = Duration::from_secs(2);
    let server = TestServer::start_with(options).await;
    let started = Instant::now();
    let (mut ws, _) = Ws::open(server.addr).await;
    let mut pings = 0;
    let closed_at = loop {
        match ws.recv(Duration::from_secs(3)).await {
            Some(m) if m.to_text().ok() == Some("2") => {
                pings += 1;
                ws.try_send(tokio_tungstenite::tungstenite::Message::text("3"))
                    .await;
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => break started.elapsed(),
        }
    };
    assert!(pings >= 2, "answered {pings} pings");
    assert!(
        closed_at >= Duration::from_millis(990),
        "closed after {closed_at:?}"
    );
    assert!(
        closed_at < Duration::from_millis(2500),
        "closed after {closed_at:?}"
    );
    let io = server.io.clone();
    wait_until(QUICK, "session removed", || io.connection_count() == 0).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Malformed packets
// ---------------------------------------------------------------------------------------

/// Every malformed Socket.IO packet closes the whole connection (with a close frame) and
/// removes the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_close_the_connection() {
    let server = TestServer::start_with(quiet_options()).await;
    let texts = [
        "4abc",
        "4",
        "42{}",
        "42[]",
        "42",
        "42[{}]",
        "42[null]",
        "42abc[\"x\"]",
        "42[\"x\"",
        "42[\"echo\"] trailing",
        "49",
        "4a",
        "42[\"connect\"]",
        "42[\"connect_error\"]",
        "42[\"disconnect\"]",
        "42[\"disconnecting\"]",
        "42[\"newListener\"]",
        "42[\"removeListener\"]",
        "43[\"x\"]",
        "431{}",
        "43",
        "44{\"message\":\"x\"}",
        "40[]",
        "40\"x\"",
        "41{}",
        "45[\"x\"]",
        "45-[\"x\"]",
        "451[\"x\"]",
        "45999-[\"x\"]",
        "4399999999999999999999999[]",
    ];
    let root = server.io.of("/").unwrap();
    for text in texts {
        let (mut ws, _) = connected(&server, "/").await;
        ws.send_text(text).await;
        assert_eq!(
            ws.expect_closed(QUICK).await,
            Closed::CloseFrame,
            "after {text:?}"
        );
    }
    let io = server.io.clone();
    wait_until(QUICK, "sessions removed", || io.connection_count() == 0).await;
    wait_until(QUICK, "sockets removed", || root.socket_count() == 0).await;
    server.stop().await;
}

/// Binary framing violations: an attachment nobody announced, a text packet while
/// attachments are pending, a placeholder pointing past the attachments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_framing_violations_close_the_connection() {
    let server = TestServer::start_with(quiet_options()).await;

    let (mut ws, _) = connected(&server, "/").await;
    ws.send_binary(&[1, 2, 3]).await;
    assert_eq!(
        ws.expect_closed(QUICK).await,
        Closed::CloseFrame,
        "binary without a packet"
    );

    let (mut ws, _) = connected(&server, "/").await;
    ws.send_text(&format!(r#"451-["echo",{PH0}]"#)).await;
    ws.send_text(r#"42["echo"]"#).await;
    assert_eq!(
        ws.expect_closed(QUICK).await,
        Closed::CloseFrame,
        "text while attachments pending"
    );

    let (mut ws, _) = connected(&server, "/").await;
    ws.send_text(r#"451-1["echo",{"_placeholder":true,"num":5}]"#)
        .await;
    ws.send_binary(&[1]).await;
    assert_eq!(
        ws.expect_closed(QUICK).await,
        Closed::CloseFrame,
        "placeholder out of range"
    );

    // Before connecting to any namespace, too.
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_binary(&[9]).await;
    assert_eq!(
        ws.expect_closed(QUICK).await,
        Closed::CloseFrame,
        "binary before CONNECT"
    );

    let io = server.io.clone();
    wait_until(QUICK, "sessions removed", || io.connection_count() == 0).await;
    server.stop().await;
}

/// Binary attachments count against maxHttpBufferSize together: each frame fits, the sum
/// does not, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_attachments_over_max_payload_close() {
    let mut options = quiet_options();
    options.engine.max_payload = 1000;
    let server = TestServer::start_with(options).await;
    let (mut ws, _) = connected(&server, "/").await;
    // exactly the limit in total is fine
    ws.send_text(&format!(r#"452-1["echo",{PH0},{PH1}]"#)).await;
    ws.send_binary(&[1; 500]).await;
    ws.send_binary(&[2; 500]).await;
    assert_eq!(ws.recv_text(QUICK).await, format!(r#"462-1[{PH0},{PH1}]"#));
    assert_eq!(ws.recv_binary(QUICK).await, vec![1; 500]);
    assert_eq!(ws.recv_binary(QUICK).await, vec![2; 500]);
    // one byte more is not
    ws.send_text(&format!(r#"452-2["echo",{PH0},{PH1}]"#)).await;
    ws.send_binary(&[1; 500]).await;
    ws.send_binary(&[2; 501]).await;
    assert_eq!(ws.expect_closed(QUICK).await, Closed::CloseFrame);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Events, binary, acks
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_acks_are_encoded_exactly() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = connected(&server, "/").await;
    ws.send_text(r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        ws.recv_text(QUICK).await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
    ws.send_text(r#"42456["echo",1,"2",{"3":[false]},null,-1.5,18446744073709551615]"#)
        .await;
    assert_eq!(
        ws.recv_text(QUICK).await,
        r#"43456[1,"2",{"3":[false]},null,-1.5,18446744073709551615]"#
    );
    // an ack id of 0, an event without arguments, a numeric event name without handler
    ws.send_text(r#"420["echo"]"#).await;
    assert_eq!(ws.recv_text(QUICK).await, "430[]");
    ws.send_text(r#"421[7,"x"]"#).await;
    ws.send_text(r#"422["echo","after"]"#).await;
    assert_eq!(ws.recv_text(QUICK).await, r#"432["after"]"#);
    ws.close().await;
    server.stop().await;
}

/// BINARY_EVENT with two attachments to `echo` with an ack id: the ack is a BINARY_ACK with
/// the same placeholders, followed by the attachments as raw binary frames, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_event_with_ack_round_trips() {
    let server = TestServer::start_with(quiet_options()).await;
    for nsp in ["/", "/chat"] {
        let (mut ws, _) = connected(&server, nsp).await;
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };

        ws.send_text(&format!(r#"452-{prefix}789["echo",{PH0},{PH1}]"#))
            .await;
        ws.send_binary(&[1, 2, 3]).await;
        ws.send_binary(&[4, 5, 6]).await;
        assert_eq!(
            ws.recv_text(QUICK).await,
            format!(r#"462-{prefix}789[{PH0},{PH1}]"#)
        );
        assert_eq!(ws.recv_binary(QUICK).await, vec![1, 2, 3]);
        assert_eq!(ws.recv_binary(QUICK).await, vec![4, 5, 6]);

        // placeholders out of order and mixed with JSON keep their numbering
        ws.send_text(&format!(r#"452-{prefix}3["echo","a",{PH1},{{"x":{PH0}}}]"#))
            .await;
        ws.send_binary(b"zero").await;
        ws.send_binary(&[]).await;
        assert_eq!(
            ws.recv_text(QUICK).await,
            format!(r#"462-{prefix}3["a",{PH1},{{"x":{PH0}}}]"#)
        );
        assert_eq!(ws.recv_binary(QUICK).await, b"zero".to_vec());
        assert_eq!(ws.recv_binary(QUICK).await, Vec::<u8>::new());

        // a binary event without ack is re-emitted as a binary event
        ws.send_text(&format!(r#"451-{prefix}["message",{PH0}]"#))
            .await;
        ws.send_binary(&[0xff, 0x00]).await;
        assert_eq!(
            ws.recv_text(QUICK).await,
            format!(r#"451-{prefix}["message-back",{PH0}]"#)
        );
        assert_eq!(ws.recv_binary(QUICK).await, vec![0xff, 0x00]);

        // the connection is still in sync for plain packets
        ws.send_text(&format!(r#"42{prefix}1["echo","done"]"#))
            .await;
        assert_eq!(ws.recv_text(QUICK).await, format!(r#"43{prefix}1["done"]"#));
        ws.close().await;
    }
    server.stop().await;
}

/// An ACK for an id the server never used is ignored: the connection stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_with_unknown_id_is_ignored() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = connected(&server, "/").await;
    ws.send_text(r#"43999["late"]"#).await;
    ws.send_text(r#"430[]"#).await;
    ws.send_text(&format!(r#"461-12[{PH0}]"#)).await;
    ws.send_binary(&[1]).await;
    ws.send_text(r#"43/chat,1["not connected there"]"#).await;
    ws.send_text(r#"421["echo","still here"]"#).await;
    assert_eq!(ws.recv_text(QUICK).await, r#"431["still here"]"#);
    assert_eq!(server.io.connection_count(), 1);
    ws.close().await;
    server.stop().await;
}

/// Server → client emit with ack, answered by the raw client (`ask` handler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_emit_with_ack_is_answered() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = connected(&server, "/").await;
    ws.send_text(r#"421["ask","question",42]"#).await;
    let q = ws.recv_text(QUICK).await;
    let rest = q.strip_prefix("42").expect("an EVENT");
    let id_len = rest.find('[').unwrap();
    let id = &rest[..id_len];
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "{q:?}"
    );
    assert_eq!(&rest[id_len..], r#"["question",42]"#);
    ws.send_text(&format!(r#"43{id}["yes"]"#)).await;
    assert_eq!(ws.recv_text(QUICK).await, r#"431[{"answer":["yes"]}]"#);
    ws.close().await;
    server.stop().await;
}

/// Events for a namespace the client did not join are dropped; the connection stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_unjoined_namespace_are_dropped() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = connected(&server, "/").await;
    ws.send_text(r#"42/chat,1["echo","x"]"#).await;
    ws.send_text(r#"41/chat,"#).await;
    ws.send_text(r#"42/nope,2["echo","x"]"#).await;
    ws.send_text(r#"423["echo","root"]"#).await;
    assert_eq!(ws.recv_text(QUICK).await, r#"433["root"]"#);
    ws.close().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// DISCONNECT
// ---------------------------------------------------------------------------------------

/// `41` removes the socket but not the Engine.IO connection: nothing is sent in reply,
/// the next message is the regular ping, and the client can connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_keeps_the_engine_connection() {
    let server = TestServer::start().await;
    let root = server.io.of("/").unwrap();
    let (mut ws, sid) = connected(&server, "/").await;
    wait_until(QUICK, "socket registered", || root.socket_count() == 1).await;
    ws.send_text("41").await;
    assert_eq!(
        ws.recv_text(QUICK).await,
        "2",
        "only the ping follows a DISCONNECT"
    );
    ws.send_text("3").await;
    assert_eq!(root.socket_count(), 0);
    assert_eq!(server.io.connection_count(), 1);
    // not connected any more: the event is dropped; a new CONNECT gets a new socket
    ws.send_text(r#"421["echo","x"]"#).await;
    ws.send_text("40").await;
    let sid2 = connect_reply_sid(&ws.recv_text(QUICK).await, "40");
    assert_ne!(sid, sid2);
    ws.send_text(r#"422["echo","y"]"#).await;
    assert_eq!(ws.recv_text(QUICK).await, r#"432["y"]"#);
    ws.close().await;
    server.stop().await;
}

/// Custom namespace disconnect leaves the main namespace working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_disconnect_leaves_other_namespaces() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = connected(&server, "/").await;
    ws.send_text("40/chat,").await;
    connect_reply_sid(&ws.recv_text(QUICK).await, "40/chat,");
    ws.send_text("41/chat,").await;
    ws.send_text(r#"42["message","message to main namespace"]"#)
        .await;
    assert_eq!(
        ws.recv_text(QUICK).await,
        r#"42["message-back","message to main namespace"]"#
    );
    assert_eq!(server.io.of("/chat").unwrap().socket_count(), 0);
    assert_eq!(server.io.of("/").unwrap().socket_count(), 1);
    ws.close().await;
    server.stop().await;
}

/// A server-side disconnect sends DISCONNECT for that namespace only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_disconnect_sends_disconnect_packet() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = connected(&server, "/chat").await;
    ws.send_text(r#"42/chat,["disconnect-me"]"#).await;
    assert_eq!(ws.recv_text(QUICK).await, "41/chat,");
    assert_eq!(server.io.of("/chat").unwrap().socket_count(), 0);
    ws.send_text("40").await;
    connect_reply_sid(&ws.recv_text(QUICK).await, "40");
    assert_eq!(server.io.connection_count(), 1);
    ws.close().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Ordering
// ---------------------------------------------------------------------------------------

/// 500 fresh connections to `/chat`, each emitting with ack the moment its CONNECT reply
/// arrives: every first event must be handled (none dropped as "not connected yet").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_event_after_connect_is_never_dropped() {
    let server = TestServer::start_with(quiet_options()).await;
    let started = Instant::now();
    for i in 0..500 {
        let (mut ws, _) = Ws::open(server.addr).await;
        ws.send_text("40/chat,").await;
        connect_reply_sid(&ws.recv_text(QUICK).await, "40/chat,");
        ws.send_text(r#"42/chat,1["echo","x"]"#).await;
        let ack = ws.recv_text(QUICK).await;
        assert_eq!(ack, r#"43/chat,1["x"]"#, "connection {i}");
        ws.close().await;
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    let io = server.io.clone();
    wait_until(QUICK, "all sessions closed", || io.connection_count() == 0).await;
    server.stop().await;
}

/// A client that leaves while its connect step is still running: the step's late join
/// must not leave the gone socket in the room (under churn such rooms piled up and
/// `rtctl rooms ls` kept listing them). Checked on both sides of the window: the client
/// leaving before the join, and one staying to prove the join does happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_gone_before_its_connect_step_joins_leaves_no_room() {
    const STEP: Duration = Duration::from_millis(300);
    let io = realtime::server::Io::builder(quiet_options())
        .namespace("/slow", |ns| {
            ns.on_connect(|s| async move {
                tokio::time::sleep(STEP).await;
                s.join("late");
                Ok(())
            });
        })
        .build();
    let server = TestServer::start_io(io, "127.0.0.1:0".parse().unwrap()).await;
    let ns = server.io.of("/slow").unwrap();
    for _ in 0..20 {
        let (mut ws, _) = Ws::open(server.addr).await;
        ws.send_text("40/slow,").await;
        ws.close().await;
    }
    let io = server.io.clone();
    wait_until(QUICK, "all sessions closed", || io.connection_count() == 0).await;
    tokio::time::sleep(STEP * 2).await;
    assert_eq!(ns.rooms(), vec![], "gone sockets left in a room");

    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_text("40/slow,").await;
    connect_reply_sid(&ws.recv_text(QUICK).await, "40/slow,");
    assert_eq!(ns.rooms(), vec![("late".into(), 1)]);
    ws.close().await;
    wait_until(QUICK, "the room emptied", || ns.rooms().is_empty()).await;
    server.stop().await;
}

/// CONNECT and an event sent back to back (before the reply): the reply comes first, then
/// the ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_connect_and_event_are_ordered() {
    let server = TestServer::start_with(quiet_options()).await;
    for i in 0..100 {
        let (mut ws, _) = Ws::open(server.addr).await;
        ws.send_text("40/chat,").await;
        ws.send_text(r#"42/chat,7["echo",{"n":1}]"#).await;
        connect_reply_sid(&ws.recv_text(QUICK).await, "40/chat,");
        assert_eq!(
            ws.recv_text(QUICK).await,
            r#"43/chat,7[{"n":1}]"#,
            "connection {i}"
        );
        ws.close().await;
    }
    server.stop().await;
}

/// JSON objects are relayed with the client's key order (Node keeps insertion order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_key_order_is_preserved() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = connected(&server, "/").await;
    ws.send_text(r#"421["echo",{"b":1,"a":2}]"#).await;
    assert_eq!(ws.recv_text(QUICK).await, r#"431[{"b":1,"a":2}]"#);
    ws.close().await;
    server.stop().await;
}

/// A double written by a JavaScript client (shortest round-trip form) is relayed unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floats_are_relayed_exactly() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = connected(&server, "/").await;
    ws.send_text(r#"421["echo",944.5166741109949,1.0344470808135013e+95,0.1]"#)
        .await;
    assert_eq!(
        ws.recv_text(QUICK).await,
        r#"431[944.5166741109949,1.0344470808135013e+95,0.1]"#
    );
    ws.close().await;
    server.stop().await;
}
