//! What the learned spam model (issue 21) costs the writes it takes part in, as two
//! ratios measured in turns within one run, per backend (`tally-bench spam-model-cost`):
//!
//! - **POST comment, model trained ÷ model empty.** Two servers side by side on two
//!   fresh databases: one whose model learned `--examples` decisions (half spam, half
//!   ham, synthetic texts over a vocabulary of ~30 000 words and 200 link domains,
//!   taught through `tally::service::spam::learn`, the path every decision takes), one
//!   whose model is empty (below `spam_min_examples`, so nothing is scored). `--rounds`
//!   rounds of one wrk run (`--round-secs`) of `POST …/comments` on each, in turns
//!   (the first of a round alternates); a round's ratio is trained req/s ÷ empty req/s,
//!   the median of the rounds is reported. Target ≥ 0.9.
//! - **Decision with learning ÷ decision without.** On the trained server, each round
//!   posts `2 × --decisions` comments, then decides `spam` on half of them (a decision
//!   that teaches the model: its lesson, the totals and the token rows) and `reject` on
//!   the other half (one that teaches nothing: no earlier lesson to take back), each
//!   batch `--concurrency` at a time from a pool of tasks in this process, in turns.
//!   Both move an approved comment out of the listing (the same counters: the article,
//!   two queue rows, the author's history); only the learning differs. The model's
//!   rows are written by a fold after each decision's COMMIT (`spam::fold_soon`, not
//!   awaited): a batch ends once every decision is answered **and** no pending model
//!   change is left, and its rate counts that wait. A round's ratio is decisions/s with
//!   learning ÷ without; the median is reported, with the p99s. Target ≥ 0.9.
//!   `--decisions` sets a round's length: the wait for the last fold (one fold, a few
//!   milliseconds) is paid once per batch of decisions whatever its size, and a batch
//!   of 300 group-committed decisions lasts ~0.1 s on SQLite (~2 600/s), so at that
//!   size the fixed wait and the timer's noise weigh as much as the learning itself;
//!   2 000 per kind (the default) make a batch last about a second. Every decision and
//!   every fold still runs inside the measured time. Each batch also reports the CPU
//!   time per decision of the server process and of the PostgreSQL backends serving its
//!   database (read from `/proc` on this machine; on SQLite the server's covers it):
//!   where a teaching decision's extra cost lands, steadier than the rates on a shared
//!   machine.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use tally::{domain::ModerationStatus, service::spam};

use crate::{
    cli::{Backend, ModelCostArgs},
    decisions::{admin_sql, pg_url_with_db, start_server, PgDatabase},
    proc::Child,
    spam_eval::comment_of,
    tokens,
    wrk::{self, Load, Scripts},
};

const STOP_GRACE: Duration = Duration::from_secs(15);
/// Decisions taught per transaction while training.
const TRAIN_CHUNK: usize = 500;

/// CPU µs per decision (server, database): (without learning, with learning).
type CpuPerDecision = ((f64, f64), (f64, f64));

/// One backend's figures.
struct ModelRun {
    backend: Backend,
    vocabulary: i64,
    train_secs: f64,
    /// (empty req/s, trained req/s) per round.
    posts: Vec<(f64, f64)>,
    /// (without: decisions/s, p99 ms; with: decisions/s, p99 ms) per round.
    decisions: Vec<((f64, f64), (f64, f64))>,
    /// CPU µs per decision, per round.
    cpu: Vec<CpuPerDecision>,
}

pub fn main(args: ModelCostArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async {
        let tmp = tempfile::Builder::new()
            .prefix("tally-bench-model-")
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
        let mut runs = vec![];
        for &backend in &args.backends {
            eprintln!("== spam model cost on {}", backend.name());
            runs.push(run_backend(&args, backend, &tally_bin, tmp.path()).await?);
        }
        println!("{}", render(&args, &runs));
        Ok(())
    })
}

/// A synthetic labelled text: ham from everyday words and "topic" words, spam from
/// sales words, its own words and a link; both share the common words, so the model
/// has to weigh them. Zipf-like: low indices far more frequent.
fn text(rng: &mut StdRng, spam: bool) -> String {
    const COMMON: [&str; 24] = [
        "the",
        "and",
        "this",
        "that",
        "with",
        "for",
        "you",
        "are",
        "was",
        "have",
        "not",
        "but",
        "all",
        "can",
        "one",
        "from",
        "thanks",
        "helped",
        "comment",
        "article",
        "benchmark",
        "good",
        "read",
        "more",
    ];
    const SALES: [&str; 12] = [
        "cheap", "pills", "casino", "bonus", "winner", "free", "offer", "click", "buy", "now",
        "viagra", "loan",
    ];
    let words = rng.random_range(15..60);
    let mut out = Vec::with_capacity(words + 2);
    for _ in 0..words {
        let r: f64 = rng.random();
        let rank = (15_000f64.powf(r) as usize).max(1);
        let w = match (spam, rng.random_range(0..10)) {
            (_, 0..=3) => COMMON[rank % COMMON.len()].to_owned(),
            (true, 4..=5) => SALES[rank % SALES.len()].to_owned(),
            (true, _) => format!("s{rank}"),
            (false, _) => format!("h{rank}"),
        };
        out.push(w);
    }
    if spam {
        out.push(format!(
            "https://shop{}.example/x",
            rng.random_range(0..200)
        ));
    }
    out.join(" ")
}

/// After the training (hundreds of thousands of row updates), the database's cleanup
/// is done now rather than during the measured rounds: PostgreSQL `VACUUM ANALYZE` and
/// a `CHECKPOINT` (else autovacuum and the checkpointer of the trained database compete
/// with the POSTs), SQLite a WAL checkpoint. The empty database gets the same.
async fn settle(db: &sea_orm::DatabaseConnection) -> Result<(), String> {
    let stmts: &[&str] = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => &["VACUUM ANALYZE", "CHECKPOINT"],
        _ => &["PRAGMA wal_checkpoint(TRUNCATE)"],
    };
    for sql in stmts {
        db.execute_unprepared(sql)
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
    }
    Ok(())
}

/// Teaches `examples` decisions to the model of the database at `url`.
async fn train(url: &str, examples: usize) -> Result<(f64, i64), String> {
    let db = Database::connect(url)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    // The decisions' own path: each transaction's staged changes folded after its COMMIT.
    let folds = tally::service::write::db::Db::with_connection(db.clone());
    let mut rng = StdRng::seed_from_u64(21);
    let started = Instant::now();
    let mut n = 0;
    while n < examples {
        let tx = db.begin().await.map_err(|e| format!("begin: {e}"))?;
        for _ in 0..TRAIN_CHUNK.min(examples - n) {
            let is_spam = n % 2 == 0;
            let body = text(&mut rng, is_spam);
            let to = if is_spam {
                ModerationStatus::Spam
            } else {
                ModerationStatus::Approved
            };
            spam::learn(&tx, &comment_of(n, &body), to)
                .await
                .map_err(|e| format!("learn: {e:?}"))?;
            n += 1;
        }
        tx.commit().await.map_err(|e| format!("commit: {e}"))?;
        spam::fold_pending(&folds)
            .await
            .map_err(|e| format!("fold: {e:?}"))?;
    }
    let secs = started.elapsed().as_secs_f64();
    let counts = spam::load(&db).await.map_err(|e| format!("load: {e:?}"))?;
    settle(&db).await?;
    db.close().await.ok();
    Ok((secs, counts.tokens.len() as i64))
}

async fn run_backend(
    args: &ModelCostArgs,
    backend: Backend,
    tally_bin: &Path,
    tmp: &Path,
) -> Result<ModelRun, String> {
    let mut keep = vec![];
    let mut urls = vec![];
    for which in ["empty", "trained"] {
        let dir = tmp.join(format!("{}-{which}", backend.name()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("tally.db").display()),
            Backend::Postgres => {
                let name = format!("tally_bench_model_{which}_{}", std::process::id());
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
                pg_url_with_db(&args.pg_url, &name)
            }
        };
        urls.push((dir, url));
    }
    // The servers migrate their databases; the model is trained behind the trained
    // one's back (its cache checks the model's version every second).
    let (empty, empty_port) = start_server(tally_bin, &urls[0].1, &urls[0].0).await?;
    let (trained, trained_port) = start_server(tally_bin, &urls[1].1, &urls[1].0).await?;
    let outcome = drive(
        args,
        backend,
        trained.pid(),
        &urls[1].1,
        &urls[0].1,
        &urls[0].0,
        [empty_port, trained_port],
    )
    .await;
    for s in [empty, trained] {
        Child::terminate(s, STOP_GRACE);
    }
    drop(keep);
    outcome
}

async fn drive(
    args: &ModelCostArgs,
    backend: Backend,
    server_pid: u32,
    trained_url: &str,
    empty_url: &str,
    dir: &Path,
    // The servers' ports: [empty, trained].
    ports: [u16; 2],
) -> Result<ModelRun, String> {
    let [empty_port, trained_port] = ports;
    eprintln!("  training on {} decisions", args.examples);
    let (train_secs, vocabulary) = train(trained_url, args.examples).await?;
    let empty = Database::connect(empty_url)
        .await
        .map_err(|e| format!("connect {empty_url}: {e}"))?;
    settle(&empty).await?;
    empty.close().await.ok();
    eprintln!("  trained in {train_secs:.1} s, {vocabulary} tokens");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let moderator = tokens::mint("bench-mod", "Bench Moderator", "moderator")?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (port, want) in [(empty_port, 0), (trained_port, args.examples)] {
        let m: serde_json::Value = client
            .get(format!("http://127.0.0.1:{port}/api/v1/moderation/model"))
            .bearer_auth(&moderator)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let have = m["examples"]["spam"].as_i64().unwrap_or(-1)
            + m["examples"]["ham"].as_i64().unwrap_or(-1);
        if have != want as i64 {
            return Err(format!(
                "model on port {port}: {m}, expected {want} examples"
            ));
        }
    }
    let readers = tokens::readers(args.readers)?;
    let scripts = Scripts::new(dir, args.threads);
    let script = scripts.post_comment("post-comment", "model-post", &readers)?;
    let load = Load {
        threads: args.threads,
        connections: args.connections,
        duration: args.round_secs,
    };
    // Warm-up: the trained server loads its model on the first scored comment.
    for port in [empty_port, trained_port] {
        post(
            &client,
            port,
            &readers[0],
            "model-post",
            "warm-up: thanks, this helped.",
        )
        .await?;
    }
    let mut posts = vec![];
    for round in 1..=args.rounds {
        let mut pair = [0.0; 2];
        let order = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        for i in order {
            let port = [empty_port, trained_port][i];
            let r = wrk::run(load, port, &script).await?;
            if let Some(why) = r.invalid_reason() {
                return Err(format!("POST comment round {round}: INVALID: {why}"));
            }
            pair[i] = r.rps;
        }
        eprintln!(
            "  POST round {round}: empty {:.0} req/s, trained {:.0} req/s: {:.3}",
            pair[0],
            pair[1],
            pair[1] / pair[0]
        );
        posts.push((pair[0], pair[1]));
    }

    // Where the trained server's pending model changes are watched (see `folded`).
    let watch = Database::connect(trained_url)
        .await
        .map_err(|e| format!("connect {trained_url}: {e}"))?;
    let mut decisions = vec![];
    let mut cpu = vec![];
    for round in 1..=args.rounds {
        let ids = post_many(
            &client,
            trained_port,
            &readers,
            round,
            2 * args.decisions,
            args.concurrency,
        )
        .await?;
        let (spam_ids, reject_ids) = ids.split_at(args.decisions);
        let mut with = (0.0, 0.0);
        let mut without = (0.0, 0.0);
        let mut cpu_with = (0.0, 0.0);
        let mut cpu_without = (0.0, 0.0);
        let order = if round % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        for learning in order {
            let (ids, verdict) = if learning {
                (spam_ids, "spam")
            } else {
                (reject_ids, "reject")
            };
            let before = CpuMark::take(&watch, server_pid).await;
            let started = Instant::now();
            let mut r = decide_all(
                &client,
                trained_port,
                &moderator,
                ids,
                verdict,
                args.concurrency,
            )
            .await?;
            // The model's rows are written by a fold after each decision's COMMIT, not
            // awaited by the answer: a round with learning ends once the model holds
            // every decision (no pending change left), so that no fold of it runs into
            // the next batch's time; its rate counts that wait.
            let answered = started.elapsed().as_secs_f64();
            let lag = folded(&watch).await?;
            if lag > 0.0 {
                r.0 = ids.len() as f64 / (answered + lag);
                eprintln!(
                    "  the model held every decision {:.1} ms after the last answer",
                    lag * 1e3
                );
            }
            let used = CpuMark::take(&watch, server_pid).await.since(&before);
            let per = |secs: f64| secs * 1e6 / ids.len() as f64;
            let used = (per(used.0), per(used.1));
            if learning {
                with = r;
                cpu_with = used;
            } else {
                without = r;
                cpu_without = used;
            }
        }
        eprintln!(
            "  CPU per decision (server + database): without learning {:.0} + {:.0} µs, with {:.0} + {:.0} µs",
            cpu_without.0, cpu_without.1, cpu_with.0, cpu_with.1
        );
        cpu.push((cpu_without, cpu_with));
        eprintln!(
            "  decisions round {round}: without learning {:.0}/s (p99 {:.1} ms), with {:.0}/s (p99 {:.1} ms): {:.3}",
            without.0,
            without.1,
            with.0,
            with.1,
            with.0 / without.0
        );
        decisions.push((without, with));
    }
    Ok(ModelRun {
        backend,
        vocabulary,
        train_secs,
        posts,
        decisions,
        cpu,
    })
}

/// CPU time used so far by the server process and by the PostgreSQL backends serving
/// its database on this machine (other than the harness's own connection; none on
/// SQLite, whose work is the server's), to count the CPU a batch of decisions costs.
struct CpuMark {
    server: f64,
    database: BTreeMap<u32, f64>,
}

impl CpuMark {
    async fn take(watch: &sea_orm::DatabaseConnection, server_pid: u32) -> CpuMark {
        let mut database = BTreeMap::new();
        if watch.get_database_backend() == sea_orm::DbBackend::Postgres {
            let pids = watch
                .query_all_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT pid FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                ))
                .await
                .unwrap_or_default();
            for row in pids {
                if let Ok(pid) = row.try_get_by_index::<i32>(0) {
                    let pid = pid.unsigned_abs();
                    if let Some(secs) = crate::proc::cpu_secs(pid) {
                        database.insert(pid, secs);
                    }
                }
            }
        }
        CpuMark {
            server: crate::proc::cpu_secs(server_pid).unwrap_or(0.0),
            database,
        }
    }

    /// (server, database) CPU seconds used since `before` (a backend that appeared
    /// meanwhile counts from zero).
    fn since(&self, before: &CpuMark) -> (f64, f64) {
        let database = self
            .database
            .iter()
            .map(|(pid, secs)| secs - before.database.get(pid).copied().unwrap_or(0.0))
            .fold(0.0, |sum, secs| sum + secs);
        (self.server - before.server, database)
    }
}

/// Waits until the trained database has no pending model change (`spam_pending`, see
/// `tally::service::spam`); returns how long that took in seconds (0 when there was
/// none, or the server is a build without pending changes).
async fn folded(db: &sea_orm::DatabaseConnection) -> Result<f64, String> {
    let started = Instant::now();
    loop {
        let left = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT CAST(COUNT(*) AS BIGINT) FROM spam_pending",
            ))
            .await;
        let n = match left {
            Ok(Some(row)) => row.try_get_by_index::<i64>(0).map_err(|e| e.to_string())?,
            // No such table: the model is written in the decisions' transactions.
            Ok(None) | Err(_) => 0,
        };
        if n == 0 {
            let waited = started.elapsed();
            return Ok(if waited < Duration::from_millis(1) {
                0.0
            } else {
                waited.as_secs_f64()
            });
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("{n} model changes still pending after 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn post(
    client: &reqwest::Client,
    port: u16,
    token: &str,
    article: &str,
    body: &str,
) -> Result<String, String> {
    let res = client
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/articles/{article}/comments"
        ))
        .bearer_auth(token)
        .json(&serde_json::json!({ "body": body }))
        .send()
        .await
        .map_err(|e| format!("POST comment: {e}"))?;
    if res.status() != 201 {
        return Err(format!("POST comment: {}", res.status()));
    }
    let c: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
    Ok(c["id"].as_str().unwrap_or_default().to_owned())
}

/// Posts `n` comments (ham-like bodies) on 10 articles, `concurrency` at a time.
async fn post_many(
    client: &reqwest::Client,
    port: u16,
    readers: &[String],
    round: u32,
    n: usize,
    concurrency: usize,
) -> Result<Vec<String>, String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..concurrency {
        let (client, readers, next) = (client.clone(), readers.to_vec(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = vec![];
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let body = format!("Round {round} comment {i} to decide on: thanks, this helped.");
                let article = format!("model-decide-{}", i % 10);
                ids.push((
                    i,
                    post(&client, port, &readers[i % readers.len()], &article, &body).await?,
                ));
            }
            Ok::<_, String>(ids)
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    all.sort();
    Ok(all.into_iter().map(|(_, id)| id).collect())
}

/// Decides `verdict` on every comment of `ids`, `concurrency` at a time; returns
/// (decisions/s, p99 ms).
async fn decide_all(
    client: &reqwest::Client,
    port: u16,
    moderator: &str,
    ids: &[String],
    verdict: &'static str,
    concurrency: usize,
) -> Result<(f64, f64), String> {
    // Owned: the tasks outlive this borrow.
    let owned: Vec<String> = ids.to_vec();
    let queue = Arc::new(tokio::sync::Mutex::new(owned.into_iter()));
    let started = Instant::now();
    let mut tasks = vec![];
    for _ in 0..concurrency {
        let (queue, client, moderator) = (queue.clone(), client.clone(), moderator.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut seen: Vec<(u16, f64)> = vec![];
            loop {
                let Some(id) = queue.lock().await.next() else {
                    break;
                };
                let t = Instant::now();
                let status = match client
                    .post(format!(
                        "http://127.0.0.1:{port}/api/v1/moderation/comments/{id}/decision"
                    ))
                    .bearer_auth(&moderator)
                    .json(&serde_json::json!({ "action": verdict }))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                {
                    Ok(res) => {
                        let s = res.status().as_u16();
                        let _ = res.bytes().await;
                        s
                    }
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
    let secs = started.elapsed().as_secs_f64();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (s, _) in &all {
        *by_status.entry(*s).or_default() += 1;
    }
    if by_status.keys().any(|s| *s != 200) {
        return Err(format!("{verdict} decisions answered {by_status:?}"));
    }
    let mut ms: Vec<f64> = all.iter().map(|(_, ms)| *ms).collect();
    ms.sort_by(f64::total_cmp);
    let i = ((ms.len() as f64 * 0.99).ceil() as usize).clamp(1, ms.len().max(1)) - 1;
    Ok((all.len() as f64 / secs, ms.get(i).copied().unwrap_or(0.0)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.2}–{hi:.2}")
}

fn render(args: &ModelCostArgs, runs: &[ModelRun]) -> String {
    let mut out = format!(
        "### Spam model cost: {} examples; {} rounds; POST: wrk -t{} -c{} -d{}s per server per round; \
         decisions: {} spam and {} reject per round, {} at a time\n\n\
         | backend | row | per round (without → with) | ratio, median | rounds' ratios (min–max) | target |\n\
         |---|---|---|---:|---|---|\n",
        args.examples,
        args.rounds,
        args.threads,
        args.connections,
        args.round_secs,
        args.decisions,
        args.decisions,
        args.concurrency
    );
    for r in runs {
        let post_ratios: Vec<f64> = r.posts.iter().map(|(e, t)| t / e).collect();
        let post_detail = r
            .posts
            .iter()
            .map(|(e, t)| format!("{e:.0} → {t:.0}"))
            .collect::<Vec<_>>()
            .join("; ");
        let m = median(post_ratios.clone());
        out.push_str(&format!(
            "| {} | POST comment req/s, model trained ({} tokens) ÷ empty | {post_detail} | {m:.3} | {} | ≥ 0.9 {} |\n",
            r.backend.name(),
            r.vocabulary,
            spread(&post_ratios),
            if m >= 0.9 { "met" } else { "NOT met" }
        ));
        let dec_ratios: Vec<f64> = r.decisions.iter().map(|(wo, w)| w.0 / wo.0).collect();
        let dec_detail = r
            .decisions
            .iter()
            .map(|(wo, w)| {
                format!(
                    "{:.0} → {:.0}/s (p99 {:.0} → {:.0} ms)",
                    wo.0, w.0, wo.1, w.1
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let m = median(dec_ratios.clone());
        out.push_str(&format!(
            "| {} | decisions/s, with learning (spam) ÷ without (reject) | {dec_detail} | {m:.3} | {} | ≥ 0.9 {} |\n",
            r.backend.name(),
            spread(&dec_ratios),
            if m >= 0.9 { "met" } else { "NOT met" }
        ));
        let cpu_median = |f: fn(&CpuPerDecision) -> f64| median(r.cpu.iter().map(f).collect());
        out.push_str(&format!(
            "| {} | CPU µs per decision, server + database (medians), without → with | {:.0} + {:.0} → {:.0} + {:.0} | | | |\n",
            r.backend.name(),
            cpu_median(|c| c.0 .0),
            cpu_median(|c| c.0 .1),
            cpu_median(|c| c.1 .0),
            cpu_median(|c| c.1 .1),
        ));
        out.push_str(&format!(
            "| {} | (training {} examples through `spam::learn`, {} per transaction) | {:.1} s | | | |\n",
            r.backend.name(),
            args.examples,
            TRAIN_CHUNK,
            r.train_secs
        ));
    }
    out
}
