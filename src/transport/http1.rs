//! The listener's own HTTP/1.1 loop, for the requests the app answers with their body
//! read whole — Engine.IO long-polling — and hyper for everything else.
//!
//! Why not hyper for all: hyper gives every connection an 8 KiB read buffer and an
//! 8 KiB write buffer for as long as it lives. A long-polling client keeps two
//! keep-alive connections open (the held GET and its POSTs), so hyper alone cost each
//! polling client 32 KiB, three times the whole budget. This loop holds no buffer while
//! a connection waits for its next request or while a poll is held: it waits for the
//! socket to be readable and only then reads, into a buffer sized to what arrived.
//!
//! Whatever it does not take — WebSocket upgrades, the API and every other route,
//! chunked or `Expect: 100-continue` bodies, a head it cannot parse or that is too
//! large — goes to hyper, with the bytes already read put back in front
//! ([`Prefixed`]), for the rest of the connection. So hyper still answers every request
//! this loop would get wrong, with the same errors as before.

use super::body::ReadBody;
use super::handshake::Body;
use super::listener::{serve_with_hyper, App, Stop};
use super::prefixed::Prefixed;
use bytes::BytesMut;
use futures_util::FutureExt as _;
use http::{header, HeaderName, HeaderValue, Method, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::server::conn::http1::Builder;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The stream hyper serves (and, after a WebSocket upgrade, gives back: see `ws_io`).
pub(super) type HandedToHyper = Prefixed<TcpStream>;

/// Largest request head this loop reads; a larger one goes to hyper (which answers it).
const MAX_HEAD: usize = 16 * 1024;
/// Headers this loop parses at most; more go to hyper.
const MAX_HEADERS: usize = 48;
/// Bytes read at once from the stack: a browser's polling request head is 0.5–1 KiB.
const FIRST_READ: usize = 4096;
/// Room reserved at most per read of a large body (it grows as it arrives).
const MAX_BODY_READ: usize = 256 * 1024;

/// Serves one accepted connection until it closes, the server stops, or it is handed to
/// hyper.
///
/// Every connection's task is as large as this future's largest state, and rustc keeps a
/// local's room across an `await` for as long as the local is in scope, moved or not:
/// so each phase below that waits lives in a function of its own, and what crosses a
/// wait is boxed or small. (A held poll waits in `answer_unless_gone`.) Not an
/// `async fn`, whose arguments would be stored twice.
#[allow(clippy::manual_async_fn)] // an `async fn` would store its arguments twice (above)
pub(super) fn serve<A: App>(
    mut stream: TcpStream,
    remote: SocketAddr,
    app: Arc<A>,
    hyper: Arc<Builder>,
    mut stop: Stop,
    header_read_timeout: Duration,
) -> impl Future<Output = ()> + Send {
    async move {
        let mut buf = BytesMut::new();
        loop {
            let request = match next_request(
                &stream,
                &mut buf,
                &*app,
                &mut stop,
                header_read_timeout,
            )
            .await
            {
                Next::Request(request) => request,
                Next::HandOff => {
                    let io: HandedToHyper = Prefixed::new(buf.freeze(), stream);
                    // Boxed: inline, hyper's connection state would size every task of this
                    // loop, the polling connections' too.
                    return Box::pin(serve_with_hyper(io, remote, app, &hyper, stop)).await;
                }
                Next::Closed => return,
            };
            if buf.is_empty() {
                // Nothing pipelined: let the allocation go while the request is answered.
                buf = BytesMut::new();
            }
            let (version, keep_alive) = (request.head.version(), request.keep_alive);
            // Pinned here, not inside `answer_unless_gone`: an argument moved into a pinned
            // local would be stored twice.
            let answer = std::pin::pin!(app.clone().call_read(request.head, remote));
            let Some(res) = answer_unless_gone(&stream, &mut buf, answer).await else {
                return;
            };
            let keep_alive = keep_alive && !stop.is_stopped();
            let out = encode_response(res, version, keep_alive, &http_date());
            if stream.write_all(&out).await.is_err() || !keep_alive {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// The next request, unless the server stops first or its head is too slow to arrive
/// (a slowloris trickle, or a connection opened and left silent): then `Closed`. Only
/// the head is timed, as hyper does: a large body on a slow link may take longer.
async fn next_request<A: App>(
    stream: &TcpStream,
    buf: &mut BytesMut,
    app: &A,
    stop: &mut Stop,
    header_read_timeout: Duration,
) -> Next {
    let head_deadline = tokio::time::Instant::now() + header_read_timeout;
    tokio::select! {
        biased;
        _ = stop.stopped() => Next::Closed,
        next = read_request(stream, buf, app, head_deadline) => next.unwrap_or(Next::Closed),
    }
}

/// What the next bytes on a connection are.
enum Next {
    /// Boxed, so that what the connection's task keeps across waits stays small.
    Request(Box<ReadRequest>),
    HandOff,
    Closed,
}

/// A request this loop answers, read whole.
struct ReadRequest {
    head: http::Request<ReadBody>,
    keep_alive: bool,
}

/// Reads the next request whole (head and body), or decides to hand the connection on.
async fn read_request<A: App>(
    stream: &TcpStream,
    buf: &mut BytesMut,
    app: &A,
    head_deadline: tokio::time::Instant,
) -> io::Result<Next> {
    let plan = loop {
        if !buf.is_empty() {
            match plan(buf, |method, uri| app.reads_whole(method, uri)) {
                Plan::Partial if buf.len() < MAX_HEAD => {}
                Plan::Partial | Plan::HandOff => return Ok(Next::HandOff),
                Plan::Take(plan) => break plan,
            }
        }
        let more = tokio::time::timeout_at(head_deadline, read_more(stream, buf, FIRST_READ));
        // Past the deadline (`Err`) or at the end of the stream: the connection is done.
        if more.await.map_or(Ok(0), |read| read)? == 0 {
            return Ok(Next::Closed);
        }
    };
    let _ = buf.split_to(plan.head_len);
    let body = match plan.body {
        BodyPlan::Read(len) => {
            while buf.len() < len {
                if read_more(stream, buf, len - buf.len()).await? == 0 {
                    return Ok(Next::Closed);
                }
            }
            ReadBody::Read(buf.split_to(len).freeze())
        }
        BodyPlan::TooLarge => ReadBody::TooLarge,
    };
    let keep_alive = plan.keep_alive && body != ReadBody::TooLarge;
    Ok(Next::Request(Box::new(ReadRequest {
        head: plan.head.map(|()| body),
        keep_alive,
    })))
}

/// Waits until the socket is readable, then reads what is there: an idle connection
/// holds no buffer.
async fn read_more(stream: &TcpStream, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match read_now(stream, buf, want) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            read => return read,
        }
    }
}

/// Reads what the socket has now. Small reads go through the stack: readiness can be
/// stale (tokio clears it only on `WouldBlock`), and a buffer reserved before a read
/// that then blocks would stay with the connection for as long as it idles.
fn read_now(stream: &TcpStream, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
    if want > FIRST_READ {
        buf.reserve(want.min(MAX_BODY_READ));
        return stream.try_read_buf(buf);
    }
    let mut chunk = [0u8; FIRST_READ];
    let n = stream.try_read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Runs the app's answer, and gives up on it (dropping it) if the client closes the
/// connection meanwhile: a held poll whose client left ends its session, as in hyper and
/// Node. Bytes of a next request that arrive meanwhile are kept in `buf`.
async fn answer_unless_gone(
    stream: &TcpStream,
    buf: &mut BytesMut,
    mut answer: Pin<&mut impl Future<Output = Response<Body>>>,
) -> Option<Response<Body>> {
    let mut watching = true;
    loop {
        tokio::select! {
            res = answer.as_mut() => return Some(res),
            ready = stream.readable(), if watching => {
                ready.ok()?;
                match read_now(stream, buf, FIRST_READ) {
                    Ok(0) => return None,
                    Ok(_) => watching = false,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return None,
                }
            }
        }
    }
}

/// What to do with the bytes read so far.
enum Plan {
    /// The head is not complete.
    Partial,
    /// Not a request for this loop: hyper gets the connection.
    HandOff,
    /// Boxed: it waits in the connection's task while a body arrives, and inline it would
    /// size every connection's task.
    Take(Box<Taken>),
}

struct Taken {
    head: http::Request<()>,
    head_len: usize,
    body: BodyPlan,
    keep_alive: bool,
}

enum BodyPlan {
    /// `Content-Length` bytes follow the head.
    Read(usize),
    /// Past the app's limit: left unread, and the connection closes after the answer.
    TooLarge,
}

/// Parses the head at the start of `buf`. `limit` is [`App::reads_whole`]. Pure, so the
/// rules for what this loop takes are tested without sockets.
fn plan(buf: &[u8], limit: impl Fn(&Method, &Uri) -> Option<usize>) -> Plan {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Plan::Partial,
        Err(_) => return Plan::HandOff,
    };
    match take(&parsed, head_len, limit) {
        Some(taken) => Plan::Take(Box::new(taken)),
        None => Plan::HandOff,
    }
}

/// The request, when this loop takes it (`None`: hyper should).
fn take(
    parsed: &httparse::Request<'_, '_>,
    head_len: usize,
    limit: impl Fn(&Method, &Uri) -> Option<usize>,
) -> Option<Taken> {
    let method = match parsed.method? {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "OPTIONS" => Method::OPTIONS,
        _ => return None,
    };
    let version = match parsed.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let uri: Uri = parsed.path?.parse().ok()?;
    let limit = limit(&method, &uri)?;
    let mut head = http::Request::builder()
        .method(method)
        .uri(uri)
        .version(version)
        .body(())
        .ok()?;
    let mut content_length = None;
    let mut connection = Connection::default();
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == header::TRANSFER_ENCODING || name == header::EXPECT || name == header::UPGRADE {
            return None;
        }
        if name == header::CONTENT_LENGTH {
            let len = std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()?;
            if content_length
                .replace(len)
                .is_some_and(|first| first != len)
            {
                return None;
            }
        }
        if name == header::CONNECTION {
            connection.read(h.value);
        }
        let value = HeaderValue::from_bytes(h.value).ok()?;
        head.headers_mut().append(name, value);
    }
    let body = match content_length.unwrap_or(0) {
        len if len > limit => BodyPlan::TooLarge,
        len => BodyPlan::Read(len),
    };
    Some(Taken {
        head,
        head_len,
        body,
        keep_alive: connection.keep_alive(version),
    })
}

/// The tokens of a request's `Connection` headers that matter here.
#[derive(Default)]
struct Connection {
    close: bool,
    keep_alive: bool,
}

impl Connection {
    fn read(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            self.close |= token.eq_ignore_ascii_case(b"close");
            self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }

    /// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless asked
    /// to keep it.
    fn keep_alive(&self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep_alive)
    }
}

/// The response, head and body in one buffer: one write, one syscall.
fn encode_response(res: Response<Body>, version: Version, keep_alive: bool, date: &str) -> Vec<u8> {
    let (parts, body) = res.into_parts();
    let body = match body.collect().now_or_never() {
        Some(Ok(collected)) => collected.to_bytes(),
        Some(Err(never)) => match never {},
        None => unreachable!("a `Full` body is ready at once"),
    };
    let mut out = Vec::with_capacity(160 + body.len());
    let proto: &[u8] = if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    };
    out.extend_from_slice(proto);
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::CONNECTION || name == header::DATE {
            continue;
        }
        push_header(&mut out, name.as_str(), value.as_bytes());
    }
    if parts.status != http::StatusCode::NO_CONTENT {
        push_header(
            &mut out,
            "content-length",
            body.len().to_string().as_bytes(),
        );
    }
    match (keep_alive, version) {
        (false, _) => push_header(&mut out, "connection", b"close"),
        (true, Version::HTTP_10) => push_header(&mut out, "connection", b"keep-alive"),
        (true, _) => {}
    }
    push_header(&mut out, "date", date.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `Date` header's value, formatted once a second per thread (as hyper does).
fn http_date() -> String {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        text.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_only(method: &Method, uri: &Uri) -> Option<usize> {
        let ours = [Method::GET, Method::POST, Method::OPTIONS].contains(method);
        (ours && uri.path().starts_with("/socket.io/")).then_some(100)
    }

    fn taken(raw: &str) -> Box<Taken> {
        match plan(raw.as_bytes(), engine_only) {
            Plan::Take(t) => t,
            Plan::Partial => panic!("partial: {raw:?}"),
            Plan::HandOff => panic!("handed off: {raw:?}"),
        }
    }

    fn handed_off(raw: &str) -> bool {
        matches!(plan(raw.as_bytes(), engine_only), Plan::HandOff)
    }

    const POLL: &str = "GET /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\n\r\n";

    #[test]
    fn a_poll_is_taken_with_its_headers_and_the_connection_kept() {
        let t = taken(POLL);
        assert_eq!(t.head_len, POLL.len());
        assert_eq!(t.head.method(), Method::GET);
        assert_eq!(
            t.head.uri().query(),
            Some("EIO=4&transport=polling&sid=abc")
        );
        assert_eq!(t.head.headers()["cookie"], "a=b");
        assert!(t.keep_alive);
        assert!(matches!(t.body, BodyPlan::Read(0)));
    }

    #[test]
    fn a_post_reads_its_content_length_and_a_larger_one_is_left_unread() {
        let t = taken("POST /socket.io/?sid=a HTTP/1.1\r\nContent-Length: 6\r\n\r\n4hello");
        assert!(matches!(t.body, BodyPlan::Read(6)));
        let big = taken("POST /socket.io/?sid=a HTTP/1.1\r\nContent-Length: 101\r\n\r\n");
        assert!(matches!(big.body, BodyPlan::TooLarge));
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        assert!(matches!(
            plan(&POLL.as_bytes()[..30], engine_only),
            Plan::Partial
        ));
    }

    #[test]
    fn what_hyper_should_answer_is_handed_off() {
        for raw in [
            // other routes, and methods the engine does not take here
            "GET /api/health HTTP/1.1\r\n\r\n",
            "PUT /socket.io/?sid=a HTTP/1.1\r\n\r\n",
            "HEAD /socket.io/ HTTP/1.1\r\n\r\n",
            // WebSocket upgrades, streamed or negotiated bodies
            "GET /socket.io/?transport=websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "POST /socket.io/?sid=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /socket.io/?sid=a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            // conflicting or malformed lengths, malformed heads
            "POST /socket.io/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST /socket.io/ HTTP/1.1\r\nContent-Length: five\r\n\r\n",
            "GET /socket.io/ HTTP/1.1\r\nBad Header\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ] {
            assert!(handed_off(raw), "{raw:?}");
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert!(handed_off(&format!(
            "GET /socket.io/ HTTP/1.1\r\n{many}\r\n"
        )));
    }

    #[test]
    fn connection_tokens_decide_keep_alive_per_version() {
        let close = taken("GET /socket.io/ HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(!close.keep_alive);
        assert!(!taken("GET /socket.io/ HTTP/1.0\r\n\r\n").keep_alive);
        assert!(taken("GET /socket.io/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn a_response_is_one_buffer_with_its_length_and_connection_headers() {
        let text_response = |body: &'static [u8]| {
            let mut res = Response::new(Body::from(body));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            res.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
            res
        };
        let text = |res, version, keep_alive| {
            let date = "Sun, 06 Dec 2026 20:00:00 GMT";
            String::from_utf8(encode_response(res, version, keep_alive, date)).unwrap()
        };
        assert_eq!(
            text(text_response(b"ok"), Version::HTTP_11, true),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\
             date: Sun, 06 Dec 2026 20:00:00 GMT\r\n\r\nok"
        );
        let closing = text(text_response(b""), Version::HTTP_10, false);
        assert!(closing.starts_with("HTTP/1.0 200 OK\r\n"), "{closing}");
        assert!(closing.contains("\r\nconnection: close\r\n"), "{closing}");
        let mut no_content = Response::new(Body::default());
        *no_content.status_mut() = http::StatusCode::NO_CONTENT;
        let no_content = text(no_content, Version::HTTP_11, true);
        assert!(!no_content.contains("content-length"), "{no_content}");
    }

    #[test]
    fn the_date_is_an_http_date() {
        let date = http_date();
        assert!(httpdate::parse_http_date(&date).is_ok(), "{date}");
    }
}
