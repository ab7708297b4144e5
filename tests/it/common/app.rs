//! The real application (`app::build` + `App::serve`, the library's lifecycle) on a
//! loopback port, configured by parsing `realtime-server` flags: what the domain,
//! observability and monitoring tests start.

use super::serving::Serving;
use clap::Parser;
use realtime::app::Stopped;
use realtime::config::{Config, ServeArgs};
use realtime::handlers::kit::State;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// `realtime-server`'s flags, parsed the way the binary parses them.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ServeArgs,
}

/// Parses a full `realtime-server` argv. Without `with_redis`, any Redis setting the
/// environment adds (REDIS_URL, REDIS_HOST) is dropped, so a test without Redis really
/// runs without it.
pub fn parse_config(argv: &[&str], with_redis: bool) -> Config {
    let mut cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    if !with_redis {
        cli.args.redis.location.redis_url = None;
        cli.args.redis.location.redis_host = None;
        cli.args.redis.location.redis_sentinels.clear();
    }
    Config::from_args(&cli.args).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// A random secret or id, unique per call.
pub fn random(prefix: &str) -> String {
    format!("{prefix}-{:032x}", rand::random::<u128>())
}

/// The application as `realtime-server` runs it (`app::build`, then the library's one
/// lifecycle `App::serve`: drain, presence flush, store close) on a loopback port.
/// [`Served::stop`] fails the test when that shutdown hangs, panics or leaves
/// connections open (see [`Serving`]).
pub struct Served {
    pub addr: SocketAddr,
    pub state: State,
    /// The running server (namespaces, sockets, the server-side API).
    pub io: realtime::server::Io,
    serving: Serving<Stopped>,
}

impl Served {
    pub async fn start(config: &Config) -> Served {
        let app = realtime::app::build(config)
            .await
            .unwrap_or_else(|e| panic!("app::build: {e:#}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let state = app.state.clone();
        let io = app.io.clone();
        let serving = Serving::spawn(format!("app on {addr}"), io.clone(), move |shutdown| {
            app.serve(listener, shutdown)
        });
        Served {
            addr,
            state,
            io,
            serving,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        self.serving.begin_stop();
    }

    /// The app's graceful shutdown (drain, presence flush, store close); returns how it
    /// ended.
    pub async fn stop(self) -> Stopped {
        self.serving.stop().await
    }
}

/// A temporary directory (for SQLite files), removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rt-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}/rt.db?mode=rwc", self.0.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
