//! Raw protocol clients for the wire-level tests: a tiny HTTP/1.1 client over a plain
//! `TcpStream` (so tests control every byte, keep requests pending, pipeline or abandon
//! them) and a thin WebSocket wrapper over tokio-tungstenite with exact receive helpers.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use realtime::server::ServerOptions;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for anything that should happen "at once" (generous: noisy 2-core CI).
pub const QUICK: Duration = Duration::from_secs(5);

/// `fast_options()` with heartbeats and the connect timeout pushed far away, for tests
/// where a ping `2` or a timeout in the middle of an exact exchange would only be noise.
pub fn quiet_options() -> ServerOptions {
    let mut o = super::fast_options();
    o.engine.ping_interval = Duration::from_secs(30);
    o.engine.ping_timeout = Duration::from_secs(30);
    o.connect_timeout = Duration::from_secs(30);
    o
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the headers named `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("response body is UTF-8")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }

    /// Asserts an Engine.IO error response: `status`, `Content-Type: application/json`
    /// and exactly `{"code":code,"message":message}`.
    #[track_caller]
    pub fn assert_engine_error(&self, status: u16, code: u8, message: &str) {
        assert_eq!(
            self.status,
            status,
            "status; body {:?}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(
            self.text(),
            format!(r#"{{"code":{code},"message":"{message}"}}"#),
            "error body"
        );
    }
}

/// One HTTP/1.1 connection. Responses are read in order; leftover bytes are kept, so
/// pipelined requests work.
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self::from_stream(TcpStream::connect(addr).await?))
    }

    /// A connection the caller opened (e.g. from a chosen source address).
    pub fn from_stream(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes one request. `Host` and `Content-Length` (when there is a body or the
    /// method is POST/PUT) are added unless given.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<()> {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str("Host: 127.0.0.1\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let has_len = headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        });
        if !has_len && (!body.is_empty() || method == "POST" || method == "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn read_exact_buf(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one response (status line, headers, body by Content-Length, chunked, or to
    /// EOF). An `UnexpectedEof` error means the server closed without (a full) response.
    pub async fn read_response(&mut self) -> std::io::Result<HttpResponse> {
        let status_line = self.read_line().await?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        assert!(
            version.starts_with("HTTP/1."),
            "status line {status_line:?}"
        );
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("header line {line:?}"));
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let mut res = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(res);
        }
        if let Some(len) = res.header("content-length") {
            let len: usize = len.parse().expect("content-length");
            res.body = self.read_exact_buf(len).await?;
        } else if res
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size_line = self.read_line().await?;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                if size == 0 {
                    // trailers until the empty line
                    while !self.read_line().await?.is_empty() {}
                    break;
                }
                let chunk = self.read_exact_buf(size + 2).await?;
                res.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            loop {
                match self.fill().await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            res.body = std::mem::take(&mut self.buf);
        }
        Ok(res)
    }

    /// Waits until the server closes the connection (EOF or reset), discarding any bytes.
    pub async fn wait_closed(&mut self) {
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// One request on a fresh connection; panics on I/O errors or after [`QUICK`].
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    timeout(QUICK, async {
        let mut conn = HttpConn::open(addr).await.expect("connect");
        conn.send(method, path, headers, body)
            .await
            .expect("send request");
        conn.read_response().await.expect("read response")
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: no response within {QUICK:?}"))
}

pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    request(addr, "GET", path, &[], b"").await
}

pub async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> HttpResponse {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "text/plain;charset=UTF-8")],
        body,
    )
    .await
}

/// A request sent on its own connection whose response is awaited later (a long poll).
pub struct Pending {
    conn: HttpConn,
}

impl Pending {
    pub async fn send(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Self {
        let mut conn = HttpConn::open(addr).await.expect("connect");
        conn.send(method, path, headers, body)
            .await
            .expect("send request");
        Pending { conn }
    }

    pub async fn get(addr: SocketAddr, path: &str) -> Self {
        Self::send(addr, "GET", path, &[], b"").await
    }

    /// The response, within `within`.
    pub async fn response(mut self, within: Duration) -> HttpResponse {
        timeout(within, self.conn.read_response())
            .await
            .unwrap_or_else(|_| panic!("no response within {within:?}"))
            .expect("read response")
    }

    /// True if no response byte arrived within `d` (the request is still held).
    pub async fn still_pending(&mut self, d: Duration) -> bool {
        if !self.conn.buf.is_empty() {
            return false;
        }
        timeout(d, self.conn.fill()).await.is_err()
    }
}

/// The Engine.IO path of the test server (`/socket.io/`), with a query.
pub fn eio_path(query: &str) -> String {
    format!("/socket.io/?{query}")
}

/// `/socket.io/?EIO=4&transport=polling&sid=SID`
pub fn poll_path(sid: &str) -> String {
    eio_path(&format!("EIO=4&transport=polling&sid={sid}"))
}

/// The parsed open packet of a handshake (`0{...}`): panics unless it is one.
pub fn parse_open(packet: &str) -> Value {
    let json = packet
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("not an open packet: {packet:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("open packet {packet:?}: {e}"))
}

/// A polling handshake; returns the sid and the open packet's JSON.
pub async fn polling_handshake(addr: SocketAddr) -> (String, Value) {
    let res = get(addr, &eio_path("EIO=4&transport=polling")).await;
    assert_eq!(res.status, 200, "handshake: {:?}", res.text());
    let open = parse_open(res.text());
    let sid = open["sid"].as_str().expect("sid is a string").to_owned();
    (sid, open)
}

/// A polling handshake; returns only the sid.
pub async fn polling_sid(addr: SocketAddr) -> String {
    polling_handshake(addr).await.0
}

// ---------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a WebSocket ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The server sent a close frame.
    CloseFrame,
    /// The TCP connection ended (or reset) without a close frame.
    Dropped,
}

/// A WebSocket client with exact, timed receive helpers.
pub struct Ws {
    pub inner: WsStream,
}

impl Ws {
    /// Connects to `ws://addr{path}`; panics unless the upgrade succeeds.
    pub async fn connect(addr: SocketAddr, path: &str) -> Ws {
        Self::try_connect(addr, path, &[])
            .await
            .unwrap_or_else(|e| panic!("websocket {path}: {e}"))
    }

    /// Connects with extra request headers; the error is tungstenite's (e.g. `Http` for a
    /// refused upgrade).
    pub async fn try_connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, WsError> {
        let mut req = format!("ws://{addr}{path}").into_client_request()?;
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let (inner, _res) = timeout(QUICK, tokio_tungstenite::connect_async(req))
            .await
            .unwrap_or_else(|_| panic!("websocket {path}: no upgrade within {QUICK:?}"))?;
        Ok(Ws { inner })
    }

    /// A fresh Socket.IO-path WebSocket session: connects and reads the open packet.
    /// Returns the socket and the open packet's JSON.
    pub async fn open(addr: SocketAddr) -> (Ws, Value) {
        let mut ws = Self::connect(addr, &eio_path("EIO=4&transport=websocket")).await;
        let open = parse_open(&ws.recv_text(QUICK).await);
        (ws, open)
    }

    pub async fn send_text(&mut self, text: &str) {
        self.inner
            .send(Message::text(text.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("send {text:?}: {e}"));
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.inner
            .send(Message::Binary(Bytes::copy_from_slice(bytes)))
            .await
            .unwrap_or_else(|e| panic!("send binary: {e}"));
    }

    /// Sends, ignoring errors (the server may already have closed).
    pub async fn try_send(&mut self, msg: Message) -> bool {
        self.inner.send(msg).await.is_ok()
    }

    /// The next data message (text or binary), skipping WebSocket-level ping/pong frames.
    /// `None` if the connection closed; panics after `within`.
    pub async fn recv(&mut self, within: Duration) -> Option<Message> {
        let deadline = Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .unwrap_or_else(|_| panic!("no websocket message within {within:?}"));
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(m)) => return Some(m),
            }
        }
    }

    /// The next message, which must be a text frame.
    pub async fn recv_text(&mut self, within: Duration) -> String {
        match self.recv(within).await {
            Some(Message::Text(t)) => t.as_str().to_owned(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next message, which must be a binary frame.
    pub async fn recv_binary(&mut self, within: Duration) -> Vec<u8> {
        match self.recv(within).await {
            Some(Message::Binary(b)) => b.to_vec(),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// Asserts that nothing but the end of the connection arrives within `within`:
    /// any data frame in between fails the test. Returns how it ended.
    pub async fn expect_closed(&mut self, within: Duration) -> Closed {
        let deadline = Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .unwrap_or_else(|_| panic!("websocket still open after {within:?}"));
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) => return Closed::CloseFrame,
                None | Some(Err(_)) => return Closed::Dropped,
                Some(Ok(m)) => panic!("expected the connection to close, got {m:?}"),
            }
        }
    }

    /// Asserts that no message (and no close) arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(next) = timeout(d, self.inner.next()).await {
            panic!("expected silence for {d:?}, got {next:?}");
        }
    }

    /// Sends a close frame and drops the socket.
    pub async fn close(mut self) {
        let _ = timeout(Duration::from_secs(1), self.inner.close(None)).await;
    }
}

/// Waits until `cond` holds, polling every 10 ms; panics with `what` after `within`.
pub async fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
