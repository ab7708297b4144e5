//! The engine's one background task: it runs every session's heartbeat and performs each
//! closed session's one and only cleanup.
//!
//! Whoever closes a session (a transport error, the client, the layer above, a missed
//! pong, a drain) only flips its state and posts its id here; this task unregisters it
//! and calls `on_close` exactly once, so cleanup never depends on which transport
//! noticed first. One task per engine instead of one per session: an idle session holds
//! no future and no timer of its own.

use super::{CloseReason, Engine, EngineHandler, Session};
use crate::protocol::engineio::TransportKind;
use crate::sid::Sid;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// Closed sessions handled per wake-up: a drain closes every session at once.
const REAP_BATCH: usize = 256;

/// Runs until the engine and every session it made are gone (the channel closes).
pub(super) async fn run<H: EngineHandler>(
    engine: Weak<Engine<H>>,
    mut closed: UnboundedReceiver<Sid>,
) {
    let mut sids = Vec::with_capacity(REAP_BATCH);
    loop {
        let (next, heartbeats) = {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let next = engine
                .heartbeats
                .fire_due(Instant::now(), |sid| engine.get_session(sid));
            (next, engine.heartbeats.clone())
        };
        tokio::select! {
            n = closed.recv_many(&mut sids, REAP_BATCH) => {
                if n == 0 {
                    return;
                }
                let Some(engine) = engine.upgrade() else { return };
                for sid in sids.drain(..) {
                    reap(&engine, &sid);
                }
            }
            _ = heartbeats.wait(next) => {}
        }
    }
}

/// Tells the handler a session closed and removes it.
fn reap<H: EngineHandler>(engine: &Arc<Engine<H>>, sid: &Sid) {
    let Some(session) = engine.get_session(sid) else {
        return;
    };
    let reason = session.close_reason().unwrap_or(CloseReason::ForcedClose);
    crate::metrics::engine_closed(reason.as_str());
    engine.heartbeats.forget(&session);
    engine.handler.on_close(&session, reason);
    if owes_close_poll(&session, reason) {
        let engine = engine.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CLOSE_LINGER, session.close_delivered()).await;
            engine.unregister(&session);
        });
    } else {
        engine.unregister(&session);
    }
}

/// How long a closed polling session stays reachable so that the client's next poll
/// receives its answer (`close`, or `noop`) instead of "Session ID unknown".
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A polling client learns of a server-side close only through its next GET, and a
/// client that posted its own `close` with no GET pending still gets an answer to the GET
/// it sends next (a `noop`, as Node's buffered close gives it). Node keeps the session
/// until then; so do we (briefly), so the client reports "transport close" and
/// reconnects cleanly instead of seeing an error.
fn owes_close_poll<D>(session: &Session<D>, reason: CloseReason) -> bool {
    reason.owes_close_poll()
        && session.transport() == TransportKind::Polling
        && !session.close_was_delivered()
}
