//! The Socket.IO server: namespaces, sockets, rooms, acks, middleware and graceful drain.
//!
//! ```no_run
//! # async fn demo(listener: tokio::net::TcpListener) {
//! use realtime::server::{Io, ServerOptions};
//! let io = Io::builder(ServerOptions::default())
//!     .namespace("/chat", |ns| {
//!         ns.on("ping", |socket, event, ack| async move {
//!             if let Some(ack) = ack {
//!                 ack.send(event.payload);
//!             }
//!         });
//!     })
//!     .build();
//! realtime::server::run(io, listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # }
//! ```

pub mod adapter;
mod broadcast;
mod connection;
mod event_budget;
pub mod extensions;
mod kept_json;
mod local_sockets;
mod namespace;
pub mod observer;
mod payload;
mod socket;

pub use broadcast::BroadcastOperator;
pub use connection::{ConnectionState, SocketIoHandler};
pub use event_budget::EventBudget;
pub use namespace::{BoxFuture, ConnectRefusal, Namespace, NamespaceBuilder};
pub use payload::{encode_frames, Event, Payload};
pub use socket::{AckError, AckSender, DisconnectReason, Socket, SocketRef};

use crate::transport::handshake::Body;
use crate::transport::listener::{accept_until, App};
use crate::transport::{Engine, EngineConfig};
pub use adapter::RecoveryOptions;
use adapter::{Adapter, AdapterFactory, LocalAdapter, RecoveryLog, SocketEmitter};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A room name. Shared, because one name is stored once per member in the index.
pub type Room = Arc<str>;

/// Everything the server needs besides its handlers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub engine: EngineConfig,
    /// A client must connect to a namespace within this time (`connectTimeout`).
    pub connect_timeout: Duration,
    /// How long a graceful shutdown may take before the process exits anyway.
    pub shutdown_timeout: Duration,
    /// On shutdown, how long to keep serving after readiness turned 503 and before
    /// closing connections, so load balancers stop sending new clients first.
    pub drain_delay: Duration,
    /// Connection state recovery (Node's `connectionStateRecovery`): off when None.
    pub recovery: Option<RecoveryOptions>,
    /// How long a client may take to send a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Events one socket may send per window (`None`: no budget).
    pub event_budget: Option<EventBudget>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            engine: EngineConfig::default(),
            connect_timeout: Duration::from_millis(45_000),
            shutdown_timeout: Duration::from_millis(10_000),
            drain_delay: Duration::ZERO,
            recovery: None,
            header_read_timeout: Duration::from_secs(60),
            event_budget: None,
        }
    }
}

/// Builds an [`Io`]: declare namespaces and their handlers, then `build()`.
pub struct IoBuilder {
    options: ServerOptions,
    namespaces: HashMap<String, NamespaceBuilder>,
    adapter: Option<Arc<dyn AdapterFactory>>,
}

impl IoBuilder {
    /// Declares (or extends) namespace `name`.
    pub fn namespace(mut self, name: &str, f: impl FnOnce(&mut NamespaceBuilder)) -> Self {
        f(self.namespaces.entry(name.to_owned()).or_default());
        self
    }

    /// Sets how namespaces reach the cluster (default: a [`LocalAdapter`] each, for one
    /// node).
    pub fn adapter(mut self, factory: Arc<dyn AdapterFactory>) -> Self {
        self.adapter = Some(factory);
        self
    }

    pub fn build(self) -> Io {
        let factory = self.adapter;
        let recovery = self.options.recovery;
        let namespaces = self
            .namespaces
            .into_iter()
            .map(|(name, b)| {
                // The adapter holds a weak reference back to its namespace.
                let ns = Arc::new_cyclic(|weak: &std::sync::Weak<Namespace>| {
                    let sockets: std::sync::Weak<dyn SocketEmitter> = weak.clone();
                    let adapter: Arc<dyn Adapter> = match (&factory, recovery) {
                        (Some(factory), _) => factory.create(sockets, &name),
                        (None, None) => Arc::new(LocalAdapter::new(sockets)),
                        (None, Some(options)) => Arc::new(
                            LocalAdapter::new(sockets).with_recovery(RecoveryLog::new(options)),
                        ),
                    };
                    b.build(name.clone(), adapter, recovery)
                });
                (name, ns)
            })
            .collect();
        let handler = SocketIoHandler {
            namespaces,
            connect_timeout: self.options.connect_timeout,
            max_payload: self.options.engine.max_payload,
            event_budget: self.options.event_budget.filter(EventBudget::enabled),
        };
        Io {
            engine: Engine::new(self.options.engine.clone(), handler),
            shutdown_timeout: self.options.shutdown_timeout,
            drain_delay: self.options.drain_delay,
            header_read_timeout: self.options.header_read_timeout,
            shutting_down: Arc::default(),
        }
    }
}

/// A handle to the running Socket.IO server; cheap to clone.
#[derive(Clone)]
pub struct Io {
    engine: Arc<Engine<SocketIoHandler>>,
    shutdown_timeout: Duration,
    drain_delay: Duration,
    header_read_timeout: Duration,
    shutting_down: Arc<AtomicBool>,
}

impl Io {
    pub fn builder(options: ServerOptions) -> IoBuilder {
        IoBuilder {
            options,
            namespaces: HashMap::new(),
            adapter: None,
        }
    }

    /// The namespace `name`, if declared.
    pub fn of(&self, name: &str) -> Option<Arc<Namespace>> {
        self.engine.handler.namespaces.get(name).cloned()
    }

    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.engine.handler.namespaces.values().cloned().collect()
    }

    pub fn engine(&self) -> &Arc<Engine<SocketIoHandler>> {
        &self.engine
    }

    /// Open Engine.IO sessions (connections) on this node.
    pub fn connection_count(&self) -> usize {
        self.engine.session_count()
    }

    /// True from the moment shutdown begins (readiness answers 503), before the drain
    /// delay and the closing of connections.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// Answers HTTP requests outside the engine path (the API, health, metrics).
pub type Routes = Arc<
    dyn Fn(Request<Incoming>, SocketAddr) -> namespace::BoxFuture<Response<Body>> + Send + Sync,
>;

/// Routes HTTP requests: the engine path to Engine.IO, anything else to `routes` or 404.
struct HttpApp {
    io: Io,
    routes: Option<Routes>,
}

impl App for HttpApp {
    async fn call(self: Arc<Self>, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        if self.io.engine.matches(req.uri().path()) {
            return self.io.engine.clone().handle(req, remote).await;
        }
        match &self.routes {
            Some(routes) => routes(req, remote).await,
            None => not_found(),
        }
    }

    fn reads_whole(&self, method: &http::Method, uri: &http::Uri) -> Option<usize> {
        self.io.engine.reads_whole(method, uri.path())
    }

    fn call_read(
        self: Arc<Self>,
        req: Request<crate::transport::ReadBody>,
        remote: SocketAddr,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        // Not an `async fn`: the request would be stored in the future beside what
        // `handle` returns, for as long as a poll is held.
        self.io.engine.clone().handle(req, remote)
    }
}

/// The JSON 404 for paths nobody serves.
pub fn not_found() -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(
        br#"{"error":"not_found","message":"no such route"}"#,
    )));
    *res.status_mut() = StatusCode::NOT_FOUND;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Serves until `shutdown` resolves, then drains: stops accepting, closes every session
/// (clients reconnect to another node), and returns once they are gone or the shutdown
/// timeout passed.
pub async fn run(io: Io, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()>) {
    run_with_routes(io, None, listener, shutdown).await
}

/// [`run`], with `routes` answering the HTTP paths outside the engine.
pub async fn run_with_routes(
    io: Io,
    routes: Option<Routes>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let app = Arc::new(HttpApp {
        io: io.clone(),
        routes,
    });
    // Readiness turns 503 first; we keep serving through the drain delay, then close.
    let shutdown = async {
        shutdown.await;
        io.shutting_down.store(true, Ordering::Release);
        if !io.drain_delay.is_zero() {
            tracing::info!(
                drain_delay_ms = io.drain_delay.as_millis() as u64,
                "shutting down: readiness is 503; serving on until the drain delay ends"
            );
            tokio::time::sleep(io.drain_delay).await;
        }
    };
    let connections = accept_until(listener, app, shutdown, io.header_read_timeout).await;
    let open = io.connection_count();
    tracing::info!(
        connections = open,
        "shutting down: closing every connection"
    );
    io.engine.begin_drain();
    let drained = tokio::time::timeout(io.shutdown_timeout, async {
        connections.shutdown().await;
        while io.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            remaining = io.connection_count(),
            timeout_ms = io.shutdown_timeout.as_millis() as u64,
            "shutdown timeout reached with connections still open"
        ),
    }
    flush_adapters(&io).await;
    // Then leave the cluster, as Node's `io.close()` closes each namespace's adapter.
    for ns in io.namespaces() {
        ns.adapter().close();
    }
}

/// How long a stopping node waits for its adapters' writes after the drain.
const ADAPTER_FLUSH: Duration = Duration::from_secs(5);

/// Waits for what the adapters still have on the way to the cluster — above all the
/// sessions the drain just persisted, without which no client of this node could
/// recover elsewhere.
async fn flush_adapters(io: &Io) {
    let adapters: Vec<_> = io
        .namespaces()
        .iter()
        .map(|ns| ns.adapter().clone())
        .collect();
    let all = futures_util::future::join_all(adapters.iter().map(|a| a.flush()));
    if tokio::time::timeout(ADAPTER_FLUSH, all).await.is_err() {
        tracing::warn!(
            timeout_ms = ADAPTER_FLUSH.as_millis() as u64,
            "stopping with cluster writes still pending (is Redis down?): some sessions may not be recoverable"
        );
    }
}
