//! A network link between two simulated regions: a TCP proxy that delays every byte by a
//! fixed one-way time in each direction (order kept), and that can be cut. This kernel
//! has no netem qdisc, so the delay is injected here, in user space: each direction reads
//! what arrives, stamps it with `now + one_way` and a writer task sends it no earlier.
//! Cutting the link resets every connection across it and refuses new ones, as a failed
//! link would (a partition that drops packets would show as timeouts instead).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

pub struct Link {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<JoinSet<()>>>,
    task: JoinHandle<()>,
}

impl Link {
    /// A link to `backend` that delays each direction by `one_way`.
    pub async fn start(backend: SocketAddr, one_way: Duration) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let task = tokio::spawn(accept(
            listener,
            backend,
            one_way,
            cut.clone(),
            connections.clone(),
        ));
        Link {
            addr,
            cut,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Cuts the link: every connection across it is closed, new ones are refused.
    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.connections.lock().await.abort_all();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut set) = self.connections.try_lock() {
            set.abort_all();
        }
    }
}

async fn accept(
    listener: TcpListener,
    backend: SocketAddr,
    one_way: Duration,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<JoinSet<()>>>,
) {
    while let Ok((client, _)) = listener.accept().await {
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        connections
            .lock()
            .await
            .spawn(carry(client, backend, one_way));
    }
}

/// Both directions of one connection, each delayed by `one_way`.
async fn carry(client: TcpStream, backend: SocketAddr, one_way: Duration) {
    let Ok(server) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = direction(client_read, server_write, one_way) => {}
        () = direction(server_read, client_write, one_way) => {}
    }
}

/// Copies `from` to `to`, each chunk sent `one_way` after it arrived.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, one_way: Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + one_way, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    // The writer outlives the reader's EOF until it has sent what was in flight.
    let (_, ()) = tokio::join!(reader, writer);
}
