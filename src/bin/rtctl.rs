use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = realtime::commands::Cli::parse();
    realtime::commands::exit_code(cli.run().await)
}
