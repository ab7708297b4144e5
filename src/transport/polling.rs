//! HTTP long-polling: GET waits for packets, POST delivers them.
//!
//! A GET is held until something is queued (at worst the next ping), then answers every
//! queued packet joined by `\x1e`. At most one GET may be pending per session; a second
//! one is a protocol violation that closes the session (the pending one gets `1`). A GET
//! the client abandons (connection dropped) also closes the session, as in Node: its
//! packets may already be lost, and the client will reconnect.

use super::body::{BodyError, RequestBody};
use super::handshake::{text_response, Body, EngineError};
use super::session::Drain;
use super::{CloseReason, Engine, EngineHandler, Frame, Session};
use crate::protocol::engineio::{self, RECORD_SEPARATOR};
use http::Response;
use std::sync::Arc;

const PAYLOAD_CONTENT_TYPE: &str = "text/plain; charset=UTF-8";

/// Encodes queued frames as one polling payload.
pub(super) fn payload_response(frames: &[Frame]) -> Response<Body> {
    let mut out = String::with_capacity(frames.iter().map(|f| f.len() + 1).sum());
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        match f {
            Frame::Text(t) => out.push_str(t),
            Frame::Binary(b) => engineio::encode_binary_base64(b, &mut out),
            // Only a WebSocket session queues these; polling has no frames to put them in.
            Frame::Framed(_) => {}
        }
    }
    crate::metrics::bytes_sent(super::TransportKind::Polling.as_str(), out.len());
    text_response(out, PAYLOAD_CONTENT_TYPE)
}

/// Closes the session if the pending GET is dropped before it answered (the client gave up).
struct PollGuard<'a, D> {
    session: &'a Session<D>,
    done: bool,
}

impl<D> Drop for PollGuard<'_, D> {
    fn drop(&mut self) {
        self.session.end_poll();
        if !self.done {
            self.session.close(CloseReason::TransportError);
        }
    }
}

/// How long a poll that arrives mid-upgrade waits for the upgrade to complete. The client
/// sends `5` on the WebSocket and may poll at the same moment on another connection; Node
/// sees them in order on its single thread, we may not, so we give the `5` a moment.
const UPGRADE_SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

pub(super) async fn poll<H: EngineHandler>(
    _engine: &Arc<Engine<H>>,
    session: &Arc<Session<H::Data>>,
) -> Result<Response<Body>, EngineError> {
    if !session.begin_poll() {
        session.close(CloseReason::ParseError);
        return Err(EngineError::BadRequest);
    }
    let mut guard = PollGuard {
        session,
        done: false,
    };
    let mut settled = false;
    let res = loop {
        if session.transport() != super::TransportKind::Polling {
            guard.done = true;
            return Err(EngineError::BadRequest);
        }
        match session.drain() {
            Drain::Frames(frames) => break payload_response(&frames),
            // The client's own `close` ends its poll with a noop; any other close tells
            // the client with a `close` packet so it does not poll again.
            Drain::Closed(CloseReason::TransportClose) => {
                session.mark_close_delivered();
                break text_response("6", PAYLOAD_CONTENT_TYPE);
            }
            Drain::Closed(_) => {
                session.mark_close_delivered();
                break text_response("1", PAYLOAD_CONTENT_TYPE);
            }
            Drain::Upgrading if !settled => {
                settled = true;
                // Boxed: rare, and inline its timer would be in every held poll.
                let settle = tokio::time::timeout(UPGRADE_SETTLE, session.upgrade_settled());
                let _ = Box::pin(settle).await;
            }
            Drain::Upgrading => break text_response("6", PAYLOAD_CONTENT_TYPE),
            Drain::Empty => session.writable().await,
        }
    };
    guard.done = true;
    Ok(res)
}

pub(super) async fn post<H: EngineHandler>(
    engine: &Arc<Engine<H>>,
    session: &Arc<Session<H::Data>>,
    body: impl RequestBody,
) -> Response<Body> {
    let body = match body.read_whole(engine.config.max_payload).await {
        Ok(b) => b,
        Err(e) => {
            let (reason, err) = match e {
                BodyError::TooLarge => (CloseReason::ParseError, EngineError::PayloadTooLarge),
                BodyError::Failed => (CloseReason::TransportError, EngineError::BadRequest),
            };
            session.close(reason);
            return err.response();
        }
    };
    crate::metrics::bytes_received(super::TransportKind::Polling.as_str(), body.len());
    let Ok(text) = std::str::from_utf8(&body) else {
        session.close(CloseReason::ParseError);
        return EngineError::BadRequest.response();
    };
    for packet in engineio::decode_payload(text) {
        match packet {
            Ok(p) => engine.on_packet(session, p),
            Err(_) => {
                session.close(CloseReason::ParseError);
                return EngineError::BadRequest.response();
            }
        }
    }
    text_response("ok", "text/html")
}
