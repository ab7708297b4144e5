//! The HTTP long-polling transport (for small runs: two HTTP connections per client, a
//! GET always waiting and POSTs for what the client sends).
//!
//! The POSTs go through a pool, as a browser's do: a client sends rarely (a pong every
//! ping interval, a message now and then), and servers close an idle keep-alive
//! connection (Node after 5 s). Written on one kept connection, the first POST after such
//! a pause found it closed ("channel closed") and the client was dropped; the pool opens
//! a fresh connection instead of reusing one idle for longer than `http::MAX_IDLE`.

use super::http::{HttpConn, HttpError, HttpPool};
use super::{ClientError, Target, Transport};
use bytes::Bytes;
use std::collections::VecDeque;

/// Engine.IO's separator between packets in one polling body.
const RECORD_SEPARATOR: char = '\u{1e}';

pub struct PollingReader {
    conn: HttpConn,
    path: String,
    queue: VecDeque<String>,
    closed: bool,
}

pub struct PollingWriter {
    pool: HttpPool,
    path: String,
}

pub async fn connect(
    target: &Target,
) -> Result<(PollingReader, PollingWriter, serde_json::Value), ClientError> {
    let mut conn = HttpConn::open(target.addr, target.source, &target.authority).await?;
    let first = get(&mut conn, &target.endpoint(Transport::Polling, None)).await?;
    let mut packets = split(&first);
    let open = packets
        .pop_front()
        .ok_or_else(|| ClientError::Protocol("empty handshake response".into()))?;
    let open = super::frames::parse_open(&open)?;
    let sid = open["sid"]
        .as_str()
        .ok_or_else(|| ClientError::Protocol("open packet without sid".into()))?;
    let path = target.endpoint(Transport::Polling, Some(sid));
    let pool = HttpPool::new(target.addr, target.source, target.authority.clone());
    Ok((
        PollingReader {
            conn,
            path: path.clone(),
            queue: packets,
            closed: false,
        },
        PollingWriter { pool, path },
        open,
    ))
}

async fn get(conn: &mut HttpConn, path: &str) -> Result<String, ClientError> {
    let res = conn
        .request(http::Method::GET, path, &[], Bytes::new())
        .await?;
    if res.status != 200 {
        return Err(HttpError::Status(format!("poll answered HTTP {}", res.status)).into());
    }
    String::from_utf8(res.body.to_vec())
        .map_err(|_| ClientError::Protocol("poll body is not UTF-8".into()))
}

fn split(body: &str) -> VecDeque<String> {
    body.split(RECORD_SEPARATOR)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl PollingReader {
    pub async fn next(&mut self) -> Option<Result<String, ClientError>> {
        loop {
            if let Some(p) = self.queue.pop_front() {
                if p == "1" {
                    self.closed = true;
                }
                return Some(Ok(p));
            }
            if self.closed {
                return None;
            }
            match get(&mut self.conn, &self.path).await {
                Ok(body) => self.queue = split(&body),
                // A session the server ended answers 400: the connection is over.
                Err(ClientError::Http(_)) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl PollingWriter {
    pub async fn send(&mut self, packet: String) -> Result<(), ClientError> {
        let res = self
            .pool
            .request(
                http::Method::POST,
                &self.path,
                &[(
                    http::header::CONTENT_TYPE,
                    "text/plain;charset=UTF-8".to_owned(),
                )],
                Bytes::from(packet),
            )
            .await?;
        if res.status != 200 {
            return Err(HttpError::Status(format!("POST answered HTTP {}", res.status)).into());
        }
        Ok(())
    }

    pub async fn close(&mut self) {
        let _ = self.send("1".to_owned()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_payload_into_packets() {
        let q = split("2\u{1e}42/bench,[\"message\",{}]");
        assert_eq!(
            q,
            vec!["2".to_owned(), "42/bench,[\"message\",{}]".to_owned()]
        );
        assert!(split("").is_empty());
    }
}
