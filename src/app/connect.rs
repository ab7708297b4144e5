//! The connect steps every product namespace gets: who the client is (auth) and that it
//! is online (presence).

use crate::auth::Verifier;
use crate::handlers::kit::User;
use crate::presence::Presence;
use crate::server::{ConnectRefusal, NamespaceBuilder};
use crate::sync::MutexExt as _;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long a connect waits for presence to have its socket (one writer batch, a few
/// milliseconds normally). Within it, a client that is connected is online cluster-wide
/// — a second tab opened and the first closed never flaps offline/online to peers; past
/// it (Redis slow or down) the connect goes ahead and the write follows in order.
const PRESENCE_WAIT: Duration = Duration::from_millis(250);

/// Records every authenticated socket in presence.
pub fn track_presence(ns: &mut NamespaceBuilder, presence: Arc<Presence>) {
    let p = presence.clone();
    ns.on_connect(move |socket| {
        let p = p.clone();
        async move {
            if let Some(user) = User::of(&socket) {
                // A failed write is counted and logged by presence's writer.
                let recorded = p.connected(&user.id, socket.id.as_str());
                let _ = tokio::time::timeout(PRESENCE_WAIT, recorded).await;
            }
            Ok(())
        }
    });
    ns.on_disconnect(move |socket, _reason| {
        let Some(user) = User::of(&socket) else {
            return;
        };
        presence.untrack(&user.id, socket.id.as_str());
    });
}

/// The auth middleware: a NextAuth v4 / Auth.js v5 / HS256 token from the handshake, the
/// `Authorization` header or the session cookie. On failure the client gets
/// `connect_error` `{message: "unauthorized", data: {reason}}` and no socket exists.
/// An accepted socket carries its [`User`], its token's expiry, and Node's `socket.data`
/// `{userId}` (what a Node app's auth middleware sets, and what every node sees through
/// `fetchSockets`).
pub fn authenticate(ns: &mut NamespaceBuilder, verifier: Arc<Verifier>) {
    ns.use_middleware(move |socket| {
        let verifier = verifier.clone();
        async move {
            let identity = verifier
                .authenticate(
                    &socket.auth(),
                    &socket.handshake().headers,
                    SystemTime::now(),
                )
                .map_err(|e| {
                    crate::metrics::auth_failure(socket.nsp(), e.reason());
                    tracing::debug!(
                        nsp = socket.nsp(),
                        reason = e.reason(),
                        "connection refused: authentication failed"
                    );
                    ConnectRefusal::new("unauthorized").with_data(json!({ "reason": e.reason() }))
                })?;
            socket.set_data(json!({ "userId": identity.user_id }));
            socket.set_expires_at(identity.expires_at());
            socket.extensions.lock_unpoisoned().insert(User {
                id: identity.user_id,
                name: identity.name,
                email: identity.email,
            });
            Ok(())
        }
    });
    // A recovered socket skipped the middleware above (RECOVERY_SKIP_MIDDLEWARES): its
    // user comes back from the session's `socket.data`, checked by the middleware when
    // the socket first connected. Its token's expiry came back with the session, which
    // is not recovered past it. A session without a user id (kept by a Node node of
    // another app) cannot be trusted: refused, so the client connects afresh.
    ns.on_connect(|socket| async move {
        if User::of(&socket).is_some() {
            return Ok(());
        }
        let data = socket.data();
        let Some(id) = data.get("userId").and_then(|v| v.as_str()) else {
            return Err(ConnectRefusal::new("unauthorized")
                .with_data(json!({ "reason": "session_without_user" })));
        };
        socket.extensions.lock_unpoisoned().insert(User {
            id: id.to_owned(),
            name: None,
            email: None,
        });
        Ok(())
    });
}
