//! A minimal HTTP/1.1 client (hyper's connection API): keep-alive connections for the
//! loadtest's API requests and the polling transport, and the one-shot GETs of the ops
//! tools (`rtctl health`, the loadtest's /metrics scrape and readiness wait).

use super::{net, ClientError};
use crate::node_addr::NodeAddr;
use crate::sync::MutexExt as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How an HTTP exchange failed after the TCP connection was made. Kept apart so a caller
/// can say which step failed (`rtctl health` tells "no HTTP answer" from "answer cut
/// short").
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("handshake: {0}")]
    Handshake(hyper::Error),
    #[error("bad request: {0}")]
    BadRequest(http::Error),
    /// The request could not be sent or no response head came back.
    #[error("{0}")]
    NoAnswer(hyper::Error),
    #[error("reading the body: {0}")]
    Body(hyper::Error),
    /// The server answered, but not what the protocol expects.
    #[error("{0}")]
    Status(String),
}

/// Sent unless the caller names its own `User-Agent`.
const USER_AGENT: &str = concat!("rtctl-loadtest/", env!("CARGO_PKG_VERSION"));

/// One keep-alive HTTP/1.1 connection.
pub struct HttpConn {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

/// A response: status and whole body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl HttpConn {
    pub async fn open(
        addr: SocketAddr,
        source: Option<IpAddr>,
        authority: &str,
    ) -> Result<HttpConn, ClientError> {
        let stream = net::connect(addr, source).await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(HttpError::Handshake)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(HttpConn {
            sender,
            authority: authority.to_owned(),
        })
    }

    /// Opens a connection to a node named by the operator: resolves its host and tries
    /// each address in turn (as `TcpStream::connect` does), the `Host` header as written.
    pub async fn open_node(node: &NodeAddr) -> Result<HttpConn, ClientError> {
        let addrs = node.resolve().await.map_err(|error| ClientError::Resolve {
            authority: node.authority().to_owned(),
            error,
        })?;
        let mut last = None;
        for addr in addrs {
            match HttpConn::open(addr, None, node.authority()).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Resolve {
            authority: node.authority().to_owned(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        }))
    }

    /// Whether the connection can still carry requests.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(http::HeaderName, String)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.authority);
        if !headers.iter().any(|(n, _)| n == http::header::USER_AGENT) {
            req = req.header(http::header::USER_AGENT, USER_AGENT);
        }
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(body)).map_err(HttpError::BadRequest)?;
        self.sender.ready().await.map_err(HttpError::NoAnswer)?;
        let res = self
            .sender
            .send_request(req)
            .await
            .map_err(HttpError::NoAnswer)?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(HttpError::Body)?
            .to_bytes();
        Ok(Response { status, body })
    }
}

/// Keep-alive connections to one server, opened on demand and reused: concurrent
/// requests each take one (so an open-model request schedule never queues behind a slow
/// response), finished ones come back.
///
/// A connection idle for [`MAX_IDLE`] is not reused: servers close idle keep-alive
/// connections (Node after 5 s), and a request written just as the server closes fails
/// without being safe to retry (a POST).
pub struct HttpPool {
    addr: SocketAddr,
    source: Option<IpAddr>,
    authority: String,
    idle: Mutex<Vec<(HttpConn, Instant)>>,
}

/// How long an idle connection is kept for reuse.
pub const MAX_IDLE: Duration = Duration::from_secs(2);

impl HttpPool {
    pub fn new(addr: SocketAddr, source: Option<IpAddr>, authority: String) -> HttpPool {
        HttpPool {
            addr,
            source,
            authority,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(http::HeaderName, String)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let reused = {
            let mut idle = self.idle.lock_unpoisoned();
            std::iter::from_fn(|| idle.pop())
                .find(|(c, since)| c.is_open() && since.elapsed() < MAX_IDLE)
                .map(|(c, _)| c)
        };
        let mut conn = match reused {
            Some(c) => c,
            None => HttpConn::open(self.addr, self.source, &self.authority).await?,
        };
        let res = conn.request(method, path, headers, body).await?;
        if conn.is_open() {
            self.idle.lock_unpoisoned().push((conn, Instant::now()));
        }
        Ok(res)
    }
}
