//! Interop: the real npm `socket.io-client` (pinned in tests/interop/package.json) against our
//! server. Each test starts its own [`TestServer`], runs one script from tests/interop/ with
//! `node <script> <url> <transport>` and requires exit status 0; on failure the panic message
//! carries the script's whole output.
//!
//! Transports: `default` (polling, then upgrade to websocket), `websocket` only, `polling` only.
//! Needs `node` and `npm ci --prefix tests/interop`; both are checked ([`require_node`]),
//! never silently skipped.

use crate::common::nodejs::{interop_dir, require_node};
use crate::common::{fast_options, test_io, TestServer};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Upper bound for one script; the scripts time themselves out earlier (15–20 s) with a message.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(25);

/// A running interop script: stdout lines are forwarded to [`NodeClient::expect_line`] and,
/// with stderr, collected in a transcript for failure messages.
pub(crate) struct NodeClient {
    label: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    transcript: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl NodeClient {
    pub(crate) fn spawn(script: &str, url: &str, transport: &str) -> Self {
        Self::spawn_with_env(script, url, transport, &[])
    }

    /// [`NodeClient::spawn`] with extra environment variables (tokens stay out of argv).
    pub(crate) fn spawn_with_env(
        script: &str,
        url: &str,
        transport: &str,
        env: &[(&str, &str)],
    ) -> Self {
        require_node(&["socket.io-client"]);
        let dir = interop_dir();
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .arg(url)
            .arg(transport)
            .envs(env.iter().copied())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn node {script}: {err}"));
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let readers = vec![
            collect(
                child.stdout.take().unwrap(),
                "",
                transcript.clone(),
                Some(tx),
            ),
            collect(
                child.stderr.take().unwrap(),
                "stderr: ",
                transcript.clone(),
                None,
            ),
        ];
        NodeClient {
            label: format!("node {script} {url} {transport}"),
            child,
            lines,
            transcript,
            readers,
        }
    }

    fn fail(&self, problem: &str) -> ! {
        let transcript = self.transcript.lock().unwrap().join("\n");
        panic!(
            "{}: {problem}\n--- script output ---\n{transcript}\n---------------------",
            self.label
        );
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it.
    async fn expect_line(&mut self, prefix: &str) -> String {
        let found = tokio::time::timeout(SCRIPT_TIMEOUT, async {
            while let Some(line) = self.lines.recv().await {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Some(rest.trim().to_owned());
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(rest)) => rest,
            Ok(None) => {
                let status = self.child.wait().await;
                self.drain().await;
                self.fail(&format!("exited ({status:?}) without printing `{prefix}`"))
            }
            Err(_) => self.fail(&format!("no `{prefix}` line within {SCRIPT_TIMEOUT:?}")),
        }
    }

    async fn drain(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
    }

    /// Waits for the script to exit and requires status 0.
    pub(crate) async fn finish(mut self) {
        let status = tokio::time::timeout(SCRIPT_TIMEOUT, self.child.wait()).await;
        self.drain().await;
        match status {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => self.fail(&format!("failed with {status}")),
            Ok(Err(err)) => self.fail(&format!("wait failed: {err}")),
            Err(_) => self.fail(&format!("still running after {SCRIPT_TIMEOUT:?}")),
        }
    }
}

fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    tag: &'static str,
    transcript: Arc<Mutex<Vec<String>>>,
    forward: Option<mpsc::UnboundedSender<String>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            transcript.lock().unwrap().push(format!("{tag}{line}"));
            if let Some(forward) = &forward {
                let _ = forward.send(line);
            }
        }
    })
}

/// Runs `script` against a fresh server and requires it to pass.
async fn run_script(script: &str, transport: &str) {
    let server = TestServer::start().await;
    NodeClient::spawn(script, &server.url(), transport)
        .finish()
        .await;
    server.stop().await;
}

/// Server restart: the client connects (`READY`), the server shuts down gracefully and a new
/// one starts on the same address; the client must reconnect on its own (`RECONNECTED`).
///
/// The first server pings rarely: a polling client's GET is then reliably parked at the
/// server when it shuts down (a ping exchange would leave a ~1 ms window in which the next
/// GET is in flight and would see the listener or session gone, i.e. "transport error").
async fn restart_and_reconnect(transport: &str) {
    let mut calm = fast_options();
    calm.engine.ping_interval = Duration::from_secs(10);
    let server = TestServer::start_with(calm).await;
    let addr = server.addr;
    let mut client = NodeClient::spawn("reconnect.mjs", &server.url(), transport);
    let first = client.expect_line("READY ").await;
    server.stop().await;
    let server = TestServer::restart_on(test_io(fast_options()), addr).await;
    let second = client.expect_line("RECONNECTED ").await;
    assert_ne!(first, second, "the reconnected socket must get a new id");
    client.finish().await;
    server.stop().await;
}

/// One module per scenario, one test per listed transport: `interop::<scenario>::<transport>`.
macro_rules! interop_tests {
    ($($scenario:ident: $script:literal [$($transport:ident),+];)+) => {$(
        mod $scenario {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $transport() {
                    super::run_script($script, stringify!($transport)).await;
                }
            )+
        }
    )+};
}

interop_tests! {
    multiplexed_namespaces: "multiplex.mjs" [default, websocket, polling];
    ack_nested_json: "ack.mjs" [default, websocket, polling];
    binary_round_trip: "binary.mjs" [default, websocket, polling];
    message_back: "message.mjs" [default, websocket, polling];
    room_broadcast: "rooms.mjs" [default, websocket, polling];
    server_emit_with_ack: "server-ack.mjs" [default, websocket, polling];
    server_disconnect: "server-disconnect.mjs" [default, websocket, polling];
    upgrade_without_loss: "upgrade.mjs" [default];
}

mod server_restart_reconnect {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn default() {
        super::restart_and_reconnect("default").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket() {
        super::restart_and_reconnect("websocket").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling() {
        super::restart_and_reconnect("polling").await;
    }
}
