//! A minimal HTTP/1.1 client (hyper's connection API): keep-alive connections for the
//! loadtest's API requests and the polling transport.

use super::{net, ClientError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
            .map_err(|e| ClientError::Http(format!("handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(HttpConn {
            sender,
            authority: authority.to_owned(),
        })
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
            .header(http::header::HOST, &self.authority)
            .header(
                http::header::USER_AGENT,
                concat!("rtctl-loadtest/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Http(format!("bad request: {e}")))?;
        self.sender
            .ready()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let res = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(format!("reading the body: {e}")))?
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
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
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
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((conn, Instant::now()));
        }
        Ok(res)
    }
}
