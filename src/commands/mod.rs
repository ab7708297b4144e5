//! `rtctl` subcommands, one module each: a `#[derive(Args)]` struct and an `async fn run`.

pub mod gen;
pub mod health;
pub mod loadtest;
pub mod migrate;
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
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(cmd) => cmd.run().await,
            Command::Gen(cmd) => cmd.run().await,
            Command::Token(cmd) => cmd.run().await,
            Command::Migrate(cmd) => cmd.run().await,
            Command::Health(cmd) => cmd.run().await,
            Command::Loadtest(cmd) => cmd.run().await,
            Command::LoadtestWorker(cmd) => cmd.run().await,
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
