//! `rtctl loadtest worker --listen ADDR`: a load-test worker that coordinators on other
//! machines drive (`rtctl loadtest --workers HOST:PORT,…`); see
//! [`crate::loadtest::worker::remote`].

use anyhow::Context as _;
use std::net::SocketAddr;

#[derive(clap::Subcommand, Debug)]
pub enum LoadtestSub {
    /// Wait for coordinators (`rtctl loadtest --workers HOST:PORT`) and run their clients
    /// from this machine; runs until Ctrl-C or SIGTERM.
    Worker(WorkerArgs),
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Address to listen on for coordinators, e.g. `0.0.0.0:7070` (port 0: any free one;
    /// the address is printed).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// A key coordinators must present (their `--worker-key`). The coordinator sends the
    /// nodes' token secret to its workers: keep workers on a private network.
    #[arg(long, env = "LOADTEST_WORKER_KEY", hide_env_values = true)]
    pub key: Option<String>,

    /// Tests only: act as if this machine's clock were this many ms ahead.
    #[arg(
        long,
        hide = true,
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub clock_skew_ms: f64,
}

impl LoadtestSub {
    pub async fn run(self) -> anyhow::Result<()> {
        let LoadtestSub::Worker(args) = self;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("loadtest worker listening on {addr}");
        let opts = crate::loadtest::worker::remote::RemoteOptions {
            key: args.key,
            clock_skew_ms: args.clock_skew_ms,
        };
        crate::loadtest::worker::remote::serve(listener, opts, crate::app::shutdown_signal())
            .await
            .context("the loadtest worker stopped accepting coordinators")
    }
}
