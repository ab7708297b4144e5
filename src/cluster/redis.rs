//! The Redis adapter: `@socket.io/redis-adapter` 8.x (`RedisAdapter` in its
//! `lib/index.ts`), method for method, so Rust and Node nodes share one cluster.
//!
//! Where this differs from the Node source, on purpose and invisibly on the wire:
//! - `socketsJoin` / `socketsLeave` / `disconnectSockets` are applied to this node's
//!   sockets at once and the node ignores its own request when Redis echoes it back
//!   (Node applies them only when its own request comes back, so during an outage they
//!   do nothing even locally). Other nodes, Node ones included, see the same request.
//! - `serverCount()` falls back to 1 when Redis does not answer, so a broadcast with
//!   acknowledgements still completes with the local answers during an outage.
//! - Remote handlers run on the subscriber task, in arrival order, as in Node: keep
//!   server-side event handlers short (spawn anything slow).

use super::driver::{MessageSink, RedisDriver};
use super::{
    AckEvent, AckSink, Adapter, AdapterError, AdapterFactory, BroadcastOpts, ClusterPacket,
    LocalAdapter, RemoteSocket, ServerAck,
};
use crate::protocol::cluster::{
    uid2, BroadcastMessage, Channels, Request, RequestType, Response, Target,
};
use crate::server::{BoxFuture, Namespace, Payload, Room};
use crate::sid::Sid;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

/// The adapter's options (`RedisAdapterOptions`), same defaults.
#[derive(Debug, Clone)]
pub struct RedisAdapterOptions {
    /// Channel prefix (`key`, default `socket.io`).
    pub key: String,
    /// How long requests wait for every node's answer (`requestsTimeout`, 5 s).
    pub requests_timeout: Duration,
    /// Answer on `<key>-response#<nsp>#<uid>#` instead of the shared response channel
    /// (`publishOnSpecificResponseChannel`, default false). Every 8.x node listens on
    /// both, so either works in a mixed cluster.
    pub publish_on_specific_response_channel: bool,
}

impl Default for RedisAdapterOptions {
    fn default() -> Self {
        RedisAdapterOptions {
            key: "socket.io".into(),
            requests_timeout: Duration::from_secs(5),
            publish_on_specific_response_channel: false,
        }
    }
}

/// Creates one [`RedisAdapter`] per namespace, all on one driver (one pair of Redis
/// connections per node).
pub struct RedisAdapterFactory {
    driver: Arc<dyn RedisDriver>,
    options: RedisAdapterOptions,
}

impl RedisAdapterFactory {
    pub fn new(driver: Arc<dyn RedisDriver>, options: RedisAdapterOptions) -> Self {
        crate::metrics::cluster().init();
        RedisAdapterFactory { driver, options }
    }
}

impl AdapterFactory for RedisAdapterFactory {
    fn create(&self, ns: Weak<Namespace>, name: &str) -> Arc<dyn Adapter> {
        let adapter = Arc::new(RedisAdapter::new(
            ns,
            name,
            self.driver.clone(),
            self.options.clone(),
        ));
        let sink: Weak<dyn MessageSink> = Arc::downgrade(&adapter) as Weak<dyn MessageSink>;
        // `PSUBSCRIBE <key>#<nsp>#*` and `SUBSCRIBE request, response, specific response`.
        self.driver.subscribe(
            vec![adapter.channels.pattern()],
            vec![
                adapter.channels.request.clone(),
                adapter.channels.response.clone(),
                adapter.channels.specific_response(&adapter.uid),
            ],
            sink,
        );
        adapter
    }
}

/// A request of ours waiting for other nodes' answers.
struct Pending {
    kind: RequestType,
    expected: usize,
    received: usize,
    items: Vec<Value>,
    done: Option<oneshot::Sender<Vec<Value>>>,
}

type Requests = Arc<Mutex<HashMap<String, Pending>>>;

/// One namespace's adapter on Redis. See the module docs.
pub struct RedisAdapter {
    local: LocalAdapter,
    nsp: String,
    /// This node's id in every message (`uid2(6)`), to skip our own echoes.
    pub uid: String,
    channels: Channels,
    driver: Arc<dyn RedisDriver>,
    options: RedisAdapterOptions,
    requests: Requests,
    ack_requests: Arc<Mutex<HashMap<String, AckSink>>>,
}

fn random_id() -> String {
    uid2(6, |n| rand::random_range(0..n))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RedisAdapter {
    pub fn new(
        ns: Weak<Namespace>,
        nsp: &str,
        driver: Arc<dyn RedisDriver>,
        options: RedisAdapterOptions,
    ) -> Self {
        RedisAdapter {
            local: LocalAdapter::new(ns),
            nsp: nsp.to_owned(),
            uid: random_id(),
            channels: Channels::new(&options.key, nsp),
            driver,
            options,
            requests: Arc::default(),
            ack_requests: Arc::default(),
        }
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    fn is_local(opts: &BroadcastOpts) -> bool {
        opts.flags.as_ref().is_some_and(|f| f.is_local())
    }

    /// Sends `request` to the other nodes on the namespace's request channel.
    fn publish_request(&self, request: Request) {
        self.driver
            .publish(self.channels.request.clone(), request.encode());
    }

    /// `publishResponse`: the shared response channel, or the requester's own.
    fn publish_response(&self, requester: Option<&str>, bytes: Vec<u8>) {
        let channel = match requester {
            Some(uid) if self.options.publish_on_specific_response_channel => {
                self.channels.specific_response(uid)
            }
            _ => self.channels.response.clone(),
        };
        self.driver.publish(channel, bytes);
    }

    fn num_sub(&self) -> BoxFuture<Result<usize, AdapterError>> {
        let f = self.driver.num_sub(self.channels.request.clone());
        Box::pin(async move { f.await.map_err(|e| AdapterError::Redis(e.to_string())) })
    }

    /// `onmessage`: a broadcast from another node.
    fn on_broadcast(&self, room: &str, payload: &[u8]) {
        // Cheap check first: a room channel nobody here is in.
        if !room.is_empty() && !self.local.has_room(room) {
            return;
        }
        let msg = match BroadcastMessage::decode(payload) {
            Ok(m) => m,
            Err(e) => return tracing::debug!(error = %e, "ignoring malformed broadcast"),
        };
        if msg.uid == self.uid || msg.packet.nsp != self.nsp {
            return;
        }
        self.local.broadcast(&msg.packet, &msg.opts);
    }

    fn socket_of(&self, sid: &str) -> Option<crate::server::SocketRef> {
        let ns = self.local.namespace()?;
        ns.get_socket(&Sid::parse(sid)?)
    }

    /// `onrequest`: a request from another node or from an emitter.
    fn on_request(&self, payload: &[u8]) {
        let request = match Request::decode(payload) {
            Ok(Some(r)) => r,
            Ok(None) => return tracing::debug!("ignoring unknown request type"),
            Err(e) => return tracing::debug!(error = %e, "ignoring malformed request"),
        };
        let own = request.uid() == Some(self.uid.as_str());
        let requester = request.uid().map(str::to_owned);
        let requester = requester.as_deref();
        match request {
            Request::Sockets {
                request_id, rooms, ..
            } => {
                if lock(&self.requests).contains_key(&request_id) {
                    return;
                }
                let opts = BroadcastOpts {
                    rooms,
                    ..Default::default()
                };
                let ids: Vec<String> = self
                    .local
                    .socket_ids(&opts)
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect();
                self.publish_response(requester, Response::sockets_ids(&request_id, &ids));
            }
            Request::AllRooms { request_id, .. } => {
                if lock(&self.requests).contains_key(&request_id) {
                    return;
                }
                let rooms: Vec<String> = self
                    .local
                    .all_rooms()
                    .iter()
                    .map(|r| r.to_string())
                    .collect();
                self.publish_response(requester, Response::all_rooms(&request_id, &rooms));
            }
            Request::RemoteJoin {
                request_id,
                target,
                rooms,
                ..
            } => self.remote_rooms(true, own, requester, request_id, target, rooms),
            Request::RemoteLeave {
                request_id,
                target,
                rooms,
                ..
            } => self.remote_rooms(false, own, requester, request_id, target, rooms),
            Request::RemoteDisconnect {
                request_id,
                target,
                close,
                ..
            } => match target {
                Target::Opts(opts) if !own => self.local.disconnect_sockets(&opts, close),
                Target::Opts(_) => {}
                Target::Socket(sid) => {
                    let Some(socket) = self.socket_of(&sid) else {
                        return;
                    };
                    socket.disconnect(close);
                    if let Some(id) = request_id {
                        self.publish_response(requester, Response::done(&id));
                    }
                }
            },
            Request::RemoteFetch {
                request_id, opts, ..
            } => {
                if lock(&self.requests).contains_key(&request_id) {
                    return;
                }
                let sockets = self
                    .local
                    .fetch_sockets(&opts)
                    .into_iter()
                    .map(|s| {
                        serde_json::json!({
                            "id": s.id,
                            "handshake": s.handshake,
                            "rooms": s.rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                            "data": s.data,
                        })
                    })
                    .collect();
                self.publish_response(requester, Response::fetched(&request_id, sockets));
            }
            Request::ServerSideEmit {
                request_id, data, ..
            } => {
                if own {
                    return;
                }
                let Some(ns) = self.local.namespace() else {
                    return;
                };
                // The answer goes to the shared response channel, as Node's callback
                // publishes it (not through publishResponse).
                let ack: Option<ServerAck> = request_id.map(|id| {
                    let driver = self.driver.clone();
                    let channel = self.channels.response.clone();
                    Box::new(move |arg: Value| {
                        driver.publish(channel, Response::server_side_emit(&id, &arg));
                    }) as ServerAck
                });
                ns.dispatch_server_event(data, ack);
            }
            Request::Broadcast {
                request_id,
                packet,
                opts,
                ..
            } => {
                if lock(&self.ack_requests).contains_key(&request_id) {
                    return; // our own
                }
                let timeout = opts
                    .flags
                    .as_ref()
                    .and_then(|f| f.timeout)
                    .map(Duration::from_millis)
                    .unwrap_or(self.options.requests_timeout);
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                self.local.broadcast_with_ack(&packet, &opts, timeout, tx);
                let driver = self.driver.clone();
                let channel = match requester {
                    Some(uid) if self.options.publish_on_specific_response_channel => {
                        self.channels.specific_response(uid)
                    }
                    _ => self.channels.response.clone(),
                };
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        let bytes = match event {
                            AckEvent::ClientCount(n) => {
                                Response::client_count(&request_id, n as u64)
                            }
                            // Node's ack callback takes the client's first argument.
                            AckEvent::Ack(p) => {
                                let first = p.args.first().cloned().unwrap_or(Value::Null);
                                Response::broadcast_ack(&request_id, &first, &p.binary)
                            }
                        };
                        driver.publish(channel.clone(), bytes);
                    }
                });
            }
        }
    }

    /// REMOTE_JOIN / REMOTE_LEAVE: by options (8.x, no answer) or for one socket (older
    /// nodes, answered with `{requestId}`).
    fn remote_rooms(
        &self,
        join: bool,
        own: bool,
        requester: Option<&str>,
        request_id: Option<String>,
        target: Target,
        rooms: Vec<String>,
    ) {
        let rooms: Vec<Room> = rooms.into_iter().map(Room::from).collect();
        match target {
            Target::Opts(_) if own => {} // applied when we sent it
            Target::Opts(opts) if join => self.local.add_sockets(&opts, &rooms),
            Target::Opts(opts) => self.local.del_sockets(&opts, &rooms),
            Target::Socket(sid) => {
                let Some(socket) = self.socket_of(&sid) else {
                    return;
                };
                for room in rooms {
                    if join {
                        socket.join(room)
                    } else {
                        socket.leave(&room)
                    }
                }
                if let Some(id) = request_id {
                    self.publish_response(requester, Response::done(&id));
                }
            }
        }
    }

    /// `onresponse`: an answer to one of our requests.
    fn on_response(&self, payload: &[u8]) {
        let response = match Response::decode(payload) {
            Ok(r) => r,
            Err(e) => return tracing::debug!(error = %e, "ignoring malformed response"),
        };
        if let Some(sink) = lock(&self.ack_requests).get(&response.request_id) {
            let event = match response.kind {
                Some(RequestType::BroadcastClientCount) => {
                    AckEvent::ClientCount(response.client_count.unwrap_or(0) as usize)
                }
                Some(RequestType::BroadcastAck) => AckEvent::Ack(Payload {
                    args: vec![response.packet.unwrap_or(Value::Null)],
                    binary: response.attachments,
                }),
                _ => return,
            };
            let _ = sink.send(event);
            return;
        }
        let mut requests = lock(&self.requests);
        let Some(pending) = requests.get_mut(&response.request_id) else {
            return;
        };
        match pending.kind {
            RequestType::RemoteFetch | RequestType::Sockets => {
                let Some(sockets) = response.sockets else {
                    return;
                };
                pending.items.extend(sockets);
            }
            RequestType::AllRooms => {
                let Some(rooms) = response.rooms else { return };
                pending.items.extend(rooms.into_iter().map(Value::String));
            }
            RequestType::ServerSideEmit => {
                pending.items.push(response.data.unwrap_or(Value::Null));
            }
            _ => {}
        }
        pending.received += 1;
        if pending.received >= pending.expected {
            if let Some(mut p) = requests.remove(&response.request_id) {
                if let Some(done) = p.done.take() {
                    let _ = done.send(std::mem::take(&mut p.items));
                }
            }
        }
    }
}

impl MessageSink for RedisAdapter {
    fn on_message(&self, channel: &str, payload: &[u8]) {
        if channel.starts_with(&self.channels.response) {
            self.on_response(payload)
        } else if channel.starts_with(&self.channels.request) {
            self.on_request(payload)
        } else if let Some(room) = self.channels.room_of(channel) {
            self.on_broadcast(room, payload)
        }
    }
}

impl Adapter for RedisAdapter {
    fn local(&self) -> &LocalAdapter {
        &self.local
    }

    fn broadcast(&self, mut packet: ClusterPacket, opts: &BroadcastOpts) -> usize {
        packet.nsp = self.nsp.clone();
        if !Self::is_local(opts) {
            let channel = self.channels.for_rooms(&opts.rooms);
            let msg = BroadcastMessage {
                uid: self.uid.clone(),
                packet,
                opts: opts.clone(),
            };
            self.driver.publish(channel, msg.encode());
            return self.local.broadcast(&msg.packet, opts);
        }
        self.local.broadcast(&packet, opts)
    }

    fn broadcast_with_ack(
        &self,
        mut packet: ClusterPacket,
        opts: &BroadcastOpts,
        timeout: Duration,
        sink: AckSink,
    ) {
        packet.nsp = self.nsp.clone();
        if !Self::is_local(opts) {
            let request_id = random_id();
            let request = Request::Broadcast {
                uid: Some(self.uid.clone()),
                request_id: request_id.clone(),
                packet: packet.clone(),
                opts: opts.clone(),
            };
            lock(&self.ack_requests).insert(request_id.clone(), sink.clone());
            self.publish_request(request);
            // Node cannot know when every remote answer is in either: forget the request
            // after the broadcast's timeout.
            let acks = self.ack_requests.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                lock(&acks).remove(&request_id);
            });
        }
        self.local.broadcast_with_ack(&packet, opts, timeout, sink)
    }

    fn add_sockets(&self, opts: &BroadcastOpts, rooms: &[Room]) {
        self.local.add_sockets(opts, rooms);
        if !Self::is_local(opts) {
            self.publish_request(Request::RemoteJoin {
                uid: Some(self.uid.clone()),
                request_id: None,
                target: Target::Opts(opts.clone()),
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
            });
        }
    }

    fn del_sockets(&self, opts: &BroadcastOpts, rooms: &[Room]) {
        self.local.del_sockets(opts, rooms);
        if !Self::is_local(opts) {
            self.publish_request(Request::RemoteLeave {
                uid: Some(self.uid.clone()),
                request_id: None,
                target: Target::Opts(opts.clone()),
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
            });
        }
    }

    fn disconnect_sockets(&self, opts: &BroadcastOpts, close: bool) {
        if !Self::is_local(opts) {
            let request = Request::RemoteDisconnect {
                uid: Some(self.uid.clone()),
                request_id: None,
                target: Target::Opts(opts.clone()),
                close,
            };
            self.publish_request(request);
        }
        self.local.disconnect_sockets(opts, close);
    }

    fn fetch_sockets(
        &self,
        opts: &BroadcastOpts,
    ) -> BoxFuture<Result<Vec<RemoteSocket>, AdapterError>> {
        let local = self.local.fetch_sockets(opts);
        if Self::is_local(opts) {
            return Box::pin(async move { Ok(local) });
        }
        let num_sub = self.num_sub();
        let request_id = random_id();
        let bytes = Request::RemoteFetch {
            uid: Some(self.uid.clone()),
            request_id: request_id.clone(),
            opts: BroadcastOpts {
                rooms: opts.rooms.clone(),
                except: opts.except.clone(),
                flags: None,
            },
        }
        .encode();
        let this = self.requester();
        Box::pin(async move {
            let num_sub = num_sub.await?;
            if num_sub <= 1 {
                return Ok(local);
            }
            let items = this
                .request(
                    RequestType::RemoteFetch,
                    "fetchSockets",
                    request_id,
                    bytes,
                    num_sub - 1,
                )
                .await?;
            let mut all = local;
            all.extend(items.into_iter().filter_map(remote_socket));
            Ok(all)
        })
    }

    fn all_rooms(&self) -> BoxFuture<Result<Vec<Room>, AdapterError>> {
        let local = self.local.all_rooms();
        let num_sub = self.num_sub();
        let request_id = random_id();
        let bytes = Request::AllRooms {
            uid: Some(self.uid.clone()),
            request_id: request_id.clone(),
        }
        .encode();
        let this = self.requester();
        Box::pin(async move {
            let num_sub = num_sub.await?;
            if num_sub <= 1 {
                return Ok(local);
            }
            let items = this
                .request(
                    RequestType::AllRooms,
                    "allRooms",
                    request_id,
                    bytes,
                    num_sub - 1,
                )
                .await?;
            let mut rooms = local;
            for r in items.into_iter().filter_map(|v| v.as_str().map(Room::from)) {
                if !rooms.contains(&r) {
                    rooms.push(r);
                }
            }
            Ok(rooms)
        })
    }

    fn server_side_emit(&self, data: Vec<Value>) {
        let request = Request::ServerSideEmit {
            uid: Some(self.uid.clone()),
            request_id: None,
            data,
        };
        self.publish_request(request);
    }

    fn server_side_emit_with_ack(
        &self,
        data: Vec<Value>,
    ) -> BoxFuture<Result<Vec<Value>, AdapterError>> {
        let num_sub = self.num_sub();
        let request_id = random_id();
        let bytes = Request::ServerSideEmit {
            uid: Some(self.uid.clone()),
            request_id: Some(request_id.clone()),
            data,
        }
        .encode();
        let this = self.requester();
        Box::pin(async move {
            // Ignore self.
            let others = num_sub.await?.saturating_sub(1);
            if others == 0 {
                return Ok(Vec::new());
            }
            this.request(
                RequestType::ServerSideEmit,
                "serverSideEmit",
                request_id,
                bytes,
                others,
            )
            .await
        })
    }

    fn server_count(&self) -> BoxFuture<usize> {
        let f = self.num_sub();
        Box::pin(async move { f.await.unwrap_or(1).max(1) })
    }
}

impl RedisAdapter {
    /// What a request future needs from the adapter, without borrowing it.
    fn requester(&self) -> Requester {
        Requester {
            driver: self.driver.clone(),
            channel: self.channels.request.clone(),
            requests: self.requests.clone(),
            timeout: self.options.requests_timeout,
        }
    }
}

struct Requester {
    driver: Arc<dyn RedisDriver>,
    channel: String,
    requests: Requests,
    timeout: Duration,
}

impl Requester {
    async fn request(
        self,
        kind: RequestType,
        what: &'static str,
        request_id: String,
        bytes: Vec<u8>,
        expected: usize,
    ) -> Result<Vec<Value>, AdapterError> {
        let metric = match kind {
            RequestType::RemoteFetch => "fetch_sockets",
            RequestType::AllRooms => "all_rooms",
            _ => "server_side_emit",
        };
        let (tx, rx) = oneshot::channel();
        lock(&self.requests).insert(
            request_id.clone(),
            Pending {
                kind,
                expected,
                received: 0,
                items: Vec::new(),
                done: Some(tx),
            },
        );
        let started = std::time::Instant::now();
        self.driver.publish(self.channel, bytes);
        let answer = tokio::time::timeout(self.timeout, rx).await;
        crate::metrics::cluster().request(metric, started.elapsed(), !matches!(answer, Ok(Ok(_))));
        match answer {
            Ok(Ok(items)) => Ok(items),
            _ => {
                let received = lock(&self.requests)
                    .remove(&request_id)
                    .map(|p| p.received)
                    .unwrap_or(0);
                Err(AdapterError::Timeout {
                    what,
                    received,
                    expected,
                })
            }
        }
    }
}

/// A socket from a REMOTE_FETCH answer.
fn remote_socket(v: Value) -> Option<RemoteSocket> {
    Some(RemoteSocket {
        id: v.get("id")?.as_str()?.to_owned(),
        handshake: v.get("handshake").cloned().unwrap_or(Value::Null),
        rooms: v
            .get("rooms")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| match r {
                        Value::String(s) => Some(Room::from(s.as_str())),
                        Value::Number(n) => Some(Room::from(n.to_string())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        data: v.get("data").cloned().unwrap_or(Value::Null),
        local: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::driver::{DriverError, MemoryBus};
    use crate::server::{Io, ServerOptions};
    use serde_json::json;

    fn node(bus: &MemoryBus, timeout: Duration) -> Io {
        let factory = RedisAdapterFactory::new(
            bus.driver(),
            RedisAdapterOptions {
                requests_timeout: timeout,
                ..Default::default()
            },
        );
        Io::builder(ServerOptions::default())
            .adapter(Arc::new(factory))
            .namespace("/", |ns| {
                ns.on_server_event("ping", |args, ack| {
                    if let Some(ack) = ack {
                        ack(json!({ "pong": args }));
                    }
                });
            })
            .build()
    }

    #[tokio::test]
    async fn requests_reach_every_other_node_and_come_back() {
        let bus = MemoryBus::new();
        let (a, _b, _c) = (
            node(&bus, Duration::from_secs(2)),
            node(&bus, Duration::from_secs(2)),
            node(&bus, Duration::from_secs(2)),
        );
        let ns = a.of("/").unwrap();
        assert_eq!(ns.server_count().await, 3);
        let answers = ns
            .server_side_emit_with_ack("ping", vec![json!(1)])
            .await
            .unwrap();
        assert_eq!(answers, vec![json!({"pong": [1]}), json!({"pong": [1]})]);
        assert!(ns.fetch_sockets().await.unwrap().is_empty());
        assert!(ns.all_rooms().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_missing_answer_times_out_with_the_count() {
        let bus = MemoryBus::new();
        let a = node(&bus, Duration::from_millis(200));
        let b = Io::builder(ServerOptions::default())
            .adapter(Arc::new(RedisAdapterFactory::new(
                bus.driver(),
                RedisAdapterOptions::default(),
            )))
            .namespace("/", |_| {}) // no handler: never answers
            .build();
        let err = a
            .of("/")
            .unwrap()
            .server_side_emit_with_ack("ping", vec![])
            .await
            .unwrap_err();
        assert_eq!(
            err,
            AdapterError::Timeout {
                what: "serverSideEmit",
                received: 0,
                expected: 1
            }
        );
        drop(b);
    }

    /// Records what an adapter publishes.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, Vec<u8>)>>);

    impl RedisDriver for Recorder {
        fn publish(&self, channel: String, payload: Vec<u8>) {
            lock(&self.0).push((channel, payload));
        }
        fn num_sub(&self, _: String) -> BoxFuture<Result<usize, DriverError>> {
            Box::pin(async { Err(DriverError::Timeout) })
        }
        fn subscribe(&self, _: Vec<String>, _: Vec<String>, _: Weak<dyn MessageSink>) {}
    }

    #[tokio::test]
    async fn broadcasts_use_the_adapter_channels_and_format() {
        let rec = Arc::new(Recorder::default());
        let io = Io::builder(ServerOptions::default())
            .adapter(Arc::new(RedisAdapterFactory::new(
                rec.clone(),
                RedisAdapterOptions::default(),
            )))
            .namespace("/chat", |_| {})
            .build();
        let ns = io.of("/chat").unwrap();
        assert_eq!(ns.to("room:1").emit("m", json!({"a": 1})), 0);
        ns.to("a").to("b").except("c").emit("m", vec![]);
        ns.local().emit("only-here", vec![]);
        ns.to("r").sockets_join("x");
        ns.server_side_emit("hello", vec![json!("w")]);
        // Redis unreachable: the server count falls back to this node.
        assert_eq!(ns.server_count().await, 1);
        let published = lock(&rec.0).clone();
        let channels: Vec<&str> = published.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            channels,
            [
                "socket.io#/chat#room:1#",
                "socket.io#/chat#",
                "socket.io-request#/chat#",
                "socket.io-request#/chat#"
            ]
        );
        let first = BroadcastMessage::decode(&published[0].1).unwrap();
        assert_eq!(first.packet.data, json!(["m", {"a": 1}]));
        assert_eq!(first.packet.nsp, "/chat");
        assert_eq!(first.opts.rooms, vec!["room:1"]);
        let second = BroadcastMessage::decode(&published[1].1).unwrap();
        assert_eq!(second.opts.except, vec!["c"]);
        assert_eq!(
            String::from_utf8(published[3].1.clone()).unwrap(),
            format!(r#"{{"uid":"{}","type":6,"data":["hello","w"]}}"#, first.uid)
        );
    }
}
