//! Node.js and the npm packages pinned in tests/interop: the one check every test that
//! runs `node` makes first, so a missing install fails with how to fix it (never a
//! skip, never a confusing `Cannot find module`); and [`NodeScript`], a Node peer that
//! runs beside a test.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// tests/interop: the scripts, package.json and node_modules.
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

const NODE_HINT: &str = "install Node.js 18+ (e.g. `apt-get install -y nodejs npm`)";
/// How to install the packages, for messages of tests that find one missing late.
pub const PACKAGES_HINT: &str =
    "`scripts/test` installs them, or run `npm ci --prefix tests/interop` (the versions pinned in tests/interop/package-lock.json)";

/// Panics with a fix-it message unless `node` runs and each of `packages` (npm names,
/// scoped or not) is installed in tests/interop/node_modules.
pub fn require_node(packages: &[&str]) {
    static NODE: OnceLock<Result<(), String>> = OnceLock::new();
    let node =
        NODE.get_or_init(
            || match std::process::Command::new("node").arg("--version").output() {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(format!(
                    "`node --version` failed ({}): {NODE_HINT}",
                    out.status
                )),
                Err(err) => Err(format!("`node` is not runnable ({err}): {NODE_HINT}")),
            },
        );
    if let Err(problem) = node {
        panic!("{problem}");
    }
    let modules = interop_dir().join("node_modules");
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !modules.join(p).join("package.json").is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "npm package(s) {missing:?} not installed in {}: {PACKAGES_HINT}",
        modules.display()
    );
}

/// A long-running `node tests/interop/<script>` (a Node peer: a socket.io server, an
/// emitter), killed when dropped. Its stdin stays open (the scripts exit when it
/// closes); its stdout lines are kept for [`NodeScript::next_line`].
pub struct NodeScript {
    pub child: Child,
    /// The stdout lines up to and including the ready line.
    pub started: Vec<String>,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
}

impl NodeScript {
    /// Spawns `node <script> args…` after [`require_node`]`(packages)`, and waits (20 s
    /// at most) for a stdout line starting with `ready`. stderr goes to the test's.
    pub async fn start(script: &str, args: &[&str], ready: &str, packages: &[&str]) -> Self {
        require_node(packages);
        let dir = interop_dir();
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {script}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut script_run = NodeScript {
            child,
            started: Vec::new(),
            stdin,
            lines,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        while let Some(line) = script_run.next_line(left()).await {
            let hit = line.starts_with(ready);
            script_run.started.push(line);
            if hit {
                return script_run;
            }
        }
        panic!(
            "node {script} never printed {ready:?} within {START_TIMEOUT:?}: {:?}",
            script_run.started
        );
    }

    /// The next stdout line, or `None` when it exited or printed nothing for `within`.
    pub async fn next_line(&mut self, within: Duration) -> Option<String> {
        tokio::time::timeout(within, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    /// Writes `line` and a newline to its stdin.
    pub async fn send_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the node script's stdin");
    }
}

/// How long a Node peer may take to start (module loading, Redis connection).
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
#[should_panic(expected = r#"npm package(s) ["no-such-package"] not installed"#)]
fn a_missing_package_fails_with_how_to_install_it() {
    require_node(&["socket.io-client", "no-such-package"]);
}
