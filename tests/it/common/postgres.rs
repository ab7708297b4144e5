//! A real PostgreSQL 15 for tests: `initdb` into a temp dir, a free loopback port, trust
//! auth, the unix socket inside the temp dir, fsync off. Dropping the handle stops the
//! server (`pg_ctl stop -m immediate`) and removes the directory.
//!
//! - [`fresh_database`]: a new database in one server shared by the whole test binary
//!   (each test owns its database); what most tests want.
//! - [`PgServer::start`]: a server of your own, for tests that stop it or replicate it;
//!   [`PgServer::start_replica`] makes a streaming read replica of it (`pg_basebackup -R`);
//!   [`PgServer::start_tls`] one that accepts TCP clients over TLS only.
//!
//! Root: `initdb` and `postgres` refuse to run as root, so as root every PostgreSQL binary
//! runs as the `postgres` user through `runuser` (util-linux; the postgresql-15 package
//! creates that user), and the temp dirs are handed to it. As anyone else (a CI runner),
//! the binaries run as that user directly. `RT_PG_USER` names another account.
//!
//! Cleanup when a test run is interrupted: each server gets a watchdog shell in its own
//! process group (so ctrl-c does not take it down) that stops the server and removes its
//! directory once this process is gone. The shared server, a static, is only ever cleaned
//! up that way.

#![allow(dead_code)]

use super::free_port;
use sqlx::{Connection, Executor, PgConnection};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
const INSTALL_HINT: &str = "install PostgreSQL 15: `apt-get install -y postgresql-15` \
                            (scripts/test does this), or point RT_PG_BIN at its bin directory";

/// Settings on the command line of both primary and replica (a hot standby needs
/// max_connections etc. at least as high as its primary's). fsync off trades durability
/// against a machine crash for speed; a killed server (`stop`) still recovers every
/// committed row from the WAL in the OS cache. `synchronous_commit` stays on: off, a
/// commit is acknowledged before its WAL is written, and a kill loses it.
const SERVER_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("fsync", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "300"),
    ("max_wal_senders", "10"),
    ("wal_level", "replica"),
    ("hot_standby", "on"),
    ("log_min_messages", "warning"),
];

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A PostgreSQL server in a temp dir. Stops and removes itself when dropped.
pub struct PgServer {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    /// `-c` settings of this server beyond [`SERVER_SETTINGS`].
    extra: Vec<(&'static str, String)>,
}

/// The server the whole test binary shares (started on first use).
pub fn shared() -> &'static PgServer {
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    SHARED.get_or_init(PgServer::start)
}

/// A URL to a new, empty database in the shared server.
pub async fn fresh_database() -> String {
    let server = shared();
    let name = server.create_database().await;
    server.url_for(&name)
}

impl PgServer {
    /// initdb + start on a free port; panics with the server log when that fails.
    pub fn start() -> PgServer {
        Self::initdb().start_on_free_port()
    }

    /// A server with `ssl=on` (`cert` and `key` PEM, copied into its directory, the key
    /// 0600 as PostgreSQL demands) whose pg_hba accepts TCP clients only over TLS
    /// (`hostssl`), so a plaintext client is refused.
    pub fn start_tls(cert: &Path, key: &Path) -> PgServer {
        let mut server = Self::initdb();
        let files = [
            (
                "server.crt",
                std::fs::read(cert).expect("read the certificate"),
            ),
            ("server.key", std::fs::read(key).expect("read the key")),
            (
                "pg_hba_tls.conf",
                b"local all all trust\nhostssl all all 127.0.0.1/32 trust\n".to_vec(),
            ),
        ];
        for (name, content) in files {
            let path = server.dir.join(name);
            std::fs::write(&path, content).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if running_as_root() {
                let out = Command::new("chown")
                    .arg(format!("{}:", server_user()))
                    .arg(&path)
                    .output()
                    .expect("run chown");
                check(&out, "chown");
            }
        }
        let quoted = |name: &str| format!("'{}'", server.dir.join(name).display());
        server.extra = vec![
            ("ssl", "on".into()),
            ("ssl_cert_file", quoted("server.crt")),
            ("ssl_key_file", quoted("server.key")),
            ("hba_file", quoted("pg_hba_tls.conf")),
        ];
        server.start_on_free_port()
    }

    /// initdb into a new temp dir (not started).
    fn initdb() -> PgServer {
        let dir = new_dir("rt-pg");
        let data = dir.join("data");
        let out = pg("initdb")
            .current_dir(&dir)
            .args(["-D", path_str(&data), "-U", "postgres", "-A", "trust"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb ({e}): {INSTALL_HINT}"));
        check(&out, "initdb");
        let server = PgServer {
            dir,
            data,
            port: 0,
            extra: Vec::new(),
        };
        server.spawn_watchdog();
        server
    }

    /// A streaming read replica of this server: `pg_basebackup -R` (standby.signal and
    /// primary_conninfo), started on another port; returns once it is in recovery and
    /// has replayed everything the primary had written.
    pub fn start_replica(&self) -> PgServer {
        let dir = new_dir("rt-pg-replica");
        let data = dir.join("data");
        let out = pg("pg_basebackup")
            .current_dir(&dir)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-D",
                path_str(&data),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_basebackup ({e}): {INSTALL_HINT}"));
        check(&out, "pg_basebackup");
        let replica = PgServer {
            dir,
            data,
            port: 0,
            extra: Vec::new(),
        };
        replica.spawn_watchdog();
        let replica = replica.start_on_free_port();
        let deadline = Instant::now() + Duration::from_secs(30);
        while replica.psql("postgres", "SELECT pg_is_in_recovery()") != "t" {
            assert!(
                Instant::now() < deadline,
                "the replica on port {} is not in recovery",
                replica.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_replica_caught_up(&replica);
        replica
    }

    /// Waits until `replica` has replayed the WAL this server had written when called.
    pub fn wait_replica_caught_up(&self, replica: &PgServer) {
        let lsn = self.psql("postgres", "SELECT pg_current_wal_lsn()");
        let check = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        let deadline = Instant::now() + Duration::from_secs(30);
        while replica.psql("postgres", &check) != "t" {
            assert!(
                Instant::now() < deadline,
                "the replica on port {} did not reach {lsn} within 30 s",
                replica.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database with a unique name, and returns the name.
    pub async fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = PgConnection::connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()));
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        name
    }

    /// Runs one statement with psql and returns its unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = pg("psql")
            .current_dir(&self.dir)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql ({e}): {INSTALL_HINT}"));
        check(&out, "psql");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// An outage: `pg_ctl stop -m immediate` (no shutdown checkpoint, clients cut off).
    pub fn stop(&self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]).output();
    }

    /// Starts the server again on the same port and data (after [`PgServer::stop`]).
    pub fn restart(&self) {
        let out = self.start_command(self.port).output().expect("run pg_ctl");
        check_started(&out, self);
    }

    /// A shell command that restarts the server — `pg_ctl restart -m fast`: sessions cut
    /// off, a shutdown checkpoint, started again with the same settings — for a drill
    /// another process runs (`rtctl loadtest --restart-postgres-cmd`).
    pub fn restart_command(&self) -> String {
        format!(
            "cd '{}' && {} restart -D '{}' -m fast -w -t 60 -l '{}'",
            self.dir.display(),
            pg_prefix(&bin_dir().join("pg_ctl")),
            self.data.display(),
            self.dir.join("server.log").display()
        )
    }

    fn start_on_free_port(mut self) -> PgServer {
        // Another process may take the free port before the server binds it: retry.
        for _ in 0..5 {
            self.port = free_port();
            let out = self.start_command(self.port).output().expect("run pg_ctl");
            if out.status.success() {
                return self;
            }
            if !self.log().contains("could not bind") {
                check_started(&out, &self);
            }
        }
        panic!("PostgreSQL found no free port; log:\n{}", self.log());
    }

    fn start_command(&self, port: u16) -> Command {
        let mut options = format!(
            "-c port={port} -c unix_socket_directories='{}'",
            self.dir.display()
        );
        let extra = self.extra.iter().map(|(k, v)| (*k, v.as_str()));
        for (k, v) in SERVER_SETTINGS.iter().copied().chain(extra) {
            options.push_str(&format!(" -c {k}={v}"));
        }
        let log = self.dir.join("server.log");
        let mut cmd = self.pg_ctl(&["start", "-w", "-t", "60", "-l", path_str(&log)]);
        cmd.args(["-o", &options]);
        cmd
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = pg("pg_ctl");
        cmd.current_dir(&self.dir)
            .args(["-D", path_str(&self.data)])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A shell in its own process group that outlives ctrl-c, waits for this process to
    /// end, then stops the server and removes its directory, unless `Drop` did already.
    fn spawn_watchdog(&self) {
        let stop = format!(
            "{} stop -D \"$1/data\" -m immediate",
            pg_prefix(&bin_dir().join("pg_ctl"))
        );
        let script = format!(
            "while kill -0 \"$0\" 2>/dev/null && [ -d \"$1\" ]; do sleep 1; done; \
             if [ -d \"$1\" ]; then {stop} >/dev/null 2>&1; rm -rf \"$1\"; fi"
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bin_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("RT_PG_BIN").unwrap_or_else(|_| DEFAULT_BIN.into()));
    if !dir.join("postgres").exists() {
        panic!(
            "no PostgreSQL server binaries in {}: {INSTALL_HINT}",
            dir.display()
        );
    }
    dir
}

/// The account the server runs as when we are root.
fn server_user() -> String {
    std::env::var("RT_PG_USER").unwrap_or_else(|_| "postgres".into())
}

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        // The effective uid is the second number on /proc/self/status's `Uid:` line.
        let from_proc = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
            });
        from_proc.unwrap_or_else(|| {
            Command::new("id")
                .arg("-u")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
                .unwrap_or(false)
        })
    })
}

/// The shell words that run `program` as the server user: `runuser -u postgres -- program`
/// as root, the program alone otherwise.
fn pg_prefix(program: &Path) -> String {
    if running_as_root() {
        format!("runuser -u {} -- {}", server_user(), program.display())
    } else {
        program.display().to_string()
    }
}

/// A command running PostgreSQL binary `tool`, as the server user when we are root.
fn pg(tool: &str) -> Command {
    let program = bin_dir().join(tool);
    if running_as_root() {
        ensure_server_user();
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", &server_user(), "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn ensure_server_user() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let user = server_user();
        let exists = Command::new("id")
            .arg("-u")
            .arg(&user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            exists,
            "running as root, and PostgreSQL refuses root: the tests run it as user `{user}`, \
             which does not exist. {INSTALL_HINT} (the package creates `postgres`), or set \
             RT_PG_USER to an existing unprivileged account"
        );
        let runuser = Command::new("runuser")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            runuser,
            "running as root needs `runuser` (util-linux) to drop to `{user}`"
        );
    });
}

/// A new directory under the temp dir, owned by the server user.
fn new_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    if running_as_root() {
        ensure_server_user();
        let out = Command::new("chown")
            .arg(format!("{}:", server_user()))
            .arg(&dir)
            .output()
            .expect("run chown");
        check(&out, "chown");
    }
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn check(out: &Output, what: &str) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn check_started(out: &Output, server: &PgServer) {
    if !out.status.success() {
        panic!(
            "pg_ctl start failed ({}):\n{}{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    }
}
