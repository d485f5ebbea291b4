use std::process::ExitCode;

use clap::Parser;
use tally::{cli, config::Settings, telemetry};

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tally: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Flushes the log lines still queued when main returns.
    let _log_guard = telemetry::init(&settings.log);
    match cli::run(cli, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tally stopped");
            eprintln!("tally: {e}");
            ExitCode::FAILURE
        }
    }
}
