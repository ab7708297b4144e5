//! The byte stream under a WebSocket session: the connection's TCP socket, shared with the
//! session so that senders can write to it themselves (`ws_write`), while tungstenite
//! reads from it in the connection's task.

use super::http1::HandedToHyper;
use super::prefixed::read_prefix;
use super::{Frame, Session};
use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What tungstenite reads from and writes to.
///
/// Reads come from bytes hyper read past the upgrade request (normally none), then the
/// socket. Writes are tungstenite's own frames (the probe's `3probe`, pongs, close
/// frames): before a session is attached they go to the socket; after, they are queued
/// through the session, so they keep their place among the packets senders write.
pub(super) struct WsIo<D> {
    socket: Arc<TcpStream>,
    prefix: Bytes,
    session: Option<Arc<Session<D>>>,
}

impl<D> WsIo<D> {
    /// The socket under an upgraded connection. Every connection the listener hands to
    /// hyper is a [`HandedToHyper`], so the downcast holds; it gives the upgrade back
    /// when it does not.
    pub(super) fn from_upgraded(upgraded: Upgraded) -> Result<Self, Upgraded> {
        let parts = upgraded.downcast::<TokioIo<HandedToHyper>>()?;
        let (unread, socket) = parts.io.into_inner().into_parts();
        // Copied, never kept as they are: even empty, these are views of hyper's and the
        // listener's read buffers, which they would keep allocated (kilobytes each).
        let mut prefix = BytesMut::new();
        prefix.extend_from_slice(&unread);
        prefix.extend_from_slice(&parts.read_buf);
        Ok(WsIo {
            socket: Arc::new(socket),
            prefix: prefix.freeze(),
            session: None,
        })
    }

    pub(super) fn socket(&self) -> &Arc<TcpStream> {
        &self.socket
    }

    /// From now on tungstenite's frames are queued through `session`.
    pub(super) fn attach(&mut self, session: Arc<Session<D>>) {
        session.attach_socket(self.socket.clone());
        self.session = Some(session);
    }
}

impl<D> AsyncRead for WsIo<D> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if read_prefix(&mut self.prefix, buf) {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.socket.poll_read_ready(cx))?;
            match self.socket.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<D> AsyncWrite for WsIo<D> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(session) = &self.session {
            // tungstenite hands over whole frames (its write buffer is flushed at once).
            if session.send(Frame::Framed(Bytes::copy_from_slice(buf))) {
                return Poll::Ready(Ok(buf.len()));
            }
            if session.is_mid_frame() {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            // Closed: the close frame goes straight to the socket.
        }
        loop {
            ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The socket closes when the connection's task and its session both let it go.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
