//! The Socket.IO side of one Engine.IO connection (what Node's socket.io calls its
//! `Client`): which namespaces it joined, binary packets being assembled, and the
//! dispatch of every decoded packet. Named *connection* here so "client" means only the
//! crate's outgoing client (the `client` module, which the load generator and the health
//! probe use).

use super::adapter::RecoveredSession;
use super::namespace::Namespace;
use super::payload::{encode_frames, event_from_packet, Payload};
use super::socket::{AckSender, DisconnectReason, Socket, SocketRef};
use crate::protocol::engineio::Data;
use crate::protocol::socketio::{self, BinaryAssembler, Packet, PacketKind};
use crate::sid::Sid;
use crate::sync::MutexExt as _;
use crate::transport::{CloseReason, EngineHandler, Session};
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    sockets: Vec<SocketRef>,
    closed: bool,
}

/// Per-connection Socket.IO state, kept inside the engine [`Session`].
#[derive(Default)]
pub struct ConnectionState {
    state: Mutex<State>,
    /// Boxed: an assembler exists only while a binary packet's attachments
    /// arrive, and inline it would cost every idle connection ~150 bytes.
    assembler: Mutex<Option<Box<BinaryAssembler>>>,
    first_connect: Notify,
}

impl ConnectionState {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock_unpoisoned()
    }

    pub fn socket_for(&self, nsp: &str) -> Option<SocketRef> {
        self.lock().sockets.iter().find(|s| s.nsp() == nsp).cloned()
    }

    pub fn sockets(&self) -> Vec<SocketRef> {
        self.lock().sockets.clone()
    }

    /// Registers a socket in the client and its namespace, atomically with respect to
    /// the session closing: a socket is either registered before `on_close` takes the list,
    /// or not at all. Returns false when the session already closed.
    fn register(&self, socket: &SocketRef, ns: &Namespace) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        st.sockets.push(socket.clone());
        ns.insert_socket(socket.clone());
        drop(st);
        self.first_connect.notify_one();
        true
    }

    pub(crate) fn remove_socket(&self, nsp: &str, sid: Sid) {
        self.lock()
            .sockets
            .retain(|s| !(s.nsp() == nsp && s.id == sid));
    }

    fn take_all(&self) -> Vec<SocketRef> {
        let mut st = self.lock();
        st.closed = true;
        std::mem::take(&mut st.sockets)
    }
}

/// The Socket.IO layer as an Engine.IO handler.
pub struct SocketIoHandler {
    pub(crate) namespaces: HashMap<String, Arc<Namespace>>,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_payload: usize,
    /// Events one socket may send per window (`None`: no budget).
    pub(crate) event_budget: Option<super::EventBudget>,
}

impl EngineHandler for SocketIoHandler {
    type Data = ConnectionState;

    fn new_data(&self) -> ConnectionState {
        ConnectionState::default()
    }

    /// A client must connect to a namespace within `connectTimeout`, or it is closed.
    fn on_open(&self, session: &Arc<Session<ConnectionState>>) {
        let session = session.clone();
        let timeout = self.connect_timeout;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {
                    if session.data.lock().sockets.is_empty() {
                        tracing::debug!(sid = %session.sid, "no namespace connected within connectTimeout");
                        session.close(CloseReason::ForcedClose);
                    }
                }
                _ = session.closed() => {}
                _ = session.data.first_connect.notified() => {}
            }
        });
    }

    fn on_message(&self, session: &Arc<Session<ConnectionState>>, data: Data<'_>) {
        match data {
            Data::Text(text) => {
                if session.data.assembler.lock_unpoisoned().is_some() {
                    return protocol_error(
                        session,
                        "text packet while binary attachments were expected",
                    );
                }
                match socketio::decode(text) {
                    Ok(p) if p.attachments > 0 => {
                        *session.data.assembler.lock_unpoisoned() =
                            Some(Box::new(BinaryAssembler::new(p)));
                    }
                    Ok(p) => self.dispatch(session, p, Vec::new()),
                    Err(e) => protocol_error(session, &e.to_string()),
                }
            }
            Data::Binary(bytes) => {
                let done = {
                    let mut guard = session.data.assembler.lock_unpoisoned();
                    let Some(asm) = guard.as_mut() else {
                        drop(guard);
                        return protocol_error(session, "binary data without a binary packet");
                    };
                    if asm.received_bytes() + bytes.len() > self.max_payload {
                        drop(guard);
                        return protocol_error(
                            session,
                            "binary attachments exceed maxHttpBufferSize",
                        );
                    }
                    let done = asm.push(bytes);
                    if done.is_some() {
                        *guard = None;
                    }
                    done
                };
                match done {
                    None => {}
                    Some(Ok((packet, binary))) => self.dispatch(session, packet, binary),
                    Some(Err(e)) => protocol_error(session, &e.to_string()),
                }
            }
        }
    }

    /// Tells each namespace's watcher that its socket's transport changed.
    fn on_upgrade(&self, session: &Arc<Session<ConnectionState>>) {
        for socket in session.data.sockets() {
            if let Some(o) = socket.ns.observer() {
                o.upgraded(&socket);
            }
        }
    }

    fn on_close(&self, session: &Arc<Session<ConnectionState>>, reason: CloseReason) {
        for socket in session.data.take_all() {
            socket.on_disconnect(DisconnectReason::from(reason));
        }
    }
}

fn protocol_error(session: &Session<ConnectionState>, what: &str) {
    tracing::debug!(sid = %session.sid, error = what, "invalid socket.io packet; closing");
    session.close(CloseReason::ParseError);
}

impl SocketIoHandler {
    fn dispatch(
        &self,
        session: &Arc<Session<ConnectionState>>,
        packet: Packet,
        binary: Vec<Bytes>,
    ) {
        match packet.kind {
            PacketKind::Connect => self.connect(session, packet),
            PacketKind::Disconnect => {
                if let Some(s) = session.data.socket_for(&packet.nsp) {
                    s.on_disconnect(DisconnectReason::ClientNamespaceDisconnect);
                }
            }
            PacketKind::Event | PacketKind::BinaryEvent => {
                // Packets for a namespace the client is not connected to are dropped, as in Node.
                let Some(socket) = session.data.socket_for(&packet.nsp) else {
                    return;
                };
                let id = packet.id;
                let Some(event) = event_from_packet(packet, binary) else {
                    return protocol_error(session, "event without a name");
                };
                if let Some(budget) = &self.event_budget {
                    if !socket.charge_event(budget, &event.name, id) {
                        return;
                    }
                }
                if let Some(o) = socket.ns.observer() {
                    o.received(&socket, &event);
                }
                let ack = id.map(|id| AckSender::new(socket.clone(), id));
                let ns = socket.ns.clone();
                ns.dispatch_event(socket, event, ack);
            }
            PacketKind::Ack | PacketKind::BinaryAck => {
                let Some(socket) = session.data.socket_for(&packet.nsp) else {
                    return;
                };
                let (Some(id), Some(Value::Array(args))) = (packet.id, packet.data) else {
                    return protocol_error(session, "ack without id or arguments");
                };
                socket.on_ack(id, Payload { args, binary });
            }
            PacketKind::ConnectError => protocol_error(session, "CONNECT_ERROR sent by a client"),
        }
    }

    /// CONNECT: recovery (when asked for), middleware, registration, connect steps, and
    /// only then the reply.
    fn connect(&self, session: &Arc<Session<ConnectionState>>, packet: Packet) {
        let Some(ns) = self.namespaces.get(&packet.nsp).cloned() else {
            let reply = Packet::connect_error(&packet.nsp, "Invalid namespace", None);
            session.send_all(encode_frames(&reply, &[]));
            return;
        };
        if session.data.socket_for(&packet.nsp).is_some() {
            return; // already connected: a duplicate CONNECT is ignored
        }
        let auth = packet
            .data
            .unwrap_or_else(|| Value::Object(Default::default()));
        let session = session.clone();
        let connecting = async move {
            let (socket, missed) = match try_recover(&ns, &auth).await {
                Some(found) => {
                    let socket =
                        Socket::restored(ns.clone(), session.clone(), auth, &found.session);
                    (Arc::new(socket), Some(found))
                }
                None => (
                    Arc::new(Socket::new(ns.clone(), session.clone(), auth)),
                    None,
                ),
            };
            let skip_middleware =
                socket.recovered() && ns.recovery().is_some_and(|r| r.skip_middlewares);
            if !skip_middleware {
                if let Err(refusal) = ns.run_middleware(&socket).await {
                    return refuse(&session, &socket, refusal);
                }
            }
            let registered = match missed {
                Some(found) => attach_and_replay(&session, &socket, &ns, found),
                None => session.data.register(&socket, &ns),
            };
            if !registered {
                return;
            }
            if let Err(refusal) = ns.run_connect(&socket).await {
                socket.discard();
                return refuse(&session, &socket, refusal);
            }
            // The watcher first: what it sets on the socket is part of the connection,
            // not a change after it.
            if let Some(o) = socket.ns.observer() {
                o.connected(&socket);
            }
            // Counted before the reply goes out: the reply is written at once, and a
            // client that has it may already read the metrics.
            socket
                .ns
                .metrics
                .connected(&socket.id, socket.transport().as_str());
            socket.mark_connected();
        };
        super::namespace::run_inline_then_spawn(Box::pin(connecting));
    }
}

/// The session a CONNECT asks to recover (`auth.pid` and `auth.offset`, both strings, as
/// socket.io-client sends them), if recovery is on and the adapter still has it. Anything
/// else — unknown or expired session, an offset no longer kept, credentials past their
/// expiry, the adapter failing, the same socket still connected — gives a fresh socket,
/// never an error, as in Node.
async fn try_recover(ns: &Namespace, auth: &Value) -> Option<RecoveredSession> {
    ns.recovery()?;
    let pid = auth.get("pid")?.as_str()?;
    let offset = auth.get("offset")?.as_str()?;
    let found = restore(ns, pid, offset).await;
    ns.metrics.recovery(found.is_some());
    found
}

async fn restore(ns: &Namespace, pid: &str, offset: &str) -> Option<RecoveredSession> {
    let found = match ns.adapter().restore_session(pid, offset).await {
        Ok(found) => found?,
        Err(e) => {
            tracing::debug!(nsp = %ns.name, error = %e, "session not recovered: the adapter failed");
            return None;
        }
    };
    let expired = found
        .session
        .expires_at
        .is_some_and(|at| at <= SystemTime::now());
    if expired || ns.has_socket(&found.session.sid) {
        tracing::debug!(nsp = %ns.name, expired, "session not recovered");
        return None;
    }
    Some(found)
}

/// A recovered socket gets what it missed before its CONNECT reply (as Node sends it),
/// then is registered and back in its rooms — under the adapter's gate, which hands back
/// what was broadcast to those rooms since the restore — so each packet reaches it once,
/// replayed or live, and older ones first (live ones wait in the socket until the reply
/// has gone). False when the session closed meanwhile.
fn attach_and_replay(
    session: &Arc<Session<ConnectionState>>,
    socket: &Arc<Socket>,
    ns: &Arc<Namespace>,
    found: RecoveredSession,
) -> bool {
    session.send_all(found.missed.into_iter().flatten());
    let rooms = found.session.rooms;
    let mut registered = false;
    let late = ns
        .adapter()
        .attach_restored(&socket.id, &rooms, found.resume, &mut || {
            registered = session.data.register(socket, ns);
            if registered {
                for room in &rooms {
                    if **room != *socket.id.as_str() {
                        socket.join(room.clone());
                    }
                }
            }
        });
    session.send_all(late.into_iter().flatten());
    registered
}

fn refuse(session: &Session<ConnectionState>, socket: &Socket, refusal: super::ConnectRefusal) {
    let reply = Packet::connect_error(socket.nsp(), &refusal.message, refusal.data);
    session.send_all(encode_frames(&reply, &[]));
}
