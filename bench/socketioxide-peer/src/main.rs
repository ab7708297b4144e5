//! A socketioxide 0.18.9 server for side-by-side benchmarks (scripts/bench-peers).
//!
//! It speaks the `/bench` protocol `rtctl loadtest` drives (realtime's
//! `src/handlers/bench.rs`): `join {room}` → the socket joins `bench:<room>`, ack
//! `{ok: true}`; `publish {room, …}` → `message` with the same argument to `bench:<room>`
//! except the sender, then ack `{ok: true}`; bad arguments → ack `{error: "invalid"}`.
//! No authentication (the loadtest's token is ignored), one process, the local adapter,
//! the heartbeat and payload limit of realtime-server's defaults.
//!
//! `PORT` (default 3200) on 127.0.0.1; prints `listening pid=<pid> port=<port>` once
//! it accepts connections.

use serde_json::{json, Value};
use socketioxide::{
    extract::{AckSender, Data, SocketRef},
    handler::ConnectHandler,
    SocketIo, TransportType,
};
use std::time::Duration;

/// `bench:<room>` for a room name of 1–64 characters.
fn bench_room(v: &Value) -> Option<String> {
    let room = v.get("room")?.as_str()?;
    (!room.is_empty() && room.chars().count() <= 64).then(|| format!("bench:{room}"))
}

async fn on_join(s: SocketRef, Data(arg): Data<Value>, ack: AckSender) {
    match bench_room(&arg) {
        Some(room) => {
            s.join(room);
            ack.send(&json!({ "ok": true })).ok();
        }
        None => {
            ack.send(&json!({ "error": "invalid" })).ok();
        }
    }
}

async fn on_publish(s: SocketRef, Data(arg): Data<Value>, ack: AckSender) {
    match bench_room(&arg) {
        Some(room) => {
            s.to(room).emit("message", &arg).await.ok();
            ack.send(&json!({ "ok": true })).ok();
        }
        None => {
            ack.send(&json!({ "error": "invalid" })).ok();
        }
    }
}

/// Handlers are registered in a connect middleware, which socketioxide awaits before it
/// sends CONNECT: registered in the (spawned) connect handler, a client that emits right
/// after `connect` can arrive first and its `join` is dropped (seen: ~0.1 % at 10k).
async fn register(s: SocketRef) -> Result<(), std::convert::Infallible> {
    s.on("join", on_join);
    s.on("publish", on_publish);
    Ok(())
}

async fn connected(_s: SocketRef) {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3200);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let (layer, io) = SocketIo::builder()
        .ping_interval(Duration::from_millis(25_000))
        .ping_timeout(Duration::from_millis(60_000))
        .max_payload(1_000_000)
        .transports([TransportType::Websocket, TransportType::Polling])
        .build_layer();
    io.ns("/bench", connected.with(register));
    println!(
        "listening pid={} port={}",
        std::process::id(),
        listener.local_addr()?.port()
    );
    axum::serve(listener, axum::Router::new().layer(layer)).await?;
    Ok(())
}
