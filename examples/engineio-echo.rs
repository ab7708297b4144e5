//! Engine.IO only: echoes every message back. The server the official
//! `engine.io-protocol` test suite runs against (127.0.0.1:3000, path `/engine.io/`,
//! pingInterval 300, pingTimeout 200, maxPayload 1000000, CORS `*`).

use realtime::protocol::engineio::Data;
use realtime::transport::handshake::Body;
use realtime::transport::listener::{accept_until, App};
use realtime::transport::{
    CloseReason, Cors, Engine, EngineConfig, EngineHandler, Frame, ReadBody, Session,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

struct Echo;

impl EngineHandler for Echo {
    type Data = ();

    fn new_data(&self) {}

    fn on_message(&self, session: &Arc<Session<()>>, data: Data<'_>) {
        let frame = match data {
            Data::Text(t) => Frame::text(format!("4{t}")),
            Data::Binary(b) => Frame::Binary(b),
        };
        session.send(frame);
    }

    fn on_close(&self, _session: &Arc<Session<()>>, _reason: CloseReason) {}
}

struct EchoApp(Arc<Engine<Echo>>);

impl App for EchoApp {
    async fn call(
        self: Arc<Self>,
        req: http::Request<hyper::body::Incoming>,
        remote: SocketAddr,
    ) -> http::Response<Body> {
        if self.0.matches(req.uri().path()) {
            return self.0.clone().handle(req, remote).await;
        }
        let mut res = http::Response::new(Body::default());
        *res.status_mut() = http::StatusCode::NOT_FOUND;
        res
    }

    fn reads_whole(&self, method: &http::Method, uri: &http::Uri) -> Option<usize> {
        self.0.reads_whole(method, uri.path())
    }

    fn call_read(
        self: Arc<Self>,
        req: http::Request<ReadBody>,
        remote: SocketAddr,
    ) -> impl std::future::Future<Output = http::Response<Body>> + Send {
        self.0.clone().handle(req, remote)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    realtime::telemetry::init_logging("pretty", "info");
    let config = EngineConfig {
        path: "/engine.io/".into(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        cors: Cors::Any,
        ..EngineConfig::default()
    };
    let engine = Engine::new(config, Echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    tracing::info!("engine.io echo server on http://127.0.0.1:3000/engine.io/");
    let header_read_timeout = Duration::from_secs(10);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let connections = accept_until(
        listener,
        Arc::new(EchoApp(engine.clone())),
        shutdown,
        header_read_timeout,
    )
    .await;
    engine.begin_drain();
    let _ = tokio::time::timeout(Duration::from_secs(2), connections.shutdown()).await;
    Ok(())
}
