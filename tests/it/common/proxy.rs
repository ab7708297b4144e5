//! A TCP proxy whose backend a test switches: the load balancer that sends a client
//! reconnecting after a blip to another node. Connections already open stay where they
//! are; new ones go to the current backend.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub struct SwitchProxy {
    pub addr: SocketAddr,
    backend: Arc<Mutex<SocketAddr>>,
    task: JoinHandle<()>,
}

impl SwitchProxy {
    pub async fn start(backend: SocketAddr) -> SwitchProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Arc::new(Mutex::new(backend));
        let task = tokio::spawn(accept(listener, backend.clone()));
        SwitchProxy {
            addr,
            backend,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends new connections to `backend`.
    pub fn switch_to(&self, backend: SocketAddr) {
        *self.backend.lock().unwrap() = backend;
    }
}

impl Drop for SwitchProxy {
    /// Stops accepting and closes every proxied connection (the accept task owns them).
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, backend: Arc<Mutex<SocketAddr>>) {
    let mut connections = JoinSet::new();
    while let Ok((mut client, _)) = listener.accept().await {
        let target = *backend.lock().unwrap();
        connections.spawn(async move {
            let Ok(mut server) = TcpStream::connect(target).await else {
                return; // the client sees its connection closed, as behind a balancer
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        while connections.try_join_next().is_some() {}
    }
}
