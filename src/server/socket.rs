//! A Socket.IO socket: one client connected to one namespace.

use super::adapter::{BroadcastOptions, BroadcastPacket, PersistedSession};
use super::broadcast::BroadcastOperator;
use super::connection::ConnectionState;
use super::event_budget::{EventBudget, Spend, Spending};
use super::kept_json::KeptJson;
use super::namespace::Namespace;
use super::payload::{encode_frames, Payload};
use super::Room;
use crate::protocol::socketio::Packet;
use crate::sid::Sid;
use crate::sync::MutexExt as _;
use crate::transport::{CloseReason, Frame, RequestInfo, Session};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// A shared handle to a socket; cheap to clone into handlers.
pub type SocketRef = Arc<Socket>;

/// Why a socket left its namespace: the strings Node's socket.io uses, so client code
/// that switches on `reason` behaves the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    TransportClose,
    TransportError,
    ParseError,
    PingTimeout,
    ForcedClose,
    ServerShuttingDown,
    ClientNamespaceDisconnect,
    ServerNamespaceDisconnect,
    SlowConsumer,
}

impl DisconnectReason {
    /// Every reason, for declaring their metric series at zero.
    pub const ALL: [DisconnectReason; 9] = [
        Self::TransportClose,
        Self::TransportError,
        Self::ParseError,
        Self::PingTimeout,
        Self::ForcedClose,
        Self::ServerShuttingDown,
        Self::ClientNamespaceDisconnect,
        Self::ServerNamespaceDisconnect,
        Self::SlowConsumer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::ParseError => "parse error",
            Self::PingTimeout => "ping timeout",
            Self::ForcedClose => "forced close",
            Self::ServerShuttingDown => "server shutting down",
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::SlowConsumer => "slow consumer",
        }
    }
}

impl From<CloseReason> for DisconnectReason {
    fn from(r: CloseReason) -> Self {
        match r {
            CloseReason::TransportClose => Self::TransportClose,
            CloseReason::TransportError => Self::TransportError,
            CloseReason::ParseError => Self::ParseError,
            CloseReason::PingTimeout => Self::PingTimeout,
            CloseReason::ForcedClose => Self::ForcedClose,
            CloseReason::ServerShutdown => Self::ServerShuttingDown,
            CloseReason::SlowConsumer => Self::SlowConsumer,
        }
    }
}

/// Why an emit-with-ack got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the client did not acknowledge within the timeout")]
    Timeout,
    #[error("the socket disconnected before acknowledging")]
    Disconnected,
}

#[derive(Default)]
struct State {
    /// Frames emitted before the CONNECT reply went out; flushed right after it.
    pending: Vec<Frame>,
    rooms: Vec<Room>,
    acks: HashMap<u64, oneshot::Sender<Payload>>,
}

/// One client in one namespace.
pub struct Socket {
    pub id: Sid,
    /// The private id a client proves its session with when it reconnects (connection
    /// state recovery on); sent in the CONNECT reply, never shown to other clients.
    pid: Option<Sid>,
    /// Whether this socket continues a session that survived a disconnect.
    recovered: bool,
    /// When the socket's credentials stop being valid, if its middleware said (see
    /// [`Socket::set_expires_at`]).
    expires_at: Mutex<Option<std::time::SystemTime>>,
    pub(crate) ns: Arc<Namespace>,
    pub(crate) session: Arc<Session<ConnectionState>>,
    /// The `auth` object the client sent with CONNECT (see [`Socket::auth`]).
    auth: KeptJson,
    /// Per-socket data set by middleware (e.g. the authenticated user).
    pub extensions: Mutex<super::extensions::Extensions>,
    /// Node's `socket.data`: JSON the whole cluster sees through `fetch_sockets`.
    data: Mutex<KeptJson>,
    connected: AtomicBool,
    disconnected: AtomicBool,
    ack_ids: AtomicU64,
    state: Mutex<State>,
    /// What it spent of the per-socket event budget.
    spending: Spending,
}

impl Socket {
    /// A new socket: a fresh id, and a fresh private id when recovery is on.
    pub(crate) fn new(
        ns: Arc<Namespace>,
        session: Arc<Session<ConnectionState>>,
        auth: Value,
    ) -> Self {
        let pid = ns.recovery().map(|_| Sid::new());
        Self::with_ids(ns, session, auth, Sid::new(), pid)
    }

    /// The socket of a recovered session: its id, private id, data and credentials'
    /// expiry come back (its rooms are joined by the connection, once it is registered).
    pub(crate) fn restored(
        ns: Arc<Namespace>,
        session: Arc<Session<ConnectionState>>,
        auth: Value,
        previous: &PersistedSession,
    ) -> Self {
        let mut socket = Self::with_ids(ns, session, auth, previous.sid, Some(previous.pid));
        socket.recovered = true;
        socket.data = Mutex::new(KeptJson::new(&previous.data));
        socket.expires_at = Mutex::new(previous.expires_at);
        socket
    }

    fn with_ids(
        ns: Arc<Namespace>,
        session: Arc<Session<ConnectionState>>,
        auth: Value,
        id: Sid,
        pid: Option<Sid>,
    ) -> Self {
        Socket {
            id,
            pid,
            recovered: false,
            expires_at: Mutex::new(None),
            ns,
            session,
            auth: KeptJson::new(&auth),
            extensions: Mutex::default(),
            data: Mutex::default(),
            connected: AtomicBool::new(false),
            disconnected: AtomicBool::new(false),
            ack_ids: AtomicU64::new(0),
            state: Mutex::default(),
            spending: Spending::default(),
        }
    }

    /// Whether this socket continues a session that survived a disconnect (Node's
    /// `socket.recovered`). A recovered socket skipped the namespace's middleware unless
    /// recovery was configured otherwise.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Records when the credentials this socket connected with stop being valid. A
    /// session past that time is not recovered: the client connects afresh and its
    /// middleware runs again.
    pub fn set_expires_at(&self, at: Option<std::time::SystemTime>) {
        *self.expires_at.lock_unpoisoned() = at;
    }

    pub fn expires_at(&self) -> Option<std::time::SystemTime> {
        *self.expires_at.lock_unpoisoned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock_unpoisoned()
    }

    /// The namespace name (`/chat`).
    pub fn nsp(&self) -> &str {
        &self.ns.name
    }

    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.ns
    }

    /// The HTTP request that opened the underlying connection.
    pub fn handshake(&self) -> &RequestInfo {
        &self.session.request
    }

    /// The Engine.IO session id (shared by this client's sockets in all namespaces).
    pub fn engine_id(&self) -> Sid {
        self.session.sid
    }

    pub fn transport(&self) -> crate::protocol::engineio::TransportKind {
        self.session.transport()
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire) && !self.disconnected.load(Ordering::Acquire)
    }

    /// Queues encoded frames for this socket. Before the CONNECT reply they wait in the
    /// socket, so a client never sees an event ahead of its own connection.
    /// Sends `frames`; with `write_now`, written in the caller's task when the socket
    /// takes them (see [`Session::send_all`]), else only queued for the connection's
    /// task ([`Session::queue_all`]).
    pub(super) fn send_frames(&self, frames: &[Frame], write_now: bool) -> bool {
        if self.disconnected.load(Ordering::Acquire) {
            return false;
        }
        if !self.connected.load(Ordering::Acquire) {
            let mut st = self.lock();
            if !self.connected.load(Ordering::Acquire) {
                st.pending.extend_from_slice(frames);
                return true;
            }
        }
        let frames = frames.iter().cloned();
        if write_now {
            self.session.send_all(frames)
        } else {
            self.session.queue_all(frames)
        }
    }

    pub(crate) fn send_packet(&self, packet: &Packet, binary: &[bytes::Bytes]) -> bool {
        self.send_frames(&encode_frames(packet, binary), true)
    }

    /// Sends the CONNECT reply, then whatever was emitted while the namespace was setting
    /// the socket up.
    pub(crate) fn mark_connected(&self) {
        let pid = self.pid.as_ref().map(Sid::as_str);
        let reply = encode_frames(
            &Packet::connect_ok(&self.ns.name, self.id.as_str(), pid),
            &[],
        );
        let mut st = self.lock();
        let pending = std::mem::take(&mut st.pending);
        self.session.send_all(reply.into_iter().chain(pending));
        self.connected.store(true, Ordering::Release);
    }

    /// Emits an event to this client. With recovery on it goes through the adapter, to
    /// this socket's own room, as in Node: so it gets an offset and is kept for replay
    /// like any broadcast (and, on a cluster adapter, is published). The answer is then
    /// whether the adapter had the socket on this node.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> bool {
        let p = payload.into();
        self.ns.metrics.events_sent(1);
        if self.ns.recovery().is_some() {
            let to_me = BroadcastOptions::room(self.id.as_str());
            return self
                .ns
                .adapter()
                .broadcast(BroadcastPacket::event(event, p), &to_me)
                > 0;
        }
        if let Some(o) = self.ns.observer() {
            let mut data = vec![Value::from(event)];
            data.extend(p.args.iter().cloned());
            o.sent(&self.ns.name, &self.id, &Value::Array(data));
        }
        let packet = Packet::event(&self.ns.name, event, p.args, p.binary.len());
        self.send_packet(&packet, &p.binary)
    }

    /// Emits an event and waits for the client's acknowledgement.
    pub async fn emit_with_ack(
        self: &Arc<Self>,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<Payload, AckError> {
        let p = payload.into();
        let packet = Packet::event(&self.ns.name, event, p.args, p.binary.len());
        self.send_with_ack(packet.data.unwrap_or_default(), p.binary, timeout)
            .await
    }

    /// Sends an EVENT whose `data` is `[name, ...args]` with a fresh ack id; the future
    /// resolves with the answer. The packet is queued before this returns, so a caller
    /// may spawn the future (broadcasts with acks do).
    pub(super) fn send_with_ack(
        self: &Arc<Self>,
        data: Value,
        binary: Vec<bytes::Bytes>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Payload, AckError>> + Send + 'static {
        let id = self.ack_ids.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().acks.insert(id, tx);
        let kind = if binary.is_empty() {
            crate::protocol::socketio::PacketKind::Event
        } else {
            crate::protocol::socketio::PacketKind::BinaryEvent
        };
        let packet = Packet {
            kind,
            nsp: self.ns.name.clone(),
            id: Some(id),
            data: Some(data),
            attachments: binary.len(),
        };
        let sent = self.send_packet(&packet, &binary);
        self.ns.metrics.events_sent(1);
        let socket = self.clone();
        async move {
            if !sent {
                socket.lock().acks.remove(&id);
                return Err(AckError::Disconnected);
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(_)) => Err(AckError::Disconnected),
                Err(_) => {
                    socket.lock().acks.remove(&id);
                    socket.ns.metrics.ack_timeout();
                    Err(AckError::Timeout)
                }
            }
        }
    }

    /// Node's `socket.data`: JSON that other nodes see in `fetch_sockets`.
    pub fn data(&self) -> Value {
        self.data.lock_unpoisoned().value()
    }

    /// The `auth` object the client sent with CONNECT (Node's `socket.handshake.auth`).
    pub fn auth(&self) -> Value {
        self.auth.value()
    }

    pub fn set_data(&self, data: Value) {
        *self.data.lock_unpoisoned() = KeptJson::new(&data);
        if let Some(o) = self.ns.observer().filter(|_| self.connected()) {
            o.data_changed(self);
        }
    }

    /// Node's `socket.handshake` object, as `fetch_sockets` sends it to other nodes:
    /// `{headers, time, address, xdomain, secure, issued, url, query, auth}`.
    pub fn handshake_json(&self) -> Value {
        let req = self.handshake();
        let headers: serde_json::Map<String, Value> = req
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), Value::from(v.to_str().ok()?))))
            .collect();
        let query: serde_json::Map<String, Value> = req
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        let issued = req
            .issued
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        serde_json::json!({
            "headers": headers,
            "time": chrono::DateTime::<chrono::Utc>::from(req.issued).to_rfc2822(),
            "address": req.remote_addr.ip().to_string(),
            "xdomain": req.headers.contains_key(http::header::ORIGIN),
            "secure": false,
            "issued": issued,
            "url": "",
            "query": query,
            "auth": self.auth(),
        })
    }

    /// An ACK from the client. Unknown ids (late answers after a timeout) are ignored.
    pub(crate) fn on_ack(&self, id: u64, payload: Payload) {
        if let Some(tx) = self.lock().acks.remove(&id) {
            let _ = tx.send(payload);
        }
    }

    /// Joins `room`. A socket that disconnected (its client left while a connect step
    /// or a handler was still running) joins nothing: its cleanup has already emptied
    /// its rooms, and a late join would leave it in the adapter for good.
    pub fn join(&self, room: impl Into<Room>) {
        let room = room.into();
        let mut st = self.lock();
        if self.disconnected.load(Ordering::Acquire) || st.rooms.contains(&room) {
            return;
        }
        st.rooms.push(room.clone());
        drop(st);
        self.ns
            .adapter()
            .add_all(self.id, std::slice::from_ref(&room));
        // The cleanup may have run between the unlock and the adapter call, removing
        // the room before it was added: it marks the socket first, so look again.
        if self.disconnected.load(Ordering::Acquire) {
            self.ns.adapter().del(self.id, &room);
        } else if let Some(o) = self.ns.observer() {
            o.joined(&self.ns.name, &room, &self.id);
        }
    }

    pub fn leave(&self, room: &str) {
        let mut st = self.lock();
        let Some(i) = st.rooms.iter().position(|r| &**r == room) else {
            return;
        };
        let room = st.rooms.swap_remove(i);
        drop(st);
        self.ns.adapter().del(self.id, &room);
        if let Some(o) = self.ns.observer() {
            o.left(&self.ns.name, &room, &self.id);
        }
    }

    /// The rooms this socket is in, including its own id room.
    pub fn rooms(&self) -> Vec<Room> {
        let mut rooms = vec![Room::from(self.id.as_str())];
        rooms.extend(self.lock().rooms.iter().cloned());
        rooms
    }

    /// Broadcasts to `room`, excluding this socket (Node's `socket.to(room)`).
    pub fn to(self: &Arc<Self>, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.ns.clone())
            .to(room)
            .except_socket(self.id)
    }

    /// Broadcasts to the whole namespace except this socket.
    pub fn broadcast(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.ns.clone()).except_socket(self.id)
    }

    /// Charges one incoming event to the socket's budget: true to handle it. Over the
    /// budget it is refused — its ack, when it asked for one, says `rate_limited` — and
    /// after the budget's number of refusals the socket is disconnected.
    pub(crate) fn charge_event(
        self: &Arc<Self>,
        budget: &EventBudget,
        event: &str,
        ack: Option<u64>,
    ) -> bool {
        let spend = self.spending.spend(budget);
        if spend == Spend::Handle {
            return true;
        }
        crate::metrics::rate_limited(event);
        if let Some(id) = ack {
            AckSender::new(self.clone(), id).send(vec![serde_json::json!({
                "error": "rate_limited",
                "message": "too many events from this socket; slow down",
            })]);
        }
        if spend == Spend::Disconnect {
            tracing::info!(sid = %self.id, nsp = %self.ns.name, "socket over its event budget too often; disconnecting");
            self.disconnect(false);
        }
        false
    }

    /// Disconnects from this namespace (the client gets a DISCONNECT packet and will not
    /// reconnect by itself). With `close`, the whole connection is closed too.
    pub fn disconnect(self: &Arc<Self>, close: bool) {
        if self.connected() {
            self.send_packet(&Packet::disconnect(&self.ns.name), &[]);
        }
        self.on_disconnect(DisconnectReason::ServerNamespaceDisconnect);
        if close {
            self.session.close(CloseReason::ForcedClose);
        }
    }

    /// Leaves every room, fails pending acks, runs the namespace's disconnect handlers.
    /// Runs once, whoever calls it first. With recovery on, a connected socket that
    /// closed for a reason the client did not choose first has its session kept.
    pub(crate) fn on_disconnect(self: &Arc<Self>, reason: DisconnectReason) {
        self.persist_if_recoverable(reason);
        if self.cleanup() {
            let connected = self.connected.load(Ordering::Acquire);
            self.ns.metrics.disconnected(
                connected,
                &self.id,
                self.transport().as_str(),
                reason.as_str(),
                self.session.request.issued,
            );
            if let Some(o) = self.ns.observer() {
                o.disconnected(self, reason);
            }
            self.ns.run_disconnect_handlers(self, reason);
        }
    }

    /// socket.io's `RECOVERABLE_DISCONNECT_REASONS`: an explicit disconnect (either side)
    /// or a protocol error is never kept. Called before the socket leaves its rooms.
    fn persist_if_recoverable(&self, reason: DisconnectReason) {
        use DisconnectReason as R;
        let recoverable = matches!(
            reason,
            R::TransportError
                | R::TransportClose
                | R::ForcedClose
                | R::PingTimeout
                | R::ServerShuttingDown
        );
        let (Some(pid), true) = (self.pid, recoverable && self.connected()) else {
            return;
        };
        if self.ns.recovery().is_none() {
            return;
        }
        self.ns.adapter().persist_session(PersistedSession {
            sid: self.id,
            pid,
            rooms: self.rooms(),
            data: self.data(),
            expires_at: self.expires_at(),
        });
    }

    /// Unregisters a socket whose connection was refused: no disconnect handlers, since
    /// it never connected.
    pub(crate) fn discard(&self) {
        self.cleanup();
    }

    /// Returns false if the socket was already cleaned up.
    fn cleanup(&self) -> bool {
        if self.disconnected.swap(true, Ordering::AcqRel) {
            return false;
        }
        let (rooms, acks) = {
            let mut st = self.lock();
            st.pending.clear();
            (std::mem::take(&mut st.rooms), std::mem::take(&mut st.acks))
        };
        drop(acks); // dropping the senders wakes emit_with_ack with Disconnected
        for room in rooms {
            self.ns.adapter().del(self.id, &room);
            if let Some(o) = self.ns.observer() {
                o.left(&self.ns.name, &room, &self.id);
            }
        }
        self.ns.remove_socket(self.id);
        self.session.data.remove_socket(&self.ns.name, self.id);
        true
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("nsp", &self.ns.name)
            .finish()
    }
}

/// Answers a client's emit-with-ack. Dropping it without `send` leaves the client waiting
/// (its own timeout applies), as in Node.
pub struct AckSender {
    socket: SocketRef,
    id: u64,
}

impl AckSender {
    pub(crate) fn new(socket: SocketRef, id: u64) -> Self {
        AckSender { socket, id }
    }

    pub fn send(self, payload: impl Into<Payload>) -> bool {
        let p = payload.into();
        let packet = Packet::ack(&self.socket.ns.name, self.id, p.args, p.binary.len());
        self.socket.send_packet(&packet, &p.binary)
    }
}
