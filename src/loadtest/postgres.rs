//! A PostgreSQL the load test starts for its spawned nodes, as it starts `redis-server`:
//! the app stores chat messages and notifications in PostgreSQL, so a gate that spawns
//! its nodes runs them on one when this machine has the server binaries. `initdb` into a
//! temp dir, a free loopback port, trust authentication on loopback only, PostgreSQL's
//! own durability defaults (fsync on: what a team runs). Stopped (`pg_ctl stop -m fast`)
//! and removed when the run ends; a drop without [`LocalPostgres::stop`] stops it at
//! once.
//!
//! `initdb` and `postgres` refuse to run as root: as root every binary runs as the
//! `postgres` account (the Debian package creates it) through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why the local PostgreSQL could not be started; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("creating {}: {error}", dir.display())]
    TempDir { dir: PathBuf, error: std::io::Error },
    #[error(
        "cannot run {tool} ({error}): install PostgreSQL (apt-get install postgresql-15), \
         point RT_PG_BIN at its bin directory, or pass --database-url"
    )]
    Run { tool: String, error: std::io::Error },
    #[error("{tool} failed ({status}): {output} — or pass --database-url")]
    Failed {
        tool: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("binding a free port: {0}")]
    FreePort(std::io::Error),
}

/// Settings beyond PostgreSQL's defaults: loopback only, room for every node's pool.
const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("max_connections", "400"),
    ("log_min_messages", "warning"),
];

/// A PostgreSQL server in a temp dir, started.
pub struct LocalPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The account the binaries run as (we are root), if any.
    run_as: Option<String>,
    running: bool,
}

/// The directory with `initdb`, `pg_ctl` and `postgres`: `RT_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout). `None` when there is none.
pub fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RT_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_server(d));
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_server(bin))
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

fn has_server(bin: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|tool| bin.join(tool).exists())
}

impl LocalPostgres {
    /// initdb + start with the binaries in `bin`; blocking (a few seconds), so call it
    /// from a blocking task.
    pub fn start(bin: &Path) -> Result<LocalPostgres, PostgresError> {
        let dir = std::env::temp_dir().join(format!(
            "rtctl-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).map_err(|error| PostgresError::TempDir {
            dir: dir.clone(),
            error,
        })?;
        let mut pg = LocalPostgres {
            dir,
            bin: bin.to_owned(),
            port: 0,
            run_as: running_as_root().then(|| "postgres".to_owned()),
            running: false,
        };
        if let Some(user) = &pg.run_as {
            let dir = pg.dir.display().to_string();
            pg.check(
                "chown",
                Command::new("chown").arg(format!("{user}:")).arg(dir),
            )?;
        }
        let data = pg.data().display().to_string();
        let mut initdb = pg.tool("initdb");
        initdb
            .args(["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-instructions"]);
        pg.check("initdb", &mut initdb)?;
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(PostgresError::FreePort)?;
        pg.port = listener
            .local_addr()
            .map_err(PostgresError::FreePort)?
            .port();
        drop(listener);
        let mut start = pg.pg_ctl(&["start", "-w", "-t", "60"]);
        start.args(["-o", &pg.options()]);
        pg.check("pg_ctl start", &mut start)?;
        pg.running = true;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the nodes migrate it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The shell command a drill runs to restart it (`pg_ctl restart -m fast`: sessions
    /// cut off, a shutdown checkpoint, started again with the same options).
    pub fn restart_command(&self) -> String {
        let mut words = Vec::new();
        if let Some(user) = &self.run_as {
            words.extend(["runuser".to_owned(), "-u".into(), user.clone(), "--".into()]);
        }
        words.push(self.bin.join("pg_ctl").display().to_string());
        let data = self.data().display().to_string();
        let log = self.log().display().to_string();
        words.extend([
            "-D".into(),
            data,
            "restart".into(),
            "-m".into(),
            "fast".into(),
        ]);
        words.extend(["-w".into(), "-t".into(), "60".into(), "-l".into(), log]);
        words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Stops the server (fast shutdown) and removes its directory.
    pub fn stop(mut self) {
        self.shut_down("fast");
    }

    fn shut_down(&mut self, mode: &str) {
        if std::mem::take(&mut self.running) {
            let _ = self.pg_ctl(&["stop", "-m", mode, "-w"]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The server's `-c` options (the unix socket inside the temp dir).
    fn options(&self) -> String {
        let mut options = format!(
            "-c port={} -c unix_socket_directories='{}'",
            self.port,
            self.dir.display()
        );
        for (k, v) in SETTINGS {
            options.push_str(&format!(" -c {k}={v}"));
        }
        options
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D").arg(self.data()).arg("-l").arg(self.log());
        cmd.args(args);
        cmd
    }

    /// PostgreSQL binary `tool`, as the server account when we are root.
    fn tool(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    fn check(&self, tool: &str, cmd: &mut Command) -> Result<(), PostgresError> {
        let out = cmd.output().map_err(|error| PostgresError::Run {
            tool: tool.to_owned(),
            error,
        })?;
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let output = format!(
            "{}{}{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Err(PostgresError::Failed {
            tool: tool.to_owned(),
            status: out.status,
            output: output.trim().chars().take(2000).collect(),
        })
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.shut_down("immediate");
    }
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
