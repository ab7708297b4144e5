//! The per-session supervisor: runs the heartbeat and performs the one and only cleanup.
//!
//! Engine.IO v4 heartbeats go server → client: every `pingInterval` the server sends
//! `2`, and the client must answer `3` within `pingTimeout` or the session is dead.
//! Whoever closes a session (a transport error, the client, the layer above, a drain)
//! only flips its state; this task sees it, unregisters the session and calls
//! `on_close` exactly once.

use super::{CloseReason, Engine, EngineHandler, Frame, Session};
use crate::protocol::engineio::TransportKind;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};

/// `opened` is when the handshake was queued: deadlines count from there, not from when
/// this task first runs, so a busy scheduler cannot stretch `pingInterval + pingTimeout`.
pub(super) async fn run<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    session: Arc<Session<H::Data>>,
    opened: Instant,
) {
    let interval = engine.config.ping_interval;
    let timeout = engine.config.ping_timeout;
    let mut next_ping = opened + interval;
    loop {
        tokio::select! {
            _ = session.closed() => break,
            _ = sleep_until(next_ping) => {}
        }
        // A pong left over from before this ping must not count for it.
        drain_stale_pong(&session);
        session.send(Frame::text("2"));
        tokio::select! {
            _ = session.closed() => break,
            _ = session.pong.notified() => next_ping = Instant::now() + interval,
            _ = sleep_until(next_ping + timeout) => session.close(CloseReason::PingTimeout),
        }
    }
    let reason = session.close_reason().unwrap_or(CloseReason::ForcedClose);
    crate::metrics::engine_closed(reason.as_str());
    engine.handler.on_close(&session, reason);
    linger_for_close_packet(&session, reason).await;
    engine.unregister(&session);
}

/// How long a closed polling session stays reachable so that the client's next poll
/// receives its answer (`close`, or `noop`) instead of "Session ID unknown".
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A polling client learns of a server-side close only through its next GET, and a
/// client that posted its own `close` with no GET pending still gets an answer to the GET
/// it sends next (a `noop`, as Node's buffered close gives it). Node keeps the session
/// until then; so do we (briefly), so the client reports "transport close" and
/// reconnects cleanly instead of seeing an error.
async fn linger_for_close_packet<D>(session: &Session<D>, reason: CloseReason) {
    if reason.owes_close_poll() && session.transport() == TransportKind::Polling {
        let _ = tokio::time::timeout(CLOSE_LINGER, session.close_delivered()).await;
    }
}

/// `Notify` keeps one permit from an unsolicited pong; consume it without waiting.
fn drain_stale_pong<D>(session: &Session<D>) {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let fut = session.pong.notified();
    tokio::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    let _ = matches!(fut.as_mut().poll(&mut cx), Poll::Ready(()));
}
