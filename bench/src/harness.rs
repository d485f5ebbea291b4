//! The run: ceilings, then per backend seed → scenarios at 10 k → grow to
//! `--big-comments` → cold start and scenarios at 1 M; the report at the end. Every
//! server is a child process killed on drop; the temp dir and the PostgreSQL database
//! are removed at the end, also on error or Ctrl-C.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use tally::{config::Settings, service::write::db::Db};

use crate::{
    ceiling,
    cli::{Backend, DecisionsArgs, RunArgs},
    decisions,
    proc::{self, Child},
    report::{self, valid_rps, Measurement, Outcome, Row, Section, Target},
    seed::{self, Seeder},
    tokens,
    wrk::{self, Load, Scripts},
};

/// General comments seeded for the "10 k" scenarios (the thread adds its own 10 000).
const SMALL_OTHERS: u64 = 10_000;
const COLD_STARTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Target for the server's peak RSS under load at 1 M comments, in MiB.
const RSS_TARGET_MB: f64 = 64.0;
const COLD_START_TARGET_MS: f64 = 200.0;

pub fn main(args: RunArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(run_with_cleanup(args))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

async fn run_with_cleanup(args: RunArgs) -> Result<(), String> {
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("wrk is not installed (bench/run.sh installs it with apt-get)".into());
    }
    let tmp = tempfile::Builder::new()
        .prefix("tally-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let pg_db = format!("tally_bench_{}", std::process::id());
    let outcome = tokio::select! {
        r = run(&args, tmp.path(), &pg_db) => r,
        () = shutdown_signal() => Err("interrupted".to_owned()),
    };
    // The run's future is dropped by now: every server it started has been killed.
    if args.backends.contains(&Backend::Postgres) {
        if let Ok(admin) = pg_connect(&args.pg_url).await {
            for name in [pg_db.clone(), small_pg_db(&pg_db)] {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(e) = admin.execute_unprepared(&sql).await {
                    eprintln!("tally-bench: could not drop database {name}: {e}");
                }
            }
            admin.close().await.ok();
        }
    }
    let dir = tmp.path().display().to_string();
    if let Err(e) = tmp.close() {
        eprintln!("tally-bench: could not remove {dir}: {e}");
    }
    outcome
}

/// The PostgreSQL copy of the 10 k database.
/// The harness's own connection (seeding, recounts, VACUUM, CHECKPOINT): tally's
/// settings but for the per-statement bound, which a CHECKPOINT on a machine busy with
/// other work can exceed (the 2026-12-07 runs failed there with `statement timeout`).
fn harness_settings(url: &str) -> Settings {
    Settings {
        database_url: url.to_owned(),
        db_timeout_ms: 600_000,
        ..Settings::default()
    }
}

fn small_pg_db(pg_db: &str) -> String {
    format!("{pg_db}_10k")
}

/// `CREATE DATABASE to TEMPLATE from`, retried while a session (autovacuum) lingers on
/// the template.
async fn copy_pg_database(admin_url: &str, from: &str, to: &str) -> Result<(), String> {
    let admin = pg_connect(admin_url).await?;
    let sql = format!("CREATE DATABASE {to} TEMPLATE {from}");
    let mut result = Ok(());
    for _ in 0..50 {
        result = admin.execute_unprepared(&sql).await.map(|_| ());
        match &result {
            Err(e) if e.to_string().contains("being accessed by other users") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => break,
        }
    }
    admin.close().await.ok();
    result.map_err(|e| format!("copy {from} to {to}: {e}"))
}

async fn pg_connect(url: &str) -> Result<DatabaseConnection, String> {
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(2)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    Database::connect(opt)
        .await
        .map_err(|e| format!("{url}: {e}"))
}

/// `url` with its database name replaced by `name`.
fn pg_url_with_db(url: &str, name: &str) -> String {
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

/// Everything the backends share.
struct Ctx<'a> {
    args: &'a RunArgs,
    load: Load,
    tmp: &'a Path,
    self_exe: PathBuf,
    tally_bin: PathBuf,
    readers: Vec<String>,
    moderator: String,
}

async fn run(args: &RunArgs, tmp: &Path, pg_db: &str) -> Result<(), String> {
    let started = Instant::now();
    let self_exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let tally_bin = match &args.tally_bin {
        Some(p) => p.clone(),
        None => self_exe.with_file_name("tally"),
    };
    if !tally_bin.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p tally` (bench/run.sh does)",
            tally_bin.display()
        ));
    }
    let load = Load {
        threads: args.threads,
        connections: args.connections,
        duration: args.duration,
    };
    let repo = std::env::current_dir().map_err(|e| e.to_string())?;
    let mut header = report::machine_header(&repo);
    header.push(format!(
        "load: wrk -t{} -c{} --latency, all over 127.0.0.1; the cached reads with the static \
         ceiling, and the queue page on both sizes, in {} rounds of {} s runs in turn; the \
         other scenarios one run each of {} s",
        load.threads, load.connections, args.rounds, args.round_secs, load.duration
    ));
    header.push(
        "tally runs with TALLY_WRITE_RATE_PER_MIN=0: the per-user write limit (20/min by \
         default) is off, or it would throttle the load generator"
            .into(),
    );

    eprintln!("== minting {} reader tokens", args.readers);
    let ctx = Ctx {
        args,
        load,
        tmp,
        self_exe,
        tally_bin,
        readers: tokens::readers(args.readers.max(1))?,
        moderator: tokens::mint("bench-moderator", "Bench Moderator", "moderator")?,
    };

    let mut sections = vec![];
    let mut failed = false;
    for &backend in &args.backends {
        eprintln!("== {}", backend.name());
        let section = match run_backend(&ctx, backend, pg_db).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tally-bench: {}: {e}", backend.name());
                failed |= !e.starts_with("skipped");
                Section {
                    title: backend.name().to_owned(),
                    notes: vec![e],
                    ceilings: vec![],
                    rows: vec![],
                }
            }
        };
        sections.push(section);
    }
    // The concurrent decisions (issue 16), on the same backends, with their defaults.
    let decision_args = DecisionsArgs {
        backends: args.backends.clone(),
        comments: 200,
        decisions: 2_000,
        concurrency: 64,
        seed: 16,
        pg_url: args.pg_url.clone(),
        tally_bin: Some(ctx.tally_bin.clone()),
    };
    let decisions_text = match decisions::run_all(&decision_args, &ctx.tally_bin, tmp).await {
        Ok(runs) => {
            failed |= runs.iter().any(|r| r.server_errors > 0);
            decisions::render(&decision_args, &runs)
        }
        Err(e) => {
            eprintln!("tally-bench: concurrent decisions: {e}");
            failed = true;
            format!("### Concurrent decisions\n\nFAILED: {e}\n")
        }
    };
    header.push(format!(
        "harness wall time: {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    let text = format!("{}\n{decisions_text}", report::render(&header, &sections));
    println!("{text}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&args.out, &text).map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!("report written to {}", args.out.display());
    if failed {
        return Err("a backend failed (see its section)".into());
    }
    Ok(())
}

/// One wrk run against `port`, with the peak RSS of `pid` during it.
async fn measure(load: Load, port: u16, pid: u32, script: &Path) -> Outcome {
    proc::reset_peak_rss(pid);
    let wrk = wrk::run(load, port, script).await?;
    let rss_mb = proc::peak_rss_mb(pid);
    Ok(Measurement { wrk, rss_mb })
}

/// Runs one named scenario and logs its outcome.
async fn scenario(
    load: Load,
    port: u16,
    pid: u32,
    name: &str,
    script: Result<PathBuf, String>,
) -> Outcome {
    eprintln!("  {name}");
    let o = match script {
        Ok(s) => measure(load, port, pid, &s).await,
        Err(e) => Err(e),
    };
    log_outcome(name, &o);
    o
}

fn log_outcome(name: &str, o: &Outcome) {
    match o {
        Ok(m) => eprintln!(
            "  {name}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, peak RSS {:.1} MB{}",
            m.wrk.rps,
            m.wrk.p50_ms,
            m.wrk.p99_ms,
            m.rss_mb.unwrap_or(0.0),
            m.wrk
                .invalid_reason()
                .map_or(String::new(), |w| format!(" — INVALID: {w}"))
        ),
        Err(e) => eprintln!("  {name}: FAILED: {e}"),
    }
}

/// Starts the bare static ceiling's server; it stays up while the cached reads are
/// measured in turns with it.
async fn start_static(self_exe: &Path, tmp: &Path) -> Result<(Child, u16), String> {
    let port = proc::free_port()?;
    let mut cmd = Command::new(self_exe);
    cmd.args(["ceiling-static", "--bind", &format!("127.0.0.1:{port}")]);
    let mut child = Child::spawn("ceiling-static", cmd, &tmp.join("ceiling-static.log"))?;
    proc::wait_ready(&mut child, port, "/", Instant::now(), READY_TIMEOUT).await?;
    Ok((child, port))
}

/// Of runs measured in rounds, the round whose ratio to the same round's `den` is the
/// median (or the first that failed), that ratio, and every round's ratio.
fn median_round(
    num: &[Outcome],
    den: &[Outcome],
    den_name: &str,
) -> (usize, Result<f64, String>, Vec<f64>) {
    let ratios: Result<Vec<f64>, String> = num
        .iter()
        .zip(den)
        .map(|(n, d)| ratio(n, d, den_name))
        .collect();
    match ratios {
        Ok(r) => {
            let mut order: Vec<usize> = (0..r.len()).collect();
            order.sort_by(|a, b| r[*a].total_cmp(&r[*b]));
            let m = order[order.len() / 2];
            (m, Ok(r[m]), r)
        }
        Err(e) => {
            let failed = num.iter().position(|o| valid_rps(o).is_err());
            (failed.unwrap_or(0), Err(e), vec![])
        }
    }
}

/// The run with the median throughput (or the first that failed).
fn median_run(runs: &[Outcome]) -> Outcome {
    if let Some(bad) = runs.iter().find(|o| valid_rps(o).is_err()) {
        return bad.clone();
    }
    let mut sorted: Vec<&Outcome> = runs.iter().collect();
    sorted.sort_by(|a, b| {
        valid_rps(a)
            .unwrap_or(0.0)
            .total_cmp(&valid_rps(b).unwrap_or(0.0))
    });
    sorted[sorted.len() / 2].clone()
}

fn list_ratios(r: &[f64]) -> String {
    if r.is_empty() {
        return "–".into();
    }
    r.iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn measure_pk(ctx: &Ctx<'_>, dir: &Path, db: &str) -> Outcome {
    let port = proc::free_port()?;
    let mut cmd = Command::new(&ctx.self_exe);
    cmd.args([
        "ceiling-sqlite-pk",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--db",
        db,
    ]);
    let mut child = Child::spawn("ceiling-sqlite-pk", cmd, &dir.join("ceiling-pk.log"))?;
    proc::wait_ready(&mut child, port, "/rows/1", Instant::now(), READY_TIMEOUT).await?;
    let script =
        Scripts::new(dir, ctx.load.threads).get_random_id("ceiling-pk", "/rows/", 10_000)?;
    let o = measure(ctx.load, port, child.pid(), &script).await;
    log_outcome("bare primary-key read", &o);
    child.terminate(STOP_GRACE);
    o
}

/// The release tally binary on a free port, logging to `dir/tally-<tag>.log`.
fn spawn_tally(ctx: &Ctx<'_>, url: &str, dir: &Path, tag: &str) -> Result<(Child, u16), String> {
    let port = proc::free_port()?;
    let mut cmd = Command::new(&ctx.tally_bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("TALLY_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("TALLY_DATABASE_URL", url)
        .env("TALLY_BIND", format!("127.0.0.1:{port}"))
        .env("TALLY_JWT_SECRET", tokens::SECRET)
        .env("TALLY_WRITE_RATE_PER_MIN", "0");
    let child = Child::spawn("tally", cmd, &dir.join(format!("tally-{tag}.log")))?;
    Ok((child, port))
}

async fn start_tally(
    ctx: &Ctx<'_>,
    url: &str,
    dir: &Path,
    tag: &str,
) -> Result<(Child, u16, Duration), String> {
    let started = Instant::now();
    let (mut child, port) = spawn_tally(ctx, url, dir, tag)?;
    let ready = proc::wait_ready(&mut child, port, "/readyz", started, READY_TIMEOUT).await?;
    Ok((child, port, ready))
}

/// GETs `path` and returns its JSON, failing on a non-2xx answer.
async fn get_json(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> Result<serde_json::Value, String> {
    let mut req = client.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| format!("GET {path}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET {path}: {status}"));
    }
    resp.json().await.map_err(|e| format!("GET {path}: {e}"))
}

/// Posts a comment as `token`'s reader (a unique body).
async fn post_comment(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> Result<(), String> {
    let mut req = client
        .post(format!("http://127.0.0.1:{port}{path}"))
        .json(&serde_json::json!({"body": "A comment of the signed-in reader's own"}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| format!("POST {path}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("POST {path}: {status}"));
    }
    Ok(())
}

/// Walks the thread page by page; returns the number of pages and the cursor that
/// fetches the last one.
async fn last_page_cursor(client: &reqwest::Client, port: u16) -> Result<(u32, String), String> {
    let base = format!("/api/v1/articles/{}/comments?limit=20", seed::THREAD);
    let first = get_json(client, port, &base, None).await?;
    let total = first["total"].as_i64().unwrap_or(-1);
    if total != seed::THREAD_COMMENTS as i64 {
        return Err(format!(
            "the thread lists {total} comments, not {}",
            seed::THREAD_COMMENTS
        ));
    }
    let mut pages = 1;
    let mut cursor = None;
    let mut next = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = next {
        let page = get_json(client, port, &format!("{base}&cursor={c}"), None).await?;
        pages += 1;
        next = page["next_cursor"].as_str().map(str::to_owned);
        cursor = Some(c);
    }
    cursor
        .map(|c| (pages, c))
        .ok_or_else(|| "the thread has a single page".into())
}

async fn db_version(conn: &DatabaseConnection) -> String {
    let sql = match conn.get_database_backend() {
        DbBackend::Postgres => "SELECT current_setting('server_version') AS v",
        _ => "SELECT sqlite_version() AS v",
    };
    conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get::<String>("", "v").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn ratio(num: &Outcome, den: &Outcome, den_name: &str) -> Result<f64, String> {
    let n = valid_rps(num)?;
    let d = valid_rps(den).map_err(|e| format!("{den_name} {e}"))?;
    Ok(n / d)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run_backend(ctx: &Ctx<'_>, backend: Backend, pg_db: &str) -> Result<Section, String> {
    let args = ctx.args;
    let load = ctx.load;
    let dir = ctx.tmp.join(match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    });
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let scripts = Scripts::new(&dir, load.threads);

    // The database, migrated by tally's own migrator.
    let (url, pk_db, commits_url) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}?mode=rwc", dir.join("tally.db").display()),
            dir.join("pk.db").display().to_string(),
            format!("sqlite://{}?mode=rwc", dir.join("commits.db").display()),
        ),
        Backend::Postgres => {
            let admin = pg_connect(&args.pg_url).await.map_err(|e| {
                format!("skipped: PostgreSQL is not reachable ({e}); start it or pass --backends sqlite")
            })?;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
                .await
                .map_err(|e| format!("drop {pg_db}: {e}"))?;
            admin
                .execute_unprepared(&format!("CREATE DATABASE {pg_db}"))
                .await
                .map_err(|e| format!("create {pg_db}: {e}"))?;
            admin.close().await.ok();
            let url = pg_url_with_db(&args.pg_url, pg_db);
            (url.clone(), url.clone(), url)
        }
    };
    let mut db = Db::connect(&harness_settings(&url))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    db.migrate().await.map_err(|e| format!("migrate: {e}"))?;
    let version = db_version(&db.conn).await;
    eprintln!("  {} {version}; seeding", backend.name());

    let mut seeder = Seeder::new();
    let seed_started = Instant::now();
    seeder.seed_base(&db.conn, SMALL_OTHERS).await?;
    seed::recount(&db.conn).await?;
    let small_count = seed::comment_count(&db.conn).await?;
    let small_seed_secs = seed_started.elapsed().as_secs_f64();

    // Ceilings on this backend.
    eprintln!("  ceiling: bare primary-key read");
    let pk = measure_pk(ctx, &dir, &pk_db).await;
    let dur = Duration::from_secs(load.duration);
    eprintln!(
        "  ceiling: raw single-row commits, 1 connection, {}s",
        load.duration
    );
    let raw1 = ceiling::raw_commits(&commits_url, dur, 1).await;
    eprintln!(
        "  ceiling: raw single-row commits, 64 tasks, {}s",
        load.duration
    );
    let raw64 = ceiling::raw_commits(&commits_url, dur, 64).await;
    for (n, r) in [("1 connection", &raw1), ("64 tasks", &raw64)] {
        match r {
            Ok(v) => eprintln!("  raw commits, {n}: {v:.0}/s"),
            Err(e) => eprintln!("  raw commits, {n}: FAILED: {e}"),
        }
    }
    // The raw commits' rows are not needed again. On PostgreSQL they would leave the
    // scenarios that follow to pay for their cleanup (autovacuum of the table, the
    // checkpoint of their WAL): drop them and checkpoint now.
    match backend {
        Backend::Sqlite => {
            for file in ["commits.db", "commits.db-wal", "commits.db-shm"] {
                let _ = std::fs::remove_file(dir.join(file));
            }
        }
        Backend::Postgres => {
            for sql in ["DROP TABLE IF EXISTS bench_commits", "CHECKPOINT"] {
                db.conn
                    .execute_unprepared(sql)
                    .await
                    .map_err(|e| format!("{sql}: {e}"))?;
            }
        }
    }

    // Scenarios on the 10 k database.
    let (server, port, _) = start_tally(ctx, &url, &dir, "10k").await?;
    let pid = server.pid();
    let client = reqwest::Client::new();
    let hot = format!("/api/v1/articles/{}/rating", seed::HOT);
    get_json(&client, port, &hot, None).await?;
    let (pages, last_cursor) = last_page_cursor(&client, port).await?;
    let thread = format!("/api/v1/articles/{}/comments?limit=20", seed::THREAD);
    let batch: String = (1..=50)
        .map(|i| format!("article_id=a-{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let queue = "/api/v1/moderation/queue";
    get_json(&client, port, queue, Some(&ctx.moderator)).await?;
    let reviews = format!(
        "/api/v1/articles/{}/reviews?sort=best&limit=20",
        seed::THREAD
    );
    let top = "/api/v1/ratings/top?limit=20";
    // The best 100 reviews: the comments the vote PUT spreads its votes over.
    let review_ids: Vec<String> = get_json(
        &client,
        port,
        &format!(
            "/api/v1/articles/{}/reviews?sort=best&limit=100",
            seed::THREAD
        ),
        None,
    )
    .await?["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    get_json(&client, port, top, None).await?;

    let run = async |name: &str, script: Result<PathBuf, String>| -> Outcome {
        scenario(load, port, pid, name, script).await
    };
    // The runs within rounds: short, so the runs a ratio divides are close in time.
    let short = Load {
        duration: args.round_secs,
        ..load
    };

    // The cached reads and the static ceiling they are divided by, in turns, round after
    // round: these shared machines' speed drifts over minutes (CPU steal), and a single
    // run of each could land on either side of a drift.
    let (static_server, static_port) = start_static(&ctx.self_exe, &dir).await?;
    let static_script = scripts.get("ceiling-static", "/", None);
    let reader = ctx.readers.first().map(String::as_str);
    let cached_reads = [
        ("aggregate GET", scripts.get("aggregate", &hot, None)),
        (
            "batch of 50",
            scripts.get("batch50", &format!("/api/v1/ratings?{batch}"), None),
        ),
        (
            "thread first page",
            scripts.get("first-page", &thread, None),
        ),
        (
            "thread last page",
            scripts.get("last-page", &format!("{thread}&cursor={last_cursor}"), None),
        ),
        // A signed-in reader (nothing of theirs on the thread): the shared page plus
        // their overlay, divided by the same round's anonymous first page.
        (
            "thread first page, signed in",
            scripts.get("first-page-signed", &thread, reader),
        ),
        (
            "reviews first page, sort=best",
            scripts.get("reviews-best", &reviews, None),
        ),
        ("ratings/top", scripts.get("ratings-top", top, None)),
        // The same reader's reviews page: divided by the same round's signed-in thread
        // page (one run of each, minutes apart, could land on either side of a drift).
        (
            "reviews first page sort=best, signed in",
            scripts.get("reviews-best-signed", &reviews, reader),
        ),
    ];
    let mut statics = vec![];
    let mut reads: [Vec<Outcome>; 8] = Default::default();
    for round in 1..=args.rounds {
        let of = format!("(round {round}/{})", args.rounds);
        let name = format!("bare actix static JSON {of}");
        eprintln!("  {name}");
        let o = match &static_script {
            Ok(s) => measure(short, static_port, static_server.pid(), s).await,
            Err(e) => Err(e.clone()),
        };
        log_outcome(&name, &o);
        statics.push(o);
        // The signed-in thread page (4) and the signed-in reviews page (7), whose ratio
        // is a row of its own, run back to back, the first of the pair alternating by
        // round: three runs apart, a drift of the machine's speed between them showed
        // as a ratio of the pages (0.83–1.15 over rounds of the same two pages).
        let pair = if round % 2 == 1 { [4, 7] } else { [7, 4] };
        for i in [0, 1, 2, 3, pair[0], pair[1], 5, 6] {
            let (name, script) = &cached_reads[i];
            reads[i]
                .push(scenario(short, port, pid, &format!("{name} {of}"), script.clone()).await);
        }
    }
    static_server.terminate(STOP_GRACE);
    let static_c = &median_run(&statics);
    let [aggs, batches, firsts, lasts, signeds, bests, tops, best_signeds] = &reads;
    let pks = vec![pk.clone(); firsts.len()];
    let (i, agg_ratio, agg_rounds) = median_round(aggs, &statics, "static ceiling");
    let agg = aggs[i].clone();
    let (i, batch_ratio, batch_rounds) = median_round(batches, &statics, "static ceiling");
    let batch50 = batches[i].clone();
    let (i, first_ratio, first_rounds) = median_round(firsts, &pks, "pk ceiling");
    let first = firsts[i].clone();
    let (i, last_ratio, last_rounds) = median_round(lasts, firsts, "first page");
    let last = lasts[i].clone();
    let (i, signed_ratio, signed_rounds) = median_round(signeds, firsts, "anonymous first page");
    let first_signed = signeds[i].clone();
    let (i, best_ratio, best_rounds) = median_round(bests, firsts, "thread first page");
    let best = bests[i].clone();
    let (i, top_ratio, top_rounds) = median_round(tops, &statics, "static ceiling");
    let top_list = tops[i].clone();
    let (i, best_signed_ratio, best_signed_rounds) =
        median_round(best_signeds, signeds, "signed-in thread first page");
    let best_signed = best_signeds[i].clone();
    let rounds_note = format!(
        "cached reads: {} rounds, each a run of the static ceiling, the aggregate GET, the \
         batch, the first and the last page, the first page signed in and the reviews (best) signed \
         in (back to back, alternating which goes first), the reviews (best) and \
         ratings/top, in turn; a row shows the round with \
         the median ratio (the ceiling row: the median run). Ratios by round: aggregate {}; \
         batch {}; first page {}; last ÷ first page {}; signed-in ÷ anonymous first page {}; \
         reviews (best) ÷ thread first page {}; ratings/top {}; signed-in reviews (best) ÷ \
         signed-in thread first page {}",
        args.rounds,
        list_ratios(&agg_rounds),
        list_ratios(&batch_rounds),
        list_ratios(&first_rounds),
        list_ratios(&last_rounds),
        list_ratios(&signed_rounds),
        list_ratios(&best_rounds),
        list_ratios(&top_rounds),
        list_ratios(&best_signed_rounds)
    );
    // A reader with a comment of their own on the first page (`mine: true`): their page
    // is composed (a copy of the shared page, flagged and serialised), not the shared
    // bytes. The comment is posted now, after the rounds (it is the thread's newest).
    let owner = ctx
        .readers
        .get(1)
        .or(ctx.readers.first())
        .map(String::as_str);
    post_comment(
        &client,
        port,
        &format!("/api/v1/articles/{}/comments", seed::THREAD),
        owner,
    )
    .await?;
    let own_signed = run(
        "thread first page, signed in, own comment on it",
        scripts.get("first-page-own", &thread, owner),
    )
    .await;
    let last_signed = run(
        "thread last page, signed in",
        scripts.get(
            "last-page-signed",
            &format!("{thread}&cursor={last_cursor}"),
            reader,
        ),
    )
    .await;
    let vote = run(
        "PUT vote",
        scripts.put_vote("put-vote", &review_ids, &ctx.readers),
    )
    .await;
    let put = run(
        "PUT rating",
        scripts.put_rating("put-rating", seed::HOT, &ctx.readers),
    )
    .await;
    let post = run(
        "POST comment",
        scripts.post_comment("post-comment", seed::HOT, &ctx.readers),
    )
    .await;
    let mixed_small = run("mixed 90/10", scripts.mixed("mixed-10k", 100, &ctx.readers)).await;
    server.terminate(STOP_GRACE);

    // A copy of the 10 k database as it stands now, so that the queue page can be
    // measured on both sizes in turns at the end (the same drift argument as above).
    let have = seed::comment_count(&db.conn).await?;
    eprintln!("  copying the 10 k database ({have} comments)");
    let small_url = match backend {
        Backend::Sqlite => {
            db.conn
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
                .map_err(|e| format!("checkpoint: {e}"))?;
            let copy = dir.join("tally-10k.db");
            std::fs::copy(dir.join("tally.db"), &copy)
                .map_err(|e| format!("copy the 10 k database: {e}"))?;
            format!("sqlite://{}?mode=rwc", copy.display())
        }
        Backend::Postgres => {
            // A template must have no other sessions: close ours for the copy.
            db.conn.close_by_ref().await.ok();
            copy_pg_database(&args.pg_url, pg_db, &small_pg_db(pg_db)).await?;
            db = Db::connect(&harness_settings(&url))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            pg_url_with_db(&args.pg_url, &small_pg_db(pg_db))
        }
    };

    // Grow to --big-comments.
    let grow_started = Instant::now();
    if args.big_comments > have {
        eprintln!("  growing to {} comments", args.big_comments);
        seeder
            .add_others(&db.conn, args.big_comments - have)
            .await?;
        seed::recount(&db.conn).await?;
    }
    let big_count = seed::comment_count(&db.conn).await?;
    let grow_secs = grow_started.elapsed().as_secs_f64();
    db.conn.close_by_ref().await.ok();

    // Cold start: spawn → first 200 from /readyz, median of five.
    let mut starts = vec![];
    for i in 0..COLD_STARTS {
        let (child, _, t) = start_tally(ctx, &url, &dir, &format!("cold-{i}")).await?;
        child.terminate(STOP_GRACE);
        eprintln!("  cold start {}: {:.1} ms", i + 1, t.as_secs_f64() * 1e3);
        starts.push(t.as_secs_f64() * 1e3);
    }
    let cold_ms = median(starts.clone());
    let cold_max = starts.iter().copied().fold(0.0, f64::max);

    // Scenarios on the big database.
    let (server, port, _) = start_tally(ctx, &url, &dir, "1m").await?;
    let pid = server.pid();
    get_json(&client, port, queue, Some(&ctx.moderator)).await?;
    let run = async |name: &str, script: Result<PathBuf, String>| -> Outcome {
        scenario(load, port, pid, name, script).await
    };
    let (small_server, small_port, _) = start_tally(ctx, &small_url, &dir, "10k-copy").await?;
    get_json(&client, small_port, queue, Some(&ctx.moderator)).await?;
    let queue_script = scripts.get("queue", queue, Some(&ctx.moderator));
    let (mut smalls, mut bigs) = (vec![], vec![]);
    for round in 1..=args.rounds {
        let of = format!("(round {round}/{})", args.rounds);
        smalls.push(
            scenario(
                short,
                small_port,
                small_server.pid(),
                &format!("moderation queue 10k {of}"),
                queue_script.clone(),
            )
            .await,
        );
        bigs.push(
            scenario(
                short,
                port,
                pid,
                &format!("moderation queue 1M {of}"),
                queue_script.clone(),
            )
            .await,
        );
    }
    small_server.terminate(STOP_GRACE);
    // Time per request at the same concurrency is the inverse of throughput: the
    // round with the median throughput ratio has the median time ratio.
    let (i, big_per_small, queue_rounds) = median_round(&bigs, &smalls, "10 k run");
    let (queue_small, queue_big) = (smalls[i].clone(), bigs[i].clone());
    let queue_ratio = big_per_small.map(|r| 1.0 / r);
    let queue_rounds: Vec<f64> = queue_rounds.iter().map(|r| 1.0 / r).collect();
    let mixed_big = run(
        "mixed 90/10 at 1M",
        scripts.mixed("mixed-1m", 100, &ctx.readers),
    )
    .await;
    server.terminate(STOP_GRACE);

    // The tables.
    let big = human(big_count);
    let x = "×";
    let pk_name = format!("bare {} primary-key read", backend.name());
    let ceilings = vec![
        report::row(
            "bare actix static JSON (~200 B)",
            static_c,
            None,
            "",
            Target::None,
        ),
        report::row(
            &format!("{pk_name} (actix + sea-orm, random id of 10 000)"),
            &pk,
            None,
            "",
            Target::None,
        ),
        commits_row("raw single-row commits, 1 connection (commits/s)", &raw1),
        commits_row("raw single-row commits, 64 tasks (commits/s, info)", &raw64),
    ];
    let raw1_outcome: Outcome = raw1.clone().map(fake_measurement);
    let rss_big = [&queue_big, &mixed_big]
        .iter()
        .filter_map(|o| o.as_ref().ok().and_then(|m| m.rss_mb))
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        });
    let mut rows = vec![
        report::row(
            "cached aggregate GET (hot article)",
            &agg,
            Some(agg_ratio),
            " × static",
            Target::AtLeast(0.75),
        ),
        report::row(
            "batch of 50 aggregates",
            &batch50,
            Some(batch_ratio),
            " × static",
            Target::AtLeast(0.5),
        ),
        report::row(
            "thread first page (10 000 comments, limit 20, anonymous)",
            &first,
            Some(first_ratio),
            " × pk read",
            Target::AtLeast(0.5),
        ),
        report::row(
            &format!("thread last page (page {pages}, anonymous)"),
            &last,
            Some(last_ratio),
            " × first page",
            Target::AtLeast(0.9),
        ),
        report::row(
            "thread first page, signed-in reader (shared page + own overlay)",
            &first_signed,
            Some(signed_ratio),
            " × anonymous first page",
            Target::AtLeast(0.5),
        ),
        report::row(
            "thread first page, signed-in reader with a comment of their own on it",
            &own_signed,
            Some(ratio(&own_signed, &first, "anonymous first page")),
            " × anonymous first page",
            Target::None,
        ),
        report::row(
            &format!("thread last page (page {pages}), signed-in reader"),
            &last_signed,
            Some(ratio(&last_signed, &first_signed, "signed-in first page")),
            " × signed-in first page",
            Target::None,
        ),
        report::row(
            &format!(
                "reviews first page, sort=best ({} reviews, limit 20, anonymous)",
                seed::THREAD_REVIEWS
            ),
            &best,
            Some(best_ratio),
            " × thread first page",
            Target::AtLeast(0.9),
        ),
        report::row(
            "reviews first page, sort=best, signed-in reader (shared page + own overlay)",
            &best_signed,
            Some(best_signed_ratio),
            " × signed-in thread page",
            Target::AtLeast(0.9),
        ),
        report::row(
            "ratings/top?limit=20 (cached)",
            &top_list,
            Some(top_ratio),
            " × static",
            Target::AtLeast(0.5),
        ),
        report::row(
            "PUT vote, distinct readers (100 reviews, up or down at random)",
            &vote,
            Some(ratio(&vote, &raw1_outcome, "raw commit rate")),
            " × raw commits",
            Target::AtLeast(1.0),
        ),
        report::row(
            "PUT rating, distinct users (hot article)",
            &put,
            Some(ratio(&put, &raw1_outcome, "raw commit rate")),
            " × raw commits",
            Target::AtLeast(1.0),
        ),
        report::row(
            "POST comment, distinct users (hot article)",
            &post,
            Some(ratio(&post, &raw1_outcome, "raw commit rate")),
            " × raw commits",
            Target::AtLeast(1.0),
        ),
        report::row(
            &format!("moderation queue page ({} comments)", human(have)),
            &queue_small,
            None,
            "",
            Target::None,
        ),
        report::row(
            "mixed 90 % GET aggregate / 10 % PUT rating (100 articles)",
            &mixed_small,
            None,
            "",
            Target::None,
        ),
        report::row(
            &format!("moderation queue page ({big} comments)"),
            &queue_big,
            Some(queue_ratio),
            &format!(" {x} the 10 k time"),
            Target::AtMost(1.5),
        ),
        report::row(
            &format!("mixed 90/10 ({big} comments)"),
            &mixed_big,
            None,
            "",
            Target::None,
        ),
    ];
    rows.push(report::value_row(
        &format!("server peak RSS under load ({big} comments)"),
        Row {
            rps: "–".into(),
            p50: "–".into(),
            p99: "–".into(),
            rss: rss_big.map_or("–".into(), |v| format!("{v:.1}")),
            ratio: "–".into(),
            ..Row::default()
        },
        rss_big.ok_or_else(|| "no 1 M run measured".to_owned()),
        Target::AtMost(RSS_TARGET_MB),
        " MB",
    ));
    rows.push(report::value_row(
        &format!(
            "cold start to ready ({big} comments; p50 = median, p99 = worst of {COLD_STARTS})"
        ),
        Row {
            rps: "–".into(),
            p50: format!("{cold_ms:.1} ms"),
            p99: format!("{cold_max:.1} ms"),
            rss: "–".into(),
            ratio: "–".into(),
            ..Row::default()
        },
        Ok(cold_ms),
        Target::AtMost(COLD_START_TARGET_MS),
        " ms",
    ));

    let mut notes = vec![
        format!("{} {version}", backend.name()),
        format!(
            "data: {} articles + `hot` ({} ratings) + `thread` ({} approved top-level comments \
             and {} reviews with 0–11 votes each); \
             general comments 10 % pending, 82 % approved, 4 % rejected, 3 % spam, 1 % deleted, \
             a fifth of them replies, 1 % of the approved flagged",
            seed::ARTICLES,
            seed::HOT_RATINGS,
            seed::THREAD_COMMENTS,
            seed::THREAD_REVIEWS
        ),
        format!(
            "10 k database: {small_count} comments ({SMALL_OTHERS} general + the thread), seeded in {small_seed_secs:.1} s; \
             grown to {big_count} comments in {grow_secs:.1} s (direct inserts + recount)"
        ),
        "ratios are throughputs divided by the ceiling measured in this run (queue at 1 M: \
         time per request at the same concurrency, 10 k req/s ÷ 1 M req/s)"
            .into(),
        "cold start: spawn of the release binary to the first 200 from /readyz (polled every \
         ~1 ms), migrations checked at start as by default, warm page cache"
            .into(),
    ];
    notes.push(rounds_note);
    notes.push(format!(
        "moderation queue: the 10 k database ({} comments, copied after the 10 k \
         scenarios) and the {big} one served side by side, {} rounds of a run on each in \
         turn; time ratios by round: {}",
        have,
        args.rounds,
        list_ratios(&queue_rounds)
    ));
    if backend == Backend::Postgres {
        notes.push(
            "the pk ceiling for PostgreSQL is the same bare read on PostgreSQL; the raw commit \
             rate uses the server's defaults (synchronous_commit on)"
                .into(),
        );
    } else {
        notes.push(
            "SQLite: WAL, synchronous FULL, busy timeout 5 s for tally, the pk ceiling and the \
             raw commits (tally's own `Db`, its writer lock and BEGIN IMMEDIATE)"
                .into(),
        );
    }
    Ok(Section {
        title: backend.name().to_owned(),
        notes,
        ceilings,
        rows,
    })
}

fn fake_measurement(rate: f64) -> Measurement {
    Measurement {
        wrk: wrk::WrkResult {
            requests: 1,
            rps: rate,
            p50_ms: 0.0,
            p99_ms: 0.0,
            non_2xx: 0,
            socket_errors: 0,
        },
        rss_mb: None,
    }
}

fn commits_row(name: &str, r: &Result<f64, String>) -> Row {
    Row {
        scenario: name.to_owned(),
        rps: match r {
            Ok(v) => format!("{v:.0}"),
            Err(e) => format!("FAILED: {e}"),
        },
        p50: "–".into(),
        p99: "–".into(),
        rss: "–".into(),
        ..Row::default()
    }
}

fn human(n: u64) -> String {
    if n >= 1_000_000 && n % 1_000_000 < 50_000 {
        format!("{:.0} M", n as f64 / 1e6)
    } else if n >= 1_000_000 {
        format!("{:.2} M", n as f64 / 1e6)
    } else {
        format!("{:.0} k", n as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_database_replaces_the_url_path() {
        assert_eq!(
            pg_url_with_db("postgres://postgres@127.0.0.1:5432/test", "tally_bench_1"),
            "postgres://postgres@127.0.0.1:5432/tally_bench_1"
        );
        assert_eq!(
            pg_url_with_db("postgres://u:p@db/x?sslmode=disable", "b"),
            "postgres://u:p@db/b?sslmode=disable"
        );
        assert_eq!(
            pg_url_with_db("postgres://db:5432", "b"),
            "postgres://db:5432/b"
        );
    }

    fn runs(rates: &[f64]) -> Vec<Outcome> {
        rates.iter().map(|r| Ok(fake_measurement(*r))).collect()
    }

    #[test]
    fn rounds_are_judged_by_their_median_ratio_within_the_round() {
        // Ratios by round: 0.5, 0.9, 0.8. The median is round 3's, not the ratio of the
        // median rates (90 ÷ 100).
        let num = runs(&[50.0, 90.0, 96.0]);
        let den = runs(&[100.0, 100.0, 120.0]);
        let (round, ratio, all) = median_round(&num, &den, "static");
        assert_eq!(round, 2);
        assert!((ratio.unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(list_ratios(&all), "0.50, 0.90, 0.80");
        assert_eq!(valid_rps(&median_run(&den)).unwrap(), 100.0);
    }

    #[test]
    fn a_failed_round_fails_the_ratio_and_is_the_one_shown() {
        let num = vec![Ok(fake_measurement(50.0)), Err("wrk died".to_owned())];
        let den = runs(&[100.0, 100.0]);
        let (round, ratio, all) = median_round(&num, &den, "static");
        assert_eq!(round, 1);
        assert!(ratio.unwrap_err().contains("wrk died"));
        assert!(all.is_empty());
        assert_eq!(median_run(&num).unwrap_err(), "wrk died");
    }
}
