//! The Engine.IO server: the only place that touches hyper and tokio-tungstenite.
//!
//! [`Engine`] owns the sessions and routes each HTTP request under the engine path to
//! long-polling (`polling`) or WebSocket (`websocket`). The layer above (Socket.IO, in
//! `server/`) plugs in through [`EngineHandler`] and only ever sees [`Session`]s and
//! message data. One task per engine (`housekeeper`) runs every session's heartbeat
//! (`heartbeat`) and, when a session closes for any reason, removes it and tells the
//! handler exactly once — so cleanup never depends on which transport noticed first.

pub mod body;
pub mod handshake;
mod heartbeat;
mod housekeeper;
mod http1;
pub mod ip_limit;
pub mod listener;
mod polling;
mod prefixed;
pub mod session;
mod websocket;
mod ws_io;
mod ws_write;

pub use body::{ReadBody, RequestBody};
pub use handshake::{Body, Cors, EngineError, RequestInfo};
pub use session::{CloseReason, Frame, Session};

use crate::protocol::engineio::{Data, Handshake, Packet, TransportKind};
use crate::sid::Sid;
use crate::sync::{MutexExt as _, RwLockExt as _};
use http::{Method, Request, Response};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// Where [`Engine::dispatch`] sent a request.
enum Routed<D, B> {
    Answered(Response<Body>),
    /// A poll to hold until something is queued.
    Poll(Arc<Session<D>>),
    /// A POST whose body is still to read.
    Post(Arc<Session<D>>, B),
}

/// What a request waits for, once routed.
enum Wait<D, B> {
    Poll(Arc<Session<D>>),
    Post(Arc<Session<D>>, B),
}

/// Engine.IO settings (the transport half of the server configuration, `config::Config`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Path prefix, always starting and ending with `/` (default `/socket.io/`).
    pub path: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub upgrade_timeout: Duration,
    /// Largest accepted message or poll body (`maxHttpBufferSize`).
    pub max_payload: usize,
    pub transports: Vec<TransportKind>,
    pub cors: Cors,
    /// Bytes a session may have queued before it is closed as a slow consumer.
    pub max_queued_bytes: usize,
    /// WebSocket read buffer per connection: small, because most connections are idle.
    pub ws_read_buffer: usize,
    /// Sessions one client address may hold at once (0: no limit).
    pub max_sessions_per_ip: u32,
    /// Proxies whose `X-Forwarded-For` names the client's address.
    pub trusted_proxies: Vec<ip_limit::Cidr>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(60_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            transports: vec![TransportKind::Polling, TransportKind::Websocket],
            cors: Cors::Any,
            max_queued_bytes: 16 << 20,
            ws_read_buffer: 512,
            max_sessions_per_ip: 0,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The layer above the engine (Socket.IO, or the echo example).
pub trait EngineHandler: Send + Sync + 'static {
    /// Per-session state the handler keeps inside the [`Session`].
    type Data: Send + Sync + 'static;

    fn new_data(&self) -> Self::Data;

    /// A session opened (its handshake is already queued).
    fn on_open(&self, _session: &Arc<Session<Self::Data>>) {}

    /// A `message` packet arrived. Called in order, one at a time per session.
    fn on_message(&self, session: &Arc<Session<Self::Data>>, data: Data<'_>);

    /// The session closed; called exactly once.
    fn on_close(&self, session: &Arc<Session<Self::Data>>, reason: CloseReason);

    /// The session moved from polling to WebSocket.
    fn on_upgrade(&self, _session: &Arc<Session<Self::Data>>) {}
}

/// The Engine.IO server: sessions, routing and lifecycle.
pub struct Engine<H: EngineHandler> {
    pub config: EngineConfig,
    pub handler: H,
    sessions: RwLock<HashMap<Sid, Arc<Session<H::Data>>>>,
    draining: AtomicBool,
    ip_limiter: Arc<ip_limit::IpLimiter>,
    heartbeats: Arc<heartbeat::Heartbeats>,
    /// Each session's copy tells the housekeeper it closed.
    on_closed: mpsc::UnboundedSender<Sid>,
    /// The housekeeper's end, until the first session starts it (inside the runtime).
    housekeeper: Mutex<Option<mpsc::UnboundedReceiver<Sid>>>,
}

impl<H: EngineHandler> Engine<H> {
    pub fn new(config: EngineConfig, handler: H) -> Arc<Self> {
        crate::metrics::declare_engine_errors(&EngineError::ALL.map(|e| e.reason()));
        let (on_closed, closed) = mpsc::unbounded_channel();
        Arc::new(Engine {
            ip_limiter: ip_limit::IpLimiter::new(config.max_sessions_per_ip),
            heartbeats: Arc::new(heartbeat::Heartbeats::new(
                config.ping_interval,
                config.ping_timeout,
            )),
            config,
            handler,
            sessions: RwLock::default(),
            draining: AtomicBool::new(false),
            on_closed,
            housekeeper: Mutex::new(Some(closed)),
        })
    }

    /// Whether `path` belongs to the engine.
    pub fn matches(&self, path: &str) -> bool {
        path.starts_with(&self.config.path) || path == self.config.path.trim_end_matches('/')
    }

    /// The body limit of a request the engine answers with its body read whole (every
    /// request under its path with one of the methods it takes; the listener leaves
    /// WebSocket upgrades to hyper), `None` for the others.
    pub fn reads_whole(&self, method: &Method, path: &str) -> Option<usize> {
        let ours = *method == Method::GET || *method == Method::POST || *method == Method::OPTIONS;
        (ours && self.matches(path)).then_some(self.config.max_payload)
    }

    pub fn session_count(&self) -> usize {
        self.read_sessions().len()
    }

    pub fn get_session(&self, sid: &Sid) -> Option<Arc<Session<H::Data>>> {
        self.read_sessions().get(sid).cloned()
    }

    fn read_sessions(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Sid, Arc<Session<H::Data>>>> {
        self.sessions.read_unpoisoned()
    }

    fn write_sessions(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<Sid, Arc<Session<H::Data>>>> {
        self.sessions.write_unpoisoned()
    }

    /// Stops taking new sessions and closes every open one with `server shutting down`,
    /// so clients reconnect (to another node behind the load balancer).
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
        let sessions: Vec<_> = self.read_sessions().values().cloned().collect();
        for s in sessions {
            s.close(CloseReason::ServerShutdown);
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Handles one HTTP request under the engine path.
    ///
    /// Not an `async fn`: everything but a held poll or a POST's body is decided before
    /// the returned future, so what a waiting request keeps (every open poll holds this
    /// future) is its session, its `Origin` and the wait itself, not the request.
    pub fn handle<B: RequestBody>(
        self: Arc<Self>,
        req: Request<B>,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send {
        use futures_util::future::{ready, Either};
        if req.method() == Method::OPTIONS {
            return Either::Left(ready(self.config.cors.preflight(req.headers())));
        }
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        let routed = if self.config.cors.allows_origin(origin.as_ref()) {
            self.dispatch(req, remote)
        } else {
            Err(EngineError::Forbidden)
        };
        let finish = move |engine: &Self, result: Result<Response<Body>, EngineError>| {
            let mut res = result.unwrap_or_else(|e| {
                crate::metrics::engine_error(e.reason());
                e.response()
            });
            engine.config.cors.apply(origin.as_ref(), &mut res);
            res
        };
        let wait = match routed {
            Ok(Routed::Poll(session)) => Wait::Poll(session),
            Ok(Routed::Post(session, body)) => Wait::Post(session, body),
            Ok(Routed::Answered(res)) => return Either::Left(ready(finish(&self, Ok(res)))),
            Err(e) => return Either::Left(ready(finish(&self, Err(e)))),
        };
        Either::Right(async move {
            let result = match wait {
                Wait::Poll(session) => polling::poll(&self, &session).await,
                Wait::Post(session, body) => Ok(polling::post(&self, &session, body).await),
            };
            finish(&self, result)
        })
    }

    fn dispatch<B: RequestBody>(
        self: &Arc<Self>,
        req: Request<B>,
        remote: SocketAddr,
    ) -> Result<Routed<H::Data, B>, EngineError> {
        let query = handshake::EngineQuery::parse(req.uri().query());
        let transport = query.transport(&self.config.transports)?;
        let upgrade = handshake::is_websocket_upgrade(req.method(), req.headers());

        let Some(sid) = query.sid.as_deref() else {
            // A new session: the handshake is a GET, over the transport it names.
            if req.method() != Method::GET {
                return Err(EngineError::BadHandshakeMethod);
            }
            query.check_protocol()?;
            if (transport == TransportKind::Websocket) != upgrade {
                return Err(EngineError::BadRequest);
            }
            if self.is_draining() {
                return Err(EngineError::Draining);
            }
            let client_ip =
                ip_limit::client_ip(remote, req.headers(), &self.config.trusted_proxies);
            let slot = self
                .ip_limiter
                .admit(client_ip)
                .ok_or(EngineError::TooManySessions)?;
            let info = RequestInfo {
                transport,
                headers: handshake::retained_headers(req.headers()),
                query: query.user_params(),
                remote_addr: remote,
                client_ip,
                slot,
                issued: SystemTime::now(),
            };
            return match transport {
                TransportKind::Polling => Ok(Routed::Answered(self.open_polling(info))),
                TransportKind::Websocket => {
                    websocket::accept(self.clone(), req, None, info).map(Routed::Answered)
                }
            };
        };

        let session = Sid::parse(sid)
            .and_then(|sid| self.get_session(&sid))
            .ok_or(EngineError::UnknownSid)?;
        // A closed session is gone for the client, except a polling one that still owes
        // the client the answer to its next poll (see the housekeeper).
        if let Some(reason) = session.close_reason() {
            let awaiting_close_poll = reason.owes_close_poll()
                && transport == TransportKind::Polling
                && req.method() == Method::GET
                && !session.close_was_delivered();
            if !awaiting_close_poll {
                return Err(EngineError::UnknownSid);
            }
        }
        match (transport, upgrade) {
            (TransportKind::Websocket, true) => {
                if session.transport() != TransportKind::Polling || !session.claim_upgrade() {
                    return websocket::accept_and_close(req).map(Routed::Answered);
                }
                let info = session.request.clone();
                websocket::accept(self.clone(), req, Some(session), info).map(Routed::Answered)
            }
            (TransportKind::Polling, false) if session.transport() == TransportKind::Polling => {
                match *req.method() {
                    Method::GET => Ok(Routed::Poll(session)),
                    Method::POST => Ok(Routed::Post(session, req.into_body())),
                    _ => Err(EngineError::BadRequest),
                }
            }
            _ => Err(EngineError::BadRequest),
        }
    }

    fn handshake_for(&self, sid: Sid, transport: TransportKind) -> String {
        let upgrades = match transport {
            TransportKind::Polling
                if self.config.transports.contains(&TransportKind::Websocket) =>
            {
                vec!["websocket".to_owned()]
            }
            _ => vec![],
        };
        Handshake {
            sid: sid.to_string(),
            upgrades,
            ping_interval: self.config.ping_interval.as_millis() as u64,
            ping_timeout: self.config.ping_timeout.as_millis() as u64,
            max_payload: self.config.max_payload as u64,
        }
        .encode()
    }

    /// Creates and registers a session, schedules its first ping, and tells the handler.
    fn create_session(self: &Arc<Self>, info: RequestInfo) -> Arc<Session<H::Data>> {
        let opened = tokio::time::Instant::now();
        self.start_housekeeper();
        let sid = Sid::new();
        let transport = info.transport;
        let session = Arc::new(Session::new(
            sid,
            info,
            self.handler.new_data(),
            self.config.max_queued_bytes,
            self.on_closed.clone(),
        ));
        session.send(Frame::text(self.handshake_for(sid, transport)));
        self.write_sessions().insert(sid, session.clone());
        crate::metrics::engine_opened();
        self.heartbeats.start(&session, opened);
        self.handler.on_open(&session);
        session
    }

    /// Spawns the housekeeper the first time a session opens: `Engine::new` may run
    /// outside the runtime, a session never does.
    fn start_housekeeper(self: &Arc<Self>) {
        let mut slot = self.housekeeper.lock_unpoisoned();
        if let Some(closed) = slot.take() {
            tokio::spawn(housekeeper::run(Arc::downgrade(self), closed));
        }
    }

    fn open_polling(self: &Arc<Self>, info: RequestInfo) -> Response<Body> {
        let session = self.create_session(info);
        // The handshake is answered at once, not held like a poll.
        match session.drain() {
            session::Drain::Frames(frames) => polling::payload_response(&frames),
            _ => EngineError::BadRequest.response(),
        }
    }

    /// Called by the housekeeper once the session is closed and its close was delivered.
    fn unregister(&self, session: &Arc<Session<H::Data>>) {
        self.write_sessions().remove(&session.sid);
    }

    /// Applies one decoded packet from the client, whatever the transport.
    fn on_packet(&self, session: &Arc<Session<H::Data>>, packet: Packet<'_>) {
        match packet {
            Packet::Message(data) => {
                crate::metrics::packets_in(1);
                self.handler.on_message(session, data)
            }
            Packet::Pong(_) => self.heartbeats.pong(session),
            Packet::Close => session.close(CloseReason::TransportClose),
            Packet::Noop => {}
            // Engine.IO v4 heartbeats go server → client only; anything else from a
            // client is a protocol error, as in Node ("invalid heartbeat direction").
            Packet::Ping(_) | Packet::Open(_) | Packet::Upgrade => {
                session.close(CloseReason::ParseError)
            }
        }
    }

    /// Sessions currently open (snapshot), for drain and tools.
    pub fn sessions(&self) -> Vec<Arc<Session<H::Data>>> {
        self.read_sessions().values().cloned().collect()
    }
}
