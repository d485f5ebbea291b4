//! The "cross-instance visibility" scenario (issue 18): two tally instances on one
//! database, default cache lifetimes (60 s). Each write is a rating `PUT` through
//! instance A; right before it, instance B's cached aggregate of the article is filled;
//! after A answered, B is polled (about every millisecond) until its aggregate shows the
//! write. Reported: p50/p90/p99/max of the time from A's answer to B showing it
//! (target p99 ≤ 100 ms on PostgreSQL, where B hears of the write by LISTEN/NOTIFY).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    cli::{Backend, CrossArgs},
    decisions::{admin_sql, pg_url_with_db, PgDatabase},
    proc::{self, Child},
    tokens,
};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(15);
/// A write not visible through B after this long counts as lost (and fails the run).
const GIVE_UP: Duration = Duration::from_secs(5);

pub fn main(args: CrossArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async {
        let tmp = tempfile::Builder::new()
            .prefix("tally-bench-cross-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let tally_bin = match &args.tally_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("current exe: {e}"))?
                .with_file_name("tally"),
        };
        if !tally_bin.exists() {
            return Err(format!(
                "{} not found: build it with `cargo build --release -p tally`",
                tally_bin.display()
            ));
        }
        let mut out = format!(
            "### Cross-instance visibility: {} rating writes through instance A, each \
             polled through instance B until shown (caches 60 s)\n\n\
             | backend | writes | p50 ms | p90 ms | p99 ms | max ms | target |\n\
             |---|---:|---:|---:|---:|---:|---|\n",
            args.writes
        );
        for &backend in &args.backends {
            eprintln!("== cross-instance visibility on {}", backend.name());
            let ms = run_backend(&args, backend, &tally_bin, tmp.path()).await?;
            let pct = |p: f64| {
                let i = ((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len().max(1)) - 1;
                ms.get(i).copied().unwrap_or(0.0)
            };
            let target = match backend {
                Backend::Postgres if pct(0.99) <= 100.0 => "p99 ≤ 100 ms: met",
                Backend::Postgres => "p99 ≤ 100 ms: NOT met",
                Backend::Sqlite => "none (SQLite instances poll every 500 ms)",
            };
            out.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {target} |\n",
                backend.name(),
                ms.len(),
                pct(0.50),
                pct(0.90),
                pct(0.99),
                ms.last().copied().unwrap_or(0.0),
            ));
        }
        println!("{out}");
        Ok(())
    })
}

fn spawn(tally_bin: &Path, dir: &Path, url: &str, name: &str) -> Result<(Child, u16), String> {
    let port = proc::free_port()?;
    let mut cmd = Command::new(tally_bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("TALLY_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("TALLY_DATABASE_URL", url)
        .env("TALLY_BIND", format!("127.0.0.1:{port}"))
        .env("TALLY_JWT_SECRET", tokens::SECRET)
        .env("TALLY_WRITE_RATE_PER_MIN", "0")
        .env("TALLY_LOG", "warn");
    let child = Child::spawn(name, cmd, &dir.join(format!("{name}.log")))?;
    Ok((child, port))
}

/// The milliseconds from A's answer to B showing each write, sorted.
async fn run_backend(
    args: &CrossArgs,
    backend: Backend,
    tally_bin: &Path,
    tmp: &Path,
) -> Result<Vec<f64>, String> {
    let dir = tmp.join(format!("cross-{}", backend.name()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut _pg = None;
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("tally.db").display()),
        Backend::Postgres => {
            let name = format!("tally_bench_cross_{}", std::process::id());
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
    // A migrates first; B starts on the migrated database.
    let (mut a, port_a) = spawn(tally_bin, &dir, &url, "tally-a")?;
    proc::wait_ready(&mut a, port_a, "/readyz", Instant::now(), READY_TIMEOUT).await?;
    let (mut b, port_b) = spawn(tally_bin, &dir, &url, "tally-b")?;
    proc::wait_ready(&mut b, port_b, "/readyz", Instant::now(), READY_TIMEOUT).await?;
    let outcome = drive(args, port_a, port_b).await;
    b.terminate(STOP_GRACE);
    a.terminate(STOP_GRACE);
    outcome
}

async fn count_at(client: &reqwest::Client, url: &str) -> Result<i64, String> {
    let v: serde_json::Value = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok(v["count"].as_i64().unwrap_or(-1))
}

async fn drive(args: &CrossArgs, port_a: u16, port_b: u16) -> Result<Vec<f64>, String> {
    let client = reqwest::Client::new();
    let readers = tokens::readers(args.writes)?;
    let seen_b = format!("http://127.0.0.1:{port_b}/api/v1/articles/cross/rating");
    let mut ms = Vec::with_capacity(readers.len());
    for (i, token) in readers.iter().enumerate() {
        let before = i as i64;
        // B holds the article's aggregate before the write, in its cache.
        let cached = count_at(&client, &seen_b).await?;
        if cached != before {
            return Err(format!(
                "B shows {cached} ratings before write {i}, not {before}"
            ));
        }
        let res = client
            .put(format!(
                "http://127.0.0.1:{port_a}/api/v1/articles/cross/ratings/me"
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({"stars": 1 + i % 5}))
            .send()
            .await
            .map_err(|e| format!("PUT rating: {e}"))?;
        if res.status() != 201 {
            return Err(format!("PUT rating through A: {}", res.status()));
        }
        let answered = Instant::now();
        loop {
            if count_at(&client, &seen_b).await? == before + 1 {
                break;
            }
            if answered.elapsed() > GIVE_UP {
                return Err(format!("write {i} not visible through B after {GIVE_UP:?}"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ms.push(answered.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}
