use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = realtime::commands::Cli::parse();
    match realtime::runtime::block_on(cli.worker_threads(), cli.run()) {
        Ok(result) => realtime::commands::exit_code(result),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
