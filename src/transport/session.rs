//! One Engine.IO session: the outgoing queue both transports drain, the upgrade state,
//! and the close signal.
//!
//! Why one queue for both transports: a session can start on long-polling and move to a
//! WebSocket mid-stream. Packets are encoded once by whoever sends them (a broadcast to
//! 10,000 sockets encodes once and clones a refcount 10,000 times) and wait here until the
//! current transport writes them, so an upgrade never reorders or loses a packet. On a
//! WebSocket the queue is usually skipped: a sender that finds it empty writes the frame
//! to the socket itself (see `ws_write`), and only what the socket does not take at once
//! waits here for the connection's task.
//!
//! Memory matters here (100k idle sessions per cluster): an idle session is this struct
//! and an empty `VecDeque` (no allocation); nothing is preallocated, and no task or timer
//! of its own (the engine's housekeeper runs every session's heartbeat and cleanup).

use super::handshake::RequestInfo;
use super::ws_write;
use crate::protocol::engineio::TransportKind;
use crate::sid::Sid;
use crate::sync::MutexExt as _;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An encoded Engine.IO packet waiting to be written: a text packet (`4…`, `2`, `6`) or
/// the raw bytes of a binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(Utf8Bytes),
    Binary(Bytes),
    /// Bytes already framed for the WebSocket, written as they are: tungstenite's own
    /// pong and close frames, queued by the WebSocket loop so they keep their place
    /// among the packets. Never queued on a polling session.
    Framed(Bytes),
}

impl Frame {
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Frame::Text(s.into())
    }

    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) | Frame::Framed(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A message packet (`4…`, or a binary attachment), not a heartbeat or control one.
    pub fn is_message(&self) -> bool {
        match self {
            Frame::Text(t) => t.as_bytes().first() == Some(&b'4'),
            Frame::Binary(_) => true,
            Frame::Framed(_) => false,
        }
    }
}

/// Why a session ended. The names are those Node's engine.io reports, so logs and
/// metrics read the same across a mixed cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client sent a `close` packet.
    TransportClose,
    /// The connection dropped or a poll request was abandoned.
    TransportError,
    /// The client broke the protocol (invalid packet, duplicate poll, oversized payload).
    ParseError,
    /// No pong within `pingTimeout`.
    PingTimeout,
    /// The server closed it (socket.io disconnect, connect timeout).
    ForcedClose,
    /// The server is draining.
    ServerShutdown,
    /// The client did not read fast enough and its queue passed the limit.
    SlowConsumer,
}

impl CloseReason {
    /// Closes the server decided on, which the client learns of only from us.
    pub fn is_server_initiated(self) -> bool {
        matches!(
            self,
            Self::ForcedClose | Self::ServerShutdown | Self::SlowConsumer
        )
    }

    /// Whether a polling client is still owed an answer to its next poll after a close
    /// for this reason: `1` when the server closed (the client learns of it only from
    /// us), `6` when the client closed with a `1` packet of its own while no poll was
    /// pending (Node buffers that close until the next poll, which gets a `noop`).
    pub fn owes_close_poll(self) -> bool {
        self.is_server_initiated() || self == Self::TransportClose
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::ParseError => "parse error",
            Self::PingTimeout => "ping timeout",
            Self::ForcedClose => "forced close",
            Self::ServerShutdown => "server shutting down",
            Self::SlowConsumer => "slow consumer",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Frame>,
    queued_bytes: usize,
    /// The TCP socket of the WebSocket carrying the session: senders write to it
    /// themselves while nothing is queued (see `ws_write`).
    socket: Option<Arc<TcpStream>>,
    /// Bytes of the first queued frame already on the socket.
    front_written: usize,
    /// A WebSocket has claimed the upgrade (it may not have probed yet).
    upgrade_claimed: bool,
    upgrading: bool,
    upgraded: bool,
    poll_active: bool,
    close_reason: Option<CloseReason>,
}

/// What the WebSocket loop should do after [`Session::flush`].
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued is on the socket.
    Done,
    /// The socket is full: wait until it is writable, then flush again.
    Blocked,
    /// The socket failed.
    Failed,
    /// The session is closing for this reason.
    Closed(CloseReason),
}

/// What a poll should answer with next.
#[derive(Debug)]
pub enum Drain {
    /// Write these frames.
    Frames(Vec<Frame>),
    /// Nothing to write yet: wait for [`Session::writable`].
    Empty,
    /// The session is closing for this reason.
    Closed(CloseReason),
    /// A WebSocket is taking over; a pending poll should end with a `noop`.
    Upgrading,
}

/// Writes the queue to the attached socket until it is empty (true) or the socket is
/// full (false). Frames leave the queue once wholly written; the queue's memory is
/// released when it empties, so an idle session holds none.
fn write_queued(st: &mut State) -> std::io::Result<bool> {
    let State {
        queue,
        queued_bytes,
        socket,
        front_written,
        ..
    } = st;
    let Some(socket) = socket else {
        return Ok(queue.is_empty());
    };
    while !queue.is_empty() {
        let written = match ws_write::write_some(socket, queue.iter(), *front_written) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        let (complete, rest) = ws_write::settle(queue.iter(), *front_written + written);
        let mut payload = 0;
        for f in queue.drain(..complete) {
            payload += f.len();
        }
        *queued_bytes = queued_bytes.saturating_sub(payload);
        *front_written = rest;
        crate::metrics::bytes_sent(TransportKind::Websocket.as_str(), payload);
    }
    *queue = VecDeque::new();
    Ok(true)
}

/// An Engine.IO session, generic over the data the layer above keeps per session.
pub struct Session<D> {
    pub sid: Sid,
    pub request: RequestInfo,
    pub data: D,
    max_queued_bytes: usize,
    state: Mutex<State>,
    closed: AtomicBool,
    close_was_delivered: AtomicBool,
    /// Wakes the single writer: the pending poll or the WebSocket loop.
    writable: Notify,
    /// Where the session is in its heartbeat (see `heartbeat`).
    pub(super) beat: super::heartbeat::Beat,
    /// Wakes whoever waits for a change that happens once or twice in a session's life:
    /// the close, the close delivered to a poll, an upgrade settled. One `Notify` for
    /// all three (waiters re-check their own condition) is 64 bytes less per session.
    changed: Notify,
    /// Tells the engine's housekeeper that this session closed, for its cleanup.
    on_closed: UnboundedSender<Sid>,
}

impl<D> Session<D> {
    pub(crate) fn new(
        sid: Sid,
        request: RequestInfo,
        data: D,
        max_queued_bytes: usize,
        on_closed: UnboundedSender<Sid>,
    ) -> Self {
        Session {
            sid,
            request,
            data,
            max_queued_bytes,
            state: Mutex::default(),
            closed: AtomicBool::new(false),
            close_was_delivered: AtomicBool::new(false),
            writable: Notify::new(),
            beat: Default::default(),
            changed: Notify::new(),
            on_closed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-written, so a
        // poisoned lock is still usable.
        self.state.lock_unpoisoned()
    }

    /// The transport currently carrying the session.
    pub fn transport(&self) -> TransportKind {
        if self.lock().upgraded {
            TransportKind::Websocket
        } else {
            self.request.transport
        }
    }

    /// Sends one frame. Returns false when the session is closed (the frame is dropped).
    pub fn send(&self, frame: Frame) -> bool {
        self.send_all(std::iter::once(frame))
    }

    /// Sends frames back to back, so a binary packet's attachments are never interleaved
    /// with another packet. On a WebSocket with nothing queued they are written now, in
    /// the caller's task; otherwise they are queued for the transport's writer.
    pub fn send_all(&self, frames: impl IntoIterator<Item = Frame>) -> bool {
        self.deliver(frames, true)
    }

    /// Like [`Self::send_all`], but never writes in the caller's task: a broadcast to
    /// thousands of sockets queues most of them, so their connections' tasks write in
    /// parallel instead of one task making every `writev`.
    pub fn queue_all(&self, frames: impl IntoIterator<Item = Frame>) -> bool {
        self.deliver(frames, false)
    }

    fn deliver(&self, frames: impl IntoIterator<Item = Frame>, write_now: bool) -> bool {
        if self.is_closed() {
            return false;
        }
        let (overflow, wake, failed) = {
            let mut st = self.lock();
            if st.close_reason.is_some() {
                return false;
            }
            let was_empty = st.queue.is_empty();
            for f in frames {
                if f.is_message() {
                    crate::metrics::packets_out(1);
                }
                st.queued_bytes += f.len();
                st.queue.push_back(f);
            }
            let mut failed = false;
            if write_now && was_empty && st.socket.is_some() {
                failed = write_queued(&mut st).is_err();
            }
            let pending = !st.queue.is_empty();
            let wake = pending && (was_empty || st.socket.is_none());
            (st.queued_bytes > self.max_queued_bytes, wake, failed)
        };
        if failed {
            self.close(CloseReason::TransportError);
        } else if overflow {
            self.close(CloseReason::SlowConsumer);
        } else if wake {
            self.writable.notify_one();
        }
        true
    }

    /// Writes what is queued to the WebSocket's socket, as far as it takes it now.
    pub fn flush(&self) -> Flush {
        let mut st = self.lock();
        if let Some(reason) = st.close_reason {
            return Flush::Closed(reason);
        }
        match write_queued(&mut st) {
            Ok(true) => Flush::Done,
            Ok(false) => Flush::Blocked,
            Err(_) => Flush::Failed,
        }
    }

    /// From now on senders write to `socket` themselves (see [`Self::send_all`]).
    pub(crate) fn attach_socket(&self, socket: Arc<TcpStream>) {
        self.lock().socket = Some(socket);
    }

    /// The WebSocket loop ended: the socket closes once the loop drops its own handle.
    pub(crate) fn detach_socket(&self) {
        self.lock().socket = None;
    }

    /// A frame was cut short on the socket: nothing else may be written to it, not even
    /// a close frame.
    pub(crate) fn is_mid_frame(&self) -> bool {
        self.lock().front_written > 0
    }

    /// Takes everything queued, for a poll to answer with. (A WebSocket never drains:
    /// it writes from the queue in place, see [`Self::flush`].)
    pub fn drain(&self) -> Drain {
        let mut st = self.lock();
        if let Some(reason) = st.close_reason {
            return Drain::Closed(reason);
        }
        if st.upgrading {
            return Drain::Upgrading;
        }
        if st.queue.is_empty() {
            return Drain::Empty;
        }
        st.queued_bytes = 0;
        Drain::Frames(std::mem::take(&mut st.queue).into())
    }

    /// Resolves when there may be something for the writer to do.
    pub fn writable(&self) -> tokio::sync::futures::Notified<'_> {
        self.writable.notified()
    }

    /// Starts closing the session. The housekeeper removes it and tells the layer above;
    /// writers see the reason on their next drain. Idempotent: the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        {
            let mut st = self.lock();
            if st.close_reason.is_some() {
                return;
            }
            st.close_reason = Some(reason);
            st.queue.clear();
            st.queued_bytes = 0;
        }
        self.closed.store(true, Ordering::Release);
        self.writable.notify_one();
        self.changed.notify_waiters();
        // Fails only once the engine is gone, when nobody is left to clean up for.
        let _ = self.on_closed.send(self.sid);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.lock().close_reason
    }

    /// Resolves once the session is closed (immediately if it already is).
    pub async fn closed(&self) {
        self.changed_until(Self::is_closed).await
    }

    /// Resolves once `done` holds, checked now and after each change.
    async fn changed_until(&self, done: impl Fn(&Self) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return;
            }
            notified.await;
        }
    }

    /// A poll answered the close: the session may go, and no later poll may get it again.
    pub(crate) fn mark_close_delivered(&self) {
        self.close_was_delivered.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    pub(crate) fn close_was_delivered(&self) -> bool {
        self.close_was_delivered.load(Ordering::Acquire)
    }

    pub(crate) async fn close_delivered(&self) {
        self.changed_until(Self::close_was_delivered).await
    }

    /// Marks a poll request as pending. False if one already is: the client broke the
    /// protocol, which closes the session.
    pub(crate) fn begin_poll(&self) -> bool {
        let mut st = self.lock();
        if st.poll_active {
            return false;
        }
        st.poll_active = true;
        true
    }

    pub(crate) fn end_poll(&self) {
        self.lock().poll_active = false;
    }

    /// A WebSocket asks to take this session over. Only one may: false if another
    /// already claimed it, the session upgraded, or it is closed.
    pub(crate) fn claim_upgrade(&self) -> bool {
        let mut st = self.lock();
        if st.upgrade_claimed || st.upgraded || st.close_reason.is_some() {
            return false;
        }
        st.upgrade_claimed = true;
        true
    }

    /// The claiming WebSocket's probe succeeded: stop feeding the poll (it ends with a
    /// `noop`). False if the session closed meanwhile.
    pub(crate) fn begin_upgrade(&self) -> bool {
        let mut st = self.lock();
        if !st.upgrade_claimed || st.close_reason.is_some() {
            return false;
        }
        st.upgrading = true;
        drop(st);
        self.writable.notify_one();
        true
    }

    /// The client sent `upgrade`: from now on the WebSocket carries everything.
    pub(crate) fn finish_upgrade(&self) {
        let mut st = self.lock();
        st.upgrading = false;
        st.upgraded = true;
        drop(st);
        self.changed.notify_waiters();
    }

    /// Resolves when a pending upgrade completes or is aborted.
    pub(crate) async fn upgrade_settled(&self) {
        self.changed_until(|s| !s.lock().upgrading).await
    }

    /// The probe failed or timed out: polling carries on, and another WebSocket may try.
    pub(crate) fn abort_upgrade(&self) {
        {
            let mut st = self.lock();
            if st.upgraded {
                return;
            }
            st.upgrading = false;
            st.upgrade_claimed = false;
        }
        self.writable.notify_one();
        self.changed.notify_waiters();
    }
}
