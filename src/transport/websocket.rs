//! The WebSocket transport: a fresh session, or the upgrade of a polling session.
//!
//! One task per connection reads what the client sends (tungstenite decodes it). Writes
//! are made by whoever sends: a sender finding nothing queued writes its frame to the
//! socket itself, under the session's lock (`ws_write`); the task writes only what the
//! socket could not take at once, and never reads while it does. Buffers are small (see
//! `EngineConfig::ws_read_buffer`): an idle connection should cost a few KiB, not
//! tungstenite's default 128 KiB.

use super::handshake::{Body, EngineError, RequestInfo};
use super::session::Flush;
use super::ws_io::WsIo;
use super::{CloseReason, Engine, EngineHandler, Session};
use crate::protocol::engineio::{self, Data, Packet, TransportKind};
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::time::sleep;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

type Ws<D> = WebSocketStream<WsIo<D>>;

/// How long a closing session waits for the socket to take its close frame.
const CLOSE_FRAME_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Completes the WebSocket handshake only to close the socket at once: what Node does with
/// a second WebSocket for a session that already upgraded. Browsers and `ws` then see a
/// clean close instead of an HTTP error they may not handle.
pub(super) fn accept_and_close<B>(mut req: Request<B>) -> Result<Response<Body>, EngineError> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let res = switching_protocols(&req)?;
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            let _ = ws.close(None).await;
        }
    });
    Ok(res)
}

/// The 101 answer to a valid WebSocket upgrade request.
fn switching_protocols<B>(req: &Request<B>) -> Result<Response<Body>, EngineError> {
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(EngineError::BadRequest)?;
    if req.headers().get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return Err(EngineError::BadRequest);
    }
    let accept = derive_accept_key(key.as_bytes());
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    Ok(res)
}

/// Answers the HTTP upgrade and hands the connection to a task.
/// `existing` is the polling session to upgrade, if the request named one.
pub(super) fn accept<H: EngineHandler, B>(
    engine: Arc<Engine<H>>,
    mut req: Request<B>,
    existing: Option<Arc<Session<H::Data>>>,
    info: RequestInfo,
) -> Result<Response<Body>, EngineError> {
    let res = match switching_protocols(&req) {
        Ok(res) => res,
        Err(e) => {
            if let Some(s) = &existing {
                s.abort_upgrade();
            }
            return Err(e);
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Boxed: it waits in the task's captures until the session takes it.
    let info = Box::new(info);
    tokio::spawn(async move {
        let io = match on_upgrade.await.map(WsIo::from_upgraded) {
            Ok(Ok(io)) => io,
            Ok(Err(_)) => {
                tracing::error!(
                    "websocket upgrade on a connection that is not a TCP socket; closing it"
                );
                if let Some(s) = &existing {
                    s.abort_upgrade();
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                if let Some(s) = &existing {
                    s.abort_upgrade();
                }
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(&engine))).await;
        tokio::spawn(serve(engine, existing, info, ws));
    });
    Ok(res)
}

/// The connection's life, in a task of its own: a task is as large as its largest
/// state, and in the one above the upgrade's state would stay reserved beside the
/// WebSocket for as long as the connection lasts (1,824 bytes per connection there;
/// this one is about 1,100). Not an `async fn`: its arguments would be stored twice.
#[allow(clippy::manual_async_fn)] // an `async fn` would store `ws` twice (see above)
fn serve<H: EngineHandler>(
    engine: Arc<Engine<H>>,
    existing: Option<Arc<Session<H::Data>>>,
    info: Box<RequestInfo>,
    mut ws: Ws<H::Data>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        match existing {
            None => {
                let session = engine.create_session(unbox(info));
                run(&engine, session, &mut ws).await;
            }
            Some(session) => {
                // Boxed: its timer would otherwise stay reserved in every connection's task.
                if !Box::pin(probe(&engine, &session, &mut ws)).await {
                    let _ = SinkExt::close(&mut ws).await;
                    return;
                }
                engine.handler.on_upgrade(&session);
                run(&engine, session, &mut ws).await;
            }
        }
    }
}

/// Moves a value out of its box and frees the box now. `*boxed` inside an async block
/// would free it only when the block's scope ends, which for the connection task is
/// when the connection does (a 200-byte `RequestInfo` box kept per connection).
#[allow(clippy::boxed_local)] // taking the box by value is the point
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

fn ws_config<H: EngineHandler>(engine: &Engine<H>) -> WebSocketConfig {
    let max = engine.config.max_payload;
    WebSocketConfig::default()
        .read_buffer_size(engine.config.ws_read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// The polling → WebSocket upgrade: `2probe` → `3probe`, then wait for `5`.
/// Returns true when the WebSocket now carries the session.
async fn probe<H: EngineHandler>(
    engine: &Engine<H>,
    session: &Session<H::Data>,
    ws: &mut Ws<H::Data>,
) -> bool {
    let deadline = sleep(engine.config.upgrade_timeout);
    tokio::pin!(deadline);
    let mut probed = false;
    loop {
        let msg = tokio::select! {
            _ = &mut deadline => break,
            _ = session.closed() => break,
            msg = ws.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(t))) if !probed && t.as_str() == "2probe" => {
                if !session.begin_upgrade() {
                    break;
                }
                probed = true;
                if ws.send(Message::text("3probe")).await.is_err() {
                    break;
                }
            }
            Some(Ok(Message::Text(t))) if probed && t.as_str() == "5" => {
                session.finish_upgrade();
                return true;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            _ => break,
        }
    }
    session.abort_upgrade();
    false
}

/// The connection loop: write what senders left queued, read what arrives, until the
/// session closes. Senders write to the socket themselves while nothing is queued
/// (`Session::send_all`); this loop writes only what they could not.
async fn run<H: EngineHandler>(
    engine: &Engine<H>,
    session: Arc<Session<H::Data>>,
    ws: &mut Ws<H::Data>,
) {
    ws.get_mut().attach(session.clone());
    loop {
        match session.flush() {
            Flush::Done => {}
            Flush::Blocked => {
                tokio::select! {
                    ready = ws.get_ref().socket().writable() => if ready.is_err() {
                        session.close(CloseReason::TransportError);
                    },
                    _ = session.closed() => {}
                }
                continue;
            }
            Flush::Failed => {
                session.close(CloseReason::TransportError);
                continue;
            }
            Flush::Closed(reason) => {
                let clean =
                    reason != CloseReason::TransportClose && reason != CloseReason::TransportError;
                if clean && !session.is_mid_frame() {
                    // The sink's close sends the close frame itself and holds no message,
                    // unlike `WebSocketStream::close`, whose state every task would carry.
                    // Bounded: a client that stopped reading would hold the task forever;
                    // boxed, so the timer is not room in every connection's task.
                    let close = tokio::time::timeout(CLOSE_FRAME_WAIT, SinkExt::close(ws));
                    let _ = Box::pin(close).await;
                }
                break;
            }
        }
        tokio::select! {
            msg = ws.next() => on_message(engine, &session, msg),
            _ = session.writable() => {}
        }
    }
    session.detach_socket();
}

fn on_message<H: EngineHandler>(
    engine: &Engine<H>,
    session: &Arc<Session<H::Data>>,
    msg: Option<Result<Message, WsError>>,
) {
    if let Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) = &msg {
        crate::metrics::bytes_received(TransportKind::Websocket.as_str(), m.len());
    }
    match msg {
        Some(Ok(Message::Text(t))) => match engineio::decode_text(t.as_str()) {
            Ok(packet) => engine.on_packet(session, packet),
            Err(e) => {
                tracing::debug!(sid = %session.sid, error = %e, "invalid engine.io packet");
                session.close(CloseReason::ParseError);
            }
        },
        Some(Ok(Message::Binary(b))) => engine.on_packet(session, Packet::Message(Data::Binary(b))),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
        Some(Ok(Message::Close(_))) | None => session.close(CloseReason::TransportClose),
        Some(Err(e)) => session.close(error_reason(&e)),
    }
}

/// Why a read error ends the session. A TCP connection that ends without a close frame
/// (a network blip, a killed browser tab) is `ws`'s close 1006 in Node, which engine.io
/// reports as "transport close": a reason connection state recovery recovers from.
/// tungstenite calls it a protocol error; taken as one, the session would end with
/// "parse error", which recovery never recovers from.
fn error_reason(e: &WsError) -> CloseReason {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            CloseReason::TransportClose
        }
        WsError::Capacity(_) | WsError::Protocol(_) | WsError::Utf8(_) => CloseReason::ParseError,
        _ => CloseReason::TransportError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};

    #[test]
    fn a_connection_gone_without_a_close_frame_is_a_transport_close() {
        let reset = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(error_reason(&reset), CloseReason::TransportClose);
        let io = WsError::Io(std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(error_reason(&io), CloseReason::TransportError);
        let bad = WsError::Protocol(ProtocolError::NonZeroReservedBits);
        assert_eq!(error_reason(&bad), CloseReason::ParseError);
        let big = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        });
        assert_eq!(error_reason(&big), CloseReason::ParseError);
    }
}
