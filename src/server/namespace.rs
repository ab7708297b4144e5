//! Namespaces: their handlers (fixed when the server is built), sockets and rooms.
//!
//! Handlers live on the namespace, not on each socket: a socket costs no handler table,
//! and a handler exists before any client can reach it — so an event a client emits
//! right after `connect` always finds its handler.

use super::adapter::{Adapter, AdapterError, RecoveryOptions, RemoteSocket, ServerAck};
use super::broadcast::BroadcastOperator;
use super::payload::{Event, Payload};
use super::socket::{AckSender, DisconnectReason, SocketRef};
use super::Room;
use crate::sid::Sid;
use crate::sync::RwLockExt as _;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A refused connection: the client receives CONNECT_ERROR `{message, data}`
/// (socket.io-client surfaces it as `connect_error` with `err.message` / `err.data`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRefusal {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectRefusal {
    pub fn new(message: impl Into<String>) -> Self {
        ConnectRefusal {
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

type ConnectFn = Arc<dyn Fn(SocketRef) -> BoxFuture<Result<(), ConnectRefusal>> + Send + Sync>;
type EventFn = Arc<dyn Fn(SocketRef, Event, Option<AckSender>) -> BoxFuture<()> + Send + Sync>;
type DisconnectFn = Arc<dyn Fn(SocketRef, DisconnectReason) + Send + Sync>;
type ServerEventFn = Arc<dyn Fn(Vec<Value>, Option<ServerAck>) + Send + Sync>;

/// Declares a namespace's behaviour; see [`super::IoBuilder::namespace`].
#[derive(Default)]
pub struct NamespaceBuilder {
    middleware: Vec<ConnectFn>,
    connect: Vec<ConnectFn>,
    events: HashMap<String, EventFn>,
    any: Option<EventFn>,
    disconnect: Vec<DisconnectFn>,
    server_events: HashMap<String, ServerEventFn>,
}

impl NamespaceBuilder {
    /// Adds a middleware: runs before the socket exists for anyone else (it is in no
    /// namespace map, no room), so a refusal here — a bad token — leaves no trace.
    /// Middleware run in order; the first refusal sends `connect_error`.
    pub fn use_middleware<F, Fut>(&mut self, f: F) -> &mut Self
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectRefusal>> + Send + 'static,
    {
        self.middleware.push(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// Adds a connect step (setup: authenticate, join rooms, emit a
    /// greeting). Steps run in order before the CONNECT reply; the first refusal stops
    /// the connection and the client gets `connect_error`. Emits made here reach the
    /// client right after its CONNECT reply. Do not await an emit-with-ack in here: the
    /// client cannot answer before it is connected.
    pub fn on_connect<F, Fut>(&mut self, f: F) -> &mut Self
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectRefusal>> + Send + 'static,
    {
        self.connect.push(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// Handles the event `name`. The handler's first poll runs inline, in arrival order;
    /// if it awaits, the rest runs as its own task.
    pub fn on<F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(SocketRef, Event, Option<AckSender>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.events.insert(
            name.to_owned(),
            Arc::new(move |s, e, a| Box::pin(f(s, e, a))),
        );
        self
    }

    /// Handles any event that has no handler of its own.
    pub fn on_any<F, Fut>(&mut self, f: F) -> &mut Self
    where
        F: Fn(SocketRef, Event, Option<AckSender>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.any = Some(Arc::new(move |s, e, a| Box::pin(f(s, e, a))));
        self
    }

    /// Runs when a socket leaves the namespace, for any reason.
    pub fn on_disconnect<F>(&mut self, f: F) -> &mut Self
    where
        F: Fn(SocketRef, DisconnectReason) + Send + Sync + 'static,
    {
        self.disconnect.push(Arc::new(f));
        self
    }

    /// Handles `event` emitted by another node with `server_side_emit` (Node's
    /// `io.on(event)` for `serverSideEmit`). The handler gets the arguments and, when the
    /// sender waits for answers, an acknowledgement to call once.
    pub fn on_server_event<F>(&mut self, event: &str, f: F) -> &mut Self
    where
        F: Fn(Vec<Value>, Option<ServerAck>) + Send + Sync + 'static,
    {
        self.server_events.insert(event.to_owned(), Arc::new(f));
        self
    }

    pub(crate) fn build(
        self,
        name: String,
        adapter: Arc<dyn Adapter>,
        recovery: Option<RecoveryOptions>,
    ) -> Namespace {
        let metrics = crate::metrics::NamespaceMetrics::new(&name);
        metrics.declare_disconnect_reasons(&DisconnectReason::ALL.map(DisconnectReason::as_str));
        Namespace {
            recovery,
            metrics,
            name,
            sockets: RwLock::default(),
            adapter,
            middleware: self.middleware,
            connect: self.connect,
            events: self.events,
            any: self.any,
            disconnect: self.disconnect,
            server_events: self.server_events,
            observer: std::sync::OnceLock::new(),
        }
    }
}

/// A namespace on this node.
pub struct Namespace {
    pub name: String,
    /// This namespace's metric handles, resolved once (see [`crate::metrics`]).
    pub(crate) metrics: crate::metrics::NamespaceMetrics,
    sockets: RwLock<HashMap<Sid, SocketRef>>,
    adapter: Arc<dyn Adapter>,
    recovery: Option<RecoveryOptions>,
    middleware: Vec<ConnectFn>,
    connect: Vec<ConnectFn>,
    events: HashMap<String, EventFn>,
    any: Option<EventFn>,
    disconnect: Vec<DisconnectFn>,
    server_events: HashMap<String, ServerEventFn>,
    /// Who watches its sockets, if anyone (see [`super::observer`]).
    observer: std::sync::OnceLock<Arc<dyn super::observer::SocketObserver>>,
}

impl Namespace {
    /// Sets the watcher of this namespace's sockets (once; later calls are ignored).
    pub fn observe(&self, observer: Arc<dyn super::observer::SocketObserver>) {
        let _ = self.observer.set(observer);
    }

    /// The watcher, if one is set.
    #[inline]
    pub fn observer(&self) -> Option<&Arc<dyn super::observer::SocketObserver>> {
        self.observer.get()
    }

    fn sockets_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Sid, SocketRef>> {
        self.sockets.read_unpoisoned()
    }

    fn sockets_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Sid, SocketRef>> {
        self.sockets.write_unpoisoned()
    }

    pub(crate) fn insert_socket(&self, socket: SocketRef) {
        let sid = socket.id;
        self.sockets_write().insert(sid, socket);
        self.adapter.own_room(sid, true);
    }

    pub(crate) fn remove_socket(&self, sid: Sid) {
        if self.sockets_write().remove(&sid).is_some() {
            self.adapter.own_room(sid, false);
        }
    }

    pub fn get_socket(&self, sid: &Sid) -> Option<SocketRef> {
        self.sockets_read().get(sid).cloned()
    }

    /// The sockets among `sids` that are still here, looked up under one read lock.
    pub(super) fn sockets_among(&self, sids: &HashSet<Sid>) -> Vec<SocketRef> {
        let sockets = self.sockets_read();
        sids.iter()
            .filter_map(|sid| sockets.get(sid).cloned())
            .collect()
    }

    pub fn has_socket(&self, sid: &Sid) -> bool {
        self.sockets_read().contains_key(sid)
    }

    pub fn socket_ids(&self) -> Vec<Sid> {
        self.sockets_read().keys().copied().collect()
    }

    /// Sockets connected to this namespace on this node.
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.sockets_read().values().cloned().collect()
    }

    pub fn socket_count(&self) -> usize {
        self.sockets_read().len()
    }

    /// How many rooms have members (own-id rooms are not counted).
    pub fn room_count(&self) -> usize {
        self.adapter.local().room_count()
    }

    /// Rooms with their member counts on this node (own-id rooms are not listed).
    pub fn rooms(&self) -> Vec<(Room, usize)> {
        self.adapter.local().rooms()
    }

    /// Changes of this node's rooms so far: unchanged means [`Self::rooms`] is too.
    pub fn rooms_version(&self) -> u64 {
        self.adapter.local().rooms_version()
    }

    /// Connection state recovery, when on.
    pub fn recovery(&self) -> Option<&RecoveryOptions> {
        self.recovery.as_ref()
    }

    /// This namespace's adapter: the way to its sockets on this node and on the others.
    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// Every socket of the namespace, on every node (see [`BroadcastOperator::fetch_sockets`]).
    pub async fn fetch_sockets(self: &Arc<Self>) -> Result<Vec<RemoteSocket>, AdapterError> {
        BroadcastOperator::new(self.clone()).fetch_sockets().await
    }

    /// Makes every socket of the namespace, on every node, join `room`.
    pub fn sockets_join(self: &Arc<Self>, room: impl Into<Room>) {
        BroadcastOperator::new(self.clone()).sockets_join(room)
    }

    /// Makes every socket of the namespace, on every node, leave `room`.
    pub fn sockets_leave(self: &Arc<Self>, room: impl Into<Room>) {
        BroadcastOperator::new(self.clone()).sockets_leave(room)
    }

    /// Disconnects every socket of the namespace, on every node.
    pub fn disconnect_sockets(self: &Arc<Self>, close: bool) {
        BroadcastOperator::new(self.clone()).disconnect_sockets(close)
    }

    /// Targets only this node's sockets (Node's `.local`).
    pub fn local(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).local()
    }

    /// Emits `event` to the server-side handlers ([`NamespaceBuilder::on_server_event`])
    /// of every *other* node (Node's `serverSideEmit`).
    pub fn server_side_emit(&self, event: &str, args: Vec<Value>) {
        self.adapter
            .server_side_emit(server_event_data(event, args))
    }

    /// Same, and waits for one answer per other node (or fails after the adapter's
    /// request timeout, with the answers that arrived in the error's place).
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, AdapterError> {
        self.adapter
            .server_side_emit_with_ack(server_event_data(event, args))
            .await
    }

    /// Every room, on every node (socket ids included, as in Node's `allRooms`).
    pub async fn all_rooms(&self) -> Result<Vec<Room>, AdapterError> {
        self.adapter.all_rooms().await
    }

    /// How many nodes serve this namespace.
    pub async fn server_count(&self) -> usize {
        self.adapter.server_count().await
    }

    /// Runs the handler of a server-side event from another node (`data` is
    /// `[event, ...args]`); adapters reach it through [`super::adapter::SocketEmitter`].
    pub(super) fn dispatch_server_event(&self, mut data: Vec<Value>, ack: Option<ServerAck>) {
        if data.is_empty() {
            return;
        }
        let name = match data.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        match self.server_events.get(&name) {
            Some(h) => h(data, ack),
            None => {
                tracing::trace!(nsp = %self.name, event = %name, "no handler for server-side event")
            }
        }
    }

    /// Targets `room` (chain `.to()`, `.except()`, then `.emit()`).
    pub fn to(self: &Arc<Self>, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).to(room)
    }

    /// Targets every socket except the members of `room`.
    pub fn except(self: &Arc<Self>, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).except(room)
    }

    /// Emits to every socket in the namespace.
    pub fn emit(self: &Arc<Self>, event: &str, payload: impl Into<Payload>) -> usize {
        BroadcastOperator::new(self.clone()).emit(event, payload)
    }

    pub(crate) async fn run_middleware(&self, socket: &SocketRef) -> Result<(), ConnectRefusal> {
        for step in &self.middleware {
            step(socket.clone()).await?;
        }
        Ok(())
    }

    pub(crate) async fn run_connect(&self, socket: &SocketRef) -> Result<(), ConnectRefusal> {
        for step in &self.connect {
            step(socket.clone()).await?;
        }
        Ok(())
    }

    /// Dispatches an event to its handler: the first poll inline, the rest spawned.
    pub(crate) fn dispatch_event(&self, socket: SocketRef, event: Event, ack: Option<AckSender>) {
        self.metrics.event_received(&event.name);
        let Some(handler) = self.events.get(&event.name).or(self.any.as_ref()) else {
            tracing::trace!(nsp = %self.name, event = %event.name, "no handler for event");
            return;
        };
        run_inline_then_spawn(Box::pin(self.metrics.timed(handler(socket, event, ack))));
    }

    pub(crate) fn run_disconnect_handlers(&self, socket: &SocketRef, reason: DisconnectReason) {
        for h in &self.disconnect {
            h(socket.clone(), reason);
        }
    }
}

/// Polls a handler future once on the current thread; spawns it only if it has to wait.
/// Handlers that finish at once (most of them: an emit, a join) cost no task, and
/// handlers start in the order their packets arrived, as in Node.
pub(crate) fn run_inline_then_spawn(mut fut: BoxFuture<()>) {
    use std::task::{Context, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    if fut.as_mut().poll(&mut cx).is_pending() {
        // The spawned task polls again at once, registering its real waker.
        tokio::spawn(fut);
    }
}

fn server_event_data(event: &str, args: Vec<Value>) -> Vec<Value> {
    let mut data = Vec::with_capacity(args.len() + 1);
    data.push(Value::String(event.to_owned()));
    data.extend(args);
    data
}
