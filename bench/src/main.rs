//! tally-bench: the benchmark harness (see BENCHMARKS.md).
//!
//! `tally-bench [options]` seeds a database per backend, drives the release `tally`
//! binary over 127.0.0.1 with wrk and prints a table of req/s, p50, p99 and peak RSS per
//! scenario, each as a ratio to a ceiling measured in the same run. The ceiling servers
//! are subcommands of this binary, run as child processes so that the load generator,
//! the server under test and the harness are separate processes.
//!
//! Map: [`cli`] options; [`harness`] the run, backend by backend; [`seed`] direct inserts
//! and recounts; [`ceiling`] the bare actix servers and the raw commit rate; [`wrk`]
//! lua scripts, running wrk and parsing its output; [`proc`] child processes, readiness,
//! RSS; [`report`] the machine header and the tables; [`decisions`] the concurrent
//! decisions scenario (also `tally-bench concurrent-decisions` on its own); [`cross`] the
//! cross-instance visibility scenario (`tally-bench cross-instance`);
//! [`model_cost`] what the learned spam model costs posts and decisions
//! (`tally-bench spam-model-cost`).

mod ceiling;
mod cli;
mod cross;
mod decisions;
mod harness;
mod model_cost;
mod proc;
mod report;
mod seed;
mod spam_eval;
mod tokens;
mod transfer;
mod webhooks;
mod wrk;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tally::outbound::install_crypto_provider();
    let result = match cli.command {
        Some(Command::CeilingStatic { bind }) => ceiling::serve_static(&bind),
        Some(Command::CeilingSqlitePk { bind, db, rows }) => ceiling::serve_pk(&bind, &db, rows),
        Some(Command::ConcurrentDecisions(args)) => decisions::main(args),
        Some(Command::CrossInstance(args)) => cross::main(args),
        Some(Command::SpamEval(args)) => spam_eval::main(args),
        Some(Command::Transfer(args)) => transfer::main(args),
        Some(Command::SpamModelCost(args)) => model_cost::main(args),
        Some(Command::Webhooks(args)) => webhooks::main(args),
        None => harness::main(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
