//! Reader flags: counted once per user, the flagged queue, and the threshold that hides
//! a live comment until a moderator decides.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, spawn_app, TestApp};

async fn flag_count(app: &TestApp, id: &str) -> i64 {
    app.scalar(&format!(
        "SELECT CAST(flag_count AS BIGINT) FROM comments WHERE id = '{id}'"
    ))
    .await
}

#[tokio::test]
async fn flagging_answers_201_then_200_and_counts_each_user_once() {
    let app = spawn_app().await;
    let c = app.comment("a-1", "author", "A hot take", None).await;
    let id = c["id"].as_str().unwrap();

    let first = app.flag(id, "u-1", "spam").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["comment_id"], id);
    assert_eq!(body["reason"], "spam");
    let again = app
        .post(
            &format!("/api/v1/comments/{id}/flags"),
            Some(&app.reader("u-1")),
            &json!({"reason": "abuse", "note": "rude"}),
        )
        .await;

    assert_eq!(again.status(), StatusCode::OK);
    let body: Value = again.json().await.unwrap();
    assert_eq!(
        (body["reason"].clone(), body["note"].clone()),
        (json!("abuse"), json!("rude"))
    );
    assert_eq!(flag_count(&app, id).await, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM flags").await, 1);
    let queue = app
        .moderator_get("/api/v1/moderation/queue?queue=flagged")
        .await;
    assert_eq!(queue["items"][0]["comment"]["id"], id);
    assert_eq!(queue["items"][0]["flag_count"], 1);
    assert_eq!(queue["items"][0]["flags"], json!({"abuse": 1}));
    assert_eq!(
        app.moderator_get("/api/v1/moderation/stats").await["flagged"],
        1
    );
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn bad_flags_are_refused() {
    let app = spawn_app().await;
    let c = app.comment("a-1", "author", "Text", None).await;
    let id = c["id"].as_str().unwrap();
    let path = format!("/api/v1/comments/{id}/flags");
    let reader = app.reader("u-1");
    let cases = [
        (json!({"reason": "boring"}), "reason", "unknown reason"),
        (json!({}), "reason", "missing reason"),
        (
            json!({"reason": "other", "note": "n".repeat(501)}),
            "note",
            "note over 500",
        ),
    ];
    for (body, field, why) in cases {
        let res = app.post(&path, Some(&reader), &body).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec![field], "{why}");
    }
    let ok = app
        .post(
            &path,
            Some(&reader),
            &json!({"reason": "other", "note": "n".repeat(500)}),
        )
        .await;
    assert_eq!(
        ok.status(),
        StatusCode::CREATED,
        "a 500-character note is fine"
    );
    assert_problem(
        app.post(&path, None, &json!({"reason": "spam"})).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.flag("no-such-comment", "u-1", "spam").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_comment_the_caller_cannot_see_cannot_be_flagged() {
    let app = spawn_app().await;
    app.set_policy(|p| p.moderation_mode = tally::domain::ModerationMode::Pre)
        .await;
    let c = app.comment("a-1", "author", "Waiting", None).await;
    let id = c["id"].as_str().unwrap();

    assert_problem(app.flag(id, "u-1", "spam").await, 404, "not_found").await;

    assert_eq!(flag_count(&app, id).await, 0);
}

#[tokio::test]
async fn at_the_flag_threshold_a_live_comment_is_hidden_until_a_moderator_decides() {
    let app = spawn_app().await;
    let c = app.comment("a-1", "author", "Controversial", None).await;
    let id = c["id"].as_str().unwrap();
    for (user, reason) in [("u-1", "spam"), ("u-2", "spam")] {
        assert_eq!(
            app.flag(id, user, reason).await.status(),
            StatusCode::CREATED
        );
    }
    assert_eq!(
        app.get(&format!("/api/v1/comments/{id}"), None)
            .await
            .status(),
        StatusCode::OK
    );

    assert_eq!(
        app.flag(id, "u-3", "abuse").await.status(),
        StatusCode::CREATED
    );

    assert_problem(
        app.get(&format!("/api/v1/comments/{id}"), None).await,
        404,
        "not_found",
    )
    .await;
    let queue = app
        .moderator_get("/api/v1/moderation/queue?queue=pending")
        .await;
    let item = &queue["items"][0];
    assert_eq!(item["comment"]["id"], id);
    assert_eq!(item["flags"], json!({"spam": 2, "abuse": 1}));
    assert_eq!(item["version"], 2);
    let log = app.log_of(id).await;
    assert_eq!(log[0]["actor"]["id"], "system");
    assert_eq!(log[0]["action"], "hide");
    assert_eq!(log[0]["reason"], "flag_threshold:3");
    assert_eq!(
        (log[0]["from_status"].clone(), log[0]["to_status"].clone()),
        (json!("approved"), json!("pending"))
    );
    assert_eq!(
        app.scalar("SELECT comment_count FROM articles WHERE id = 'a-1'")
            .await,
        0
    );
    app.assert_counters_match_recounts().await;

    let res = app
        .decide(
            "mod-1",
            id,
            &json!({"action": "approve", "expected_version": 2}),
        )
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    let item: Value = res.json().await.unwrap();
    assert_eq!(
        (item["flag_count"].clone(), item["flags"].clone()),
        (json!(0), json!({}))
    );
    assert_eq!(flag_count(&app, id).await, 0);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM flags WHERE comment_id = '{id}' AND resolved_at IS NULL"
        ))
        .await,
        0
    );
    assert_eq!(
        app.get(&format!("/api/v1/comments/{id}"), None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.moderator_get("/api/v1/moderation/stats").await["flagged"],
        0
    );
    app.assert_counters_match_recounts().await;

    let res = app.flag(id, "u-1", "spam").await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "a flag after the decision counts anew"
    );
    assert_eq!(flag_count(&app, id).await, 1);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn flags_on_a_rejected_comment_do_not_change_its_status() {
    let app = spawn_app().await;
    app.set_policy(|p| p.flag_threshold = 1).await;
    let c = app.comment("a-1", "author", "Meh", None).await;
    let id = c["id"].as_str().unwrap();
    app.decide("mod-1", id, &json!({"action": "reject"})).await;

    // Moderators can still see it, readers cannot flag it.
    assert_problem(app.flag(id, "u-1", "spam").await, 404, "not_found").await;
    let res = app
        .post(
            &format!("/api/v1/comments/{id}/flags"),
            Some(&app.moderator("mod-2")),
            &json!({"reason": "spam"}),
        )
        .await;

    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        app.scalar(&format!(
            "SELECT CAST(version AS BIGINT) FROM comments WHERE id = '{id}'"
        ))
        .await,
        2,
        "no hide on a comment that is not live"
    );
    app.assert_counters_match_recounts().await;
}
