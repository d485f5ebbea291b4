use std::process::ExitCode;

use clap::Parser;
use tally::{cli, config, config::Settings, telemetry};

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tally::outbound::install_crypto_provider();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tally: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Flushes the log lines still queued when main returns.
    let _log_guard = telemetry::init(&settings.log);
    // A misspelt variable would otherwise be ignored in silence.
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .chain(
            dotenvy::dotenv_iter()
                .map(|it| {
                    it.filter_map(Result::ok)
                        .map(|(k, _)| k)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .collect();
    for (name, closest) in config::unknown_variables(names.iter().map(String::as_str)) {
        match closest {
            Some(known) => tracing::warn!(
                variable = %name,
                did_you_mean = known,
                "unknown variable {name} is ignored; did you mean {known}?"
            ),
            None => tracing::warn!(
                variable = %name,
                "unknown variable {name} is ignored (tally --help lists them all)"
            ),
        }
    }
    match cli::run(cli, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, as a log line (stderr): the operator's and the log collector's copy.
            tracing::error!(error = %e, "tally stopped");
            ExitCode::from(e.code)
        }
    }
}
