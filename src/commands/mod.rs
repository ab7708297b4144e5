//! `rtctl` subcommands, one module each: a `#[derive(Args)]` struct and an `async fn run`.

pub mod admin_ui;
pub mod gen;
pub mod health;
pub mod inspect;
pub mod loadtest;
pub mod migrate;
pub mod nodes;
pub mod presence;
pub mod rooms;
pub mod serve;
pub mod token;

use clap::{Parser, Subcommand};

/// realtime ops toolkit: run the server, generate configs, inspect a cluster.
#[derive(Parser, Debug)]
#[command(name = "rtctl", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok, 1 criteria failed or unhealthy, 2 usage or connection error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Socket.IO server (the same server as `realtime-server`).
    Serve(Box<serve::ServeCommand>),
    /// Generate configuration: nginx, Grafana, Prometheus, index migrations.
    Gen(gen::GenCommand),
    /// Mint a NextAuth v4 / Auth.js v5 / HS256 session token for a user (prints it).
    Token(token::TokenCommand),
    /// Apply pending database migrations to the primary (PostgreSQL or SQLite).
    Migrate(migrate::MigrateCommand),
    /// Ask each node's /api/health and show them in one table (or JSON).
    Health(health::HealthCommand),
    /// Load-test nodes with many Socket.IO clients; judge the phase 1-3 criteria (--gate).
    Loadtest(Box<loadtest::LoadtestCommand>),
    /// One worker process of `rtctl loadtest` (started by it; JSON lines on stdin/stdout).
    #[command(hide = true, name = "loadtest-worker")]
    LoadtestWorker(loadtest::LoadtestWorkerCommand),
    /// Who is online in the cluster (reads the cluster's Redis).
    Presence(presence::PresenceCommand),
    /// Rooms and their member counts across the cluster (reads the cluster's Redis).
    Rooms(rooms::RoomsCommand),
    /// Live nodes of the cluster (reads the cluster's Redis).
    Nodes(nodes::NodesCommand),
    /// Serve the Socket.IO Admin UI page (an installed @socket.io/admin-ui's ui/dist).
    #[command(name = "admin-ui")]
    AdminUi(admin_ui::AdminUiCommand),
}

impl Cli {
    /// The runtime's task threads for this command (see [`crate::runtime::build`]):
    /// `serve` takes `--worker-threads`, every other command one per core.
    pub fn worker_threads(&self) -> usize {
        match &self.command {
            Command::Serve(cmd) => cmd.args.worker_threads,
            _ => 0,
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(cmd) => cmd.run().await,
            Command::Gen(cmd) => cmd.run().await,
            Command::Token(cmd) => cmd.run().await,
            Command::Migrate(cmd) => cmd.run().await,
            Command::Health(cmd) => cmd.run().await,
            Command::Loadtest(cmd) => cmd.run().await,
            Command::LoadtestWorker(cmd) => cmd.run().await,
            Command::Presence(cmd) => cmd.run().await,
            Command::Rooms(cmd) => cmd.run().await,
            Command::Nodes(cmd) => cmd.run().await,
            Command::AdminUi(cmd) => cmd.run().await,
        }
    }
}

/// A command's verdict when it is not success, after the command printed its report:
/// the process exits with `code` (1 criteria failed / unhealthy, 2 usage or connection
/// error) and `message` goes to stderr as one line. Any other error exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: message.into(),
        }
    }
}

/// The process exit code for a command's result, with the error printed on stderr.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e.downcast_ref::<Exit>().map_or(2, |exit| exit.code);
            std::process::ExitCode::from(code)
        }
    }
}

/// Awaits `work`; if it takes more than a second and stderr is a terminal, shows `bar`
/// as a spinner with `template` (indicatif syntax) until it is done. Never drawn when
/// stderr is not a terminal (pipes, CI, tests).
pub(crate) async fn spinner_after_a_second<T>(
    bar: &indicatif::ProgressBar,
    template: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    use std::io::IsTerminal as _;
    use std::time::Duration;
    tokio::pin!(work);
    let out = tokio::select! {
        out = &mut work => out,
        _ = tokio::time::sleep(Duration::from_secs(1)) => {
            if std::io::stderr().is_terminal() {
                bar.set_style(
                    indicatif::ProgressStyle::with_template(template)
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.enable_steady_tick(Duration::from_millis(100));
            }
            work.await
        }
    };
    bar.finish_and_clear();
    out
}
