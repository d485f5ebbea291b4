//! The learned spam model: learning from decisions and taking it back, the minimum
//! number of examples, the threshold, the summary and the rebuild, and the folds that
//! apply the decisions' pending changes to the model after their COMMITs.
//!
//! A decision's answer does not wait for its fold: a test that reads the model's rows
//! or scores with it after decisions first calls `app.spam_model_folded()` (the fold
//! the app would run by itself a moment later, through the app's own handle).

use std::{sync::Arc, time::Duration};

use futures_util::{stream, StreamExt};
use reqwest::StatusCode;
use sea_orm::{EntityTrait, TransactionTrait};
use serde_json::{json, Value};
use tally::{
    auth::{Role, User},
    domain::{ModerationMode, ModerationStatus},
    entity::comment,
    error::ApiError,
    service::{
        moderation::decisions::{self, Decision, Verdict},
        spam,
        write::{
            db::{Db, Route},
            events::{Event, StoredEvent},
        },
    },
};
use tokio::{
    sync::{
        broadcast::{self, error::RecvError},
        Notify,
    },
    task::JoinHandle,
};

use crate::helpers::{
    assert_problem, error_fields, spawn_app, spawn_app_with, spawn_peer, TestApp,
};

const SPAM: &str = "Cheap pills and casino bonus at https://pills.example/buy now";
const HAM: &str = "Thanks for the careful article, the second chart helped me";

/// Posts `body` and has moderator `mod-1` decide `action` on it; returns the comment id.
async fn taught(app: &TestApp, n: usize, body: &str, action: &str) -> String {
    let c = app
        .comment("a-1", &format!("u-{n}"), &format!("{body} {n}"), None)
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    decide(app, &id, action).await;
    id
}

async fn decide(app: &TestApp, id: &str, action: &str) {
    let res = app.decide("mod-1", id, &json!({"action": action})).await;
    assert_eq!(res.status(), StatusCode::OK, "decision {action}");
}

async fn examples(app: &TestApp) -> Value {
    app.moderator_get("/api/v1/moderation/model").await["examples"].clone()
}

async fn token_count(app: &TestApp, token: &str, class: &str) -> i64 {
    app.scalar(&format!(
        "SELECT COALESCE(SUM({class}), 0) FROM spam_tokens WHERE token = '{token}'"
    ))
    .await
}

/// The queue item of a comment held in the pending queue.
async fn pending_item(app: &TestApp, id: &str) -> Value {
    let page = app
        .moderator_get("/api/v1/moderation/queue?queue=pending&limit=100")
        .await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["comment"]["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not pending in {page}"))
}

#[tokio::test]
async fn a_later_decision_replaces_what_the_earlier_one_taught() {
    let app = spawn_app().await;
    assert_eq!(examples(&app).await, json!({"spam": 0, "ham": 0}));
    let fresh = app.moderator_get("/api/v1/moderation/model").await;
    assert_eq!(fresh["updated_at"], Value::Null);

    let id = taught(&app, 1, SPAM, "approve").await;
    assert_eq!(examples(&app).await, json!({"spam": 0, "ham": 1}));
    app.spam_model_folded().await;
    assert_eq!(token_count(&app, "casino", "ham").await, 1);
    assert_eq!(token_count(&app, "domain:pills.example", "ham").await, 1);

    decide(&app, &id, "spam").await;
    assert_eq!(examples(&app).await, json!({"spam": 1, "ham": 0}));
    app.spam_model_folded().await;
    assert_eq!(token_count(&app, "casino", "ham").await, 0);
    assert_eq!(token_count(&app, "casino", "spam").await, 1);
    let model = app.moderator_get("/api/v1/moderation/model").await;
    assert!(model["updated_at"].is_string(), "{model}");

    decide(&app, &id, "spam").await;
    assert_eq!(
        examples(&app).await,
        json!({"spam": 1, "ham": 0}),
        "the same decision twice teaches once"
    );

    decide(&app, &id, "reject").await;
    assert_eq!(examples(&app).await, json!({"spam": 0, "ham": 0}));
    app.spam_model_folded().await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM spam_tokens").await,
        0,
        "nothing left once every lesson is taken back"
    );
    let totals = spam::load(&app.db).await.unwrap();
    assert_eq!((totals.spam_words, totals.ham_words), (0, 0));
}

#[tokio::test]
async fn the_probability_is_null_until_enough_examples_of_each_kind() {
    let app = spawn_app().await;
    app.set_policy(|p| {
        p.moderation_mode = ModerationMode::Pre;
        p.spam_min_examples = 2;
    })
    .await;
    taught(&app, 1, SPAM, "spam").await;
    taught(&app, 2, SPAM, "spam").await;
    taught(&app, 3, HAM, "approve").await;
    app.spam_model_folded().await;

    let early = app.comment("a-1", "u-9", "Cheap casino pills", None).await;
    let item = pending_item(&app, early["id"].as_str().unwrap()).await;
    assert_eq!(item["auto_moderation"]["spam_probability"], Value::Null);

    taught(&app, 4, HAM, "approve").await;
    app.spam_model_folded().await;
    let later = app.comment("a-1", "u-9", "Cheap casino pills", None).await;
    let item = pending_item(&app, later["id"].as_str().unwrap()).await;
    let p = item["auto_moderation"]["spam_probability"]
        .as_f64()
        .unwrap();
    assert!(p > 0.5, "spammy words score as spam: {item}");
}

#[tokio::test]
async fn at_the_threshold_a_comment_waits_with_the_model_as_its_reason() {
    let app = spawn_app().await;
    app.set_policy(|p| {
        p.spam_min_examples = 3;
        p.spam_threshold = 0.9;
        p.max_links = 10;
    })
    .await;
    for n in 0..3 {
        taught(&app, n, SPAM, "spam").await;
        taught(&app, 10 + n, HAM, "approve").await;
    }
    app.spam_model_folded().await;

    let ok = app.comment("a-1", "u-20", HAM, None).await;
    let held = app.comment("a-1", "u-21", SPAM, None).await;

    assert_eq!(ok["status"], "approved", "{ok}");
    assert_eq!(held["status"], "pending", "{held}");
    let item = pending_item(&app, held["id"].as_str().unwrap()).await;
    let p = item["auto_moderation"]["spam_probability"]
        .as_f64()
        .unwrap();
    assert!(p >= 0.9, "{item}");
    let reasons = item["auto_moderation"]["reasons"].as_array().unwrap();
    assert_eq!(reasons, &vec![json!(format!("spam_model:{p:.2}"))]);
    let log = app.log_of(held["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["reason"], format!("spam_model:{p:.2}"));

    // A stricter threshold than any probability lets it through.
    app.set_policy(|p| {
        p.spam_min_examples = 3;
        p.spam_threshold = 1.0;
        p.max_links = 10;
    })
    .await;
    let edited = app
        .patch(
            &format!("/api/v1/comments/{}", ok["id"].as_str().unwrap()),
            Some(&app.reader("u-20")),
            &json!({"body": format!("{HAM} indeed")}),
        )
        .await;
    assert_eq!(edited.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_rebuild_equals_what_the_decisions_taught_one_by_one() {
    let app = spawn_app().await;
    let mut ids = vec![];
    for n in 0..4 {
        ids.push(taught(&app, n, SPAM, "spam").await);
        ids.push(taught(&app, 10 + n, HAM, "approve").await);
    }
    decide(&app, &ids[0], "approve").await;
    decide(&app, &ids[1], "reject").await;
    app.spam_model_folded().await;
    let incremental = spam::load(&app.db).await.unwrap();
    let summary = app.moderator_get("/api/v1/moderation/model").await;

    let res = app
        .post(
            "/api/v1/admin/model/rebuild",
            Some(&app.admin("admin-1")),
            &json!({}),
        )
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["examples"], summary["examples"]);
    assert_eq!(body["examples"], json!({"spam": 3, "ham": 4}));
    assert!(body["updated_at"].is_string());
    assert_eq!(spam::load(&app.db).await.unwrap(), incremental);
}

#[tokio::test]
async fn only_moderators_see_the_model_and_only_admins_rebuild_it() {
    let app = spawn_app().await;
    let res = app
        .get("/api/v1/moderation/model", Some(&app.reader("u-1")))
        .await;
    assert_problem(res, 403, "forbidden").await;
    let res = app.get("/api/v1/moderation/model", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .post(
            "/api/v1/admin/model/rebuild",
            Some(&app.moderator("mod-1")),
            &json!({}),
        )
        .await;
    assert_problem(res, 403, "forbidden").await;
}

#[tokio::test]
async fn spam_settings_out_of_range_are_422_naming_the_field() {
    let app = spawn_app().await;
    let admin = app.admin("admin-1");
    let base = app.get("/api/v1/admin/settings", Some(&admin)).await;
    let base: Value = base.json().await.unwrap();
    assert_eq!(base["spam_threshold"], json!(0.9));
    assert_eq!(base["spam_min_examples"], json!(20));
    for (field, value) in [
        ("spam_threshold", json!(0)),
        ("spam_threshold", json!(1.01)),
        ("spam_threshold", json!(-0.5)),
        ("spam_min_examples", json!(0)),
    ] {
        let mut body = base.clone();
        body[field] = value.clone();
        let res = app.put("/api/v1/admin/settings", Some(&admin), &body).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec![field], "{field} = {value}");
    }
    let mut body = base.clone();
    body["spam_threshold"] = json!(1);
    body["spam_min_examples"] = json!(1);
    let res = app.put("/api/v1/admin/settings", Some(&admin), &body).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// The vocabulary was pruned to 90 % of `cap`, the rare tokens (`rare…`) first.
async fn assert_pruned_rarest_first(app: &TestApp, cap: i64) {
    let size = app.scalar("SELECT COUNT(*) FROM spam_tokens").await;
    assert!(size <= cap * 9 / 10, "pruned to 90 % of the cap: {size}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM spam_tokens WHERE token LIKE 'rare%'")
            .await,
        0,
        "the rarest go first"
    );
}

/// The model's word totals equal the sums over its kept tokens; the model.
async fn assert_totals_follow_the_kept_tokens(app: &TestApp) -> tally::domain::SpamCounts {
    let m = spam::load(&app.db).await.unwrap();
    let (s, h) = m
        .tokens
        .values()
        .fold((0, 0), |(s, h), (ts, th)| (s + ts, h + th));
    assert_eq!(
        (m.spam_words, m.ham_words),
        (s, h),
        "totals follow the kept tokens"
    );
    m
}

#[tokio::test]
async fn the_vocabulary_is_pruned_to_its_cap_keeping_the_totals_equal_to_the_kept_tokens() {
    let app = spawn_app().await;
    let cap = spam::MAX_VOCABULARY as i64;
    // A model whose vocabulary is over the cap (written behind the instance's back, so
    // its first fold counts it): rare tokens (seen once) and frequent ones (seen 5 times
    // as ham).
    let stmts = [
        format!(
            "INSERT INTO spam_tokens (token, spam, ham) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
             SELECT 'rare' || CAST(i AS TEXT), 1, 0 FROM n",
            cap
        ),
        "INSERT INTO spam_tokens (token, spam, ham) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
         SELECT 'kept' || CAST(i AS TEXT), 0, 5 FROM n"
            .to_owned(),
        format!(
            "UPDATE spam_model SET spam_docs = 100, ham_docs = 100, spam_words = {cap}, \
             ham_words = 5000"
        ),
    ];
    for sql in stmts {
        sea_orm::ConnectionTrait::execute_unprepared(&app.db, &sql)
            .await
            .unwrap();
    }

    let id = taught(&app, 1, "kept1 kept2", "approve").await;
    app.spam_model_folded().await;

    assert_pruned_rarest_first(&app, cap).await;
    assert_eq!(token_count(&app, "kept1", "ham").await, 6);
    let m = assert_totals_follow_the_kept_tokens(&app).await;
    assert_eq!(m.ham_docs, 101);
    // Taking the lesson back after the prune still leaves consistent counts.
    decide(&app, &id, "reject").await;
    app.spam_model_folded().await;
    assert_eq!(token_count(&app, "kept1", "ham").await, 5);
}

#[tokio::test]
async fn a_fold_whose_change_could_take_the_vocabulary_past_the_cap_counts_it_and_prunes() {
    let app = spawn_app().await;
    let cap = spam::MAX_VOCABULARY as i64;
    // Ten tokens under the cap, all rare (seen once as spam).
    let stmts = [
        format!(
            "INSERT INTO spam_tokens (token, spam, ham) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
             SELECT 'rare' || CAST(i AS TEXT), 1, 0 FROM n",
            cap - 10
        ),
        format!(
            "UPDATE spam_model SET spam_docs = 100, ham_docs = 100, spam_words = {}",
            cap - 10
        ),
    ];
    for sql in stmts {
        sea_orm::ConnectionTrait::execute_unprepared(&app.db, &sql)
            .await
            .unwrap();
    }
    // The instance's first fold counts the vocabulary: one token more, under the cap.
    taught(&app, 1, "kept kept kept", "approve").await;
    app.spam_model_folded().await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM spam_tokens").await,
        cap - 9,
        "nothing pruned under the cap"
    );

    // The next fold knows the size the last one left; its 20 new tokens could take the
    // vocabulary past the cap (they do), so it counts and prunes.
    let words: Vec<String> = (1..=20).map(|i| format!("w{i} w{i}")).collect();
    taught(&app, 2, &words.join(" "), "approve").await;
    app.spam_model_folded().await;

    assert_pruned_rarest_first(&app, cap).await;
    assert_eq!(token_count(&app, "w20", "ham").await, 2);
    assert_eq!(token_count(&app, "kept", "ham").await, 3);
    assert_totals_follow_the_kept_tokens(&app).await;
}

#[tokio::test]
async fn after_concurrent_decisions_the_model_equals_a_rebuild_from_the_stored_lessons() {
    // Decisions stage their changes of the model; folds (one at a time, right after
    // the decisions' COMMITs) apply them to the shared rows (totals, tokens): many
    // decisions at once, on the same comments and in every direction, must leave the
    // model a rebuild would make once the folds are done, and no decision failed.
    let app = spawn_app_with(|s| {
        s.db_max_connections = 12;
        s.workers = Some(2);
    })
    .await;
    let words = ["pills", "casino", "chart", "careful", "bonus", "thanks"];
    let mut ids = vec![];
    for n in 0..24 {
        let body = format!(
            "{} {} and {} number {n} https://site{}.example/x",
            words[n % 6],
            words[(n / 2) % 6],
            words[(n / 3) % 6],
            n % 4
        );
        let c = app
            .comment("a-1", &format!("u-{}", n % 5), &body, None)
            .await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let verdicts = ["approve", "spam", "reject"];
    let mut seed: u64 = 21;
    let decisions: Vec<(String, &str, String)> = (0..240)
        .map(|i| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let id = ids[((seed >> 33) % ids.len() as u64) as usize].clone();
            (
                id,
                verdicts[((seed >> 20) % 3) as usize],
                format!("mod-{}", i % 4),
            )
        })
        .collect();
    let statuses: Vec<u16> = stream::iter(decisions)
        .map(|(id, verdict, moderator)| {
            let app = &app;
            async move {
                app.decide(&moderator, &id, &json!({"action": verdict}))
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every decision succeeds: {statuses:?}"
    );
    app.spam_model_folded().await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM spam_pending").await, 0);
    let incremental = spam::load(&app.db).await.unwrap();
    assert!(
        incremental.spam_docs + incremental.ham_docs > 0,
        "it learned"
    );

    let res = app
        .post(
            "/api/v1/admin/model/rebuild",
            Some(&app.admin("admin-1")),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(spam::load(&app.db).await.unwrap(), incremental);
    // One example per comment whose last decision taught one.
    let lessons = app.scalar("SELECT COUNT(*) FROM spam_lessons").await;
    assert_eq!(incremental.spam_docs + incremental.ham_docs, lessons);
    app.assert_counters_match_recounts().await;
}

/// Waits (at most 20 s) for a `SpamModelChanged` event on the app's bus.
async fn model_changed(rx: &mut broadcast::Receiver<Arc<StoredEvent>>) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Ok(e) if e.event == Event::SpamModelChanged => return,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("the event bus closed"),
            }
        }
    })
    .await
    .expect("SpamModelChanged within 20 s");
}

/// Stores what a decision moving comment `id` to `to` teaches, as the decision's
/// transaction does, and asks for no fold (as a crash right after the COMMIT leaves it).
async fn staged_without_fold(app: &TestApp, id: &str, to: ModerationStatus) {
    let c = comment::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let tx = app.db.begin().await.unwrap();
    assert!(spam::learn(&tx, &c, to).await.unwrap(), "a change staged");
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_decision_reaches_the_model_through_its_own_fold_after_the_commit() {
    let app = spawn_app().await;
    let mut rx = app.server_db.events().subscribe();

    let id = taught(&app, 1, SPAM, "spam").await;

    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM spam_lessons WHERE comment_id = '{id}'"
        ))
        .await,
        1,
        "the decision stored its lesson"
    );
    assert_eq!(examples(&app).await, json!({"spam": 1, "ham": 0}));
    // Nobody but the deciding instance asks for the fold.
    model_changed(&mut rx).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM spam_pending").await, 0);
    assert_eq!(token_count(&app, "casino", "spam").await, 1);
    let m = spam::load(&app.db).await.unwrap();
    assert_eq!((m.spam_docs, m.ham_docs), (1, 0));
}

#[tokio::test]
async fn a_change_left_pending_counts_at_once_and_is_folded_without_another_decision() {
    let app = spawn_app().await;
    let c = app.comment("a-1", "u-1", SPAM, None).await;
    let id = c["id"].as_str().unwrap().to_owned();
    let mut rx = app.server_db.events().subscribe();

    staged_without_fold(&app, &id, ModerationStatus::Spam).await;

    assert_eq!(
        examples(&app).await,
        json!({"spam": 1, "ham": 0}),
        "the summary counts a pending change"
    );
    let model = app.moderator_get("/api/v1/moderation/model").await;
    assert!(model["updated_at"].is_string(), "{model}");
    // Every instance folds what is pending when it starts (and every few seconds).
    let _peer = spawn_peer(&app, |_| {}).await;
    model_changed(&mut rx).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM spam_pending").await, 0);
    assert_eq!(token_count(&app, "casino", "spam").await, 1);
    assert_eq!(examples(&app).await, json!({"spam": 1, "ham": 0}));
}

#[tokio::test]
async fn a_rebuild_takes_the_pending_changes_in_and_a_later_fold_changes_nothing() {
    let app = spawn_app().await;
    for n in 0..3 {
        taught(&app, n, SPAM, "spam").await;
        taught(&app, 10 + n, HAM, "approve").await;
    }
    app.spam_model_folded().await;
    let c = app.comment("a-1", "u-30", HAM, None).await;
    staged_without_fold(&app, c["id"].as_str().unwrap(), ModerationStatus::Approved).await;

    let res = app
        .post(
            "/api/v1/admin/model/rebuild",
            Some(&app.admin("admin-1")),
            &json!({}),
        )
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["examples"], json!({"spam": 3, "ham": 4}));
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM spam_pending").await,
        0,
        "what the rebuild counted is no longer pending"
    );
    let rebuilt = spam::load(&app.db).await.unwrap();
    assert_eq!((rebuilt.spam_docs, rebuilt.ham_docs), (3, 4));
    app.spam_model_folded().await;
    assert_eq!(spam::load(&app.db).await.unwrap(), rebuilt);
    assert_eq!(examples(&app).await, json!({"spam": 3, "ham": 4}));
}

/// A `Db` with one writer on the app's database, held by a write that waits for
/// `release`: what is queued meanwhile forms the next batch.
async fn held_writer(app: &TestApp) -> (Db, Arc<Notify>, JoinHandle<Result<(), ApiError>>) {
    let db = Db::with_writers(app.db.clone(), 1);
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let first = tokio::spawn({
        let (db, started, release) = (db.clone(), started.clone(), release.clone());
        async move {
            db.write(Route::ANY, (), move |_, _| {
                let (started, release) = (started.clone(), release.clone());
                Box::pin(async move {
                    started.notify_one();
                    release.notified().await;
                    Ok(())
                })
            })
            .await
        }
    });
    started.notified().await;
    (db, release, first)
}

/// Queues a decision on `db`'s held writer, after the `queued` writes already there.
async fn queue_decision(
    db: &Db,
    queued: usize,
    id: &str,
    verdict: Verdict,
) -> JoinHandle<Result<(), ApiError>> {
    let (db2, id) = (db.clone(), id.to_owned());
    let handle = tokio::spawn(async move {
        let moderator = User {
            id: "mod-1".into(),
            name: "Mod One".into(),
            role: Role::Moderator,
            verified: false,
        };
        let d = Decision {
            verdict,
            reason: None,
            expected_version: None,
        };
        decisions::decide(&db2, &moderator, &id, d)
            .await
            .map(|_| ())
    });
    until_queued(db, queued + 1).await;
    handle
}

async fn until_queued(db: &Db, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while db.queued_writes() < n {
        assert!(std::time::Instant::now() < deadline, "writes never queued");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn decisions_in_one_batch_stage_their_lessons_together_and_leave_the_model_a_rebuild_makes() {
    // Decisions in one group-committed batch stage their lessons in the batch, which
    // writes them (and one pending change for all) at its end: a later decision on the
    // same comment in the batch replaces what the earlier one staged, a take-back
    // removes a stored lesson or a staged one, and a job that fails stages nothing (a
    // later job on its comment does not see what it staged).
    let app = spawn_app().await;
    let mut ids = vec![];
    for (n, body) in [SPAM, HAM, SPAM, SPAM, HAM, HAM, SPAM]
        .into_iter()
        .enumerate()
    {
        let c = app
            .comment("a-1", &format!("u-{n}"), &format!("{body} b{n}"), None)
            .await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let [a, b, c, d, e, f, g] = [0, 1, 2, 3, 4, 5, 6].map(|i| ids[i].clone());
    // A lesson stored before the batch, taken back in it.
    decide(&app, &b, "approve").await;
    app.spam_model_folded().await;

    let (db, release, first) = held_writer(&app).await;
    let mut jobs = vec![];
    for (id, verdict) in [
        (&a, Verdict::Spam),
        (&b, Verdict::Reject),
        (&c, Verdict::Approve),
        (&c, Verdict::Spam),
        (&d, Verdict::Spam),
        (&d, Verdict::Reject),
    ] {
        jobs.push(queue_decision(&db, jobs.len(), id, verdict).await);
    }
    // Teach e and g as spam, then fail: nothing of them may stay (e is then approved
    // in the batch, g not decided at all).
    let mut failing = vec![];
    for id in [&e, &g] {
        let (db2, id) = (db.clone(), id.clone());
        let handle = tokio::spawn(async move {
            db2.write(Route::comment(&id), id.clone(), |w, id| {
                Box::pin(async move {
                    let c = comment::Entity::find_by_id(id.as_str())
                        .one(w.tx())
                        .await?
                        .expect("the comment");
                    assert!(spam::learn_in(w, &c, ModerationStatus::Spam).await?);
                    Err::<(), _>(ApiError::Forbidden("failed after teaching".into()))
                })
            })
            .await
        });
        until_queued(&db, jobs.len() + failing.len() + 1).await;
        failing.push(handle);
    }
    let queued = jobs.len() + failing.len();
    jobs.push(queue_decision(&db, queued, &e, Verdict::Approve).await);
    jobs.push(queue_decision(&db, queued + 1, &f, Verdict::Approve).await);
    release.notify_one();
    first.await.unwrap().unwrap();
    for job in jobs {
        job.await.unwrap().expect("every decision succeeds");
    }
    for job in failing {
        assert!(matches!(job.await.unwrap(), Err(ApiError::Forbidden(_))));
    }

    assert_eq!(examples(&app).await, json!({"spam": 2, "ham": 2}));
    let lessons: Vec<(String, String)> = {
        use sea_orm::QueryOrder;
        tally::entity::spam_lesson::Entity::find()
            .order_by_asc(tally::entity::spam_lesson::Column::CommentId)
            .all(&app.db)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.comment_id, l.label))
            .collect()
    };
    let mut want = vec![
        (a.clone(), "spam".to_owned()),
        (c.clone(), "spam".to_owned()),
        (e.clone(), "ham".to_owned()),
        (f.clone(), "ham".to_owned()),
    ];
    want.sort();
    assert_eq!(
        lessons, want,
        "b and d taken back, c replaced, e only approved"
    );
    spam::fold_pending(&db).await.unwrap();
    app.spam_model_folded().await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM spam_pending").await, 0);
    let incremental = spam::load(&app.db).await.unwrap();
    assert_eq!((incremental.spam_docs, incremental.ham_docs), (2, 2));
    assert_eq!(
        token_count(&app, "b2", "ham").await,
        0,
        "c's approval replaced"
    );
    assert_eq!(token_count(&app, "b2", "spam").await, 1);
    assert_eq!(
        token_count(&app, "b3", "spam").await,
        0,
        "d's spam taken back"
    );
    assert_eq!(token_count(&app, "b4", "spam").await, 0, "the failed job's");
    assert_eq!(token_count(&app, "b4", "ham").await, 1);
    assert_eq!(
        token_count(&app, "b1", "ham").await,
        0,
        "b's stored lesson taken back"
    );
    assert_eq!(token_count(&app, "b6", "spam").await, 0, "g's failed job's");

    let res = app
        .post(
            "/api/v1/admin/model/rebuild",
            Some(&app.admin("admin-1")),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(spam::load(&app.db).await.unwrap(), incremental);
    app.assert_counters_match_recounts().await;
}
