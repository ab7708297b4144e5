//! `rtctl` subcommands, one module each: a `#[derive(Args)]` struct and an `async fn run`.

pub mod gen;
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
    /// Generate configuration: nginx, index migrations.
    Gen(gen::GenCommand),
    /// Mint a NextAuth v4 / Auth.js v5 / HS256 session token for a user (prints it).
    Token(token::TokenCommand),
    /// Apply pending database migrations to the primary (PostgreSQL or SQLite).
    Migrate(migrate::MigrateCommand),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(cmd) => cmd.run().await,
            Command::Gen(cmd) => cmd.run().await,
            Command::Token(cmd) => cmd.run().await,
            Command::Migrate(cmd) => cmd.run().await,
        }
    }
}
