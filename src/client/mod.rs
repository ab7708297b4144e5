//! A lean Socket.IO v5 client over Engine.IO v4 (WebSocket, or HTTP long-polling for
//! small runs), built for `rtctl loadtest`: one TCP connection per client, buffers of a
//! few hundred bytes, no task of its own — the caller drives the [`Reader`] and shares
//! the [`Writer`], so 100,000 of them fit in a few hundred MiB.
//!
//! The client speaks Engine.IO packets as text (`"2"`, `"42/bench,[...]"`); [`frames`]
//! builds and parses the Socket.IO layer on top with the crate's pure codecs. A client
//! that reconnects does it as socket.io-client 4.8: [`backoff`] paces the attempts and
//! [`recovery`] keeps each namespace socket's pid and last offset to recover it.

pub mod backoff;
pub mod frames;
pub mod http;
pub mod net;
pub mod polling;
pub mod recovery;
pub mod ws;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Why a client could not connect or lost its connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("cannot resolve {authority:?}: {error}")]
    Resolve {
        authority: String,
        error: std::io::Error,
    },
    // Not a `#[source]`: the text is in the message once.
    #[error("HTTP: {0}")]
    Http(http::HttpError),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("the connection was closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl From<http::HttpError> for ClientError {
    fn from(e: http::HttpError) -> Self {
        ClientError::Http(e)
    }
}

/// Which Engine.IO transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Websocket,
    Polling,
}

/// Where a client connects: the server's address, the `Host` header, the Engine.IO path,
/// and the local address to bind (one of 127.0.0.1-127.0.0.N to multiply the ephemeral
/// ports available towards one server).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: String,
    pub path: String,
    pub source: Option<IpAddr>,
}

impl Target {
    /// The Engine.IO endpoint with the query for `transport` (and `sid` for polling).
    pub fn endpoint(&self, transport: Transport, sid: Option<&str>) -> String {
        let t = match transport {
            Transport::Websocket => "websocket",
            Transport::Polling => "polling",
        };
        match sid {
            Some(sid) => format!("{}?EIO=4&transport={t}&sid={sid}", self.path),
            None => format!("{}?EIO=4&transport={t}", self.path),
        }
    }
}

/// The reading half of a connection: yields Engine.IO text packets (`"2"`, `"40/x,…"`).
pub enum Reader {
    Ws(ws::WsReader),
    Polling(polling::PollingReader),
}

/// The writing half: sends Engine.IO text packets.
pub enum Writer {
    Ws(ws::WsWriter),
    Polling(polling::PollingWriter),
}

impl Reader {
    /// The next Engine.IO packet; `None` when the connection is closed.
    pub async fn next(&mut self) -> Option<Result<String, ClientError>> {
        match self {
            Reader::Ws(r) => r.next().await,
            Reader::Polling(r) => r.next().await,
        }
    }
}

impl Writer {
    pub async fn send(&mut self, packet: String) -> Result<(), ClientError> {
        match self {
            Writer::Ws(w) => w.send(packet).await,
            Writer::Polling(w) => w.send(packet).await,
        }
    }

    /// Closes the connection (best effort).
    pub async fn close(&mut self) {
        match self {
            Writer::Ws(w) => w.close().await,
            Writer::Polling(w) => w.close().await,
        }
    }
}

/// Opens an Engine.IO connection: returns the two halves and the open packet's JSON.
pub async fn connect(
    target: &Target,
    transport: Transport,
    timeout: Duration,
) -> Result<(Reader, Writer, serde_json::Value), ClientError> {
    let open = async {
        match transport {
            Transport::Websocket => {
                let (r, w, open) = ws::connect(target).await?;
                Ok((Reader::Ws(r), Writer::Ws(w), open))
            }
            Transport::Polling => {
                let (r, w, open) = polling::connect(target).await?;
                Ok((Reader::Polling(r), Writer::Polling(w), open))
            }
        }
    };
    tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}
