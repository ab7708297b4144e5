//! A raw Socket.IO client over WebSocket on one namespace, signed in as a user with a
//! freshly minted NextAuth v4 session cookie (what a browser tab of the Next.js app
//! sends). Answers Engine.IO pings while it waits.

#![allow(dead_code)]

use super::raw::{self, Ws};
use realtime::auth::{mint, session_claims, TokenFormat};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio_tungstenite::tungstenite::Message;

pub struct SioClient {
    pub ws: Ws,
    pub nsp: String,
    /// This socket's id (from the CONNECT answer).
    pub sid: String,
    next_id: u64,
}

/// A NextAuth v4 session cookie for `user`, valid for an hour.
pub fn session_cookie(secret: &str, user: &str) -> String {
    let claims = session_claims(
        user,
        Some("Test"),
        None,
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    format!(
        "next-auth.session-token={}",
        mint(secret, TokenFormat::V4, &claims)
    )
}

impl SioClient {
    /// Connects to `nsp` on `addr` as `user`; panics unless the namespace accepts.
    pub async fn connect(addr: SocketAddr, secret: &str, user: &str, nsp: &str) -> SioClient {
        Self::connect_with_cookie(addr, &session_cookie(secret, user), nsp).await
    }

    /// Connects to `nsp` on `addr` sending `cookie` (a test that needs the token itself
    /// mints it); panics unless the namespace accepts.
    pub async fn connect_with_cookie(addr: SocketAddr, cookie: &str, nsp: &str) -> SioClient {
        let ws = Ws::try_connect(
            addr,
            &raw::eio_path("EIO=4&transport=websocket"),
            &[("cookie", cookie)],
        )
        .await
        .unwrap_or_else(|e| panic!("websocket upgrade: {e}"));
        let mut c = SioClient {
            ws,
            nsp: nsp.to_owned(),
            sid: String::new(),
            next_id: 1,
        };
        c.packet("0").await;
        let head = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        c.ws.send_text(&format!("40{head}")).await;
        let reply = c.packet(&format!("40{head}")).await;
        let v: Value = serde_json::from_str(&reply[2 + head.len()..])
            .unwrap_or_else(|e| panic!("CONNECT answer {reply:?}: {e}"));
        c.sid = v["sid"].as_str().expect("sid").to_owned();
        c
    }

    fn head(&self) -> String {
        if self.nsp == "/" {
            String::new()
        } else {
            format!("{},", self.nsp)
        }
    }

    /// The next text packet starting with `prefix` within `within`, answering pings and
    /// skipping other packets on the way.
    pub async fn packet_within(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no packet {prefix:?} within {within:?}");
            match self.ws.recv(left).await {
                Some(Message::Text(t)) if t.as_str() == "2" => self.ws.send_text("3").await,
                Some(Message::Text(t)) if t.as_str().starts_with(prefix) => {
                    return t.as_str().to_owned()
                }
                Some(_) => {}
                None => panic!("connection closed while waiting for {prefix:?}"),
            }
        }
    }

    pub async fn packet(&mut self, prefix: &str) -> String {
        self.packet_within(prefix, raw::QUICK).await
    }

    /// Emits `event` with `arg` and an ack id; returns the ack's first argument.
    pub async fn call(&mut self, event: &str, arg: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let head = self.head();
        self.ws
            .send_text(&format!("42{head}{id}{}", json!([event, arg])))
            .await;
        let prefix = format!("43{head}{id}");
        let ack = self.packet(&prefix).await;
        let args: Value = serde_json::from_str(&ack[prefix.len()..]).unwrap();
        args[0].clone()
    }

    /// Waits up to `within` for event `name`; returns its first argument.
    pub async fn event_within(&mut self, name: &str, within: Duration) -> Value {
        let prefix = format!("42{}[\"{name}\"", self.head());
        let text = self.packet_within(&prefix, within).await;
        let data: Value = serde_json::from_str(&text[2 + self.head().len()..]).unwrap();
        data[1].clone()
    }

    /// Like [`SioClient::event_within`], `None` when it does not come in time.
    pub async fn try_event_within(&mut self, name: &str, within: Duration) -> Option<Value> {
        let prefix = format!("42{}[\"{name}\"", self.head());
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // (recv panics at its own deadline; this one gives up quietly first.)
            let Ok(next) = tokio::time::timeout(left, self.ws.recv(left * 2)).await else {
                return None;
            };
            match next {
                Some(Message::Text(t)) if t.as_str() == "2" => self.ws.send_text("3").await,
                Some(Message::Text(t)) if t.as_str().starts_with(&prefix) => {
                    let data: Value =
                        serde_json::from_str(&t.as_str()[2 + self.head().len()..]).unwrap();
                    return Some(data[1].clone());
                }
                Some(_) => {}
                None => return None,
            }
        }
    }

    pub async fn event(&mut self, name: &str) -> Value {
        self.event_within(name, raw::QUICK).await
    }

    /// Asserts that event `name` does not arrive within `d` (pings are answered).
    pub async fn expect_no_event(&mut self, name: &str, d: Duration) {
        let needle = format!("[\"{name}\"");
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.ws.recv(d * 2)).await {
            match next {
                Some(Message::Text(t)) if t.as_str() == "2" => self.ws.send_text("3").await,
                Some(Message::Text(t)) => assert!(!t.as_str().contains(&needle), "unexpected {t}"),
                Some(_) => {}
                None => panic!("connection closed while expecting no {name}"),
            }
        }
    }

    /// Closes the WebSocket (the server sees the tab go away).
    pub async fn close(self) {
        self.ws.close().await;
    }
}
