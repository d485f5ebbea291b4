//! The webhook scenarios (issue 22), `tally-bench webhooks`:
//!
//! 1. **Latency.** One webhook (`comment.published`) aimed at a receiver in this
//!    process; comments posted one after another; for each, the time from sending
//!    the POST (so from before its commit) to the receiver getting the delivery.
//!    Target: p99 ≤ 1 s.
//! 2. **Write cost.** Two servers side by side, one without webhooks and one with
//!    `--hooks` webhooks (2) subscribed to every event (all delivered to the
//!    receiver: with two, four deliveries per approved comment; with none, a control
//!    run of two identical servers). In each of `--rounds` rounds, a burst of
//!    `--writes` POST comments (`--concurrency` tasks) to each, in turns (odd rounds
//!    the plain server first); the rounds are shared, in blocks, between `--pairs`
//!    such pairs of servers, each on fresh databases. After the hooked server's
//!    burst: how many deliveries were still outstanding when its last POST was
//!    answered, and how long the rest took to arrive (the next burst starts once they
//!    have). Target: with ≥ 0.9 × without, the median of the rounds' ratios. Each
//!    burst also reports the CPU time the server and this harness (load generator and
//!    receiver) spent per POST, and how busy the machine's cores were.
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

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::{
    cli::{Backend, WebhooksArgs},
    decisions::{admin_sql, pg_url_with_db, PgDatabase},
    proc::{self, Child},
    tokens,
};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long the deliveries of a burst may take to arrive after it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// What the receiver saw: the first arrival per comment (latency path only) and the
/// deliveries per path.
#[derive(Default)]
struct Received {
    arrivals: HashMap<String, Instant>,
    per_path: HashMap<String, u64>,
}

type Shared = Arc<Mutex<Received>>;

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
        let received: Shared = Arc::default();
        let receiver_port = start_receiver(received.clone())?;
        let receiver = format!("http://127.0.0.1:{receiver_port}");

        for &backend in &args.backends {
            run_backend(&args, backend, &tally_bin, tmp.path(), &received, &receiver).await?;
        }
        Ok(())
    })
}

/// One burst's figures.
struct Burst {
    rate: f64,
    /// Server CPU (user + system) per POST, ms.
    server_cpu: f64,
    /// This process's CPU per POST (load generator and receiver), ms.
    harness_cpu: f64,
    /// Busy share of all cores during the burst (every process on the machine).
    busy: f64,
    /// Hooked bursts: deliveries expected, outstanding when the burst ended, and how
    /// long the outstanding ones took to arrive.
    deliveries: Option<(u64, u64, Duration)>,
}

/// The figures on one backend.
async fn run_backend(
    args: &WebhooksArgs,
    backend: Backend,
    tally_bin: &Path,
    tmp: &Path,
    received: &Shared,
    receiver: &str,
) -> Result<(), String> {
    let mut keep = vec![];
    // 1. Latency.
    let (child, port) = serve(args, backend, tally_bin, tmp, "latency", &mut keep).await?;
    let client = reqwest::Client::new();
    add_hook(
        &client,
        port,
        &format!("{receiver}/latency"),
        &["comment.published"],
    )
    .await?;
    let reader = tokens::mint("r-1", "Reader", "reader")?;
    let mut latencies = vec![];
    for i in 0..args.comments {
        let sent = Instant::now();
        let (id, _) = post(&client, port, &reader, i).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(at) = received.lock().map_err(|_| "poisoned")?.arrivals.get(&id) {
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

    // 2. Write cost: pairs of servers, bursts in turns. Each pair serves a block of
    // the rounds on fresh databases: a server keeps its own speed for as long as it
    // runs (control runs differ by up to ±0.15 from one pair to the next), so the
    // median spans several pairs.
    let hook_path = "/throughput";
    let pairs = args.pairs.clamp(1, args.rounds.max(1));
    let mut rows = vec![];
    let mut next_comment = 0u32;
    for pair in 1..=pairs {
        // The first pair keeps the plain tags (`bench/burst-probe.py` finds its
        // servers by them).
        let tag = |kind: &str| match pair {
            1 => kind.to_owned(),
            _ => format!("{kind}{pair}"),
        };
        let (plain, plain_port) =
            serve(args, backend, tally_bin, tmp, &tag("plain"), &mut keep).await?;
        let (hooked, hooked_port) =
            serve(args, backend, tally_bin, tmp, &tag("hooked"), &mut keep).await?;
        for _ in 0..args.hooks {
            add_hook(
                &client,
                hooked_port,
                &format!("{receiver}{hook_path}"),
                &["*"],
            )
            .await?;
        }
        let plain_srv = (plain.pid(), plain_port);
        let hooked_srv = (hooked.pid(), hooked_port);
        // This pair's block of rounds.
        let rounds = (pair - 1) * args.rounds / pairs + 1..=pair * args.rounds / pairs;
        for round in rounds {
            let mut without = None;
            let mut with = None;
            for hooks in if round % 2 == 1 {
                [false, true]
            } else {
                [true, false]
            } {
                let (pid, port) = if hooks { hooked_srv } else { plain_srv };
                let b = burst(
                    args,
                    pid,
                    port,
                    next_comment,
                    (hooks && args.hooks > 0).then_some((received, hook_path)),
                )
                .await?;
                if hooks {
                    with = Some(b);
                } else {
                    without = Some(b);
                }
            }
            next_comment += args.writes;
            if let (Some(without), Some(with)) = (without, with) {
                rows.push((round, pair, without, with));
            }
        }
        plain.terminate(STOP_GRACE);
        hooked.terminate(STOP_GRACE);
    }
    let mut ratios: Vec<f64> = rows
        .iter()
        .map(|(_, _, wo, w)| w.rate / wo.rate.max(f64::MIN_POSITIVE))
        .collect();
    let one_run: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);

    println!(
        "## Webhooks ({}, receiver in the harness process)\n",
        backend.name()
    );
    println!(
        "| scenario | figure | target |\n|---|---|---|\n\
         | delivery after the POST was sent ({} comments, one at a time) | p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms | p99 ≤ 1000 ms: {} |\n\
         | with ÷ without ({} webhooks), median of {} rounds ({} POSTs a burst, {} tasks) | {ratio:.2} (rounds: {}) | ≥ 0.9: {} |\n",
        args.comments,
        if p99 <= 1000.0 { "met" } else { "NOT met" },
        args.hooks,
        rows.len(),
        args.writes,
        args.concurrency,
        one_run.join(", "),
        if ratio >= 0.9 { "met" } else { "NOT met" },
    );
    println!(
        "| round (pair) | without | with | ratio | outstanding at the burst's end | then arrived in | server CPU/POST without / with | harness CPU/POST without / with | cores busy without / with |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (round, pair, wo, w) in &rows {
        let (expected, outstanding, drain) = w.deliveries.unwrap_or_default();
        println!(
            "| {round} ({pair}) | {:.0} req/s | {:.0} req/s | {:.2} | {outstanding} of {expected} | {:.2} s | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.0} % / {:.0} % |",
            wo.rate,
            w.rate,
            w.rate / wo.rate.max(f64::MIN_POSITIVE),
            drain.as_secs_f64(),
            wo.server_cpu,
            w.server_cpu,
            wo.harness_cpu,
            w.harness_cpu,
            wo.busy * 100.0,
            w.busy * 100.0,
        );
    }
    println!();
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

/// A receiver answering 200 to everything, counting the deliveries per path and
/// noting, on `/latency`, when each comment's first delivery arrived (only there is
/// the body parsed: the throughput bursts share the cores with it).
fn start_receiver(received: Shared) -> Result<u16, String> {
    let server = HttpServer::new(move || {
        let received = received.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let received = received.clone();
            async move {
                let at = Instant::now();
                let id = if req.path() == "/latency" {
                    serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| {
                            v["data"]["item"]["comment"]["id"]
                                .as_str()
                                .map(str::to_owned)
                        })
                } else {
                    None
                };
                if let Ok(mut r) = received.lock() {
                    *r.per_path.entry(req.path().to_owned()).or_default() += 1;
                    if let Some(id) = id {
                        r.arrivals.entry(id).or_insert(at);
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

/// The server `tag` on a fresh database of its own (see [`database`]).
async fn serve(
    args: &WebhooksArgs,
    backend: Backend,
    tally_bin: &Path,
    tmp: &Path,
    tag: &str,
    keep: &mut Vec<PgDatabase>,
) -> Result<(Child, u16), String> {
    let url = database(args, backend, tmp, tag, keep).await?;
    start(tally_bin, &url, tmp, tag).await
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

/// POSTs comment `i`; its id and whether it was published at once.
async fn post(
    client: &reqwest::Client,
    port: u16,
    token: &str,
    i: u32,
) -> Result<(String, bool), String> {
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
    let id = v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "post: no id".to_owned())?;
    Ok((id, v["status"].as_str() == Some("approved")))
}

/// CPU time (user + system) of a process, from `/proc/<pid>/stat`, in ms.
fn cpu_ms(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // USER_HZ is 100 on Linux.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) * 10.0
}

/// Busy and total jiffies of all cores, from `/proc/stat`.
fn machine_jiffies() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let total: f64 = f.iter().take(8).sum();
    let idle = f.get(3).unwrap_or(&0.0) + f.get(4).unwrap_or(&0.0);
    (total - idle, total)
}

/// A burst of `args.writes` comments with `args.concurrency` tasks on the server
/// `pid` at `port`; with `hooked` (the receiver and the webhooks' path), also how far
/// the deliveries were behind at its end, after waiting for them all.
async fn burst(
    args: &WebhooksArgs,
    pid: u32,
    port: u16,
    first: u32,
    hooked: Option<(&Shared, &str)>,
) -> Result<Burst, String> {
    let client = reqwest::Client::new();
    let readers = tokens::readers(args.concurrency)?;
    let per_task = args.writes / args.concurrency.max(1);
    let count = |path: &str| {
        hooked.map_or(0, |(r, _)| {
            r.lock()
                .map(|r| r.per_path.get(path).copied().unwrap_or(0))
                .unwrap_or(0)
        })
    };
    let path = hooked.map_or("", |(_, p)| p);
    let before = count(path);
    let pid = pid.to_string();
    let (server0, harness0, machine0) = (cpu_ms(&pid), cpu_ms("self"), machine_jiffies());
    let started = Instant::now();
    let tasks: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(t, token)| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut approved = 0u64;
                for i in 0..per_task {
                    let n = first + t as u32 * per_task + i;
                    approved += u64::from(post(&client, port, &token, n).await?.1);
                }
                Ok::<_, String>(approved)
            })
        })
        .collect();
    let mut approved = 0;
    for t in tasks {
        approved += t.await.map_err(|e| format!("task: {e}"))??;
    }
    let elapsed = started.elapsed();
    let arrived = count(path) - before;
    let (server1, harness1, machine1) = (cpu_ms(&pid), cpu_ms("self"), machine_jiffies());
    let posts = f64::from(per_task * args.concurrency);
    let deliveries = match hooked {
        None => None,
        Some(_) => {
            // `comment.created` for every comment, `comment.published` for the
            // approved ones, to each webhook.
            let expected =
                u64::from(args.hooks) * (u64::from(per_task * args.concurrency) + approved);
            let ended = Instant::now();
            while count(path) - before < expected {
                if ended.elapsed() > DRAIN_TIMEOUT {
                    return Err(format!(
                        "{} of {expected} deliveries arrived within {DRAIN_TIMEOUT:?} of the burst",
                        count(path) - before
                    ));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Some((expected, expected.saturating_sub(arrived), ended.elapsed()))
        }
    };
    Ok(Burst {
        rate: posts / elapsed.as_secs_f64(),
        server_cpu: (server1 - server0) / posts,
        harness_cpu: (harness1 - harness0) / posts,
        busy: (machine1.0 - machine0.0) / (machine1.1 - machine0.1).max(1.0),
        deliveries,
    })
}
