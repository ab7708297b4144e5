//! The listener's own HTTP/1.1 loop, which answers long-polling requests without hyper
//! (`transport::http1`), and its hand-off to hyper for everything else, over raw TCP:
//! keep-alive across both, pipelining, HTTP/1.0 and `Connection: close`, a head that
//! arrives in pieces, a body past the limit. The engine's own rules over polling are in
//! `engine.rs`; these run through this loop too.

use crate::common::raw::{eio_path, parse_open, poll_path, quiet_options, HttpConn, QUICK};
use crate::common::TestServer;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server writes until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(QUICK, stream.read_to_end(&mut all))
        .await
        .expect("the server closes the connection after its answer")
        .expect("read");
    String::from_utf8_lossy(&all).into_owned()
}

/// A keep-alive connection and the polling session its first request opened.
async fn polling_session(addr: std::net::SocketAddr) -> (HttpConn, String) {
    let mut conn = HttpConn::open(addr).await.unwrap();
    conn.send("GET", &eio_path("EIO=4&transport=polling"), &[], b"")
        .await
        .unwrap();
    let open = conn.read_response().await.unwrap();
    let sid = parse_open(open.text())["sid"].as_str().unwrap().to_owned();
    (conn, sid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keep_alive_connection_carries_polls_other_routes_and_polls_again() {
    let server = TestServer::start_with(quiet_options()).await;
    let mut conn = HttpConn::open(server.addr).await.unwrap();
    let mut exchange = async |method: &str, path: &str, body: &[u8]| {
        conn.send(method, path, &[], body).await.unwrap();
        tokio::time::timeout(QUICK, conn.read_response())
            .await
            .expect("answered")
            .expect("a whole response on the same connection")
    };

    let open = exchange("GET", &eio_path("EIO=4&transport=polling"), b"").await;
    assert_eq!(open.status, 200);
    assert!(open.header("date").is_some(), "every answer carries a Date");
    let sid = parse_open(open.text())["sid"].as_str().unwrap().to_owned();
    let p = poll_path(&sid);
    let sent = exchange("POST", &p, b"40").await;
    assert_eq!((sent.status, sent.text()), (200, "ok"));
    let polled = exchange("GET", &p, b"").await;
    assert_eq!(
        polled.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert!(polled.text().starts_with("40{"), "{:?}", polled.text());

    // A route outside the engine: hyper answers it, on the same connection ...
    let other = exchange("GET", "/no-such-route", b"").await;
    assert_eq!(other.status, 404);
    assert_eq!(other.json()["error"], "not_found");
    // ... and keeps serving the session's requests on it afterwards.
    let noop = exchange("POST", &p, b"6").await;
    assert_eq!((noop.status, noop.text()), (200, "ok"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_polling_requests_are_answered_in_order() {
    let server = TestServer::start_with(quiet_options()).await;
    let (mut conn, sid) = polling_session(server.addr).await;
    let p = poll_path(&sid);
    // Both requests are out before either answer is read.
    conn.send("POST", &p, &[], b"40").await.unwrap();
    conn.send("GET", &p, &[], b"").await.unwrap();
    let sent = tokio::time::timeout(QUICK, conn.read_response())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((sent.status, sent.text()), (200, "ok"));
    let polled = tokio::time::timeout(QUICK, conn.read_response())
        .await
        .unwrap()
        .unwrap();
    assert!(polled.text().starts_with("40{"), "{:?}", polled.text());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_and_connection_close_end_the_connection_after_the_answer() {
    let server = TestServer::start_with(quiet_options()).await;
    let handshake = eio_path("EIO=4&transport=polling");

    let mut old = TcpStream::connect(server.addr).await.unwrap();
    old.write_all(format!("GET {handshake} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answer = read_to_close(&mut old).await;
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.contains("\r\n\r\n0{\"sid\":"), "{answer}");

    let mut closing = TcpStream::connect(server.addr).await.unwrap();
    let head = format!("GET {handshake} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    closing.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut closing).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_arrives_in_pieces_is_answered_once_whole() {
    let server = TestServer::start_with(quiet_options()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        eio_path("EIO=4&transport=polling")
    );
    for piece in head.as_bytes().chunks(17) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("0{\"sid\":"), "{answer}");
    server.stop().await;
}

/// A `Content-Length` past `maxHttpBufferSize` is refused from the head: 413 before the
/// body is sent, the session closed, the connection closed (its body is never read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_limit_is_refused_from_its_head_and_the_connection_closed() {
    let mut options = quiet_options();
    options.engine.max_payload = 1000;
    let server = TestServer::start_with(options).await;
    let (mut conn, sid) = polling_session(server.addr).await;

    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        poll_path(&sid)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with(r#"{"code":3,"message":"Payload too large"}"#),
        "{answer}"
    );

    conn.send("GET", &poll_path(&sid), &[], b"").await.unwrap();
    let gone = conn.read_response().await.unwrap();
    gone.assert_engine_error(400, 1, "Session ID unknown");
    server.stop().await;
}

/// The header-read timeout times the head only, as in hyper: a body slower than it (a
/// large POST on a slow link) is still read, while a silent connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_head_is_timed_not_the_body() {
    let mut options = quiet_options();
    options.header_read_timeout = Duration::from_millis(500);
    let server = TestServer::start_with(options).await;
    let (_conn, sid) = polling_session(server.addr).await;

    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
        poll_path(&sid)
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    slow.write_all(b"6").await.unwrap();
    let answer = read_to_close(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");

    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        read_to_close(&mut silent).await,
        "",
        "closed without an answer"
    );
    server.stop().await;
}
