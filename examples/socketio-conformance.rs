//! The server the official `socket.io-protocol` test suite runs against:
//! 127.0.0.1:3000, path `/socket.io/`, pingInterval 300, pingTimeout 200,
//! maxPayload 1000000, connectTimeout 1000, namespaces `/` and `/custom`.
//! On connect it emits `auth` with the handshake auth; `message` → `message-back` with the
//! same arguments; `message-with-ack` → an ack with its arguments.

use realtime::server::{Io, NamespaceBuilder, ServerOptions};
use realtime::transport::{Cors, EngineConfig};
use std::time::Duration;

fn conformance_namespace(ns: &mut NamespaceBuilder) {
    ns.on_connect(|socket| async move {
        socket.emit("auth", socket.auth());
        Ok(())
    });
    ns.on("message", |socket, event, _ack| async move {
        socket.emit("message-back", event.payload);
    });
    ns.on("message-with-ack", |_socket, event, ack| async move {
        if let Some(ack) = ack {
            ack.send(event.payload);
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    realtime::telemetry::init_logging("pretty", "info");
    let options = ServerOptions {
        engine: EngineConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            max_payload: 1_000_000,
            cors: Cors::Any,
            ..EngineConfig::default()
        },
        connect_timeout: Duration::from_millis(1000),
        shutdown_timeout: Duration::from_secs(2),
        drain_delay: Duration::ZERO,
        recovery: None,
        ..ServerOptions::default()
    };
    let io = Io::builder(options)
        .namespace("/", conformance_namespace)
        .namespace("/custom", conformance_namespace)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    tracing::info!("socket.io conformance server on http://127.0.0.1:3000/socket.io/");
    realtime::server::run(io, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
