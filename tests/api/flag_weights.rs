//! Weighted flags (issue 21): a flag weighs `2·(upheld+1)/(upheld+dismissed+2)` of its
//! flagger's record when cast; the hide threshold applies to the sum; `sort=weight`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, TestApp};

async fn new_comment(app: &TestApp, author: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = format!("Opinion number {n} that people may flag");
    let c = app.comment("a-1", author, &body, None).await;
    c["id"].as_str().unwrap().to_owned()
}

async fn flag(app: &TestApp, id: &str, user: &str) {
    let res = app.flag(id, user, "abuse").await;
    assert!(res.status().is_success(), "flag: {}", res.status());
}

async fn decide(app: &TestApp, id: &str, action: &str) {
    let res = app.decide("mod-1", id, &json!({"action": action})).await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn record(app: &TestApp, user: &str) -> (i64, i64) {
    let q = |col: &str| {
        format!("SELECT COALESCE(MAX({col}), 0) FROM flagger_records WHERE user_id = '{user}'")
    };
    (
        app.scalar(&q("upheld")).await,
        app.scalar(&q("dismissed")).await,
    )
}

async fn status(app: &TestApp, id: &str) -> String {
    let res = app
        .get(
            &format!("/api/v1/comments/{id}"),
            Some(&app.moderator("mod-1")),
        )
        .await;
    let c: Value = res.json().await.unwrap();
    c["status"].as_str().unwrap().to_owned()
}

fn weight(item: &Value) -> f64 {
    item["flag_weight"].as_f64().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A trusted flagger `t` (3 upheld: weighs 1.6) and a careless one `c` (2 dismissed:
/// weighs 0.5).
async fn app_with_track_records() -> TestApp {
    let app = spawn_app().await;
    for i in 0..3 {
        let id = new_comment(&app, &format!("troll-{i}")).await;
        flag(&app, &id, "t").await;
        decide(&app, &id, "reject").await;
    }
    for i in 0..2 {
        let id = new_comment(&app, &format!("nice-{i}")).await;
        flag(&app, &id, "c").await;
        decide(&app, &id, "approve").await;
    }
    assert_eq!(record(&app, "t").await, (3, 0));
    assert_eq!(record(&app, "c").await, (0, 2));
    app
}

#[tokio::test]
async fn trusted_flaggers_hide_a_comment_sooner_than_careless_ones() {
    let app = app_with_track_records().await;
    // Threshold 3 (the default): c (0.5) + a new reader (1) = 1.5 stays up…
    let z = new_comment(&app, "someone").await;
    flag(&app, &z, "c").await;
    flag(&app, &z, "n").await;
    assert_eq!(status(&app, &z).await, "approved");
    // …and t's 1.6 makes 3.1: hidden.
    flag(&app, &z, "t").await;
    assert_eq!(status(&app, &z).await, "pending");
    let log = app.log_of(&z).await;
    assert_eq!(log[0]["action"], "hide");

    // Two careless flags (0.5 each) and a new reader's (1) do not reach 3…
    let w = new_comment(&app, "someone").await;
    flag(&app, &w, "c").await;
    flag(&app, &w, "n").await;
    assert_eq!(status(&app, &w).await, "approved");
    // Flagging again while unresolved keeps the weight the flag was cast with.
    flag(&app, &w, "c").await;
    let item = app
        .moderator_get("/api/v1/moderation/queue?queue=flagged&sort=weight")
        .await;
    let items = item["items"].as_array().unwrap();
    let w_item = items
        .iter()
        .find(|i| i["comment"]["id"] == w.as_str())
        .unwrap();
    assert!(close(weight(w_item), 1.5), "{}", weight(w_item));

    // A decision settles the flags: the flaggers' records move, the weight goes to 0.
    decide(&app, &z, "reject").await;
    assert_eq!(record(&app, "t").await, (4, 0));
    assert_eq!(record(&app, "c").await, (1, 2));
    assert_eq!(record(&app, "n").await, (1, 0));
    assert_eq!(
        app.scalar(&format!(
            "SELECT CAST(flag_weight * 1000 AS BIGINT) FROM comments WHERE id = '{z}'"
        ))
        .await,
        0
    );
    // w's flags were cast before: their weights stay 0.5 and 1.
    let page = app
        .moderator_get("/api/v1/moderation/queue?queue=flagged")
        .await;
    let w_item = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["comment"]["id"] == w.as_str())
        .unwrap()
        .clone();
    assert!(close(weight(&w_item), 1.5));
    // c's next flag weighs 2·2/5 = 0.8.
    let v = new_comment(&app, "someone").await;
    flag(&app, &v, "c").await;
    let page = app
        .moderator_get("/api/v1/moderation/queue?queue=flagged")
        .await;
    let v_item = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["comment"]["id"] == v.as_str())
        .unwrap()
        .clone();
    assert!(close(weight(&v_item), 0.8), "{}", weight(&v_item));
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn the_flagged_queue_sorts_by_weight_heaviest_first_with_cursors() {
    let app = app_with_track_records().await;
    let light = new_comment(&app, "someone").await; // 0.5
    flag(&app, &light, "c").await;
    let heavy = new_comment(&app, "someone").await; // 1.6 + 1 = 2.6
    flag(&app, &heavy, "t").await;
    flag(&app, &heavy, "n").await;
    let mid = new_comment(&app, "someone").await; // 1.6
    flag(&app, &mid, "t").await;
    let mid2 = new_comment(&app, "someone").await; // 1.6, a tie broken by id
    flag(&app, &mid2, "t").await;

    let mut seen = vec![];
    let mut weights = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => {
                format!("/api/v1/moderation/queue?queue=flagged&sort=weight&limit=1&cursor={c}")
            }
            None => "/api/v1/moderation/queue?queue=flagged&sort=weight&limit=1".to_owned(),
        };
        let page = app.moderator_get(&path).await;
        for i in page["items"].as_array().unwrap() {
            seen.push(i["comment"]["id"].as_str().unwrap().to_owned());
            weights.push(weight(i));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let (first_tie, second_tie) = if mid > mid2 {
        (&mid, &mid2)
    } else {
        (&mid2, &mid)
    };
    assert_eq!(
        seen,
        vec![
            heavy.clone(),
            first_tie.clone(),
            second_tie.clone(),
            light.clone()
        ]
    );
    assert!(close(weights[0], 2.6) && close(weights[1], 1.6) && close(weights[3], 0.5));

    // sort=weight is for the flagged queue only; other sorts are still refused by name.
    let res = app
        .get(
            "/api/v1/moderation/queue?sort=weight",
            Some(&app.moderator("mod-1")),
        )
        .await;
    let problem = assert_problem(res, 400, "bad_request").await;
    assert_eq!(problem["errors"][0]["field"], "sort");
    let res = app
        .get(
            "/api/v1/moderation/queue?queue=flagged&sort=heavy",
            Some(&app.moderator("mod-1")),
        )
        .await;
    assert_problem(res, 400, "bad_request").await;
}

#[tokio::test]
async fn flagger_records_stay_exact_under_concurrent_decisions() {
    let app = spawn_app().await;
    let mut ids = vec![];
    for i in 0..10 {
        let id = new_comment(&app, &format!("a-{i}")).await;
        flag(&app, &id, "f1").await;
        flag(&app, &id, "f2").await;
        ids.push(id);
    }
    let decisions = ids.iter().enumerate().map(|(i, id)| {
        let app = &app;
        async move {
            let action = if i % 2 == 0 { "reject" } else { "approve" };
            decide(app, id, action).await;
        }
    });
    futures_util::future::join_all(decisions).await;
    assert_eq!(record(&app, "f1").await, (5, 5));
    assert_eq!(record(&app, "f2").await, (5, 5));
    app.assert_counters_match_recounts().await;
}
