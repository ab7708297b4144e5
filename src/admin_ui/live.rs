//! Development mode: every socket's life, live, to every Admin UI of the cluster —
//! `socket_connected`, `socket_updated` (transport upgraded, data changed),
//! `socket_disconnected`, `room_joined`, `room_left`, `event_received`, `event_sent` with
//! the package's argument lists — and the full list
//! of sockets (`all_sockets`, cluster-wide through `fetch_sockets`) when a UI connects.
//!
//! Each of those is a broadcast on the UI's namespace (through the adapter, so a UI on
//! any node sees every node's sockets): a cost per event, which is why it is off in
//! production mode.

use super::AdminUi;
use crate::server::adapter::RemoteSocket;
use crate::server::observer::SocketObserver;
use crate::server::{DisconnectReason, Event, Payload, Socket, SocketRef};
use crate::sid::Sid;
use serde_json::{json, Value};
use std::sync::{Arc, Weak};

/// The watcher every namespace gets in development mode.
pub struct Live {
    admin: Weak<AdminUi>,
}

impl Live {
    pub fn new(admin: &Arc<AdminUi>) -> Arc<Live> {
        Arc::new(Live {
            admin: Arc::downgrade(admin),
        })
    }

    /// Broadcasts `event` with `args` and a timestamp to every UI.
    fn tell(&self, event: &str, mut args: Vec<Value>) {
        args.push(json!(now_iso()));
        self.broadcast(event, args);
    }

    /// Broadcasts `event` with `args` as they are (`socket_updated` has no timestamp).
    fn broadcast(&self, event: &str, args: Vec<Value>) {
        let Some(admin) = self.admin.upgrade() else {
            return;
        };
        let Some(ns) = admin.io().and_then(|io| io.of(&admin.config.namespace)) else {
            return;
        };
        ns.emit(event, Payload::new(args));
    }

    fn is_admin(&self, nsp: &str) -> bool {
        self.admin
            .upgrade()
            .is_some_and(|a| a.config.namespace == nsp)
    }
}

impl SocketObserver for Live {
    fn connected(&self, socket: &SocketRef) {
        // As the package does: the client id and transport travel in `data._admin`, so
        // other nodes' `fetch_sockets` carry them too.
        let mut data = socket.data();
        if !data.is_object() {
            data = json!({});
        }
        data["_admin"] = json!({
            "clientId": client_id(&socket.engine_id()),
            "transport": socket.transport().as_str(),
        });
        socket.set_data(data);
        self.tell("socket_connected", vec![serialize_local(socket)]);
    }

    fn upgraded(&self, socket: &SocketRef) {
        let transport = socket.transport().as_str();
        // Other nodes' fetch_sockets read the transport from data._admin. (Setting it
        // also reports a data change, with the same data: harmless to the UI.)
        let mut data = socket.data();
        if let Some(admin) = data.get_mut("_admin").and_then(Value::as_object_mut) {
            admin.insert("transport".into(), json!(transport));
            socket.set_data(data);
        }
        self.broadcast(
            "socket_updated",
            vec![json!({"id": socket.id.as_str(), "nsp": socket.nsp(), "transport": transport})],
        );
    }

    fn data_changed(&self, socket: &Socket) {
        self.broadcast(
            "socket_updated",
            vec![json!({"id": socket.id.as_str(), "nsp": socket.nsp(), "data": without_admin(socket.data())})],
        );
    }

    fn disconnected(&self, socket: &SocketRef, reason: DisconnectReason) {
        self.tell(
            "socket_disconnected",
            vec![
                json!(socket.nsp()),
                json!(socket.id.as_str()),
                json!(reason.as_str()),
            ],
        );
    }

    fn joined(&self, nsp: &str, room: &str, sid: &Sid) {
        self.tell(
            "room_joined",
            vec![json!(nsp), json!(room), json!(sid.as_str())],
        );
    }

    fn left(&self, nsp: &str, room: &str, sid: &Sid) {
        self.tell(
            "room_left",
            vec![json!(nsp), json!(room), json!(sid.as_str())],
        );
    }

    fn received(&self, socket: &SocketRef, event: &Event) {
        if self.is_admin(socket.nsp()) {
            return;
        }
        let mut data = vec![json!(event.name)];
        data.extend(event.args().iter().cloned());
        self.tell(
            "event_received",
            vec![
                json!(socket.nsp()),
                json!(socket.id.as_str()),
                Value::Array(data),
            ],
        );
    }

    fn sent(&self, nsp: &str, sid: &Sid, data: &Value) {
        if self.is_admin(nsp) {
            return;
        }
        self.tell(
            "event_sent",
            vec![json!(nsp), json!(sid.as_str()), data.clone()],
        );
    }
}

/// The package's client id: the Engine.IO session id's first 12 characters.
fn client_id(engine: &Sid) -> String {
    engine.as_str().chars().take(12).collect()
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A socket of this node as the package's `SerializedSocket`.
pub fn serialize_local(socket: &SocketRef) -> Value {
    json!({
        "id": socket.id.as_str(),
        "clientId": client_id(&socket.engine_id()),
        "transport": socket.transport().as_str(),
        "nsp": socket.nsp(),
        "data": without_admin(socket.data()),
        "handshake": handshake(socket.handshake_json()),
        "rooms": socket.rooms().iter().map(|r| r.to_string()).collect::<Vec<_>>(),
    })
}

/// A socket from `fetch_sockets` (any node's, ours or Node's) as a `SerializedSocket`.
pub fn serialize_remote(socket: &RemoteSocket, nsp: &str) -> Value {
    if let Some(local) = &socket.local {
        return serialize_local(local);
    }
    let admin = socket.data.get("_admin");
    json!({
        "id": socket.id,
        "clientId": admin.and_then(|a| a.get("clientId")).cloned().unwrap_or(Value::Null),
        "transport": admin.and_then(|a| a.get("transport")).cloned().unwrap_or(Value::Null),
        "nsp": nsp,
        "data": without_admin(socket.data.clone()),
        "handshake": handshake(socket.handshake.clone()),
        "rooms": socket.rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
    })
}

/// Every socket of the cluster, over the namespaces this node serves.
pub async fn all_sockets(admin: &AdminUi) -> Vec<Value> {
    let Some(io) = admin.io() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut namespaces = io.namespaces();
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    for ns in namespaces {
        match ns.fetch_sockets().await {
            Ok(sockets) => out.extend(sockets.iter().map(|s| serialize_remote(s, &ns.name))),
            Err(e) => {
                tracing::warn!(nsp = %ns.name, error = %e, "admin UI: cannot list the cluster's sockets")
            }
        }
    }
    out
}

/// `data` without the package's `_admin` bookkeeping.
fn without_admin(mut data: Value) -> Value {
    if let Some(map) = data.as_object_mut() {
        map.remove("_admin");
    }
    data
}

/// The handshake as the package shows it: never the client's `auth` (its credentials),
/// and the address a proxy reported when there is one.
fn handshake(mut h: Value) -> Value {
    if let Some(map) = h.as_object_mut() {
        map.remove("auth");
        let forwarded = ["cf-connecting-ip", "x-forwarded-for"]
            .iter()
            .find_map(|k| map.get("headers")?.get(*k)?.as_str().map(str::to_owned));
        if let Some(address) = forwarded {
            map.insert("address".into(), json!(address));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_hides_credentials_and_shows_the_forwarded_address() {
        let h = handshake(json!({
            "address": "10.0.0.1",
            "auth": {"token": "secret"},
            "headers": {"x-forwarded-for": "203.0.113.7"},
        }));
        assert_eq!(
            h,
            json!({"address": "203.0.113.7", "headers": {"x-forwarded-for": "203.0.113.7"}})
        );
        assert_eq!(
            without_admin(json!({"userId": "u1", "_admin": {}})),
            json!({"userId": "u1"})
        );
    }
}
