//! Shared test harness: an in-process server with handlers the tests drive.

#![allow(dead_code)]

use realtime::server::{Io, NamespaceBuilder, Payload, ServerOptions};
use realtime::transport::{Cors, EngineConfig};
use serde_json::{json, Value};
use serving::Serving;
use std::net::SocketAddr;
use std::time::Duration;

/// Options for a test server: fast heartbeats so timeouts are observable in tests.
pub fn fast_options() -> ServerOptions {
    ServerOptions {
        engine: EngineConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            cors: Cors::from_list(&["http://localhost:3000".to_owned()]),
            ..EngineConfig::default()
        },
        connect_timeout: Duration::from_millis(1000),
        shutdown_timeout: Duration::from_secs(5),
        drain_delay: Duration::ZERO,
        recovery: None,
        ..ServerOptions::default()
    }
}

/// The handlers every test namespace gets:
/// - `echo` → acks with its own arguments (binary included);
/// - `message` → emits `message-back` with the same arguments;
/// - `join` (room) / `leave` (room) → acks `true` once done;
/// - `to-room` (room, event, ...args) → broadcasts `event` with args to room, except sender;
/// - `ask` (event, ...args) → the server emits `event` with ack to the client (timeout
///   1 s) and acks back `{ "answer": [...] }` or `{ "error": "..." }`;
/// - `rooms` → acks the socket's rooms;
/// - `set-data` (value) / `get-data` → sets `socket.data` / acks it;
/// - `disconnect-me` → the server disconnects the socket.
pub fn test_namespace(ns: &mut NamespaceBuilder) {
    ns.on("echo", |_s, e, ack| async move {
        if let Some(ack) = ack {
            ack.send(e.payload);
        }
    });
    ns.on("message", |s, e, _| async move {
        s.emit("message-back", e.payload);
    });
    ns.on("set-data", |s, e, ack| async move {
        s.set_data(e.args().first().cloned().unwrap_or(Value::Null));
        if let Some(ack) = ack {
            ack.send(json!(true));
        }
    });
    ns.on("get-data", |s, _e, ack| async move {
        if let Some(ack) = ack {
            ack.send(s.data());
        }
    });
    ns.on("join", |s, e, ack| async move {
        if let Some(room) = e.args().first().and_then(Value::as_str) {
            s.join(room);
        }
        if let Some(ack) = ack {
            ack.send(json!(true));
        }
    });
    ns.on("leave", |s, e, ack| async move {
        if let Some(room) = e.args().first().and_then(Value::as_str) {
            s.leave(room);
        }
        if let Some(ack) = ack {
            ack.send(json!(true));
        }
    });
    ns.on("to-room", |s, e, ack| async move {
        let mut args = e.payload.args.clone();
        if args.len() < 2 {
            return;
        }
        let room = args.remove(0);
        let event = args.remove(0);
        let (Some(room), Some(event)) = (room.as_str(), event.as_str()) else {
            return;
        };
        let n = s.to(room.to_owned()).emit(
            event,
            Payload {
                args,
                binary: e.payload.binary.clone(),
            },
        );
        if let Some(ack) = ack {
            ack.send(json!(n));
        }
    });
    ns.on("ask", |s, e, ack| async move {
        let mut args = e.payload.args.clone();
        let Some(Value::String(event)) = (!args.is_empty()).then(|| args.remove(0)) else {
            return;
        };
        let reply = match s
            .emit_with_ack(
                &event,
                Payload {
                    args,
                    binary: e.payload.binary.clone(),
                },
                Duration::from_secs(1),
            )
            .await
        {
            Ok(answer) => json!({ "answer": answer.args }),
            Err(err) => json!({ "error": err.to_string() }),
        };
        if let Some(ack) = ack {
            ack.send(reply);
        }
    });
    ns.on("rooms", |s, _e, ack| async move {
        let rooms: Vec<String> = s.rooms().iter().map(|r| r.to_string()).collect();
        if let Some(ack) = ack {
            ack.send(json!(rooms));
        }
    });
    ns.on("disconnect-me", |s, _e, _| async move {
        s.disconnect(false);
    });
}

/// Builds an [`Io`] with `/`, `/chat` and `/notifications`, all with [`test_namespace`].
pub fn test_io(options: ServerOptions) -> Io {
    Io::builder(options)
        .namespace("/", test_namespace)
        .namespace("/chat", test_namespace)
        .namespace("/notifications", test_namespace)
        .build()
}

/// A server running in this process on a loopback port; [`TestServer::stop`] fails the
/// test when the shutdown hangs, panics or leaves connections open (see [`Serving`]).
pub struct TestServer {
    pub addr: SocketAddr,
    pub io: Io,
    serving: Serving<()>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(fast_options()).await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        Self::start_io(test_io(options), "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts `io` on `addr` (port 0 for any free port).
    pub async fn start_io(io: Io, addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind test server");
        Self::serve(io, listener)
    }

    fn serve(io: Io, listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let serving = Serving::spawn(format!("test server on {addr}"), io.clone(), {
            let io = io.clone();
            move |shutdown| realtime::server::run(io, listener, shutdown)
        });
        TestServer { addr, io, serving }
    }

    /// Starts `io` again on the address a stopped server had. Tests run in parallel and
    /// pick free ports the same way, so another one may hold the port for a while
    /// (a Redis it started, a client's source port): retry for up to 30 s.
    pub async fn restart_on(io: Io, addr: SocketAddr) -> Self {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => return Self::serve(io, listener),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{addr} stayed in use for 30 s: cannot restart the server there"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown; returns once the server did, and fails the test if it did not
    /// within [`serving::STOP_DEADLINE`], panicked, or left connections open.
    pub async fn stop(self) {
        self.serving.stop().await
    }
}

/// A loopback port nothing listens on right now (the OS picks it; the listener closes at
/// once, so the caller binds it a moment later — the usual test race, on loopback only).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

pub mod app;
pub mod drill;
pub mod link;
pub mod nginx;
pub mod node;
pub mod nodejs;
pub mod postgres;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod redis_cluster;
pub mod sentinel;
pub mod serving;
pub mod sio;
