//! `Idempotency-Key` on comment creation and on rating: a retry replays the first
//! response and stores nothing new.

use chrono::{Duration, Utc};
use reqwest::{header::HeaderValue, Method};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use tally::{
    entity::idempotency_key,
    service::{idempotency, write::db::Db},
};

use crate::helpers::{assert_problem, error_fields, spawn_app, TestApp};

const COMMENTS: &str = "/api/v1/articles/why-back-cracks/comments";
const RATING: &str = "/api/v1/articles/why-back-cracks/ratings/me";

async fn post_comment(app: &TestApp, user: &str, key: &str, body: &str) -> reqwest::Response {
    app.send_with_key(
        Method::POST,
        COMMENTS,
        Some(&app.reader(user)),
        key,
        &json!({ "body": body }),
    )
    .await
}

async fn comments_stored(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) FROM comments").await
}

async fn keys_stored(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) FROM idempotency_keys").await
}

#[tokio::test]
async fn a_repeated_request_replays_the_first_response_and_stores_nothing_new() {
    let app = spawn_app().await;

    let first = post_comment(&app, "u-1", "key-1", "Thanks, this helps.").await;
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let again = post_comment(&app, "u-1", "key-1", "Thanks, this helps.").await;
    assert_eq!(again.status().as_u16(), 201, "the replay keeps the status");
    assert_eq!(
        again.headers().get("idempotent-replayed").unwrap(),
        "true",
        "a replay is marked"
    );
    assert!(again
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let again: Value = again.json().await.unwrap();

    assert_eq!(again, first, "same body, same id");
    assert_eq!(comments_stored(&app).await, 1, "one comment");
    assert_eq!(keys_stored(&app).await, 1, "one key");
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_key_reused_with_a_different_request_is_a_conflict_and_stores_nothing() {
    let app = spawn_app().await;
    let first = post_comment(&app, "u-1", "key-1", "First text.").await;
    assert_eq!(first.status().as_u16(), 201);

    let other_body = post_comment(&app, "u-1", "key-1", "Another text.").await;
    assert_problem(other_body, 409, "idempotency_conflict").await;

    // Same key and body, but another article: a different request too.
    let other_path = app
        .send_with_key(
            Method::POST,
            "/api/v1/articles/another-article/comments",
            Some(&app.reader("u-1")),
            "key-1",
            &json!({ "body": "First text." }),
        )
        .await;
    assert_problem(other_path, 409, "idempotency_conflict").await;

    assert_eq!(comments_stored(&app).await, 1, "no second comment");
    assert_eq!(keys_stored(&app).await, 1, "no second key");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM articles WHERE id = 'another-article'")
            .await,
        0,
        "the refused request created no article"
    );
}

#[tokio::test]
async fn different_users_with_the_same_key_are_independent() {
    let app = spawn_app().await;
    let a: Value = post_comment(&app, "u-a", "shared-key", "Same words.")
        .await
        .json()
        .await
        .unwrap();
    let b = post_comment(&app, "u-b", "shared-key", "Same words.").await;
    assert_eq!(b.status().as_u16(), 201);
    assert!(b.headers().get("idempotent-replayed").is_none());
    let b: Value = b.json().await.unwrap();

    assert_ne!(a["id"], b["id"], "each user got their own comment");
    assert_eq!(comments_stored(&app).await, 2);
    assert_eq!(keys_stored(&app).await, 2);
}

#[tokio::test]
async fn concurrent_identical_requests_create_exactly_one_comment() {
    let app = spawn_app().await;
    let token = app.reader("u-1");
    let body = json!({ "body": "Posted from a flaky connection." });
    let sends =
        (0..20).map(|_| app.send_with_key(Method::POST, COMMENTS, Some(&token), "race-key", &body));
    let responses = futures_util::future::join_all(sends).await;

    let mut ids = vec![];
    for res in responses {
        assert_eq!(res.status().as_u16(), 201, "every request is answered 201");
        let body: Value = res.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all answers name the same comment: {ids:?}");
    assert_eq!(comments_stored(&app).await, 1, "exactly one comment");
    assert_eq!(keys_stored(&app).await, 1);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_malformed_key_is_a_bad_request_naming_the_header() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    let cases: [(HeaderValue, &str); 3] = [
        (HeaderValue::from_static(""), "empty"),
        (HeaderValue::from_str(&long).unwrap(), "256 characters"),
        (
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
            "not printable ASCII",
        ),
    ];
    for (value, why) in cases {
        let res = app
            .request(Method::POST, COMMENTS, Some(&app.reader("u-1")))
            .header("Idempotency-Key", value)
            .json(&json!({ "body": "Hello." }))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(res, 400, "bad_request").await;
        assert_eq!(
            error_fields(&problem),
            ["Idempotency-Key"],
            "{why}: {problem}"
        );
    }
    let max = "k".repeat(255);
    let ok = post_comment(&app, "u-1", &max, "Hello.").await;
    assert_eq!(ok.status().as_u16(), 201, "255 characters are accepted");
    assert_eq!(
        comments_stored(&app).await,
        1,
        "only the valid request wrote"
    );
}

#[tokio::test]
async fn a_key_older_than_a_day_is_treated_as_new() {
    let app = spawn_app().await;
    let first: Value = post_comment(&app, "u-1", "old-key", "Yesterday's thought.")
        .await
        .json()
        .await
        .unwrap();
    idempotency_key::Entity::update_many()
        .col_expr(
            idempotency_key::Column::CreatedAt,
            Expr::value(Utc::now() - Duration::hours(25)),
        )
        .exec(&app.db)
        .await
        .unwrap();

    let second = post_comment(&app, "u-1", "old-key", "Yesterday's thought.").await;
    assert_eq!(second.status().as_u16(), 201);
    assert!(second.headers().get("idempotent-replayed").is_none());
    let second: Value = second.json().await.unwrap();

    assert_ne!(first["id"], second["id"], "a new comment");
    assert_eq!(comments_stored(&app).await, 2);
    assert_eq!(keys_stored(&app).await, 1, "the old key was replaced");
    let replay: Value = post_comment(&app, "u-1", "old-key", "Yesterday's thought.")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        replay["id"], second["id"],
        "the key now answers for the new one"
    );
}

#[tokio::test]
async fn a_refused_write_stores_no_key_so_a_retry_runs_again() {
    let app = spawn_app().await;
    let body = json!({ "body": "A reply.", "parent_id": "no-such-comment" });
    let token = app.reader("u-1");
    let res = app
        .send_with_key(Method::POST, COMMENTS, Some(&token), "key-1", &body)
        .await;
    assert_problem(res, 422, "validation_failed").await;
    assert_eq!(keys_stored(&app).await, 0, "the claim was rolled back");
    assert_eq!(comments_stored(&app).await, 0);
}

#[tokio::test]
async fn a_guests_key_is_scoped_to_the_client_ip() {
    let app = spawn_app().await;
    app.set_policy(|p| p.guest_comments = true).await;
    let body = json!({ "body": "Guest words.", "author_name": "Kim" });
    let first: Value = app
        .send_with_key(Method::POST, COMMENTS, None, "guest-key", &body)
        .await
        .json()
        .await
        .unwrap();
    let again = app
        .send_with_key(Method::POST, COMMENTS, None, "guest-key", &body)
        .await;
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(comments_stored(&app).await, 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM idempotency_keys WHERE scope = 'guest-ip:127.0.0.1'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_repeated_rating_replays_its_first_answer() {
    let app = spawn_app().await;
    let token = app.reader("u-1");
    let first = app
        .send_with_key(
            Method::PUT,
            RATING,
            Some(&token),
            "rate-1",
            &json!({"stars": 4}),
        )
        .await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();

    let again = app
        .send_with_key(
            Method::PUT,
            RATING,
            Some(&token),
            "rate-1",
            &json!({"stars": 4}),
        )
        .await;
    assert_eq!(again.status().as_u16(), 201, "the first status, not 200");
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let changed = app
        .send_with_key(
            Method::PUT,
            RATING,
            Some(&token),
            "rate-1",
            &json!({"stars": 2}),
        )
        .await;
    assert_problem(changed, 409, "idempotency_conflict").await;
    assert_eq!(
        app.scalar("SELECT stars FROM ratings WHERE user_id = 'u-1'")
            .await,
        4,
        "the conflicting request changed nothing"
    );
    assert_eq!(
        app.scalar("SELECT rating_count FROM articles WHERE id = 'why-back-cracks'")
            .await,
        1
    );
}

#[tokio::test]
async fn requests_without_a_key_are_not_deduplicated() {
    let app = spawn_app().await;
    let token = app.reader("u-1");
    for text in ["One.", "One."] {
        let res = app
            .post(COMMENTS, Some(&token), &json!({ "body": text }))
            .await;
        assert_eq!(res.status().as_u16(), 201);
    }
    assert_eq!(comments_stored(&app).await, 2);
    assert_eq!(keys_stored(&app).await, 0);
}

#[tokio::test]
async fn expired_keys_are_purged_in_batches_and_live_ones_kept() {
    let app = spawn_app().await;
    for i in 1..=5 {
        let res = post_comment(&app, &format!("u-{i}"), "k", &format!("Comment {i}.")).await;
        assert_eq!(res.status().as_u16(), 201);
    }
    // Three of the five are older than the TTL.
    idempotency_key::Entity::update_many()
        .col_expr(
            idempotency_key::Column::CreatedAt,
            Expr::value(Utc::now() - Duration::hours(25)),
        )
        .filter(idempotency_key::Column::Scope.is_in(["user:u-1", "user:u-2", "user:u-3"]))
        .exec(&app.db)
        .await
        .unwrap();
    let db = Db::with_connection(app.db.clone());
    let cutoff = Utc::now() - Duration::hours(idempotency::KEY_TTL_HOURS);

    // Two per transaction: a full batch, then a short one.
    assert_eq!(idempotency::purge_expired(&db, cutoff, 2).await.unwrap(), 3);
    assert_eq!(keys_stored(&app).await, 2);
    assert_eq!(
        idempotency::purge_expired(&db, cutoff, 2).await.unwrap(),
        0,
        "nothing left to purge"
    );
    // A live key still replays.
    let replay = post_comment(&app, "u-4", "k", "Comment 4.").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(comments_stored(&app).await, 5);
}
