//! `tally export` and `tally import` (issue 22): the round trip (export → import into
//! an empty database → export gives the same lines but `exported_at`), each importer
//! on its fixture twice (nothing doubled), `--dry-run`, `--strict`, exit codes,
//! progress and summary, and counters equal to a recount after every import.

use std::{path::PathBuf, process::Output};

use serde_json::{json, Value};

use crate::{
    cli::tally,
    helpers::{spawn_app, TestApp, TestDb, SECRET},
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

/// Runs the `tally` binary on `database_url`. On a blocking thread: the test's runtime
/// keeps driving the in-process server meanwhile (a server task suspended inside its
/// SQLite write transaction would otherwise hold the lock the command waits for).
async fn run(database_url: &str, args: &[&str]) -> Output {
    let mut cmd = tally();
    cmd.env("TALLY_DATABASE_URL", database_url)
        .env("TALLY_JWT_SECRET", SECRET)
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `tally import`; returns (exit code, stdout, stderr).
async fn import(
    database_url: &str,
    format: &str,
    file: &std::path::Path,
    extra: &[&str],
) -> (i32, String, String) {
    let path = file.display().to_string();
    let mut args = vec!["import", "--format", format, &path];
    args.extend_from_slice(extra);
    let out = run(database_url, &args).await;
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// `tally export` to standard output; its lines.
async fn export(database_url: &str) -> Vec<String> {
    let out = run(database_url, &["export"]).await;
    assert!(out.status.success(), "export failed: {}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// The lines but the header's `exported_at`.
fn comparable(lines: &[String]) -> Vec<String> {
    let mut out = lines.to_vec();
    let mut header: Value = serde_json::from_str(&out[0]).unwrap();
    header["exported_at"] = Value::Null;
    out[0] = header.to_string();
    out
}

/// A database with some of everything: articles, nested comments in every status,
/// a review, ratings, flags, votes, a ban, log entries, settings.
async fn populated() -> TestApp {
    let app = spawn_app().await;
    app.set_policy(|p| p.flag_threshold = 10).await;
    let a = app
        .comment("article-a", "alice", "Top-level comment", None)
        .await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let b = app
        .comment("article-a", "bob", "A reply", Some(&a_id))
        .await;
    let b_id = b["id"].as_str().unwrap().to_owned();
    let c = app
        .comment("article-a", "carol", "A reply to the reply", Some(&b_id))
        .await;
    let c_id = c["id"].as_str().unwrap().to_owned();
    let d = app
        .comment("article-b", "dave", "Another article", None)
        .await;
    let d_id = d["id"].as_str().unwrap().to_owned();
    let e = app
        .comment("article-b", "erin", "Will be rejected", None)
        .await;
    let e_id = e["id"].as_str().unwrap().to_owned();
    let res = app
        .decide("mod-1", &e_id, &json!({"action": "reject"}))
        .await;
    assert!(res.status().is_success(), "reject: {}", res.status());
    // Deleted by its author while it has a reply: a tombstone.
    let res = app
        .delete(
            &format!("/api/v1/comments/{b_id}"),
            Some(&app.reader("bob")),
        )
        .await;
    assert!(res.status().is_success(), "delete: {}", res.status());
    app.rate("article-a", "alice", 5).await;
    app.rate("article-a", "bob", 3).await;
    let res = app
        .put(
            "/api/v1/articles/article-b/ratings/me",
            Some(&app.reader("frank")),
            &json!({"stars": 4, "review": "Clear and practical."}),
        )
        .await;
    assert!(res.status().is_success());
    assert!(app.flag(&c_id, "grace", "spam").await.status().is_success());
    assert!(app
        .flag(&d_id, "heidi", "abuse")
        .await
        .status()
        .is_success());
    let res = app
        .put(
            &format!("/api/v1/comments/{a_id}/vote"),
            Some(&app.reader("ivan")),
            &json!({"vote": "up"}),
        )
        .await;
    assert!(res.status().is_success(), "vote {}", res.status());
    let res = app
        .post(
            "/api/v1/moderation/bans",
            Some(&app.moderator("mod-1")),
            &json!({"user_id": "mallory", "reason": "spam"}),
        )
        .await;
    assert!(res.status().is_success(), "ban {}", res.status());
    app
}

#[tokio::test]
async fn export_then_import_into_an_empty_database_then_export_gives_the_same_lines() {
    let app = populated().await;
    let url = &app.settings.database_url;
    let first = export(url).await;
    let header: Value = serde_json::from_str(&first[0]).unwrap();
    assert_eq!(header["format"], "tally-export");
    assert_eq!(header["version"], 1);
    assert!(header["exported_at"].is_string());
    // Types in order, every one present.
    let types: Vec<String> = first[1..]
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let order = [
        "settings", "article", "comment", "rating", "flag", "vote", "ban", "log",
    ];
    let mut dedup = types.clone();
    dedup.dedup();
    assert_eq!(dedup, order, "types in order");
    // Parents before replies, every field there.
    let comments: Vec<Value> = first[1..]
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "comment")
        .collect();
    assert_eq!(comments.len(), 6);
    for (i, c) in comments.iter().enumerate() {
        if let Some(p) = c["parent_id"].as_str() {
            assert!(comments[..i].iter().any(|o| o["id"] == p), "parent first");
        }
        for field in [
            "body",
            "status",
            "reply_count",
            "auto_reasons",
            "votes_up",
            "flag_weight",
            "created_at",
        ] {
            assert!(c.get(field).is_some(), "{field} in {c}");
        }
    }

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), first.join("\n") + "\n").unwrap();
    let empty = TestDb::fresh().await;
    let (code, stdout, stderr) = import(&empty.url, "tally", file.path(), &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let records = first.len() - 1;
    assert!(
        stdout.contains(&format!("imported {records}, skipped 0, refused 0")),
        "{stdout}"
    );
    let second = export(&empty.url).await;
    assert_eq!(comparable(&first), comparable(&second));

    // Again: nothing imported twice.
    let (code, stdout, _) = import(&empty.url, "tally", file.path(), &[]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("imported 0, skipped {records}, refused 0")),
        "{stdout}"
    );
    assert_eq!(comparable(&first), comparable(&export(&empty.url).await));
}

#[tokio::test]
async fn export_writes_to_a_file_and_reports_on_standard_error() {
    let app = populated().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let out = run(
        &app.settings.database_url,
        &["export", "--out", &path.display().to_string()],
    )
    .await;
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout with --out");
    let written = std::fs::read_to_string(&path).unwrap();
    let lines = written.lines().count();
    assert!(
        text(&out.stderr).contains(&format!("exported {lines} lines")),
        "{}",
        text(&out.stderr)
    );
}

/// An app on a fresh database, for importing into and looking at.
async fn imported(format: &str, file: &std::path::Path) -> (TestApp, String) {
    let app = spawn_app().await;
    let (code, stdout, stderr) = import(&app.settings.database_url, format, file, &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    (app, stdout)
}

async fn statuses(app: &TestApp) -> Vec<(String, String, String, i64)> {
    // (article, author, status, depth)
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT c.article_id, c.author_name, c.status, \
             CAST(CASE WHEN c.parent_id IS NULL THEN 0 \
                  WHEN (SELECT p.parent_id FROM comments p WHERE p.id = c.parent_id) IS NULL THEN 1 \
                  ELSE 2 END AS BIGINT) AS depth \
             FROM comments c ORDER BY c.created_at, c.id"
                .to_owned(),
        ))
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| {
            (
                r.try_get::<String>("", "article_id").unwrap(),
                r.try_get::<String>("", "author_name").unwrap(),
                r.try_get::<String>("", "status").unwrap(),
                r.try_get::<i64>("", "depth").unwrap(),
            )
        })
        .collect()
}

use sea_orm::ConnectionTrait;

fn s(v: (&str, &str, &str, i64)) -> (String, String, String, i64) {
    (v.0.into(), v.1.into(), v.2.into(), v.3)
}

async fn body_of(app: &TestApp, author: &str) -> String {
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT body FROM comments WHERE author_name = '{author}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<String>("", "body").unwrap()
}

#[tokio::test]
async fn disqus_import_keeps_statuses_parents_authors_and_times_and_imports_nothing_twice() {
    let file = fixture("disqus.xml");
    let (app, stdout) = imported("disqus", &file).await;
    assert!(
        stdout.contains("imported 10, skipped 0, refused 0"),
        "{stdout}"
    );
    assert_eq!(
        statuses(&app).await,
        vec![
            s(("hello-world", "Alice", "approved", 0)),
            s(("hello-world", "Bob", "approved", 1)),
            s(("hello-world", "Carol", "pending", 2)),
            s(("hello-world", "Spammer", "spam", 0)),
            s(("hello-world", "Dave", "deleted", 0)),
            s(("hello-world", "Erin", "approved", 1)),
            s(("2024-05-second-post", "Guest", "approved", 0)),
        ]
    );
    assert_eq!(
        body_of(&app, "Alice").await,
        "First! Fish & chips <3\n\nSecond paragraph,\nwith a break."
    );
    assert_eq!(body_of(&app, "Guest").await, "Nice post \u{2014} thanks!");
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM comments WHERE author_name = 'Alice' \
                    AND created_at = (SELECT MIN(created_at) FROM comments)"
        )
        .await,
        1
    );
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM articles WHERE id = '2024-05-second-post' AND NOT comments_open"
        )
        .await,
        1,
        "a closed thread is closed"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM articles").await, 3);
    app.assert_counters_match_recounts().await;
    // The public thread shows them.
    let page = app.get_json("/api/v1/articles/hello-world").await;
    assert_eq!(page["comment_count"], 3, "{page}");

    let (code, stdout, _) = import(&app.settings.database_url, "disqus", &file, &[]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("imported 0, skipped 10, refused 0"),
        "{stdout}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 7);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn wxr_import_maps_wordpress_statuses_and_skips_pingbacks() {
    let file = fixture("wordpress.xml");
    let (app, stdout) = imported("wxr", &file).await;
    assert!(
        stdout.contains("imported 9, skipped 1, refused 0"),
        "{stdout}"
    );
    assert_eq!(
        statuses(&app).await,
        vec![
            s(("hello-world", "A WordPress Commenter", "approved", 0)),
            s(("hello-world", "Bob", "approved", 1)),
            s(("hello-world", "Carol", "pending", 2)),
            s(("hello-world", "Spammer", "spam", 0)),
            s(("hello-world", "Dave", "deleted", 0)),
            s(("hello-world", "Erin", "approved", 1)),
            s(("about", "Frank", "approved", 0)),
        ]
    );
    assert_eq!(body_of(&app, "Bob").await, "Thanks & welcome!");
    assert_eq!(
        body_of(&app, "Frank").await,
        "Line one\n\nLine two \u{2026}"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM articles WHERE id = 'about' AND NOT comments_open")
            .await,
        1
    );
    app.assert_counters_match_recounts().await;
    let (code, stdout, _) = import(&app.settings.database_url, "wxr", &file, &[]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("imported 0, skipped 10, refused 0"),
        "{stdout}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 7);
}

#[tokio::test]
async fn isso_import_reads_a_database_isso_wrote() {
    let file = fixture("isso.db");
    let (app, stdout) = imported("isso", &file).await;
    assert!(
        stdout.contains("imported 9, skipped 0, refused 0"),
        "{stdout}"
    );
    assert_eq!(
        statuses(&app).await,
        vec![
            s(("blog-hello-world", "Alice", "approved", 0)),
            s(("blog-hello-world", "Bob", "approved", 1)),
            s(("blog-hello-world", "Carol", "pending", 1)),
            s(("blog-hello-world", "Anonymous", "deleted", 0)),
            s(("blog-hello-world", "Erin", "approved", 1)),
            s(("notes-2024-why", "Anonymous", "approved", 0)),
            s(("notes-2024-why", "Frank", "pending", 0)),
        ]
    );
    assert_eq!(body_of(&app, "Alice").await, "First!\n\nA *markdown* body.");
    // The deleted comment still shows as a tombstone: it has a listed reply.
    assert_eq!(
        app.scalar("SELECT top_level_count FROM articles WHERE id = 'blog-hello-world'")
            .await,
        2
    );
    app.assert_counters_match_recounts().await;
    let (code, stdout, _) = import(&app.settings.database_url, "isso", &file, &[]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("imported 0, skipped 9, refused 0"),
        "{stdout}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 7);
}

#[tokio::test]
async fn dry_run_counts_everything_and_writes_nothing() {
    for (format, name) in [
        ("disqus", "disqus.xml"),
        ("wxr", "wordpress.xml"),
        ("isso", "isso.db"),
    ] {
        let app = spawn_app().await;
        let (code, stdout, _) = import(
            &app.settings.database_url,
            format,
            &fixture(name),
            &["--dry-run"],
        )
        .await;
        assert_eq!(code, 0, "{format}");
        assert!(
            stdout.contains("refused 0 (dry run: nothing written)"),
            "{stdout}"
        );
        assert!(
            !stdout.contains("imported 0,"),
            "{format}: counts as if written: {stdout}"
        );
        assert_eq!(
            app.scalar("SELECT COUNT(*) FROM comments").await,
            0,
            "{format}"
        );
        assert_eq!(
            app.scalar("SELECT COUNT(*) FROM articles").await,
            0,
            "{format}"
        );
        assert_eq!(
            app.scalar("SELECT COUNT(*) FROM import_sources").await,
            0,
            "{format}"
        );
    }
}

/// The Disqus fixture with one post made bad (a time that is none).
fn bad_disqus() -> tempfile::NamedTempFile {
    let xml = std::fs::read_to_string(fixture("disqus.xml")).unwrap();
    let bad = xml.replacen(
        "<createdAt>2024-05-02T08:30:00Z</createdAt>",
        "<createdAt>yesterday</createdAt>",
        1,
    );
    assert_ne!(xml, bad);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bad).unwrap();
    file
}

#[tokio::test]
async fn a_bad_record_is_refused_with_its_id_and_strict_stops_writing_nothing() {
    let app = spawn_app().await;
    let url = &app.settings.database_url;
    let file = bad_disqus();
    let (code, stdout, stderr) = import(url, "disqus", file.path(), &["--strict"]).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("post 2007"), "{stderr}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM articles").await, 0);

    let (code, stdout, _e) = import(url, "disqus", file.path(), &[]).await;
    assert_eq!(code, 0, "{stdout}\n{_e}");
    assert!(
        stdout.contains("imported 9, skipped 0, refused 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refused post 2007: createdAt \"yesterday\""),
        "{stdout}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 6);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_bad_line_of_a_tally_export_is_refused_by_its_number() {
    let app = populated().await;
    let mut lines = export(&app.settings.database_url).await;
    let at = lines
        .iter()
        .position(|l| l.contains("\"type\":\"comment\""))
        .unwrap();
    // A comment of an article that is nowhere, and a line that is no JSON.
    let mut orphan: Value = serde_json::from_str(&lines[at]).unwrap();
    orphan["id"] = json!("00000000-0000-7000-8000-000000000001");
    orphan["article_id"] = json!("nowhere");
    orphan["parent_id"] = Value::Null;
    lines.insert(at, orphan.to_string());
    lines.insert(at, "{not json".into());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), lines.join("\n")).unwrap();
    let empty = TestDb::fresh().await;

    let (code, _, stderr) = import(&empty.url, "tally", file.path(), &["--strict"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("line {}", at + 1)), "{stderr}");
    assert_eq!(export(&empty.url).await.len(), 1, "nothing written");

    let (code, stdout, _) = import(&empty.url, "tally", file.path(), &[]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("refused 2"), "{stdout}");
    assert!(
        stdout.contains(&format!("refused line {}:", at + 1)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("refused line {}: article \"nowhere\"", at + 2)),
        "{stdout}"
    );
}

#[tokio::test]
async fn unreadable_input_exits_2_and_writes_nothing() {
    let db = TestDb::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.xml");
    let garbage = dir.path().join("garbage.xml");
    std::fs::write(&garbage, "<disqus><post>unclosed").unwrap();
    let not_export = dir.path().join("not-export.jsonl");
    std::fs::write(&not_export, "{\"hello\": 1}\n").unwrap();
    let cases: [(&str, &std::path::Path); 6] = [
        ("tally", &missing),
        ("tally", &not_export),
        ("disqus", &garbage),
        ("wxr", &fixture("disqus.xml")),
        ("disqus", &fixture("wordpress.xml")),
        ("isso", &not_export),
    ];
    for (format, file) in cases {
        let (code, stdout, stderr) = import(&db.url, format, file, &[]).await;
        assert_eq!(code, 2, "{format} {}: {stdout}\n{stderr}", file.display());
        assert!(stderr.contains("cannot read the input"), "{stderr}");
    }
    assert_eq!(export(&db.url).await.len(), 1, "nothing written");
}

/// The non-unique indexes of the tables an import may set aside, as the database
/// holds them (PostgreSQL's without the schema name): `name → definition`.
async fn index_defs(url: &str) -> std::collections::BTreeMap<String, String> {
    use sea_orm::{ConnectionTrait, Statement};
    let conn = sea_orm::Database::connect(url).await.unwrap();
    let backend = conn.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "SELECT indexname AS name, regexp_replace(indexdef, ' ON [^ ]+\\.', ' ON ') AS sql \
             FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename IN ('comments', 'ratings', 'flags', 'comment_votes', 'moderation_log')"
        }
        _ => {
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
             AND tbl_name IN ('comments', 'ratings', 'flags', 'comment_votes', 'moderation_log')"
        }
    };
    let rows = conn
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap();
    conn.close().await.ok();
    rows.into_iter()
        .map(|r| {
            (
                r.try_get::<String>("", "name").unwrap(),
                r.try_get::<String>("", "sql").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_large_import_builds_the_same_indexes_again_and_a_failed_one_leaves_them() {
    let app = populated().await;
    let reference = index_defs(&app.settings.database_url).await;
    assert!(
        reference.contains_key("idx_comments_replies"),
        "{reference:?}"
    );
    let first = export(&app.settings.database_url).await;
    // Blank lines (skipped) make the file look like ~11 000 rows: large enough for the
    // import to set the secondary indexes aside and build them again at the end.
    let padding = "\n".repeat(7_000_000);
    let good = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(good.path(), first.join("\n") + &padding).unwrap();
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), first.join("\n") + "\n{not json" + &padding).unwrap();
    let empty = TestDb::fresh().await;

    // --strict stops at the bad last line: everything rolled back, indexes too.
    let (code, _, stderr) = import(&empty.url, "tally", bad.path(), &["--strict"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("secondary indexes set aside"), "{stderr}");
    assert_eq!(index_defs(&empty.url).await, reference);
    assert_eq!(export(&empty.url).await.len(), 1, "nothing written");
    // A dry run: the same.
    let (code, stdout, stderr) = import(&empty.url, "tally", good.path(), &["--dry-run"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(index_defs(&empty.url).await, reference);
    assert_eq!(export(&empty.url).await.len(), 1, "nothing written");

    let (code, stdout, stderr) = import(&empty.url, "tally", good.path(), &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("secondary indexes set aside"), "{stderr}");
    let records = first.len() - 1;
    assert!(
        stdout.contains(&format!("imported {records}, skipped 0, refused 0")),
        "{stdout}"
    );
    assert_eq!(index_defs(&empty.url).await, reference);
    assert_eq!(comparable(&first), comparable(&export(&empty.url).await));
    // Twice: nothing doubled (the primary keys were never set aside).
    let (code, stdout, _) = import(&empty.url, "tally", good.path(), &[]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("imported 0, skipped {records}, refused 0")),
        "{stdout}"
    );
}

#[tokio::test]
async fn webhooks_of_an_export_are_imported_with_a_new_secret_shown_once() {
    let app = crate::helpers::spawn_app_with(|s| s.webhook_allow_private = true).await;
    let res = app
        .post(
            "/api/v1/admin/webhooks",
            Some(&app.admin("adm")),
            &json!({"url": "http://127.0.0.1:9/hook", "events": ["comment.published"],
                    "description": "slack"}),
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let old_secret = created["secret"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    let lines = export(&app.settings.database_url).await;
    let hook_line = |lines: &[String]| -> Value {
        let line = lines
            .iter()
            .find(|l| l.contains("\"type\":\"webhook\""))
            .expect("a webhook line");
        assert!(!line.contains("whsec_"), "no secret exported: {line}");
        let v: Value = serde_json::from_str(line).unwrap();
        json!([v["id"], v["url"], v["events"], v["description"]])
    };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), lines.join("\n") + "\n").unwrap();
    let empty = TestDb::fresh().await;

    let (code, stdout, stderr) = import(&empty.url, "tally", file.path(), &["--dry-run"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 webhook(s) would be imported"),
        "{stdout}"
    );
    assert!(!stdout.contains("whsec_"), "{stdout}");

    let (code, stdout, stderr) = import(&empty.url, "tally", file.path(), &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("refused 0"), "{stdout}");
    let shown = stdout
        .lines()
        .find(|l| {
            l.contains(&format!(
                "webhook {id} http://127.0.0.1:9/hook secret whsec_"
            ))
        })
        .unwrap_or_else(|| panic!("the new secret is shown: {stdout}"));
    let new_secret = shown.rsplit(' ').next().unwrap();
    assert_ne!(new_secret, old_secret);
    assert_eq!(hook_line(&lines), hook_line(&export(&empty.url).await));

    // Again: skipped, its secret kept and not shown.
    let (code, stdout, _) = import(&empty.url, "tally", file.path(), &[]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("imported 0"), "{stdout}");
    assert!(!stdout.contains("whsec_"), "{stdout}");
}
