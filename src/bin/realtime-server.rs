use clap::Parser;

/// realtime Socket.IO server (Engine.IO v4 / Socket.IO v5).
#[derive(Parser)]
#[command(name = "realtime-server", version, about)]
struct Cli {
    #[command(flatten)]
    serve: realtime::commands::serve::ServeCommand,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match Cli::parse().serve.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
