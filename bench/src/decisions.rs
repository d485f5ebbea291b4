//! The "concurrent decisions" scenario (issue 16): many moderators deciding on the same
//! few comments at once, in random directions and without `expected_version`, so that
//! opposite moves (approve→reject next to reject→approve) run side by side. Before the
//! lock order was fixed, PostgreSQL answered a share of them with 500 (deadlock
//! detected) and 503 (the pool ran dry behind the deadlocks).
//!
//! Not a wrk run: each decision is one request from a pool of `--concurrency` tasks in
//! this process, its latency measured from send to the end of the body. Reported per
//! backend: the statuses, the 5xx count, p50, p99 and max, and PostgreSQL's p99 over
//! SQLite's (target ≤ 3×, 0 × 5xx).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use sea_orm::ConnectionTrait;

use crate::{
    cli::{Backend, DecisionsArgs},
    proc::{self, Child},
    tokens,
};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(15);
/// The verdicts a decision picks from.
const VERDICTS: [&str; 3] = ["approve", "reject", "spam"];

/// The outcome of the scenario on one backend.
#[derive(Debug, Clone)]
pub struct DecisionRun {
    pub backend: Backend,
    pub decisions: usize,
    pub by_status: std::collections::BTreeMap<u16, usize>,
    pub server_errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub wall_secs: f64,
}

pub fn main(args: DecisionsArgs) -> Result<(), String> {
    if args.comments == 0 || args.concurrency == 0 {
        return Err("--comments and --concurrency must be at least 1".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async {
        let tmp = tempfile::Builder::new()
            .prefix("tally-bench-decisions-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let tally_bin = match &args.tally_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("current exe: {e}"))?
                .with_file_name("tally"),
        };
        let runs = run_all(&args, &tally_bin, tmp.path()).await?;
        let text = render(&args, &runs);
        println!("{text}");
        if runs.iter().any(|r| r.server_errors > 0) {
            return Err("some decisions were answered 5xx".into());
        }
        Ok(())
    })
}

/// Runs the scenario on each backend of `args`, in order.
pub async fn run_all(
    args: &DecisionsArgs,
    tally_bin: &Path,
    tmp: &Path,
) -> Result<Vec<DecisionRun>, String> {
    if !tally_bin.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p tally`",
            tally_bin.display()
        ));
    }
    let mut runs = vec![];
    for &backend in &args.backends {
        eprintln!("== concurrent decisions on {}", backend.name());
        runs.push(run_backend(args, backend, tally_bin, tmp).await?);
    }
    Ok(runs)
}

/// Markdown: one row per backend and the ratio of the p99s.
pub fn render(args: &DecisionsArgs, runs: &[DecisionRun]) -> String {
    let mut out = format!(
        "### Concurrent decisions: {} decisions (random approve/reject/spam, no \
         expected_version) over {} comments, {} at a time\n\n\
         | backend | statuses | 5xx | p50 ms | p99 ms | max ms | wall s |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
        args.decisions, args.comments, args.concurrency
    );
    for r in runs {
        let statuses = r
            .by_status
            .iter()
            .map(|(s, n)| format!("{n} × {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "| {} | {statuses} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            r.backend.name(),
            r.server_errors,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.wall_secs
        ));
    }
    let p99 = |b: Backend| runs.iter().find(|r| r.backend == b).map(|r| r.p99_ms);
    if let (Some(pg), Some(lite)) = (p99(Backend::Postgres), p99(Backend::Sqlite)) {
        let ratio = pg / lite.max(f64::MIN_POSITIVE);
        let errors: usize = runs.iter().map(|r| r.server_errors).sum();
        let met = ratio <= 3.0 && errors == 0;
        out.push_str(&format!(
            "\nPostgreSQL p99 ÷ SQLite p99: {ratio:.2} (target ≤ 3, and 0 × 5xx): {}\n",
            if met { "met" } else { "NOT met" }
        ));
    }
    out
}

pub(crate) fn pg_url_with_db(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}/{name}{query}", &base[..host_end])
}

pub(crate) async fn admin_sql(url: &str, sql: &str) -> Result<(), String> {
    let mut opt = sea_orm::ConnectOptions::new(url.to_owned());
    opt.max_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    let admin = sea_orm::Database::connect(opt)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let done = admin.execute_unprepared(sql).await.map(|_| ());
    admin.close().await.ok();
    done.map_err(|e| format!("{sql}: {e}"))
}

/// Drops the throwaway PostgreSQL database when the run ends, however it ends.
pub(crate) struct PgDatabase {
    pub(crate) admin_url: String,
    pub(crate) name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let url = self.admin_url.clone();
        // On a thread of its own: this may run inside the runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                if let Err(e) = rt.block_on(admin_sql(&url, &sql)) {
                    eprintln!("tally-bench: {e}");
                }
            }
        })
        .join();
    }
}

async fn run_backend(
    args: &DecisionsArgs,
    backend: Backend,
    tally_bin: &Path,
    tmp: &Path,
) -> Result<DecisionRun, String> {
    let dir: PathBuf = tmp.join(format!("decisions-{}", backend.name()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut _pg = None;
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("tally.db").display()),
        Backend::Postgres => {
            let name = format!("tally_bench_decisions_{}", std::process::id());
            admin_sql(
                &args.pg_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await?;
            admin_sql(&args.pg_url, &format!("CREATE DATABASE {name}")).await?;
            _pg = Some(PgDatabase {
                admin_url: args.pg_url.clone(),
                name: name.clone(),
            });
            pg_url_with_db(&args.pg_url, &name)
        }
    };
    let port = proc::free_port()?;
    let mut cmd = Command::new(tally_bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("TALLY_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(&dir)
        .env("TALLY_DATABASE_URL", &url)
        .env("TALLY_BIND", format!("127.0.0.1:{port}"))
        .env("TALLY_JWT_SECRET", tokens::SECRET)
        .env("TALLY_WRITE_RATE_PER_MIN", "0");
    let mut server = Child::spawn("tally", cmd, &dir.join("tally.log"))?;
    proc::wait_ready(&mut server, port, "/readyz", Instant::now(), READY_TIMEOUT).await?;
    let outcome = drive(args, backend, port).await;
    server.terminate(STOP_GRACE);
    outcome
}

async fn drive(args: &DecisionsArgs, backend: Backend, port: u16) -> Result<DecisionRun, String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{port}");
    let moderators: Vec<String> = (1..=8)
        .map(|i| tokens::mint(&format!("bench-mod-{i}"), &format!("Mod {i}"), "moderator"))
        .collect::<Result<_, _>>()?;
    let readers = tokens::readers(20)?;

    eprintln!("  posting {} comments", args.comments);
    let mut ids = Vec::with_capacity(args.comments);
    for i in 0..args.comments {
        let res = client
            .post(format!("{base}/api/v1/articles/decide-{}/comments", i % 10))
            .bearer_auth(&readers[i % readers.len()])
            .json(&serde_json::json!({"body": format!("comment {i} to decide on")}))
            .send()
            .await
            .map_err(|e| format!("POST comment: {e}"))?;
        if res.status() != 201 {
            return Err(format!("POST comment: {}", res.status()));
        }
        let c: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
        ids.push(c["id"].as_str().unwrap_or_default().to_owned());
    }

    let mut rng = StdRng::seed_from_u64(args.seed);
    let plan: Vec<(String, &str, usize)> = (0..args.decisions)
        .map(|i| {
            let id = ids[rng.random_range(0..ids.len())].clone();
            (id, VERDICTS[rng.random_range(0..3)], i % moderators.len())
        })
        .collect();
    eprintln!(
        "  {} decisions, {} at a time",
        args.decisions, args.concurrency
    );
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(plan.into_iter()));
    let started = Instant::now();
    let mut tasks = vec![];
    for _ in 0..args.concurrency {
        let queue = queue.clone();
        let client = client.clone();
        let base = base.clone();
        let moderators = moderators.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen: Vec<(u16, f64)> = vec![];
            loop {
                let Some((id, verdict, m)) = queue.lock().await.next() else {
                    break;
                };
                let t = Instant::now();
                let status = match client
                    .post(format!("{base}/api/v1/moderation/comments/{id}/decision"))
                    .bearer_auth(&moderators[m])
                    .json(&serde_json::json!({"action": verdict}))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                {
                    Ok(res) => {
                        let s = res.status().as_u16();
                        let _ = res.bytes().await;
                        s
                    }
                    // No answer at all counts as a server failure.
                    Err(_) => 599,
                };
                seen.push((status, t.elapsed().as_secs_f64() * 1e3));
            }
            seen
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())?);
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let mut by_status = std::collections::BTreeMap::new();
    for (s, _) in &all {
        *by_status.entry(*s).or_insert(0) += 1;
    }
    let server_errors = all.iter().filter(|(s, _)| *s >= 500).count();
    let mut ms: Vec<f64> = all.iter().map(|(_, ms)| *ms).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len().max(1)) - 1;
        ms.get(i).copied().unwrap_or(0.0)
    };
    let run = DecisionRun {
        backend,
        decisions: all.len(),
        by_status,
        server_errors,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
        wall_secs,
    };
    eprintln!(
        "  {}: {} decisions, {} × 5xx, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.1} s",
        backend.name(),
        run.decisions,
        run.server_errors,
        run.p50_ms,
        run.p99_ms,
        run.max_ms,
        run.wall_secs
    );
    Ok(run)
}
