//! `TALLY_WRITE_RATE_PER_MIN`: a burst of n writes per caller, then 429 `rate_limited`
//! with `Retry-After`; reads and other callers are not affected.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp};

const COMMENTS: &str = "/api/v1/articles/why-back-cracks/comments";

async fn post_comment(app: &TestApp, token: Option<&str>, text: &str) -> reqwest::Response {
    let mut body = json!({ "body": text });
    if token.is_none() {
        body["author_name"] = json!("Kim");
    }
    app.post(COMMENTS, token, &body).await
}

/// Asserts a 429 `rate_limited` with a `Retry-After` of at least one second.
async fn assert_rate_limited(res: reqwest::Response) {
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(retry_after >= 1, "Retry-After was {retry_after}");
    assert!(
        retry_after <= 20,
        "one write refills in 20 s at 3/min, got {retry_after}"
    );
    assert_problem(res, 429, "rate_limited").await;
}

#[tokio::test]
async fn the_write_after_a_burst_is_refused_and_stores_nothing() {
    let app = spawn_app_with(|s| s.write_rate_per_min = 3).await;
    let mia = app.reader("mia");
    for i in 0..3 {
        let res = post_comment(&app, Some(&mia), &format!("Comment number {i}.")).await;
        assert_eq!(res.status().as_u16(), 201, "write {i} is within the burst");
    }

    assert_rate_limited(post_comment(&app, Some(&mia), "One too many.").await).await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM comments WHERE author_id = 'mia'")
            .await,
        3,
        "the refused write stored nothing"
    );

    // Every kind of reader write spends the same budget.
    let rating = app
        .put(
            "/api/v1/articles/why-back-cracks/ratings/me",
            Some(&mia),
            &json!({"stars": 5}),
        )
        .await;
    assert_rate_limited(rating).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM ratings").await, 0);
}

#[tokio::test]
async fn one_users_flood_does_not_limit_others_or_reads() {
    let app = spawn_app_with(|s| s.write_rate_per_min = 3).await;
    let mia = app.reader("mia");
    for i in 0..4 {
        post_comment(&app, Some(&mia), &format!("Flood {i}.")).await;
    }
    assert_rate_limited(post_comment(&app, Some(&mia), "Still flooding.").await).await;

    let other = post_comment(&app, Some(&app.reader("noah")), "My own words.").await;
    assert_eq!(other.status().as_u16(), 201, "another user still writes");

    for path in [
        COMMENTS,
        "/api/v1/articles/why-back-cracks",
        "/api/v1/articles/why-back-cracks/rating",
    ] {
        for _ in 0..5 {
            let res = app.get(path, Some(&mia)).await;
            assert_eq!(
                res.status().as_u16(),
                200,
                "reads are never limited: {path}"
            );
        }
    }
    let page: Value = app.get(COMMENTS, None).await.json().await.unwrap();
    assert_eq!(page["total"], 4);
}

#[tokio::test]
async fn guests_are_limited_per_client_ip() {
    let app = spawn_app_with(|s| s.write_rate_per_min = 3).await;
    app.set_policy(|p| p.guest_comments = true).await;
    for i in 0..3 {
        let res = post_comment(&app, None, &format!("Guest note {i}.")).await;
        assert_eq!(res.status().as_u16(), 201, "guest write {i}");
    }
    assert_rate_limited(post_comment(&app, None, "Guest flood.").await).await;

    let reader = post_comment(&app, Some(&app.reader("mia")), "Signed in.").await;
    assert_eq!(
        reader.status().as_u16(),
        201,
        "a signed-in reader on the same IP has their own budget"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 4);
}

#[tokio::test]
async fn zero_turns_the_limit_off() {
    let app = spawn_app().await;
    let mia = app.reader("mia");
    for i in 0..12 {
        let res = post_comment(&app, Some(&mia), &format!("Unlimited {i}.")).await;
        assert_eq!(res.status().as_u16(), 201, "write {i}");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 12);
}

/// A guest comment sent as if through a proxy that saw `client`.
async fn guest_via(app: &TestApp, client: &str, text: &str) -> reqwest::Response {
    app.request(reqwest::Method::POST, COMMENTS, None)
        .header("x-forwarded-for", client)
        .json(&json!({"body": text, "author_name": "Kim"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn behind_a_trusted_proxy_guests_are_told_apart_by_x_forwarded_for() {
    let app = spawn_app_with(|s| {
        s.write_rate_per_min = 3;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    app.set_policy(|p| p.guest_comments = true).await;
    for i in 0..3 {
        let res = guest_via(&app, "198.51.100.1", &format!("first guest {i}")).await;
        assert_eq!(res.status(), 201);
    }
    assert_rate_limited(guest_via(&app, "198.51.100.1", "first guest again").await).await;
    assert_eq!(
        guest_via(&app, "198.51.100.2", "second guest")
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn without_trusted_proxies_x_forwarded_for_cannot_buy_a_new_budget() {
    let app = spawn_app_with(|s| s.write_rate_per_min = 3).await;
    app.set_policy(|p| p.guest_comments = true).await;
    for i in 0..3 {
        let res = guest_via(&app, &format!("198.51.100.{i}"), &format!("guest {i}")).await;
        assert_eq!(res.status(), 201);
    }
    // Forged headers from an untrusted peer change nothing: same peer, same budget.
    assert_rate_limited(guest_via(&app, "198.51.100.9", "forged").await).await;
}
