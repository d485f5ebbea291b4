use reqwest::Method;
use serde_json::{json, Value};
use tally::{auth::Role, domain::ModerationMode};

use crate::helpers::{assert_problem, error_fields, spawn_app, spawn_app_with, TestApp};

const LIST: &str = "/api/v1/articles/why-back-cracks/comments";
const ARTICLE: &str = "why-back-cracks";

async fn json_of(res: reqwest::Response) -> Value {
    res.json().await.expect("JSON body")
}

/// Kept comment counters equal a recount of the rows.
async fn assert_comment_counters_match_rows(app: &TestApp) {
    let pairs = [
        (
            "SELECT COALESCE(SUM(comment_count), 0) FROM articles",
            "SELECT COUNT(*) FROM comments WHERE status = 'approved'",
            "approved comments per article",
        ),
        (
            "SELECT COALESCE(SUM(top_level_count), 0) FROM articles",
            "SELECT COUNT(*) FROM comments WHERE parent_id IS NULL AND (status = 'approved' OR (status = 'deleted' AND reply_count > 0))",
            "listed top-level comments",
        ),
        (
            "SELECT COUNT(*) FROM comments p WHERE p.reply_count <> (SELECT COUNT(*) FROM comments c WHERE c.parent_id = p.id AND (c.status = 'approved' OR (c.status = 'deleted' AND c.reply_count > 0)))",
            "SELECT 0",
            "every reply_count equals its listed replies",
        ),
    ];
    for (kept, counted, what) in pairs {
        assert_eq!(app.scalar(kept).await, app.scalar(counted).await, "{what}");
    }
    for status in ["pending", "approved", "rejected", "spam", "deleted"] {
        let kept = app
            .scalar(&format!(
                "SELECT count FROM queue_counters WHERE queue = '{status}'"
            ))
            .await;
        let counted = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM comments WHERE status = '{status}'"
            ))
            .await;
        assert_eq!(kept, counted, "queue size {status}");
    }
}

/// Walks every page of a listing and returns the ids in order.
async fn all_pages(app: &TestApp, path: &str, start: Option<&str>) -> Vec<String> {
    let token: Option<&str> = None;
    let mut ids = vec![];
    let mut cursor: Option<String> = start.map(str::to_owned);
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let page = json_of(app.get(&url, token).await).await;
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn posting_a_comment_makes_it_live_at_once_in_post_mode() {
    let app = spawn_app().await;
    let res = app
        .post(
            LIST,
            Some(&app.reader("u-1")),
            &json!({"body": "  Thanks, the open-book stretch helps.  "}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let c = json_of(res).await;
    assert_eq!(c["status"], "approved");
    assert_eq!(c["body"], "Thanks, the open-book stretch helps.", "trimmed");
    assert_eq!(c["article_id"], ARTICLE);
    assert_eq!(c["parent_id"], Value::Null);
    assert_eq!(c["author"], json!({"name": "Name of u-1"}));
    assert_eq!(c["reply_count"], 0);
    assert_eq!(c["mine"], true);
    assert_eq!(c["edited_at"], Value::Null);
    let id = c["id"].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(id).unwrap().get_version_num(),
        7,
        "UUIDv7 ids"
    );

    let stored = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM comments WHERE id = '{id}' AND status = 'approved'"
        ))
        .await;
    assert_eq!(stored, 1);
    let page = json_of(app.get(LIST, None).await).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], id);
    assert_eq!(
        page["items"][0]["mine"], false,
        "not mine for a guest reader"
    );
    assert_comment_counters_match_rows(&app).await;
}

#[tokio::test]
async fn bad_comments_are_refused_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let token = app.reader("u-1");
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"body": ""}), "body", "empty"),
        (json!({"body": " \n\t "}), "body", "blank"),
        (json!({"body": "x".repeat(5001)}), "body", "too long"),
        (
            json!({"body": "bell \u{7} here"}),
            "body",
            "control character",
        ),
        (json!({"body": 42}), "body", "wrong type"),
        (json!({}), "body", "missing"),
        (
            json!({"body": "ok", "parent_id": "does-not-exist"}),
            "parent_id",
            "unknown parent",
        ),
        (
            json!({"body": "ok", "parent_id": ""}),
            "parent_id",
            "empty parent",
        ),
    ];
    for (body, field, why) in cases {
        let problem = assert_problem(
            app.post(LIST, Some(&token), &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(error_fields(&problem), [field], "{why}");
    }
    assert_eq!(
        app.post(LIST, Some(&token), &json!({"body": "é".repeat(5000)}))
            .await
            .status(),
        201,
        "5000 chars ok"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 1);
}

#[tokio::test]
async fn malformed_wrong_type_and_oversized_requests_are_400_and_413() {
    let app = spawn_app_with(|s| s.max_body_bytes = 1024).await;
    let token = app.reader("u-1");
    let raw = |body: String, ct: &'static str| {
        app.request(Method::POST, LIST, Some(&token))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    assert_problem(
        raw("{\"body\": ".into(), "application/json").await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    assert_problem(
        raw("body=hi".into(), "application/x-www-form-urlencoded")
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
    let big = json!({"body": "x".repeat(2000)}).to_string();
    assert_problem(
        raw(big, "application/json").await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 0);
}

#[tokio::test]
async fn public_responses_never_carry_author_ids() {
    let app = spawn_app().await;
    let mia = app
        .keys
        .mint("secret-user-id-1", Some("Mia"), Role::Reader, 600)
        .unwrap();
    let ole = app
        .keys
        .mint("secret-user-id-2", Some("Ole"), Role::Reader, 600)
        .unwrap();
    let root = json_of(
        app.post(LIST, Some(&mia), &json!({"body": "a comment"}))
            .await,
    )
    .await;
    let root_id = root["id"].as_str().unwrap();
    let res = app
        .post(
            LIST,
            Some(&ole),
            &json!({"body": "a reply", "parent_id": root_id}),
        )
        .await;
    assert_eq!(res.status(), 201);
    for path in [
        LIST.to_owned(),
        format!("/api/v1/comments/{root_id}"),
        format!("/api/v1/comments/{root_id}/replies"),
        format!("/api/v1/articles/{ARTICLE}"),
    ] {
        let text = app.get(&path, None).await.text().await.unwrap();
        assert!(
            !text.contains("secret-user-id"),
            "{path} leaked an author id: {text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        let authors: Vec<&Value> = match v.get("items") {
            Some(items) => items
                .as_array()
                .unwrap()
                .iter()
                .map(|c| &c["author"])
                .collect(),
            None => vec![&v["author"]],
        };
        for a in authors {
            assert!(a.get("id").is_none(), "{path}: author {a}");
        }
    }
}

#[tokio::test]
async fn listing_sorts_newest_first_by_default_and_oldest_on_request() {
    let app = spawn_app().await;
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(
            app.comment(ARTICLE, "u-1", &format!("comment {i}"), None)
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let newest = json_of(app.get(LIST, None).await).await;
    let got: Vec<&str> = newest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    let oldest = json_of(app.get(&format!("{LIST}?sort=oldest"), None).await).await;
    let got: Vec<&str> = oldest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()]);
    assert_eq!(oldest["total"], 3);
    assert_eq!(oldest["next_cursor"], Value::Null);
}

#[tokio::test]
async fn keyset_pages_cover_every_comment_once_even_while_new_ones_arrive() {
    let app = spawn_app().await;
    let mut expected = vec![];
    for i in 0..25 {
        expected.push(
            app.comment(ARTICLE, &format!("u-{}", i % 4), &format!("c{i}"), None)
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // First page, then more comments arrive, then the rest of the pages.
    let first = json_of(app.get(&format!("{LIST}?sort=oldest&limit=10"), None).await).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 10);
    assert_eq!(first["total"], 25);
    for i in 0..3 {
        app.comment(ARTICLE, "late", &format!("late {i}"), None)
            .await;
    }
    let mut seen: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let rest = all_pages(
        &app,
        &format!("{LIST}?sort=oldest&limit=10"),
        first["next_cursor"].as_str(),
    )
    .await;
    seen.extend(rest);
    assert_eq!(
        &seen[..25],
        &expected[..],
        "old comments in order, none skipped or repeated"
    );
    assert_eq!(seen.len(), 28, "the late ones come at the end");

    let newest_first = all_pages(&app, &format!("{LIST}?limit=7"), None).await;
    let mut reversed = seen.clone();
    reversed.reverse();
    assert_eq!(newest_first, reversed);
}

#[tokio::test]
async fn bad_list_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("sort=worst", "sort"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        let problem = assert_problem(
            app.get(&format!("{LIST}?{query}"), None).await,
            400,
            "bad_request",
        )
        .await;
        assert_eq!(error_fields(&problem), [field], "{query}");
    }
    assert_eq!(
        app.get(&format!("{LIST}?limit=100"), None).await.status(),
        200
    );
}

#[tokio::test]
async fn replies_nest_and_are_counted() {
    let app = spawn_app().await;
    let root = app.comment(ARTICLE, "u-1", "root", None).await;
    let root_id = root["id"].as_str().unwrap();
    let r1 = app
        .comment(ARTICLE, "u-2", "reply one", Some(root_id))
        .await;
    let r1_id = r1["id"].as_str().unwrap();
    app.comment(ARTICLE, "u-3", "reply two", Some(root_id))
        .await;
    let deep = app
        .comment(ARTICLE, "u-1", "reply to a reply", Some(r1_id))
        .await;
    assert_eq!(deep["parent_id"], r1_id);

    let got = json_of(app.get(&format!("/api/v1/comments/{root_id}"), None).await).await;
    assert_eq!(got["reply_count"], 2);
    let replies = json_of(
        app.get(&format!("/api/v1/comments/{root_id}/replies"), None)
            .await,
    )
    .await;
    assert_eq!(replies["total"], 2);
    let bodies: Vec<&str> = replies["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        ["reply one", "reply two"],
        "replies read oldest first by default"
    );
    assert_eq!(replies["items"][0]["reply_count"], 1);

    let top = json_of(app.get(LIST, None).await).await;
    assert_eq!(top["total"], 1, "replies are not top-level");
    let summary = json_of(app.get(&format!("/api/v1/articles/{ARTICLE}"), None).await).await;
    assert_eq!(
        summary["comment_count"], 4,
        "the article counts every approved comment"
    );
    assert_comment_counters_match_rows(&app).await;
}

#[tokio::test]
async fn a_reply_must_go_to_a_visible_comment_of_the_same_article() {
    let app = spawn_app().await;
    let other = app
        .comment("another-article", "u-1", "elsewhere", None)
        .await;
    let res = app
        .post(
            LIST,
            Some(&app.reader("u-2")),
            &json!({"body": "hi", "parent_id": other["id"]}),
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(res, 422, "validation_failed").await),
        ["parent_id"]
    );

    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let pending = app.comment(ARTICLE, "u-1", "waiting", None).await;
    assert_eq!(pending["status"], "pending");
    let res = app
        .post(
            LIST,
            Some(&app.reader("u-2")),
            &json!({"body": "hi", "parent_id": pending["id"]}),
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(res, 422, "validation_failed").await),
        ["parent_id"],
        "someone else's pending"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 2);
}

#[tokio::test]
async fn the_author_sees_their_own_pending_comments_and_nobody_else_does() {
    let app = spawn_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let c = app.comment(ARTICLE, "u-1", "please approve", None).await;
    assert_eq!(c["status"], "pending");
    let id = c["id"].as_str().unwrap();
    let author = app.reader("u-1");

    // Their pending reply, and a pending comment elsewhere, count only where they are.
    let reply = app.comment(ARTICLE, "u-1", "and a reply", Some(id)).await;
    assert_eq!(reply["status"], "pending");
    app.comment("another-article", "u-1", "elsewhere", None)
        .await;

    let mine = json_of(app.get(LIST, Some(&author)).await).await;
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["mine"], true);
    assert_eq!(mine["items"][0]["status"], "pending");
    let replies = format!("/api/v1/comments/{id}/replies");
    let my_replies = json_of(app.get(&replies, Some(&author)).await).await;
    assert_eq!(my_replies["total"], 1);
    assert_eq!(my_replies["items"][0]["id"], reply["id"]);
    assert_eq!(
        app.get(&format!("/api/v1/comments/{id}"), Some(&author))
            .await
            .status(),
        200
    );

    let public = json_of(app.get(LIST, None).await).await;
    assert_eq!(
        (
            public["total"].clone(),
            public["items"].as_array().unwrap().len()
        ),
        (json!(0), 0)
    );
    assert_problem(
        app.get(&format!("/api/v1/comments/{id}"), None).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.get(&format!("/api/v1/comments/{id}"), Some(&app.reader("u-2")))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        app.get(
            &format!("/api/v1/comments/{id}"),
            Some(&app.moderator("m-1"))
        )
        .await
        .status(),
        200
    );
    assert_comment_counters_match_rows(&app).await;
}

#[tokio::test]
async fn an_unknown_comment_is_404() {
    let app = spawn_app().await;
    for path in ["/api/v1/comments/nope", "/api/v1/comments/nope/replies"] {
        assert_problem(app.get(path, None).await, 404, "not_found").await;
    }
    let token = app.reader("u-1");
    assert_problem(
        app.patch("/api/v1/comments/nope", Some(&token), &json!({"body": "x"}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.delete("/api/v1/comments/nope", Some(&token)).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn the_author_can_edit_within_the_window_and_the_text_is_moderated_again() {
    let app = spawn_app().await;
    let c = app.comment(ARTICLE, "u-1", "first text", None).await;
    let path = format!("/api/v1/comments/{}", c["id"].as_str().unwrap());

    let res = app
        .patch(
            &path,
            Some(&app.reader("u-1")),
            &json!({"body": "second text"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let edited = json_of(res).await;
    assert_eq!(edited["body"], "second text");
    assert_eq!(edited["status"], "approved");
    assert!(edited["edited_at"].is_string());

    assert_problem(
        app.patch(&path, Some(&app.reader("u-2")), &json!({"body": "hijack"}))
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.patch(&path, None, &json!({"body": "guest"})).await,
        401,
        "unauthorized",
    )
    .await;
    let problem = assert_problem(
        app.patch(&path, Some(&app.reader("u-1")), &json!({"body": ""}))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["body"]);

    app.set_policy(|p| p.banned_words = vec!["casino".into()])
        .await;
    let res = app
        .patch(
            &path,
            Some(&app.reader("u-1")),
            &json!({"body": "visit my casino"}),
        )
        .await;
    assert_eq!(
        json_of(res).await["status"],
        "rejected",
        "edited text runs the rules"
    );
    assert_problem(app.get(&path, None).await, 404, "not_found").await;
    let stored = app
        .scalar(&format!(
            "SELECT version FROM comments WHERE id = '{}'",
            c["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(stored, 3);
    let log = app.scalar("SELECT COUNT(*) FROM moderation_log WHERE actor_id = 'system' AND to_status = 'rejected'").await;
    assert_eq!(log, 1, "the rule's decision is logged");
    assert_comment_counters_match_rows(&app).await;
}

#[tokio::test]
async fn editing_after_the_window_is_403_edit_window_expired() {
    let app = spawn_app().await;
    app.set_policy(|p| p.edit_window_secs = 0).await;
    let c = app
        .comment(ARTICLE, "u-1", "too late to change", None)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let path = format!("/api/v1/comments/{}", c["id"].as_str().unwrap());
    let res = app
        .patch(&path, Some(&app.reader("u-1")), &json!({"body": "changed"}))
        .await;
    assert_problem(res, 403, "edit_window_expired").await;
    assert_eq!(
        json_of(app.get(&path, None).await).await["body"],
        "too late to change"
    );
}

#[tokio::test]
async fn deleting_a_comment_without_replies_removes_it_from_view() {
    let app = spawn_app().await;
    let c = app.comment(ARTICLE, "u-1", "regrettable", None).await;
    let path = format!("/api/v1/comments/{}", c["id"].as_str().unwrap());
    assert_problem(
        app.delete(&path, Some(&app.reader("u-2"))).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.delete(&path, Some(&app.reader("u-1"))).await.status(),
        204
    );
    assert_problem(app.get(&path, None).await, 404, "not_found").await;
    assert_problem(
        app.delete(&path, Some(&app.reader("u-1"))).await,
        404,
        "not_found",
    )
    .await;
    let page = json_of(app.get(LIST, None).await).await;
    assert_eq!(page["total"], 0);
    assert_comment_counters_match_rows(&app).await;
}

#[tokio::test]
async fn a_deleted_comment_with_replies_stays_as_a_tombstone() {
    let app = spawn_app().await;
    let root = app.comment(ARTICLE, "u-1", "root text", None).await;
    let root_id = root["id"].as_str().unwrap();
    let reply = app.comment(ARTICLE, "u-2", "a reply", Some(root_id)).await;
    assert_eq!(
        app.delete(
            &format!("/api/v1/comments/{root_id}"),
            Some(&app.reader("u-1"))
        )
        .await
        .status(),
        204
    );

    let page = json_of(app.get(LIST, None).await).await;
    assert_eq!(page["total"], 1);
    let tomb = &page["items"][0];
    assert_eq!(tomb["status"], "deleted");
    assert_eq!(tomb["body"], "");
    assert_eq!(tomb["author"], Value::Null);
    assert_eq!(tomb["reply_count"], 1);
    assert_eq!(
        json_of(
            app.get(&format!("/api/v1/comments/{root_id}/replies"), None)
                .await
        )
        .await["total"],
        1
    );

    // When the last reply goes, the tombstone goes too.
    let reply_path = format!("/api/v1/comments/{}", reply["id"].as_str().unwrap());
    assert_eq!(
        app.delete(&reply_path, Some(&app.reader("u-2")))
            .await
            .status(),
        204
    );
    let page = json_of(app.get(LIST, None).await).await;
    assert_eq!(
        (
            page["total"].clone(),
            page["items"].as_array().unwrap().len()
        ),
        (json!(0), 0)
    );
    assert_comment_counters_match_rows(&app).await;
}

#[tokio::test]
async fn guest_comments_are_refused_unless_enabled_and_then_always_wait() {
    let app = spawn_app().await;
    assert_problem(
        app.post(LIST, None, &json!({"body": "hi"})).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.post(LIST, None, &json!({"body": "hi", "author_name": "Gus"}))
            .await,
        403,
        "forbidden",
    )
    .await;

    app.set_policy(|p| p.guest_comments = true).await;
    let problem = assert_problem(
        app.post(LIST, None, &json!({"body": "hi"})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["author_name"]);
    let res = app
        .post(
            LIST,
            None,
            &json!({"body": "hi from a guest", "author_name": " Gus "}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let c = json_of(res).await;
    assert_eq!(c["status"], "pending");
    assert_eq!(c["author"], json!({"name": "Gus"}));
    assert_eq!(
        json_of(app.get(LIST, None).await).await["total"],
        0,
        "guests wait in the queue"
    );
    assert_comment_counters_match_rows(&app).await;
}

#[tokio::test]
async fn closed_articles_take_no_comments() {
    let app = spawn_app().await;
    app.comment(ARTICLE, "u-1", "before closing", None).await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &app.db,
        &format!("UPDATE articles SET comments_open = false WHERE id = '{ARTICLE}'"),
    )
    .await
    .unwrap();
    let res = app
        .post(
            LIST,
            Some(&app.reader("u-2")),
            &json!({"body": "after closing"}),
        )
        .await;
    assert_problem(res, 403, "comments_closed").await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 1);
    assert_eq!(
        json_of(app.get(&format!("/api/v1/articles/{ARTICLE}"), None).await).await["comments_open"],
        false
    );
}

#[tokio::test]
async fn with_auto_creation_off_unknown_articles_are_404() {
    let app = spawn_app_with(|s| s.auto_create_articles = false).await;
    assert_problem(
        app.post(LIST, Some(&app.reader("u-1")), &json!({"body": "hi"}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(app.get(LIST, None).await, 404, "not_found").await;
    assert_problem(
        app.get(&format!("/api/v1/articles/{ARTICLE}"), None).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM articles").await, 0);
}

#[tokio::test]
async fn concurrent_comments_replies_and_deletes_keep_every_counter_exact() {
    let app = spawn_app().await;
    let root = app.comment(ARTICLE, "u-0", "root", None).await;
    let root_id = root["id"].as_str().unwrap().to_owned();
    let created: Vec<(String, String)> = futures_util::future::join_all((0..30).map(|i| {
        let app = &app;
        let root_id = root_id.clone();
        async move {
            let user = format!("u-{}", i % 5);
            let parent = if i % 3 == 0 {
                Some(root_id.as_str())
            } else {
                None
            };
            let c = app
                .comment(ARTICLE, &user, &format!("text {i}"), parent)
                .await;
            (c["id"].as_str().unwrap().to_owned(), user)
        }
    }))
    .await;
    futures_util::future::join_all(created.iter().enumerate().filter(|(i, _)| i % 4 == 0).map(
        |(_, (id, user))| {
            let app = &app;
            async move {
                let res = app
                    .delete(&format!("/api/v1/comments/{id}"), Some(&app.reader(user)))
                    .await;
                assert_eq!(res.status(), 204);
            }
        },
    ))
    .await;
    assert_eq!(
        app.delete(
            &format!("/api/v1/comments/{root_id}"),
            Some(&app.reader("u-0"))
        )
        .await
        .status(),
        204
    );
    assert_comment_counters_match_rows(&app).await;
}

#[tokio::test]
async fn deleting_a_flagged_comment_settles_its_flags() {
    let app = spawn_app().await;
    let c = app.comment(ARTICLE, "u-1", "flag me", None).await;
    let id = c["id"].as_str().unwrap();
    assert_eq!(app.flag(id, "u-2", "spam").await.status(), 201);
    assert_eq!(
        app.scalar("SELECT count FROM queue_counters WHERE queue = 'flagged'")
            .await,
        1
    );

    assert_eq!(
        app.delete(&format!("/api/v1/comments/{id}"), Some(&app.reader("u-1")))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.scalar("SELECT count FROM queue_counters WHERE queue = 'flagged'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM flags WHERE resolved_at IS NULL")
            .await,
        0
    );
    let flagged = app
        .moderator_get("/api/v1/moderation/queue?queue=flagged")
        .await;
    assert_eq!(flagged["items"].as_array().unwrap().len(), 0);
    let log = app.log_of(id).await;
    assert_eq!(
        (log[0]["action"].as_str(), log[0]["actor"]["id"].as_str()),
        (Some("delete"), Some("u-1"))
    );
    assert_comment_counters_match_rows(&app).await;
}

#[tokio::test]
async fn json_responses_say_utf_8() {
    let app = spawn_app().await;
    let res = app.get(LIST, None).await;
    assert_eq!(
        res.headers()["content-type"],
        "application/json; charset=utf-8"
    );
}

#[tokio::test]
async fn bodies_over_256_kib_are_accepted_when_the_limit_allows() {
    // The body reader's own cap follows TALLY_MAX_BODY_BYTES, not actix's 256 KiB default.
    let app = spawn_app_with(|s| s.max_body_bytes = 1 << 20).await;
    let padding = " ".repeat(300 * 1024);
    let body = format!("{{\"body\": \"big but fine\"{padding}}}");
    let res = app
        .request(Method::POST, LIST, Some(&app.reader("u-1")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn fields_a_reader_may_not_set_are_never_applied() {
    let app = spawn_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let res = app
        .post(
            LIST,
            Some(&app.reader("u-1")),
            &json!({"body": "sneaky", "status": "approved", "version": 99, "id": "chosen-id",
                    "author": {"id": "admin", "name": "Admin"}, "author_id": "admin",
                    "reply_count": 5, "mine": false, "created_at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let c = json_of(res).await;
    assert_eq!(
        c["status"], "pending",
        "status comes from the rules, not the body"
    );
    assert_ne!(c["id"], "chosen-id");
    assert_eq!(c["author"]["name"], "Name of u-1");
    assert_eq!(c["reply_count"], 0);
    assert_ne!(c["created_at"], "2000-01-01T00:00:00Z");
    let id = c["id"].as_str().unwrap();
    let stored = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM comments WHERE id = '{id}' AND author_id = 'u-1' AND version = 1 AND status = 'pending'"
        ))
        .await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn deeply_nested_json_does_no_harm() {
    let app = spawn_app().await;
    let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(5000), "]".repeat(5000));
    let send = |path: &'static str, token: String, body: String| {
        app.request(Method::POST, path, Some(&token))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // In a field the service ignores, the parser skips it without recursing.
    let res = send(
        LIST,
        app.reader("u-1"),
        format!("{{\"body\": \"hi\", \"junk\": {}}}", deep("1")),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    // Where it is parsed into a value, the parser's depth bound refuses it.
    let res = send(
        "/api/v1/moderation/decisions",
        app.moderator("m-1"),
        format!("{{\"items\": {}}}", deep("{}")),
    )
    .await
    .unwrap();
    assert_problem(res, 400, "bad_request").await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}

#[tokio::test]
async fn a_deleted_comment_is_gone_for_moderators_too() {
    let app = spawn_app().await;
    let moderator = app.moderator("m-1");
    let c = json_of(
        app.post(LIST, Some(&moderator), &json!({"body": "mine to delete"}))
            .await,
    )
    .await;
    let path = format!("/api/v1/comments/{}", c["id"].as_str().unwrap());
    assert_eq!(app.delete(&path, Some(&moderator)).await.status(), 204);
    assert_problem(app.get(&path, Some(&moderator)).await, 404, "not_found").await;
    assert_problem(
        app.get(&path, Some(&app.moderator("m-2"))).await,
        404,
        "not_found",
    )
    .await;
    // Moderators still see what they must decide on: a pending comment of someone else.
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let pending = app.comment(ARTICLE, "u-1", "waiting", None).await;
    let res = app
        .get(
            &format!("/api/v1/comments/{}", pending["id"].as_str().unwrap()),
            Some(&moderator),
        )
        .await;
    assert_eq!(res.status(), 200);
}
