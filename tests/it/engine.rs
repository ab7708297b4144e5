//! Engine.IO v4 over raw HTTP and WebSocket: request validation and its exact error
//! bodies, long-polling rules, heartbeats, payload limits, the upgrade, CORS, 404 and the
//! graceful drain. Every test runs a real server on 127.0.0.1:0.

use crate::common::raw::{
    eio_path, get, parse_open, poll_path, polling_handshake, polling_sid, post, quiet_options,
    request, wait_until, Closed, HttpConn, Pending, Ws, QUICK,
};
use crate::common::TestServer;
use realtime::sid::Sid;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::{sleep, Instant};
use tokio_tungstenite::tungstenite::Error as WsError;

const UNSUPPORTED: &str = "Unsupported protocol version";
const TRANSPORT_UNKNOWN: &str = "Transport unknown";
const SID_UNKNOWN: &str = "Session ID unknown";
const BAD_METHOD: &str = "Bad handshake method";
const BAD_REQUEST: &str = "Bad request";

fn small_payload_options(max: usize) -> realtime::server::ServerOptions {
    let mut o = quiet_options();
    o.engine.max_payload = max;
    o
}

/// The handshake JSON has exactly the five Engine.IO v4 fields.
fn assert_handshake_keys(open: &Value) {
    let mut keys: Vec<&str> = open
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ],
        "{open}"
    );
    let sid = open["sid"].as_str().expect("sid is a string");
    assert_eq!(sid.len(), 20, "sid {sid:?}");
}

/// The session `sid` is gone for its client: GET and POST with its sid are 400
/// "Session ID unknown" right away (a closed session is refused even before its
/// housekeeper unregisters it), and it is unregistered soon after.
async fn assert_session_gone(server: &TestServer, sid: &str) {
    let p = poll_path(sid);
    get(server.addr, &p)
        .await
        .assert_engine_error(400, 1, SID_UNKNOWN);
    post(server.addr, &p, b"6")
        .await
        .assert_engine_error(400, 1, SID_UNKNOWN);
    let parsed = Sid::parse(sid).expect("a server sid");
    let io = server.io.clone();
    wait_until(QUICK, "the session is unregistered", || {
        io.engine().get_session(&parsed).is_none()
    })
    .await;
}

/// Waits until the session `sid` is closed (by something asynchronous, like the server
/// noticing a dropped connection).
async fn wait_closed(server: &TestServer, sid: &str) {
    let parsed = Sid::parse(sid).expect("a server sid");
    let io = server.io.clone();
    wait_until(QUICK, "the session closes", || {
        io.engine()
            .get_session(&parsed)
            .is_none_or(|s| s.is_closed())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Handshake validation
// ---------------------------------------------------------------------------------------

/// Every malformed handshake gets 400 with Node's `{"code","message"}` body. The transport
/// is checked before the protocol version, and only `EIO=4` is spoken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_get_exact_json_errors() {
    let server = TestServer::start().await;
    let table: &[(&str, &str, u8, &str)] = &[
        ("GET", "transport=polling", 5, UNSUPPORTED),
        ("GET", "EIO=&transport=polling", 5, UNSUPPORTED),
        ("GET", "EIO=abc&transport=polling", 5, UNSUPPORTED),
        ("GET", "EIO=3&transport=polling", 5, UNSUPPORTED),
        ("GET", "EIO=5&transport=polling", 5, UNSUPPORTED),
        ("GET", "EIO=3&transport=websocket", 5, UNSUPPORTED),
        ("GET", "EIO=4", 0, TRANSPORT_UNKNOWN),
        ("GET", "", 0, TRANSPORT_UNKNOWN),
        ("GET", "EIO=4&transport=abc", 0, TRANSPORT_UNKNOWN),
        ("GET", "EIO=4&transport=Polling", 0, TRANSPORT_UNKNOWN),
        ("GET", "EIO=3", 0, TRANSPORT_UNKNOWN),
        ("GET", "EIO=4&transport=polling&sid=nope", 1, SID_UNKNOWN),
        (
            "GET",
            "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            1,
            SID_UNKNOWN,
        ),
        (
            "POST",
            "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            1,
            SID_UNKNOWN,
        ),
        ("POST", "EIO=4&transport=polling", 2, BAD_METHOD),
        ("PUT", "EIO=4&transport=polling", 2, BAD_METHOD),
        ("DELETE", "EIO=4&transport=polling", 2, BAD_METHOD),
        // websocket named, but no upgrade headers
        ("GET", "EIO=4&transport=websocket", 3, BAD_REQUEST),
    ];
    for (method, query, code, message) in table {
        let res = request(server.addr, method, &eio_path(query), &[], b"").await;
        assert_eq!(res.status, 400, "{method} ?{query}: {}", res.text());
        assert_eq!(
            res.header("content-type"),
            Some("application/json"),
            "{method} ?{query}"
        );
        assert_eq!(
            res.text(),
            format!(r#"{{"code":{code},"message":"{message}"}}"#),
            "{method} ?{query}"
        );
    }
    // The path without its trailing slash is the engine too.
    get(server.addr, "/socket.io?EIO=4")
        .await
        .assert_engine_error(400, 0, TRANSPORT_UNKNOWN);
    assert_eq!(server.io.connection_count(), 0, "no session was created");
    server.stop().await;
}

/// A refused WebSocket handshake is an HTTP error (no 101): bad EIO, missing or unknown
/// transport, unknown sid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_websocket_handshakes_are_refused_with_400() {
    let server = TestServer::start().await;
    for (query, code, message) in [
        ("transport=websocket", 5, UNSUPPORTED),
        ("EIO=abc&transport=websocket", 5, UNSUPPORTED),
        ("EIO=3&transport=websocket", 5, UNSUPPORTED),
        ("EIO=4", 0, TRANSPORT_UNKNOWN),
        ("EIO=4&transport=abc", 0, TRANSPORT_UNKNOWN),
        (
            "EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA",
            1,
            SID_UNKNOWN,
        ),
    ] {
        match Ws::try_connect(server.addr, &eio_path(query), &[]).await {
            Err(WsError::Http(res)) => {
                assert_eq!(res.status(), 400, "?{query}");
                let body = res.body().as_deref().map(String::from_utf8_lossy);
                assert_eq!(
                    body.as_deref(),
                    Some(format!(r#"{{"code":{code},"message":"{message}"}}"#).as_str()),
                    "?{query}"
                );
            }
            Err(e) => panic!("?{query}: expected an HTTP 400, got {e}"),
            Ok(_) => panic!("?{query}: the upgrade was accepted"),
        }
    }
    assert_eq!(server.io.connection_count(), 0);
    server.stop().await;
}

/// Anything outside the engine path is a JSON 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_json_404() {
    let server = TestServer::start().await;
    for path in [
        "/nope",
        "/",
        "/socket.iox/?EIO=4&transport=polling",
        "/engine.io/?EIO=4&transport=polling",
    ] {
        let res = get(server.addr, path).await;
        assert_eq!(res.status, 404, "{path}");
        assert_eq!(
            res.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        assert_eq!(
            res.text(),
            r#"{"error":"not_found","message":"no such route"}"#,
            "{path}"
        );
    }
    let res = post(server.addr, "/nope", b"4hello").await;
    assert_eq!(res.status, 404);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Handshake contents
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_handshake_has_exact_fields() {
    let server = TestServer::start().await;
    // Unknown query parameters (cache busters) are accepted.
    let res = get(
        server.addr,
        &eio_path("EIO=4&transport=polling&t=NzYxx&foo=bar"),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    let body = res.text();
    assert!(!body.contains('\x1e'), "only the open packet: {body:?}");
    let open = parse_open(body);
    assert_handshake_keys(&open);
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], json!(300));
    assert_eq!(open["pingTimeout"], json!(200));
    assert_eq!(open["maxPayload"], json!(1_000_000));
    assert_eq!(server.io.connection_count(), 1);

    // Every handshake makes a new session with a new sid.
    let (sid2, _) = polling_handshake(server.addr).await;
    assert_ne!(sid2, open["sid"].as_str().unwrap());
    assert_eq!(server.io.connection_count(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshake_has_exact_fields() {
    let server = TestServer::start_with(small_payload_options(1000)).await;
    let (ws, open) = Ws::open(server.addr).await;
    assert_handshake_keys(&open);
    assert_eq!(open["upgrades"], json!([]));
    assert_eq!(open["pingInterval"], json!(30_000));
    assert_eq!(open["pingTimeout"], json!(30_000));
    assert_eq!(open["maxPayload"], json!(1000));
    let (_, polling) = polling_handshake(server.addr).await;
    assert_eq!(polling["maxPayload"], json!(1000));
    assert_eq!(polling["upgrades"], json!(["websocket"]));
    ws.close().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Long-polling
// ---------------------------------------------------------------------------------------

/// POST answers `ok`; queued packets leave in one GET, in order, joined by `\x1e`, with
/// binary attachments as `b<base64>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_payloads_are_framed_exactly() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);

    let res = post(server.addr, &p, b"40").await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    assert_eq!(res.header("content-type"), Some("text/html"));
    let res = get(server.addr, &p).await;
    assert_eq!(res.status, 200);
    let reply = res.text().strip_prefix("40").expect("CONNECT reply");
    let reply: Value = serde_json::from_str(reply).unwrap();
    assert_eq!(reply.as_object().unwrap().len(), 1);
    assert!(reply["sid"].is_string());

    let res = post(
        server.addr,
        &p,
        b"421[\"echo\",\"a\"]\x1e422[\"echo\",\"b\"]\x1e451-3[\"echo\",{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA==",
    )
    .await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    let res = get(server.addr, &p).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.text(),
        "431[\"a\"]\x1e432[\"b\"]\x1e461-3[{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA=="
    );
    server.stop().await;
}

/// A POST body over `maxHttpBufferSize` is 413 and closes the session; exactly the limit
/// is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_post_is_413_and_closes_the_session() {
    let server = TestServer::start_with(small_payload_options(1000)).await;
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);

    let event = |len: usize| {
        let head = "42[\"x\",\"";
        let tail = "\"]";
        let pad = "p".repeat(len - head.len() - tail.len());
        format!("{head}{pad}{tail}").into_bytes()
    };
    let exact = event(1000);
    assert_eq!(exact.len(), 1000);
    let res = post(server.addr, &p, &exact).await;
    assert_eq!(
        (res.status, res.text()),
        (200, "ok"),
        "a body of exactly maxPayload"
    );

    let res = post(server.addr, &p, &event(1001)).await;
    res.assert_engine_error(413, 3, "Payload too large");
    assert_session_gone(&server, &sid).await;

    // Same with a chunked body (no Content-Length to check up front).
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(b"190\r\n");
        chunked.extend_from_slice(&[b'6'; 0x190]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let res = request(
        server.addr,
        "POST",
        &p,
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    )
    .await;
    res.assert_engine_error(413, 3, "Payload too large");
    assert_session_gone(&server, &sid).await;
    server.stop().await;
}

/// An undecodable packet anywhere in a POST body is 400 and closes the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_post_packet_is_400_and_closes_the_session() {
    let server = TestServer::start_with(quiet_options()).await;
    let bodies: &[&[u8]] = &[
        b"abc",
        b"",
        b"6\x1eabc",
        b"6\x1e",
        b"\x1e6",
        b"1x",
        b"5x",
        b"b!!!",
        b"4\xff\xfe",
    ];
    for body in bodies {
        let sid = polling_sid(server.addr).await;
        let p = poll_path(&sid);
        let res = post(server.addr, &p, body).await;
        res.assert_engine_error(400, 3, BAD_REQUEST);
        assert_session_gone(&server, &sid).await;
    }
    assert_eq!(server.io.connection_count(), 0);
    server.stop().await;
}

/// Packets that decode but a client may not send (ping, open, upgrade over polling): the
/// POST is acknowledged (`ok`, as Node does) and the session is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_client_packets_close_the_session() {
    let server = TestServer::start_with(quiet_options()).await;
    for body in ["2", "2probe", "0{}", "5", "6\x1e2"] {
        let sid = polling_sid(server.addr).await;
        let p = poll_path(&sid);
        let res = post(server.addr, &p, body.as_bytes()).await;
        assert_eq!((res.status, res.text()), (200, "ok"), "{body:?}");
        assert_session_gone(&server, &sid).await;
    }
    assert_eq!(server.io.connection_count(), 0);
    server.stop().await;
}

/// A second GET while one is pending breaks the protocol: it gets 400, the pending one
/// is answered with a `close` packet, and the session is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_get_closes_the_session() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);
    let mut first = Pending::get(server.addr, &p).await;
    assert!(
        first.still_pending(Duration::from_millis(100)).await,
        "nothing is queued"
    );
    get(server.addr, &format!("{p}&t=burst"))
        .await
        .assert_engine_error(400, 3, BAD_REQUEST);
    let res = first.response(QUICK).await;
    assert_eq!((res.status, res.text()), (200, "1"));
    assert_session_gone(&server, &sid).await;
    server.stop().await;
}

/// A client that drops its pending GET loses whatever that poll carried, so the session
/// is closed (hyper drops the handler future on EOF).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_poll_closes_the_session() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);
    let mut pending = Pending::get(server.addr, &p).await;
    assert!(pending.still_pending(Duration::from_millis(100)).await);
    assert_eq!(server.io.connection_count(), 1);
    drop(pending);
    wait_closed(&server, &sid).await;
    assert_session_gone(&server, &sid).await;
    server.stop().await;
}

/// The client's `close` packet ends a pending poll with a noop (not `1`) and the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_close_packet_answers_pending_poll_with_noop() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);
    let mut pending = Pending::get(server.addr, &p).await;
    assert!(pending.still_pending(Duration::from_millis(50)).await);
    let res = post(server.addr, &p, b"1").await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    let res = pending.response(QUICK).await;
    assert_eq!((res.status, res.text()), (200, "6"));
    assert_session_gone(&server, &sid).await;
    server.stop().await;
}

/// The client's `close` posted while no poll is pending: the next GET still gets its
/// noop (Node buffers the close until that poll), then the session is gone. The official
/// suites send the GET and the POST at once, so either order must give `6`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_close_packet_before_the_poll_still_answers_it_with_noop() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);
    let res = post(server.addr, &p, b"1").await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    post(server.addr, &p, b"40")
        .await
        .assert_engine_error(400, 1, SID_UNKNOWN);
    let res = get(server.addr, &p).await;
    assert_eq!((res.status, res.text()), (200, "6"));
    assert_session_gone(&server, &sid).await;
    get(server.addr, &p)
        .await
        .assert_engine_error(400, 1, SID_UNKNOWN);
    server.stop().await;
}

/// A polling session the server closes (here: no namespace within connectTimeout) waits
/// for the client's next GET to tell it with `close`; any other request with its sid is
/// refused, and after that GET the session is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closed_polling_session_delivers_close_once() {
    let mut options = quiet_options();
    options.connect_timeout = Duration::from_millis(200);
    let server = TestServer::start_with(options).await;
    let sid = polling_sid(server.addr).await;
    let parsed = Sid::parse(&sid).unwrap();
    let p = poll_path(&sid);
    let io = server.io.clone();
    wait_closed(&server, &sid).await;
    assert!(
        io.engine().get_session(&parsed).is_some(),
        "still registered, waiting for its close poll"
    );
    post(server.addr, &p, b"40")
        .await
        .assert_engine_error(400, 1, SID_UNKNOWN);
    let res = get(server.addr, &p).await;
    assert_eq!((res.status, res.text()), (200, "1"));
    assert_session_gone(&server, &sid).await;

    // With a poll pending when the server closes it, that poll carries the `close`.
    let sid = polling_sid(server.addr).await;
    let pending = Pending::get(server.addr, &poll_path(&sid)).await;
    let res = pending.response(QUICK).await;
    assert_eq!((res.status, res.text()), (200, "1"));
    assert_session_gone(&server, &sid).await;
    server.stop().await;
}

/// Nobody polls a server-closed session: it is unregistered after a short linger (1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closed_polling_session_lingers_briefly() {
    let mut options = quiet_options();
    options.connect_timeout = Duration::from_millis(100);
    let server = TestServer::start_with(options).await;
    let sid = polling_sid(server.addr).await;
    wait_closed(&server, &sid).await;
    let closed_at = Instant::now();
    let io = server.io.clone();
    wait_until(QUICK, "the lingering session is unregistered", || {
        io.connection_count() == 0
    })
    .await;
    let lingered = closed_at.elapsed();
    assert!(
        lingered >= Duration::from_millis(900),
        "lingered {lingered:?}"
    );
    get(server.addr, &poll_path(&sid))
        .await
        .assert_engine_error(400, 1, SID_UNKNOWN);
    server.stop().await;
}

/// The same window for the lingering case: a GET right after the one that delivered the
/// server's `close` must already be 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_close_is_not_delivered_twice() {
    let mut options = quiet_options();
    options.connect_timeout = Duration::from_millis(20);
    let server = TestServer::start_with(options).await;
    for i in 0..300 {
        let sid = polling_sid(server.addr).await;
        let p = poll_path(&sid);
        let res = Pending::get(server.addr, &p).await.response(QUICK).await;
        assert_eq!((res.status, res.text()), (200, "1"), "iteration {i}");
        let res = get(server.addr, &p).await;
        assert_eq!(
            (res.status, res.text()),
            (400, r#"{"code":1,"message":"Session ID unknown"}"#),
            "iteration {i}"
        );
    }
    server.stop().await;
}

/// Stress for the window between "session closed" and "session unregistered": a GET right
/// after a POST that closed the session must already be 400 (never a 200 `1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_session_is_gone_for_the_very_next_request() {
    let server = TestServer::start_with(quiet_options()).await;
    for i in 0..200 {
        let sid = polling_sid(server.addr).await;
        let p = poll_path(&sid);
        post(server.addr, &p, b"abc")
            .await
            .assert_engine_error(400, 3, BAD_REQUEST);
        let res = get(server.addr, &p).await;
        assert_eq!(
            (res.status, res.text()),
            (400, r#"{"code":1,"message":"Session ID unknown"}"#),
            "iteration {i}"
        );
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------------------

/// Ping `2` / pong `3` three times on polling, alone in its poll response; the session
/// survives well past pingInterval + pingTimeout. (A first ping comes in the second half of
/// the interval, each later one at most a twentieth of it early: three take at least
/// 150 + 2 × 285 ms.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_heartbeat_keeps_the_session() {
    let server = TestServer::start().await;
    let started = Instant::now();
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);
    // Join "/" so the 1 s connectTimeout does not end the session.
    assert_eq!(post(server.addr, &p, b"40").await.text(), "ok");
    assert!(get(server.addr, &p).await.text().starts_with("40{\"sid\":"));
    for _ in 0..3 {
        let res = get(server.addr, &p).await;
        assert_eq!((res.status, res.text()), (200, "2"));
        let res = post(server.addr, &p, b"3").await;
        assert_eq!((res.status, res.text()), (200, "ok"));
    }
    assert!(started.elapsed() >= Duration::from_millis(720));
    let res = post(server.addr, &p, b"421[\"echo\",\"alive\"]").await;
    assert_eq!(res.text(), "ok");
    assert_eq!(get(server.addr, &p).await.text(), "431[\"alive\"]");
    server.stop().await;
}

/// No pong: the session is dead at pingInterval + pingTimeout (500 ms; checked at 800 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_ping_timeout_closes_the_session() {
    // The connect timeout would close the session too: keep it out of the way.
    let mut options = crate::common::fast_options();
    options.connect_timeout = Duration::from_secs(30);
    let server = TestServer::start_with(options).await;
    let sid = polling_sid(server.addr).await;
    sleep(Duration::from_millis(800)).await;
    get(server.addr, &poll_path(&sid))
        .await
        .assert_engine_error(400, 1, SID_UNKNOWN);
    assert_eq!(server.io.connection_count(), 0);
    server.stop().await;
}

/// No pong on a WebSocket: the ping arrives, then the server closes the socket, not before
/// the ping's due time + pingTimeout. The first ping is due in the second half of the
/// interval (spread, so that sessions opened together are not pinged together): at 150 ms
/// at the earliest, the close at 350.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_ping_timeout_closes_the_socket() {
    let mut options = crate::common::fast_options();
    options.connect_timeout = Duration::from_secs(30);
    let server = TestServer::start_with(options).await;
    let started = Instant::now();
    let (mut ws, _) = Ws::open(server.addr).await;
    assert_eq!(ws.recv_text(QUICK).await, "2");
    let ping_at = started.elapsed();
    assert!(
        ping_at >= Duration::from_millis(150),
        "ping after {ping_at:?}"
    );
    assert_eq!(ws.expect_closed(QUICK).await, Closed::CloseFrame);
    let closed_at = started.elapsed();
    assert!(
        closed_at >= Duration::from_millis(350),
        "closed after {closed_at:?}"
    );
    let io = server.io.clone();
    wait_until(QUICK, "the session is removed", || {
        io.connection_count() == 0
    })
    .await;
    server.stop().await;
}

/// Answering three pings keeps a WebSocket open past the ping timeout and the connect
/// timeout (it joined `/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pong_keeps_the_socket_open() {
    let server = TestServer::start().await;
    let started = Instant::now();
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_text("40").await;
    assert!(ws.recv_text(QUICK).await.starts_with("40{\"sid\":"));
    for _ in 0..3 {
        assert_eq!(ws.recv_text(QUICK).await, "2");
        ws.send_text("3").await;
    }
    // As on polling: at least 150 + 2 × 285 ms for three pings.
    assert!(started.elapsed() >= Duration::from_millis(720));
    ws.send_text("421[\"echo\",\"alive\"]").await;
    assert_eq!(ws.recv_text(QUICK).await, "431[\"alive\"]");
    assert_eq!(server.io.connection_count(), 1);
    ws.close().await;
    server.stop().await;
}

/// A WebSocket ping from the client (RFC 6455 §5.5.2) is answered with a pong carrying
/// its payload, between the packets the server writes: tungstenite frames the pong, and
/// it goes out through the session's queue like a packet.
#[tokio::test]
async fn a_client_websocket_ping_is_answered_with_a_pong_between_packets() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start_with(quiet_options()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_text("40").await;
    assert!(ws.recv_text(QUICK).await.starts_with("40{"));
    let payload = bytes::Bytes::from_static(b"are you there");
    ws.inner.send(Message::Ping(payload.clone())).await.unwrap();
    ws.send_text("421[\"echo\",\"after the ping\"]").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let next = tokio::time::timeout(QUICK, ws.inner.next())
            .await
            .expect("a frame within QUICK")
            .expect("the socket stays open")
            .unwrap();
        got.push(next);
    }
    assert_eq!(
        got,
        [
            Message::Pong(payload),
            Message::text("431[\"after the ping\"]")
        ]
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// WebSocket limits and packets
// ---------------------------------------------------------------------------------------

/// A message of exactly maxPayload passes; one byte more closes the connection (text or
/// binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_message_over_max_payload_closes() {
    let server = TestServer::start_with(small_payload_options(1000)).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_text("40").await;
    assert!(ws.recv_text(QUICK).await.starts_with("40{"));
    let head = "421[\"echo\",\"";
    let tail = "\"]";
    let pad = "p".repeat(1000 - head.len() - tail.len());
    ws.send_text(&format!("{head}{pad}{tail}")).await;
    assert_eq!(ws.recv_text(QUICK).await, format!("431[\"{pad}\"]"));
    ws.send_text(&format!("{head}{pad}p{tail}")).await;
    assert_eq!(ws.expect_closed(QUICK).await, Closed::CloseFrame);

    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_binary(&[7u8; 1001]).await;
    assert_eq!(ws.expect_closed(QUICK).await, Closed::CloseFrame);
    let io = server.io.clone();
    wait_until(QUICK, "sessions removed", || io.connection_count() == 0).await;
    server.stop().await;
}

/// Invalid Engine.IO packets and the `close` packet end a WebSocket session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_invalid_engine_packets_close() {
    let server = TestServer::start_with(quiet_options()).await;
    for text in ["abc", "", "1x", "7", "b!!!", "2", "0{}", "5"] {
        let (mut ws, _) = Ws::open(server.addr).await;
        ws.send_text(text).await;
        assert_eq!(
            ws.expect_closed(QUICK).await,
            Closed::CloseFrame,
            "after {text:?}"
        );
    }
    // The client's `close` packet: the server ends the connection at once, without a
    // WebSocket close frame (the session already counts as closed by the client).
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_text("1").await;
    assert_eq!(ws.expect_closed(QUICK).await, Closed::Dropped);
    let io = server.io.clone();
    wait_until(QUICK, "sessions removed", || io.connection_count() == 0).await;
    // Noop is harmless.
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_text("6").await;
    ws.send_text("40").await;
    assert!(ws.recv_text(QUICK).await.starts_with("40{"));
    ws.close().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Upgrade
// ---------------------------------------------------------------------------------------

/// Polling session that joined `/` and read its CONNECT reply: nothing is queued.
async fn connected_polling_session(server: &TestServer) -> String {
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);
    assert_eq!(post(server.addr, &p, b"40").await.text(), "ok");
    assert!(get(server.addr, &p).await.text().starts_with("40{\"sid\":"));
    sid
}

fn upgrade_path(sid: &str) -> String {
    eio_path(&format!("EIO=4&transport=websocket&sid={sid}"))
}

/// `2probe` → `3probe` (no open packet), the pending poll ends with `6`, then `5` hands the
/// session to the WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_probe_noop_then_websocket_carries_the_session() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = connected_polling_session(&server).await;
    let p = poll_path(&sid);
    let mut pending = Pending::get(server.addr, &p).await;
    let mut ws = Ws::connect(server.addr, &upgrade_path(&sid)).await;
    assert!(
        pending.still_pending(Duration::from_millis(50)).await,
        "WS open alone ends nothing"
    );
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text(QUICK).await, "3probe");
    let res = pending.response(QUICK).await;
    assert_eq!((res.status, res.text()), (200, "6"));
    ws.send_text("5").await;
    ws.send_text("421[\"echo\",\"over ws\"]").await;
    assert_eq!(ws.recv_text(QUICK).await, "431[\"over ws\"]");
    assert_eq!(server.io.connection_count(), 1);
    ws.close().await;
    server.stop().await;
}

/// A poll arriving during the probe phase is answered with a noop at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_during_probe_gets_noop() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = connected_polling_session(&server).await;
    let mut ws = Ws::connect(server.addr, &upgrade_path(&sid)).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text(QUICK).await, "3probe");
    let res = get(server.addr, &poll_path(&sid)).await;
    assert_eq!((res.status, res.text()), (200, "6"));
    ws.send_text("5").await;
    ws.send_text("421[\"echo\",1]").await;
    assert_eq!(ws.recv_text(QUICK).await, "431[1]");
    ws.close().await;
    server.stop().await;
}

/// After `5`, polling with the same sid is refused (400) but does not close the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_after_upgrade_is_400_and_session_survives() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = connected_polling_session(&server).await;
    let p = poll_path(&sid);
    let mut ws = Ws::connect(server.addr, &upgrade_path(&sid)).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text(QUICK).await, "3probe");
    ws.send_text("5").await;
    // `5` and the next message travel in order: once the echo is back, the upgrade is done.
    ws.send_text("421[\"echo\",\"a\"]").await;
    assert_eq!(ws.recv_text(QUICK).await, "431[\"a\"]");
    get(server.addr, &p)
        .await
        .assert_engine_error(400, 3, BAD_REQUEST);
    post(server.addr, &p, b"421[\"echo\",\"x\"]")
        .await
        .assert_engine_error(400, 3, BAD_REQUEST);
    ws.send_text("422[\"echo\",\"b\"]").await;
    assert_eq!(
        ws.recv_text(QUICK).await,
        "432[\"b\"]",
        "the POST above was not applied"
    );
    assert_eq!(server.io.connection_count(), 1);
    ws.close().await;
    server.stop().await;
}

/// Packets queued on polling and never polled are delivered over the WebSocket after `5`,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_queued_before_upgrade_arrive_on_the_websocket() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = polling_sid(server.addr).await;
    let p = poll_path(&sid);
    assert_eq!(
        post(server.addr, &p, b"40\x1e421[\"echo\",\"q\"]")
            .await
            .text(),
        "ok"
    );
    let mut ws = Ws::connect(server.addr, &upgrade_path(&sid)).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text(QUICK).await, "3probe");
    ws.send_text("5").await;
    assert!(ws.recv_text(QUICK).await.starts_with("40{\"sid\":"));
    assert_eq!(ws.recv_text(QUICK).await, "431[\"q\"]");
    ws.close().await;
    server.stop().await;
}

/// A second WebSocket for a session that already upgraded (or is upgrading, or is itself
/// a WebSocket session) is accepted and closed at once; the original is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_websocket_for_a_session_is_closed() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = connected_polling_session(&server).await;
    let mut ws = Ws::connect(server.addr, &upgrade_path(&sid)).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text(QUICK).await, "3probe");

    // while upgrading (a poll answered `6` proves the server is in the upgrading state;
    // see `websocket_right_after_3probe_is_closed` for the moment just before)
    let res = get(server.addr, &poll_path(&sid)).await;
    assert_eq!((res.status, res.text()), (200, "6"));
    let mut during = Ws::connect(server.addr, &upgrade_path(&sid)).await;
    assert_eq!(during.expect_closed(QUICK).await, Closed::CloseFrame);

    ws.send_text("5").await;
    ws.send_text("421[\"echo\",\"a\"]").await;
    assert_eq!(ws.recv_text(QUICK).await, "431[\"a\"]");

    // after the upgrade
    let mut second = Ws::connect(server.addr, &upgrade_path(&sid)).await;
    assert_eq!(second.expect_closed(QUICK).await, Closed::CloseFrame);
    ws.send_text("422[\"echo\",\"b\"]").await;
    assert_eq!(ws.recv_text(QUICK).await, "432[\"b\"]");

    // a WebSocket session cannot be "upgraded" again
    let (mut native, open) = Ws::open(server.addr).await;
    let native_sid = open["sid"].as_str().unwrap().to_owned();
    let mut dup = Ws::connect(server.addr, &upgrade_path(&native_sid)).await;
    assert_eq!(dup.expect_closed(QUICK).await, Closed::CloseFrame);
    native.send_text("40").await;
    assert!(native.recv_text(QUICK).await.starts_with("40{"));

    assert_eq!(server.io.connection_count(), 2);
    ws.close().await;
    native.close().await;
    server.stop().await;
}

/// Once the client holds `3probe` the upgrade is under way, so another WebSocket for the
/// session must be closed at once (not left waiting for a probe until upgradeTimeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_right_after_3probe_is_closed() {
    let server = TestServer::start_with(quiet_options()).await;
    for i in 0..200 {
        let sid = connected_polling_session(&server).await;
        let mut ws = Ws::connect(server.addr, &upgrade_path(&sid)).await;
        ws.send_text("2probe").await;
        assert_eq!(ws.recv_text(QUICK).await, "3probe");
        let mut during = Ws::connect(server.addr, &upgrade_path(&sid)).await;
        let closed =
            tokio::time::timeout(Duration::from_secs(2), during.expect_closed(QUICK)).await;
        assert_eq!(closed.ok(), Some(Closed::CloseFrame), "iteration {i}");
        ws.close().await;
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------

const ALLOWED: &str = "http://localhost:3000";
const EVIL: &str = "http://evil.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_from_allowed_origin() {
    let server = TestServer::start().await;
    let res = request(
        server.addr,
        "OPTIONS",
        &eio_path("EIO=4&transport=polling"),
        &[
            ("Origin", ALLOWED),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(res.header("access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(res.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(
        res.header("access-control-allow-headers"),
        Some("content-type")
    );
    let vary = res.header_all("vary");
    assert!(vary.contains(&"Origin"), "{vary:?}");
    assert!(res.body.is_empty());
    assert_eq!(
        server.io.connection_count(),
        0,
        "a preflight opens no session"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_foreign_origin_is_403() {
    let server = TestServer::start().await;
    let hs = eio_path("EIO=4&transport=polling");
    for method in ["OPTIONS", "GET", "POST"] {
        let res = request(server.addr, method, &hs, &[("Origin", EVIL)], b"").await;
        res.assert_engine_error(403, 4, "Forbidden");
    }
    // Also for an existing session (cross-site requests cannot ride on a sid).
    let sid = polling_sid(server.addr).await;
    let res = request(
        server.addr,
        "POST",
        &poll_path(&sid),
        &[("Origin", EVIL)],
        b"40",
    )
    .await;
    res.assert_engine_error(403, 4, "Forbidden");
    // and for a WebSocket upgrade (cross-site WebSocket hijacking)
    match Ws::try_connect(
        server.addr,
        &eio_path("EIO=4&transport=websocket"),
        &[("Origin", EVIL)],
    )
    .await
    {
        Err(WsError::Http(res)) => assert_eq!(res.status(), 403),
        Err(e) => panic!("expected 403, got {e}"),
        Ok(_) => panic!("a foreign-origin WebSocket was accepted"),
    }
    assert_eq!(
        server.io.connection_count(),
        1,
        "only the origin-less handshake"
    );
    server.stop().await;
}

/// A refused origin must not be echoed back as allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_403_does_not_allow_the_foreign_origin() {
    let server = TestServer::start().await;
    let res = request(
        server.addr,
        "GET",
        &eio_path("EIO=4&transport=polling"),
        &[("Origin", EVIL)],
        b"",
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(res.header("access-control-allow-origin"), None);
    assert_eq!(res.header("access-control-allow-credentials"), None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_on_requests_from_allowed_origin() {
    let server = TestServer::start().await;
    let origin = [("Origin", ALLOWED)];
    let res = request(
        server.addr,
        "GET",
        &eio_path("EIO=4&transport=polling"),
        &origin,
        b"",
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
    assert!(res.header_all("vary").contains(&"Origin"));
    let sid = parse_open(res.text())["sid"].as_str().unwrap().to_owned();
    let res = request(server.addr, "POST", &poll_path(&sid), &origin, b"40").await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    assert_eq!(res.header("access-control-allow-origin"), Some(ALLOWED));
    // errors carry them too, so the page can read the error
    let res = request(
        server.addr,
        "GET",
        &eio_path("EIO=3&transport=polling"),
        &origin,
        b"",
    )
    .await;
    res.assert_engine_error(400, 5, UNSUPPORTED);
    assert_eq!(res.header("access-control-allow-origin"), Some(ALLOWED));
    // no Origin, no CORS headers
    let res = get(server.addr, &eio_path("EIO=4&transport=polling")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), None);
    assert_eq!(res.header("access-control-allow-credentials"), None);
    // a WebSocket from the allowed origin is fine
    let mut ws = Ws::try_connect(server.addr, &eio_path("EIO=4&transport=websocket"), &origin)
        .await
        .expect("allowed origin upgrades");
    assert!(ws.recv_text(QUICK).await.starts_with("0{"));
    ws.close().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Graceful drain
// ---------------------------------------------------------------------------------------

/// `stop()` answers a pending poll with `close` and sends a close frame on every open
/// WebSocket, then returns once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_pending_polls_and_websockets() {
    let server = TestServer::start_with(quiet_options()).await;
    let addr = server.addr;
    let sid = polling_sid(addr).await;
    let mut pending = Pending::get(addr, &poll_path(&sid)).await;
    assert!(pending.still_pending(Duration::from_millis(50)).await);
    let (mut ws, _) = Ws::open(addr).await;
    ws.send_text("40").await;
    assert!(ws.recv_text(QUICK).await.starts_with("40{"));
    assert_eq!(server.io.connection_count(), 2);

    let io = server.io.clone();
    let stopping = tokio::spawn(server.stop());
    let res = pending.response(QUICK).await;
    assert_eq!((res.status, res.text()), (200, "1"));
    assert_eq!(ws.expect_closed(QUICK).await, Closed::CloseFrame);
    tokio::time::timeout(Duration::from_secs(8), stopping)
        .await
        .expect("stop() returns once drained")
        .unwrap();
    assert_eq!(io.connection_count(), 0);
    assert!(io.engine().is_draining());
    // The listener is gone.
    assert!(
        HttpConn::open(addr).await.is_err(),
        "no new connections after stop"
    );
}

/// A handshake that reaches the engine while it drains is refused with 503, on either
/// transport. The drain is begun on the engine itself: during a real stop a request gets
/// there only when pipelined behind a poll the drain answers, and whether the connection
/// reads it before closing is a race (this test used to try that 30 times).
#[tokio::test]
async fn handshake_during_drain_is_503() {
    let server = TestServer::start_with(quiet_options()).await;
    let sid = polling_sid(server.addr).await;
    let mut pending = Pending::get(server.addr, &poll_path(&sid)).await;
    assert!(pending.still_pending(Duration::from_millis(50)).await);
    server.io.engine().begin_drain();
    let res = pending.response(QUICK).await;
    assert_eq!(
        (res.status, res.text()),
        (200, "1"),
        "the drain closes the session"
    );

    get(server.addr, &eio_path("EIO=4&transport=polling"))
        .await
        .assert_engine_error(503, 3, "Server is shutting down");
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let path = eio_path("EIO=4&transport=websocket");
    request(server.addr, "GET", &path, &upgrade, b"")
        .await
        .assert_engine_error(503, 3, "Server is shutting down");
    server.stop().await;
}
