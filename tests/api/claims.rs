//! Claims (issue 21): conflicts, renewal, expiry, release (by hand and by a decision),
//! the queue's `claim` and `unclaimed=true`.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use tally::domain::ModerationMode;

use crate::helpers::{assert_problem, spawn_app, TestApp};

async fn app_with_pending(n: usize) -> (TestApp, Vec<String>) {
    let app = spawn_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let mut ids = vec![];
    for i in 0..n {
        let c = app
            .comment("a-1", &format!("u-{i}"), "Held for review", None)
            .await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    (app, ids)
}

async fn claim(app: &TestApp, moderator: &str, id: &str) -> reqwest::Response {
    app.post(
        &format!("/api/v1/moderation/comments/{id}/claim"),
        Some(&app.moderator(moderator)),
        &json!({}),
    )
    .await
}

async fn release(app: &TestApp, moderator: &str, id: &str) -> reqwest::Response {
    app.delete(
        &format!("/api/v1/moderation/comments/{id}/claim"),
        Some(&app.moderator(moderator)),
    )
    .await
}

async fn queue_as(app: &TestApp, moderator: &str, query: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/moderation/queue{query}"),
            Some(&app.moderator(moderator)),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn listed(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["comment"]["id"].as_str().unwrap())
        .collect()
}

/// Moves a claim's expiry into the past, as if its 5 minutes had run out.
async fn expire(app: &TestApp, id: &str) {
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let sql = match app.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!(
            "UPDATE comment_claims SET expires_at = '{}' WHERE comment_id = '{id}'",
            past.to_rfc3339()
        ),
        // As sea-orm stores times on SQLite (text that sorts as time).
        _ => format!(
            "UPDATE comment_claims SET expires_at = '{}' WHERE comment_id = '{id}'",
            past.format("%Y-%m-%d %H:%M:%S%.6f%:z")
        ),
    };
    app.db.execute_unprepared(&sql).await.unwrap();
}

#[tokio::test]
async fn a_claim_holds_for_five_minutes_and_names_its_moderator() {
    let (app, ids) = app_with_pending(1).await;
    let before = chrono::Utc::now();
    let res = claim(&app, "mod-1", &ids[0]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["claimed_by"],
        json!({"id": "mod-1", "name": "Name of mod-1"})
    );
    let until: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let secs = (until - before).num_seconds();
    assert!((295..=301).contains(&secs), "expires in {secs} s");

    // The queue shows it to everyone, as the POST answered it.
    let page = queue_as(&app, "mod-2", "").await;
    assert_eq!(page["items"][0]["claim"], body);
}

#[tokio::test]
async fn another_moderators_claim_is_409_claimed_and_the_holder_can_renew() {
    let (app, ids) = app_with_pending(1).await;
    let first: Value = claim(&app, "mod-1", &ids[0]).await.json().await.unwrap();

    let problem = assert_problem(claim(&app, "mod-2", &ids[0]).await, 409, "claimed").await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("Name of mod-1"));
    assert_problem(release(&app, "mod-2", &ids[0]).await, 409, "claimed").await;

    // Renewal: the same moderator again gets a claim at least as long.
    let again = claim(&app, "mod-1", &ids[0]).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["claimed_by"]["id"], "mod-1");
    let t = |v: &Value| {
        v["expires_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert!(t(&again) >= t(&first));
    // An unknown comment is 404.
    assert_problem(claim(&app, "mod-1", "nope").await, 404, "not_found").await;
    assert_problem(release(&app, "mod-1", "nope").await, 404, "not_found").await;
    // Readers may not claim.
    let res = app
        .post(
            &format!("/api/v1/moderation/comments/{}/claim", ids[0]),
            Some(&app.reader("r-1")),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_expired_claim_is_no_claim_and_another_moderator_may_take_it() {
    let (app, ids) = app_with_pending(1).await;
    assert_eq!(claim(&app, "mod-1", &ids[0]).await.status(), StatusCode::OK);
    expire(&app, &ids[0]).await;

    let page = queue_as(&app, "mod-2", "?unclaimed=true").await;
    assert_eq!(listed(&page), vec![ids[0].as_str()]);
    assert_eq!(page["items"][0]["claim"], Value::Null);

    let res = claim(&app, "mod-2", &ids[0]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["claimed_by"]["id"], "mod-2");
}

#[tokio::test]
async fn releasing_and_deciding_end_a_claim_and_claims_never_block_decisions() {
    let (app, ids) = app_with_pending(2).await;
    claim(&app, "mod-1", &ids[0]).await;
    claim(&app, "mod-1", &ids[1]).await;

    // Released by hand: 204, and again 204 (nothing to release).
    assert_eq!(
        release(&app, "mod-1", &ids[0]).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        release(&app, "mod-1", &ids[0]).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(claim(&app, "mod-2", &ids[0]).await.status(), StatusCode::OK);

    // Advisory: mod-2 decides on the comment mod-1 holds, and that releases it.
    let res = app
        .decide("mod-2", &ids[1], &json!({"action": "reject"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let item: Value = res.json().await.unwrap();
    assert_eq!(item["claim"], Value::Null);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM comment_claims WHERE comment_id = '{}'",
            ids[1]
        ))
        .await,
        0
    );
    assert_eq!(claim(&app, "mod-3", &ids[1]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unclaimed_true_hides_only_the_items_others_hold() {
    let (app, ids) = app_with_pending(3).await;
    claim(&app, "mod-1", &ids[0]).await;
    claim(&app, "mod-2", &ids[1]).await;

    let all = queue_as(&app, "mod-1", "").await;
    assert_eq!(listed(&all).len(), 3);
    let mine = queue_as(&app, "mod-1", "?unclaimed=true").await;
    assert_eq!(listed(&mine), vec![ids[0].as_str(), ids[2].as_str()]);
    let theirs = queue_as(&app, "mod-2", "?unclaimed=true&limit=1").await;
    assert_eq!(listed(&theirs), vec![ids[1].as_str()]);
    let cursor = theirs["next_cursor"].as_str().unwrap();
    let next = queue_as(&app, "mod-2", &format!("?unclaimed=true&cursor={cursor}")).await;
    assert_eq!(listed(&next), vec![ids[2].as_str()]);
    assert_eq!(
        queue_as(&app, "mod-1", "?unclaimed=false").await["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let res = app
        .get(
            "/api/v1/moderation/queue?unclaimed=yes",
            Some(&app.moderator("mod-1")),
        )
        .await;
    let problem = assert_problem(res, 400, "bad_request").await;
    assert_eq!(problem["errors"][0]["field"], "unclaimed");
}

#[tokio::test]
async fn of_two_concurrent_claims_exactly_one_wins() {
    let (app, ids) = app_with_pending(1).await;
    let (a, b) = tokio::join!(claim(&app, "mod-1", &ids[0]), claim(&app, "mod-2", &ids[0]));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
}
