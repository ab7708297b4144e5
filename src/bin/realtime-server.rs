use clap::Parser;

/// realtime Socket.IO server (Engine.IO v4 / Socket.IO v5).
#[derive(Parser)]
#[command(name = "realtime-server", version, about)]
struct Cli {
    #[command(flatten)]
    serve: realtime::commands::serve::ServeCommand,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match realtime::runtime::block_on(cli.serve.args.worker_threads, cli.serve.run()) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
