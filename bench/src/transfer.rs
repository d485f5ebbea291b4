//! `tally-bench transfer`: `tally export` and `tally import --format tally` on a seeded
//! SQLite database of `--comments` comments (issue 22). Prints the export's time and
//! peak RSS (target: ≤ 64 MB for 1 M comments) and the import's rate into an empty
//! database (target: ≥ 20 000 comments/s), both through the release binary.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use tally::{config::Settings, service::write::db::Db};

use crate::{cli::TransferArgs, proc, seed};

pub fn main(args: TransferArgs) -> Result<(), String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(run(args))
}

async fn run(args: TransferArgs) -> Result<(), String> {
    let tally_bin = match &args.tally_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("tally"),
    };
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let source = format!(
        "sqlite://{}?mode=rwc",
        tmp.path().join("source.db").display()
    );
    let target = args.import_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            tmp.path().join("target.db").display()
        )
    });
    let backend = if target.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let file = args
        .export_file
        .clone()
        .unwrap_or_else(|| tmp.path().join("export.jsonl"));

    let mut rows = vec![];
    let comments = if file.exists() {
        eprintln!("== reusing {}", file.display());
        count_comment_lines(&file)?
    } else {
        let comments = seed_source(&source, args.comments).await?;
        eprintln!("== tally export");
        let (export_secs, export_rss) = timed(
            &tally_bin,
            &source,
            &["export", "--out", &file.display().to_string()],
        )?;
        let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        rows.push(format!(
            "| `tally export` ({:.0} MB of JSON Lines), SQLite | {comments} | {export_secs:.1} | {:.0} comments/s | {export_rss:.1} MB |",
            bytes as f64 / 1e6,
            comments as f64 / export_secs
        ));
        comments
    };
    eprintln!("== tally import --format tally");
    let (import_secs, import_rss) = timed(
        &tally_bin,
        &target,
        &["import", "--format", "tally", &file.display().to_string()],
    )?;
    rows.push(format!(
        "| `tally import --format tally` into an empty database, {backend} | {comments} | {import_secs:.1} | {:.0} comments/s | {import_rss:.1} MB |",
        comments as f64 / import_secs
    ));
    println!("| scenario | comments | seconds | rate | peak RSS |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

/// Seeds the source database with about `want` comments; how many it holds.
async fn seed_source(source: &str, want: u64) -> Result<u64, String> {
    eprintln!("== seeding {want} comments");
    let db = Db::connect(&Settings {
        database_url: source.to_owned(),
        ..Settings::default()
    })
    .await
    .map_err(|e| format!("connect: {e}"))?;
    db.migrate().await.map_err(|e| format!("migrate: {e}"))?;
    let mut seeder = seed::Seeder::new();
    seeder.seed_base(&db.conn, 0).await?;
    let have = seed::comment_count(&db.conn).await?;
    if want > have {
        seeder.add_others(&db.conn, want - have).await?;
    }
    seed::recount(&db.conn).await?;
    let comments = seed::comment_count(&db.conn).await?;
    db.conn.close().await.map_err(|e| e.to_string())?;
    Ok(comments)
}

/// The comment lines of an export file.
fn count_comment_lines(file: &Path) -> Result<u64, String> {
    use std::io::BufRead;
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut n = 0;
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.starts_with("{\"type\":\"comment\"") {
            n += 1;
        }
    }
    Ok(n)
}

/// Runs `tally ARGS` on `database_url`; its wall time and peak RSS (VmHWM, read every
/// 20 ms while it runs).
fn timed(tally: &Path, database_url: &str, args: &[&str]) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let mut child = Command::new(tally)
        .env("TALLY_DATABASE_URL", database_url)
        .env("TALLY_JWT_SECRET", "bench-transfer-secret-0123456789abcdef")
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", tally.display()))?;
    let pid = child.id();
    let mut peak: f64 = 0.0;
    loop {
        if let Some(mb) = proc::peak_rss_mb(pid) {
            peak = peak.max(mb);
        }
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(status)) => return Err(format!("tally {args:?}: {status}")),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok((started.elapsed().as_secs_f64(), peak))
}
