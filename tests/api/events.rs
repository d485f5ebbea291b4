//! Committed events (issue 18): the outbox holds an event exactly for each committed
//! write, in the write's own transaction; the bus gets them after the COMMIT; the caches
//! of every instance invalidate from them, so a write through one instance shows
//! through another without waiting for a cache lifetime.

use std::time::Duration;

use futures_util::future;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tally::{
    config::Settings,
    service::write::events::{self, Event},
    startup::Application,
};

use crate::helpers::{spawn_app_with, spawn_peer, test_settings, PeerApp, TestApp, TestDb};

/// Caches that never expire during a test: only events can retire their entries.
fn long_lived(s: &mut Settings) {
    s.aggregate_cache_ttl_ms = 600_000;
    s.page_cache_ttl_ms = 600_000;
}

async fn kinds(app: &TestApp) -> Vec<String> {
    let rows = sea_orm::ConnectionTrait::query_all_raw(
        &app.db,
        sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT kind FROM events ORDER BY id",
        ),
    )
    .await
    .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
}

#[tokio::test]
async fn every_committed_write_leaves_its_events_in_the_outbox() {
    let app = spawn_app_with(|_| {}).await;
    app.rate("ev", "u-1", 4).await;
    let c = app.comment("ev", "u-2", "Hello", None).await;
    let id = c["id"].as_str().unwrap();
    let res = app
        .patch(
            &format!("/api/v1/comments/{id}"),
            Some(&app.reader("u-2")),
            &json!({"body": "Hello, edited"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.flag(id, "u-3", "spam").await.status(),
        StatusCode::CREATED
    );
    let res = app
        .put(
            &format!("/api/v1/comments/{id}/vote"),
            Some(&app.reader("u-4")),
            &json!({"vote": "up"}),
        )
        .await;
    assert!(res.status().is_success(), "vote: {}", res.status());
    let res = app.decide("mod-1", id, &json!({"action": "reject"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.set_policy(|_| {}).await;
    assert_eq!(
        kinds(&app).await,
        [
            "rating_changed",
            "comment_created",
            "comment_edited",
            "comment_flagged",
            "vote_changed",
            "comment_status_changed",
            "settings_changed",
        ]
    );
    let data: String = {
        let row = sea_orm::ConnectionTrait::query_one_raw(
            &app.db,
            sea_orm::Statement::from_string(
                app.db.get_database_backend(),
                "SELECT data FROM events WHERE kind = 'comment_status_changed'",
            ),
        )
        .await
        .unwrap()
        .unwrap();
        row.try_get_by_index(0).unwrap()
    };
    let event: Event = serde_json::from_str(&data).unwrap();
    assert_eq!(
        event,
        Event::CommentStatusChanged {
            comment_id: id.to_owned(),
            article_id: "ev".into(),
            from: "approved".into(),
            to: "rejected".into(),
            actor_id: "mod-1".into(),
            actor_name: "Name of mod-1".into(),
        }
    );
}

#[tokio::test]
async fn a_write_that_fails_leaves_no_event_even_inside_a_batch() {
    let app = spawn_app_with(|s| s.auto_create_articles = false).await;
    let admin = app.admin("admin-1");
    let res = app
        .put(
            "/api/v1/admin/articles/open",
            Some(&admin),
            &json!({"comments_open": true}),
        )
        .await;
    assert!(res.status().is_success());
    let before = app.scalar("SELECT COUNT(*) FROM events").await;
    // Ratings of a registered article and of unknown ones (404), at once: they share
    // group-committed batches, and only the ones that succeed may leave an event.
    let writes = (0..20).map(|i| {
        let article = if i % 2 == 0 { "open" } else { "unknown" };
        let token = app.reader(&format!("u-{i}"));
        let path = format!("/api/v1/articles/{article}/ratings/me");
        let app = &app;
        async move {
            app.put(&path, Some(&token), &json!({"stars": 3}))
                .await
                .status()
        }
    });
    let statuses = future::join_all(writes).await;
    let ok = statuses.iter().filter(|s| s.is_success()).count() as i64;
    assert_eq!(ok, 10, "{statuses:?}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM events").await - before,
        ok,
        "one event per committed rating, none for the refused ones"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM events WHERE article_id = 'unknown'")
            .await,
        0
    );
}

#[tokio::test]
async fn subscribers_get_committed_events_in_commit_order() {
    let db = TestDb::fresh().await;
    let mut settings = test_settings();
    settings.database_url = db.url.clone();
    let app = Application::build(settings).await.unwrap();
    let port = app.port();
    let mut rx = app.db.events().subscribe();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let keys = tally::auth::JwtKeys::from_settings(&test_settings().jwt).unwrap();
    let token = keys
        .mint("u-1", None, tally::auth::Role::Reader, 600)
        .unwrap();
    for stars in [5, 2] {
        let res = client
            .put(format!(
                "http://127.0.0.1:{port}/api/v1/articles/bus/ratings/me"
            ))
            .bearer_auth(&token)
            .json(&json!({"stars": stars}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10 s")
            .unwrap();
        got.push(e);
    }
    assert!(got[0].id < got[1].id);
    assert_eq!(
        got.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        [5, 2].map(|s| Event::RatingChanged {
            article_id: "bus".into(),
            user_id: "u-1".into(),
            stars: Some(s),
        })
    );
    // The outbox has the same, from any id on.
    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
    let stored = events::read_after(&conn, got[0].id - 1, 10).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.id).collect::<Vec<_>>(),
        [got[0].id, got[1].id]
    );
    drop(handle.stop(false));
}

/// Waits (at most 10 s) until `$cond` holds: a write through another instance must
/// show long before the caches' 10-minute lifetime.
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !$cond {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: not visible through the other instance",
                $what
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

async fn json_at(app: &TestApp, url: String, token: Option<&str>) -> Value {
    let mut req = app.client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Two instances on one database with caches that never expire; on SQLite the second
/// polls the outbox (no LISTEN there), on PostgreSQL it LISTENs.
async fn two_instances() -> (TestApp, PeerApp) {
    let app = spawn_app_with(long_lived).await;
    let peer = spawn_peer(&app, long_lived).await;
    (app, peer)
}

const AGG: &str = "/api/v1/articles/shared/rating";
const PAGE: &str = "/api/v1/articles/shared/comments";

fn page_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_rating_through_one_instance_shows_through_the_other() {
    let (app, peer) = two_instances().await;
    app.rate("shared", "u-1", 5).await;
    assert_eq!(
        json_at(&app, peer.url(AGG), None).await["count"],
        1,
        "cached there"
    );
    app.rate("shared", "u-2", 1).await;
    eventually!("a rating", {
        json_at(&app, peer.url(AGG), None).await["count"] == 2
    });
}

#[tokio::test]
async fn comments_edits_decisions_and_flags_show_through_the_other_instance() {
    let (app, peer) = two_instances().await;
    let first = app.comment("shared", "u-1", "First", None).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(
        page_ids(&json_at(&app, peer.url(PAGE), None).await),
        std::slice::from_ref(&first_id)
    );

    // A comment.
    let second = app.comment("shared", "u-2", "Second", None).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    eventually!("a comment", {
        page_ids(&json_at(&app, peer.url(PAGE), None).await).len() == 2
    });

    // An edit.
    let res = app
        .patch(
            &format!("/api/v1/comments/{first_id}"),
            Some(&app.reader("u-1")),
            &json!({"body": "First, edited"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    eventually!("an edit", {
        json_at(&app, peer.url(PAGE), None).await["items"][1]["body"] == "First, edited"
    });

    // A decision.
    let res = app
        .decide("mod-1", &second_id, &json!({"action": "reject"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    eventually!("a decision", {
        page_ids(&json_at(&app, peer.url(PAGE), None).await) == std::slice::from_ref(&first_id)
    });

    // A flag that reaches the threshold hides the comment.
    app.set_policy(|p| p.flag_threshold = 1).await;
    assert_eq!(
        app.flag(&first_id, "u-9", "abuse").await.status(),
        StatusCode::CREATED
    );
    eventually!("a flag", {
        page_ids(&json_at(&app, peer.url(PAGE), None).await).is_empty()
    });
}

#[tokio::test]
async fn settings_article_registration_and_bans_show_through_the_other_instance() {
    let (app, peer) = two_instances().await;
    let admin = app.admin("admin-1");
    // Settings: the peer reads (and keeps) the default policy, then applies the new one.
    let before = json_at(&app, peer.url("/api/v1/admin/settings"), Some(&admin)).await;
    app.set_policy(|p| p.flag_threshold = 7).await;
    assert_ne!(before["flag_threshold"], 7);
    eventually!("settings", {
        json_at(&app, peer.url("/api/v1/admin/settings"), Some(&admin)).await["flag_threshold"] == 7
    });

    // Article registration: the peer's cached aggregate is retired.
    app.rate("shared", "u-1", 4).await;
    assert_eq!(json_at(&app, peer.url(AGG), None).await["count"], 1);
    let version = app.scalar("SELECT COUNT(*) FROM events").await;
    let res = app
        .put(
            "/api/v1/admin/articles/shared",
            Some(&admin),
            &json!({"title": "Shared", "comments_open": true}),
        )
        .await;
    assert!(res.status().is_success());
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM events WHERE kind = 'article_registered'")
            .await,
        1
    );
    assert!(app.scalar("SELECT COUNT(*) FROM events").await > version);

    // A ban with purge: the author's own pending comment leaves their page there.
    app.set_policy(|p| p.moderation_mode = tally::domain::ModerationMode::Pre)
        .await;
    let pending = app.comment("shared", "u-bad", "Buy now", None).await;
    assert_eq!(pending["status"], "pending");
    let token = app.reader("u-bad");
    eventually!("a pending comment, to its author", {
        page_ids(&json_at(&app, peer.url(PAGE), Some(&token)).await)
            .contains(&pending["id"].as_str().unwrap().to_owned())
    });
    let res = app
        .post(
            "/api/v1/moderation/bans",
            Some(&app.moderator("mod-1")),
            &json!({"user_id": "u-bad", "reason": "spam", "purge": true}),
        )
        .await;
    assert!(res.status().is_success(), "ban: {}", res.status());
    eventually!("a ban's purge", {
        !page_ids(&json_at(&app, peer.url(PAGE), Some(&token)).await)
            .contains(&pending["id"].as_str().unwrap().to_owned())
    });
}

#[tokio::test]
async fn events_of_acknowledged_writes_survive_a_kill_9() {
    let db = TestDb::fresh().await;
    let client = reqwest::Client::new();
    let keys = tally::auth::JwtKeys::from_settings(&test_settings().jwt).unwrap();
    let mut served = crate::cli::serve(&db.url);
    let mut acknowledged = 0;
    for i in 0..10 {
        let token = keys
            .mint(&format!("u-{i}"), None, tally::auth::Role::Reader, 600)
            .unwrap();
        let res = client
            .put(format!(
                "{}/api/v1/articles/crash/ratings/me",
                served.address
            ))
            .bearer_auth(&token)
            .json(&json!({"stars": 4}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        acknowledged += 1;
    }
    served.child.kill().unwrap(); // SIGKILL: no shutdown code runs
    served.child.wait().unwrap();

    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
    let stored = events::read_after(&conn, 0, 100).await.unwrap();
    assert_eq!(
        stored.len(),
        acknowledged,
        "one event per acknowledged write"
    );
    assert!(stored
        .iter()
        .all(|e| matches!(&e.event, Event::RatingChanged { article_id, stars: Some(4), .. } if article_id == "crash")));
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id));
}

async fn text(app: &TestApp, sql: &str) -> String {
    let row = sea_orm::ConnectionTrait::query_one_raw(
        &app.db,
        sea_orm::Statement::from_string(app.db.get_database_backend(), sql),
    )
    .await
    .unwrap()
    .unwrap();
    row.try_get_by_index(0).unwrap()
}

/// PostgreSQL only (SQLite has no LISTEN: its instances poll, covered above).
#[tokio::test]
async fn a_listener_that_loses_its_connection_replays_what_it_missed() {
    if std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .is_none()
    {
        // The PostgreSQL pass of CI runs this.
        return;
    }
    let (app, peer) = two_instances().await;
    let schema = text(&app, "SELECT current_schema()").await;
    let listeners = format!(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'tally events {schema}'"
    );
    eventually!("both listeners", { app.scalar(&listeners).await == 2 });
    app.rate("shared", "u-1", 5).await;
    assert_eq!(json_at(&app, peer.url(AGG), None).await["count"], 1);

    // Cut every listener of this schema, then write at once: the NOTIFY finds nobody.
    let killed = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'tally events {schema}') AS t"
        ))
        .await;
    assert_eq!(killed, 2);
    app.rate("shared", "u-2", 1).await;
    eventually!("a write made while the listener was down", {
        json_at(&app, peer.url(AGG), None).await["count"] == 2
    });
    // And it listens again.
    eventually!("the listeners back", { app.scalar(&listeners).await == 2 });
    app.rate("shared", "u-3", 3).await;
    eventually!("a write after the reconnection", {
        json_at(&app, peer.url(AGG), None).await["count"] == 3
    });
}

#[tokio::test]
async fn an_instance_that_polls_the_outbox_sees_the_others_writes() {
    let app = spawn_app_with(long_lived).await;
    let peer = spawn_peer(&app, |s| {
        long_lived(s);
        s.events_poll_ms = 50;
    })
    .await;
    app.rate("shared", "u-1", 5).await;
    assert_eq!(json_at(&app, peer.url(AGG), None).await["count"], 1);
    app.rate("shared", "u-2", 2).await;
    eventually!("a rating, polled", {
        json_at(&app, peer.url(AGG), None).await["count"] == 2
    });
}

#[tokio::test]
async fn old_events_are_purged_by_age() {
    let db = TestDb::fresh().await;
    let mut settings = test_settings();
    settings.database_url = db.url.clone();
    let app = Application::build(settings).await.unwrap();
    let tally_db = app.db.clone();
    let port = app.port();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let keys = tally::auth::JwtKeys::from_settings(&test_settings().jwt).unwrap();
    for user in ["u-1", "u-2"] {
        let token = keys
            .mint(user, None, tally::auth::Role::Reader, 600)
            .unwrap();
        let res = client
            .put(format!(
                "http://127.0.0.1:{port}/api/v1/articles/old/ratings/me"
            ))
            .bearer_auth(&token)
            .json(&json!({"stars": 3}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }
    let all = events::read_after(&tally_db.conn, 0, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    // Everything before the second event's time goes; the second stays.
    let purged = tally::service::write::pump::purge_older_than(&tally_db, all[1].created_at, 1)
        .await
        .unwrap();
    let left = events::read_after(&tally_db.conn, 0, 10).await.unwrap();
    assert_eq!(
        (purged as usize, left.len()),
        (
            all.iter()
                .filter(|e| e.created_at < all[1].created_at)
                .count(),
            2 - all
                .iter()
                .filter(|e| e.created_at < all[1].created_at)
                .count()
        )
    );
    let purged = tally::service::write::pump::purge_older_than(
        &tally_db,
        all[1].created_at + chrono::Duration::seconds(1),
        1,
    )
    .await
    .unwrap();
    assert!(purged >= 1);
    assert!(events::read_after(&tally_db.conn, 0, 10)
        .await
        .unwrap()
        .is_empty());
    drop(handle.stop(false));
}
