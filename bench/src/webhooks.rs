//! The webhook scenarios (issue 22), `tally-bench webhooks`:
//!
//! 1. **Latency.** One webhook (`comment.published`) aimed at a receiver in this
//!    process; comments posted one after another; for each, the time from sending
//!    the POST (so from before its commit) to the receiver getting the delivery.
//!    Target: p99 ≤ 1 s.
//! 2. **Write cost.** POST comment throughput (`--concurrency` tasks, `--writes`
//!    comments) on a fresh server without webhooks, then on a fresh server with two
//!    webhooks subscribed to every event (both delivered to the receiver). Target:
//!    with ≥ 0.9 × without. Both runs in the same invocation.
//!
//! On each of `--backends` (SQLite files in a temporary directory; PostgreSQL
//! databases created next to `--pg-url` and dropped at the end).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{web, App, HttpResponse, HttpServer};

use crate::{
    cli::{Backend, WebhooksArgs},
    decisions::{admin_sql, pg_url_with_db, PgDatabase},
    proc::{self, Child},
    tokens,
};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(15);

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

pub fn main(args: WebhooksArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async {
        let tmp = tempfile::Builder::new()
            .prefix("tally-bench-webhooks-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let tally_bin = match &args.tally_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("current exe: {e}"))?
                .with_file_name("tally"),
        };
        let arrivals: Arrivals = Arc::default();
        let receiver_port = start_receiver(arrivals.clone())?;
        let receiver = format!("http://127.0.0.1:{receiver_port}/hook");

        for &backend in &args.backends {
            run_backend(&args, backend, &tally_bin, tmp.path(), &arrivals, &receiver).await?;
        }
        Ok(())
    })
}

/// The figures on one backend.
async fn run_backend(
    args: &WebhooksArgs,
    backend: Backend,
    tally_bin: &Path,
    tmp: &Path,
    arrivals: &Arrivals,
    receiver: &str,
) -> Result<(), String> {
    let mut keep = vec![];
    // 1. Latency.
    let (child, port) = start(
        tally_bin,
        &database(args, backend, tmp, "latency", &mut keep).await?,
        tmp,
        "latency",
    )
    .await?;
    let client = reqwest::Client::new();
    add_hook(&client, port, receiver, &["comment.published"]).await?;
    let reader = tokens::mint("r-1", "Reader", "reader")?;
    let mut latencies = vec![];
    for i in 0..args.comments {
        let sent = Instant::now();
        let id = post(&client, port, &reader, i).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(at) = arrivals.lock().map_err(|_| "poisoned")?.get(&id) {
                latencies.push(at.duration_since(sent).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("comment {id} was not delivered within 30 s"));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    child.terminate(STOP_GRACE);
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    let (p50, p99, max) = (pct(0.5), pct(0.99), pct(1.0));

    // 2. Write cost.
    let without = throughput(
        args,
        tally_bin,
        &database(args, backend, tmp, "plain", &mut keep).await?,
        tmp,
        "plain",
        None,
    )
    .await?;
    let with = throughput(
        args,
        tally_bin,
        &database(args, backend, tmp, "hooked", &mut keep).await?,
        tmp,
        "hooked",
        Some(receiver),
    )
    .await?;
    let ratio = with / without.max(f64::MIN_POSITIVE);

    println!(
        "## Webhooks ({}, receiver in the harness process)\n",
        backend.name()
    );
    println!(
            "| scenario | figure | target |\n|---|---|---|\n\
             | delivery after the POST was sent ({} comments, one at a time) | p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms | p99 ≤ 1000 ms: {} |\n\
             | POST comment, no webhook | {without:.0} req/s | |\n\
             | POST comment, two webhooks (`*`) | {with:.0} req/s | |\n\
             | with ÷ without | {ratio:.2} | ≥ 0.9: {} |",
            args.comments,
            if p99 <= 1000.0 { "met" } else { "NOT met" },
            if ratio >= 0.9 { "met" } else { "NOT met" },
        );
    drop(keep);
    Ok(())
}

/// A fresh database for the server `tag`: a SQLite file, or a throwaway PostgreSQL
/// database (dropped when `keep` is).
async fn database(
    args: &WebhooksArgs,
    backend: Backend,
    tmp: &Path,
    tag: &str,
    keep: &mut Vec<PgDatabase>,
) -> Result<String, String> {
    match backend {
        Backend::Sqlite => {
            let dir = tmp.join(format!("{tag}-sqlite"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok(format!(
                "sqlite://{}?mode=rwc",
                dir.join("tally.db").display()
            ))
        }
        Backend::Postgres => {
            let name = format!("tally_bench_webhooks_{tag}_{}", std::process::id());
            admin_sql(
                &args.pg_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await?;
            admin_sql(&args.pg_url, &format!("CREATE DATABASE {name}")).await?;
            keep.push(PgDatabase {
                admin_url: args.pg_url.clone(),
                name: name.clone(),
            });
            Ok(pg_url_with_db(&args.pg_url, &name))
        }
    }
}

/// A receiver answering 200 to everything, noting when each comment's first
/// `comment.published` (or any comment event) arrived.
fn start_receiver(arrivals: Arrivals) -> Result<u16, String> {
    let server = HttpServer::new(move || {
        let arrivals = arrivals.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let arrivals = arrivals.clone();
            async move {
                let at = Instant::now();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if let Some(id) = v["data"]["item"]["comment"]["id"].as_str() {
                        if let Ok(mut a) = arrivals.lock() {
                            a.entry(id.to_owned()).or_insert(at);
                        }
                    }
                }
                HttpResponse::Ok().finish()
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .map_err(|e| format!("receiver: {e}"))?;
    let port = server.addrs()[0].port();
    tokio::spawn(server.disable_signals().run());
    Ok(port)
}

async fn start(
    tally_bin: &Path,
    database_url: &str,
    tmp: &Path,
    tag: &str,
) -> Result<(Child, u16), String> {
    let dir: PathBuf = tmp.join(tag);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = proc::free_port()?;
    let mut cmd = Command::new(tally_bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TALLY_DATABASE_URL", database_url)
        .env("TALLY_BIND", format!("127.0.0.1:{port}"))
        .env("TALLY_JWT_SECRET", tokens::SECRET)
        .env("TALLY_WRITE_RATE_PER_MIN", "0")
        .env("TALLY_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("TALLY_LOG", "warn")
        .arg("serve");
    let mut child = Child::spawn(&format!("tally ({tag})"), cmd, &dir.join("tally.log"))?;
    proc::wait_ready(&mut child, port, "/readyz", Instant::now(), READY_TIMEOUT).await?;
    Ok((child, port))
}

async fn add_hook(
    client: &reqwest::Client,
    port: u16,
    url: &str,
    events: &[&str],
) -> Result<(), String> {
    let admin = tokens::mint("bench-admin", "Admin", "admin")?;
    let res = client
        .post(format!("http://127.0.0.1:{port}/api/v1/admin/webhooks"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"url": url, "events": events}))
        .send()
        .await
        .map_err(|e| format!("create webhook: {e}"))?;
    if res.status() != 201 {
        return Err(format!("create webhook: {}", res.status()));
    }
    Ok(())
}

async fn post(client: &reqwest::Client, port: u16, token: &str, i: u32) -> Result<String, String> {
    let res = client
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/articles/bench-{}/comments",
            i % 50
        ))
        .bearer_auth(token)
        .json(&serde_json::json!({"body": format!("Webhook bench comment number {i}")}))
        .send()
        .await
        .map_err(|e| format!("post: {e}"))?;
    if res.status() != 201 {
        return Err(format!("post: {}", res.status()));
    }
    let v: serde_json::Value = res.json().await.map_err(|e| format!("post: {e}"))?;
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "post: no id".to_owned())
}

/// Comments per second with `args.concurrency` tasks, on a fresh server (with two
/// webhooks to `receiver` when given).
async fn throughput(
    args: &WebhooksArgs,
    tally_bin: &Path,
    database_url: &str,
    tmp: &Path,
    tag: &str,
    receiver: Option<&str>,
) -> Result<f64, String> {
    let (child, port) = start(tally_bin, database_url, tmp, tag).await?;
    let client = reqwest::Client::new();
    if let Some(url) = receiver {
        add_hook(&client, port, url, &["*"]).await?;
        add_hook(&client, port, url, &["*"]).await?;
    }
    let readers = tokens::readers(args.concurrency)?;
    let per_task = args.writes / args.concurrency.max(1);
    let started = Instant::now();
    let tasks: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(t, token)| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    post(&client, port, &token, t as u32 * per_task + i).await?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| format!("task: {e}"))??;
    }
    let rate = f64::from(per_task * args.concurrency) / started.elapsed().as_secs_f64();
    child.terminate(STOP_GRACE);
    Ok(rate)
}
