//! Ids the database could not store (a NUL byte, control characters, overlong ids) in
//! paths, query strings and bodies: refused before any query, with the same answer on
//! SQLite and PostgreSQL (issue 16: PostgreSQL answered 500 to a `%00` in an id).

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, spawn_app};

#[tokio::test]
async fn a_comment_id_that_cannot_exist_in_a_path_is_404_on_every_route() {
    let app = spawn_app().await;
    let reader = app.reader("u-1");
    let moderator = app.moderator("mod-1");
    let long = "c".repeat(65);
    for id in ["x%00y", "x%01y", "%00", long.as_str()] {
        let cases: [(Method, String, Option<&str>, Option<Value>); 6] = [
            (Method::GET, format!("/api/v1/comments/{id}"), None, None),
            (
                Method::GET,
                format!("/api/v1/comments/{id}/replies"),
                None,
                None,
            ),
            (
                Method::DELETE,
                format!("/api/v1/comments/{id}"),
                Some(&reader),
                None,
            ),
            (
                Method::PATCH,
                format!("/api/v1/comments/{id}"),
                Some(&reader),
                Some(json!({"body": "new text"})),
            ),
            (
                Method::POST,
                format!("/api/v1/comments/{id}/flags"),
                Some(&reader),
                Some(json!({"reason": "spam"})),
            ),
            (
                Method::POST,
                format!("/api/v1/moderation/comments/{id}/decision"),
                Some(&moderator),
                Some(json!({"action": "approve"})),
            ),
        ];
        for (method, path, token, body) in cases {
            let mut req = app.request(method.clone(), &path, token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let res = req.send().await.expect("request");
            let problem = assert_problem(res, 404, "not_found").await;
            assert!(
                problem["detail"].as_str().unwrap().contains("comment"),
                "{method} {path}: {problem}"
            );
        }
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM moderation_log").await, 0);
}

#[tokio::test]
async fn log_filters_and_ban_ids_that_cannot_exist_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    let cases = [
        ("/api/v1/moderation/log?comment_id=a%00b", "comment_id"),
        ("/api/v1/moderation/log?comment_id=a%1Bb", "comment_id"),
        ("/api/v1/moderation/log?actor=a%00b", "actor"),
    ];
    for (path, field) in cases {
        let res = app.get(path, Some(&app.moderator("mod-1"))).await;
        let problem = assert_problem(res, 400, "bad_request").await;
        assert_eq!(error_fields(&problem), vec![field], "{path}");
    }
    let res = app
        .delete(
            "/api/v1/moderation/bans/a%00b",
            Some(&app.moderator("mod-1")),
        )
        .await;
    let problem = assert_problem(res, 400, "bad_request").await;
    assert_eq!(error_fields(&problem), vec!["user_id"]);
    // A well-formed unknown filter is still an empty page.
    let page = app
        .moderator_get("/api/v1/moderation/log?comment_id=no-such-comment")
        .await;
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn a_cursor_carrying_a_nul_byte_is_400_naming_cursor() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let app = spawn_app().await;
    let cursor = URL_SAFE_NO_PAD.encode("1|1700000000000000|a\0b");
    for path in [
        format!("/api/v1/moderation/log?cursor={cursor}"),
        format!("/api/v1/moderation/bans?cursor={cursor}"),
        format!("/api/v1/articles/a-1/comments?cursor={cursor}"),
    ] {
        let res = app.get(&path, Some(&app.moderator("mod-1"))).await;
        let problem = assert_problem(res, 400, "bad_request").await;
        assert_eq!(error_fields(&problem), vec!["cursor"], "{path}");
    }
}

#[tokio::test]
async fn a_nul_character_in_a_body_is_422_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let c = app.comment("a-1", "u-1", "a comment", None).await;
    let id = c["id"].as_str().unwrap();
    let moderator = app.moderator("mod-1");
    let cases = [
        (
            "/api/v1/articles/a-1/comments".to_owned(),
            app.reader("u-2"),
            json!({"body": "a reply", "parent_id": "a\u{0}b"}),
            "parent_id",
        ),
        (
            "/api/v1/moderation/bans".to_owned(),
            moderator.clone(),
            json!({"user_id": "u\u{0}2", "reason": "spam"}),
            "user_id",
        ),
        (
            "/api/v1/moderation/bans".to_owned(),
            moderator.clone(),
            json!({"user_id": "u-2", "reason": "spam\u{0}"}),
            "reason",
        ),
        (
            format!("/api/v1/moderation/comments/{id}/decision"),
            moderator.clone(),
            json!({"action": "reject", "reason": "\u{0}"}),
            "reason",
        ),
    ];
    for (path, token, body, field) in cases {
        let res = app.post(&path, Some(&token), &body).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec![field], "{path} {body}");
    }
    // A bulk body carrying one is refused whole (nothing of it could be stored), naming
    // the item's field; an item naming an overlong comment id fails alone.
    let res = app
        .post(
            "/api/v1/moderation/decisions",
            Some(&moderator),
            &json!({"items": [{"comment_id": "a\u{0}b", "action": "approve"}]}),
        )
        .await;
    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(error_fields(&problem), vec!["items[0].comment_id"]);
    let res = app
        .post(
            "/api/v1/moderation/decisions",
            Some(&moderator),
            &json!({"items": [{"comment_id": "c".repeat(65), "action": "approve"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["results"][0]["ok"], false, "{body}");
    assert_eq!(body["results"][0]["error"]["status"], 422, "{body}");

    assert_eq!(app.scalar("SELECT COUNT(*) FROM bans").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM moderation_log WHERE actor_id <> 'system'")
            .await,
        0
    );
}
