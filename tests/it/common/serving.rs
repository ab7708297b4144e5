//! The one stop mechanism of every in-process test server ([`super::TestServer`],
//! [`super::app::Served`]): the server runs on its own task until told to stop, and
//! [`Serving::stop`] fails the test when the shutdown does not do its job. Ignoring a
//! hung or panicked shutdown would let a drain bug pass every test.

use realtime::server::Io;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a graceful shutdown may take in a test before it counts as hung. A test
/// server drains in milliseconds (about a second with a polling client: the engine
/// keeps a closed polling session for its next poll); this leaves room for a drain
/// delay, the app's presence flush and a busy CI machine.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// What a server task is given to wait on: resolves when the test asks it to stop (or
/// drops its handle).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server task and the means to stop it.
pub struct Serving<T> {
    label: String,
    /// The served engine, to check that the drain closed every connection.
    io: Io,
    deadline: Duration,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Serving<T> {
    /// Spawns `serve(shutdown)`; `label` names the server in failure messages.
    pub fn spawn<F>(label: String, io: Io, serve: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async {
            let _ = stopped.await;
        });
        Serving {
            label,
            io,
            deadline: STOP_DEADLINE,
            stop: Some(stop),
            task: Some(tokio::spawn(serve(shutdown))),
        }
    }

    /// A shorter deadline than [`STOP_DEADLINE`] (for the checks of this mechanism).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Graceful shutdown; returns what the server returned. Panics (failing the test)
    /// when the shutdown takes longer than its deadline ([`STOP_DEADLINE`]), when the
    /// server task panicked (before or during the shutdown), or when it returned with
    /// connections still open (the drain gave up at its shutdown timeout instead of
    /// closing them).
    pub async fn stop(mut self) -> T {
        self.begin_stop();
        let mut task = self.task.take().expect("a Serving is stopped once");
        let (label, deadline) = (&self.label, self.deadline);
        let out = match tokio::time::timeout(deadline, &mut task).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) if e.is_panic() => {
                panic!(
                    "{label}: the server task panicked: {}",
                    panic_text(e.into_panic())
                )
            }
            Ok(Err(e)) => panic!("{label}: the server task was cancelled: {e}"),
            Err(_) => {
                task.abort();
                panic!(
                    "{label}: the graceful shutdown did not finish within {deadline:?} \
                     ({} connection(s) still open): something the drain waits for never ends",
                    self.io.connection_count()
                )
            }
        };
        let open = self.io.connection_count();
        assert_eq!(
            open, 0,
            "{label}: the shutdown returned with {open} connection(s) still open: the drain \
             hit its shutdown timeout instead of closing them"
        );
        out
    }
}

impl<T> Drop for Serving<T> {
    /// A server the test did not stop (it failed, or did not need to) still shuts down.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(not a string)".to_owned(), |s| (*s).to_owned()),
    }
}

/// The mechanism fails when it should: a hang, a panic, a connection left open.
mod checks {
    use super::*;
    use crate::common::raw::{Ws, QUICK};
    use crate::common::{fast_options, TestServer};

    fn idle_io() -> Io {
        Io::builder(fast_options()).build()
    }

    #[tokio::test]
    #[should_panic(expected = "did not finish within 200ms")]
    async fn stop_fails_when_the_shutdown_hangs() {
        let serving = Serving::spawn("hangs".into(), idle_io(), |shutdown| async {
            shutdown.await;
            std::future::pending::<()>().await
        });
        serving
            .with_deadline(Duration::from_millis(200))
            .stop()
            .await;
    }

    #[tokio::test]
    #[should_panic(expected = "the server task panicked: drain bug")]
    async fn stop_fails_when_the_server_task_panicked() {
        let serving = Serving::spawn("panics".into(), idle_io(), |shutdown| async {
            shutdown.await;
            panic!("drain bug");
        });
        serving.stop().await;
    }

    #[tokio::test]
    #[should_panic(expected = "returned with 1 connection(s) still open")]
    async fn stop_fails_when_a_connection_outlives_the_shutdown() {
        // The connection is on a server this shutdown does not drain.
        let server = TestServer::start().await;
        let (mut ws, _) = Ws::open(server.addr).await;
        ws.send_text("40").await;
        assert!(ws.recv_text(QUICK).await.starts_with("40"));
        let serving = Serving::spawn("leaves one open".into(), server.io.clone(), |shutdown| {
            shutdown
        });
        serving.stop().await;
    }
}
