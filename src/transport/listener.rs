//! The TCP accept loop. Each connection starts in the listener's own HTTP/1.1 loop
//! (`http1`, for long-polling requests) and moves to hyper, with upgrades, at the first
//! request that loop does not take.
//!
//! It takes its listener and its shutdown future from the caller (as mini-redis does),
//! so tests bind `127.0.0.1:0` and the binaries pass ctrl-c / SIGTERM.

use super::body::ReadBody;
use super::handshake::Body;
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// The accept queue a node asks the kernel for. Rust's and mio's `bind` use 128, which a
/// reconnect storm (a node died, its clients arrive at the survivors within seconds)
/// overflows: the kernel then drops SYNs and those clients wait 1 s, 3 s, ... to retry.
/// The kernel caps it at `net.core.somaxconn` (4096 on current kernels).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with [`LISTEN_BACKLOG`] and `SO_REUSEADDR` (a restarted node can listen
/// again while its old connections sit in TIME_WAIT).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Something that answers HTTP requests: the engine plus whatever routes sit beside it.
pub trait App: Send + Sync + 'static {
    /// Answers a request hyper read.
    fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// Whether the listener's own HTTP/1.1 loop may answer this request (`http1`): with
    /// its body read whole, at most the limit returned, then [`App::call_read`]. `None`
    /// hands the connection to hyper.
    fn reads_whole(&self, method: &Method, uri: &Uri) -> Option<usize>;

    /// Answers a request [`App::reads_whole`] took.
    fn call_read(
        self: Arc<Self>,
        req: Request<ReadBody>,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// Tells a connection the server is stopping.
pub(super) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once the server stops (at once if it has).
    pub(super) async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub(super) fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}

/// Open HTTP connections, for a graceful shutdown: tells them to finish their current
/// request and waits until they have (mini-redis's broadcast + mpsc pattern).
pub struct Connections {
    stop: watch::Sender<bool>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

impl Connections {
    /// Asks every connection to close after its in-flight request and waits for them.
    /// (Upgraded WebSockets have left hyper already; the engine's drain closes those.)
    pub async fn shutdown(self) {
        let Connections {
            stop,
            done_tx,
            mut done_rx,
        } = self;
        let _ = stop.send(true);
        drop(done_tx);
        let _ = done_rx.recv().await;
    }
}

/// Accepts connections until `shutdown` resolves, then returns the handle that lets the
/// caller wait for open HTTP connections to finish. A connection that does not send a
/// request's headers within `header_read_timeout` (from when it is ready to read one:
/// a slowloris trickle, or a connection opened and left silent) is closed.
pub async fn accept_until<A: App>(
    listener: TcpListener,
    app: Arc<A>,
    shutdown: impl Future<Output = ()>,
    header_read_timeout: Duration,
) -> Connections {
    let (stop, _) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel::<()>(1);
    let mut http = Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Usually EMFILE: out of file descriptors. Back off instead of spinning;
                    // existing connections keep working and new ones wait in the backlog.
                    tracing::warn!(error = %e, "accept failed; retrying in 100 ms (check the open-files limit)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Socket.IO packets are small and latency-bound: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        let stop = Stop(stop.subscribe());
        let (app, http, done) = (app.clone(), http.clone(), done_tx.clone());
        tokio::spawn(async move {
            super::http1::serve(stream, remote, app, http, stop, header_read_timeout).await;
            drop(done);
        });
    }
    Connections {
        stop,
        done_tx,
        done_rx,
    }
}

/// Serves a connection with hyper until it closes; on stop, lets its request in flight
/// finish first. (Upgraded WebSockets leave hyper; the engine's drain closes those.)
pub(super) async fn serve_with_hyper<A: App, IO>(
    io: IO,
    remote: SocketAddr,
    app: Arc<A>,
    http: &Builder,
    mut stop: Stop,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.call(req, remote).await) }
    });
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.stopped() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::trace!(error = %e, %remote, "http connection ended with an error");
    }
}
