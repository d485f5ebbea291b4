//! Administration: the moderation policy and article registration.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, spawn_app, spawn_app_with};

fn a_policy() -> Value {
    json!({
        "moderation_mode": "pre",
        "guest_comments": true,
        "banned_words": ["scam"],
        "suspect_words": ["casino", "free money"],
        "max_links": 1,
        "flag_threshold": 5,
        "edit_window_secs": 60,
        "trusted_after_approved": 2,
        "spam_threshold": 0.9,
        "spam_min_examples": 20,
        "rating_prior_weight": 7,
        "retention_days_rejected": null,
        "external_moderation_url": null,
        "external_moderation_timeout_ms": 1000
    })
}

#[tokio::test]
async fn an_admin_reads_the_defaults_then_replaces_the_whole_policy() {
    let app = spawn_app().await;
    let admin = app.admin("admin-1");
    let res = app.get("/api/v1/admin/settings", Some(&admin)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"moderation_mode": "post", "guest_comments": false, "banned_words": [],
               "suspect_words": [], "max_links": 2, "flag_threshold": 3,
               "edit_window_secs": 900, "trusted_after_approved": 0,
               "spam_threshold": 0.9, "spam_min_examples": 20,
               "rating_prior_weight": 5, "retention_days_rejected": null,
               "external_moderation_url": null, "external_moderation_timeout_ms": 1000})
    );

    let res = app
        .put("/api/v1/admin/settings", Some(&admin), &a_policy())
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), a_policy());
    let again = app.get("/api/v1/admin/settings", Some(&admin)).await;
    assert_eq!(again.json::<Value>().await.unwrap(), a_policy());
    let stored: Value = serde_json::from_str(
        &app.db
            .query_one_raw(sea_orm::Statement::from_string(
                app.db.get_database_backend(),
                "SELECT value FROM settings WHERE key = 'moderation'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<String>(0)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored, a_policy());
    // The new policy applies at once: a guest may post, and waits.
    let res = app
        .post(
            "/api/v1/articles/a-1/comments",
            None,
            &json!({"body": "hi", "author_name": "Guest"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "pending");
    let log = app
        .moderator_get("/api/v1/moderation/log?actor=admin-1")
        .await;
    assert_eq!(log["items"][0]["action"], "settings");
}

#[tokio::test]
async fn bad_settings_are_422_naming_each_field_and_store_nothing() {
    let app = spawn_app().await;
    let admin = app.admin("admin-1");
    let with = |key: &str, value: Value| {
        let mut p = a_policy();
        p[key] = value;
        p
    };
    let without = |key: &str| {
        let mut p = a_policy();
        p.as_object_mut().unwrap().remove(key);
        p
    };
    let cases: Vec<(Value, Vec<&str>, &str)> = vec![
        (
            with("flag_threshold", json!(0)),
            vec!["flag_threshold"],
            "threshold below 1",
        ),
        (
            with("banned_words", json!(["ok", " "])),
            vec!["banned_words[1]"],
            "blank word",
        ),
        (with("max_links", json!(-1)), vec!["max_links"], "negative"),
        (
            with("moderation_mode", json!("later")),
            vec!["moderation_mode"],
            "unknown mode",
        ),
        (
            with("edit_window_secs", json!(99_999_999)),
            vec!["edit_window_secs"],
            "window too long",
        ),
        (
            with("surprise", json!(true)),
            vec!["surprise"],
            "unknown field",
        ),
        (without("max_links"), vec!["max_links"], "missing field"),
    ];
    for (body, fields, why) in cases {
        let res = app.put("/api/v1/admin/settings", Some(&admin), &body).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), fields, "{why}");
    }
    let res = app
        .put(
            "/api/v1/admin/settings",
            Some(&admin),
            &with("flag_threshold", json!(0))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("trusted_after_approved".into(), json!(2_000_000));
                    Value::Object(o)
                })
                .unwrap(),
        )
        .await;
    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(
        error_fields(&problem),
        vec!["flag_threshold", "trusted_after_approved"]
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM settings").await, 0);
}

#[tokio::test]
async fn admin_routes_need_the_admin_role() {
    let app = spawn_app().await;
    let body = a_policy();
    for (method, path) in [
        ("GET", "/api/v1/admin/settings"),
        ("PUT", "/api/v1/admin/settings"),
        ("PUT", "/api/v1/admin/articles/a-1"),
    ] {
        for (token, status, code) in [
            (None, 401, "unauthorized"),
            (Some(app.reader("u-1")), 403, "forbidden"),
            (Some(app.moderator("mod-1")), 403, "forbidden"),
        ] {
            let res = app
                .request(method.parse().unwrap(), path, token.as_deref())
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_problem(res, status, code).await;
        }
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM articles").await, 0);
}

#[tokio::test]
async fn registering_an_article_creates_it_even_when_automatic_creation_is_off() {
    let app = spawn_app_with(|s| s.auto_create_articles = false).await;
    let admin = app.admin("admin-1");
    let reader = app.reader("u-1");
    let res = app
        .post(
            "/api/v1/articles/why-back-cracks/comments",
            Some(&reader),
            &json!({"body": "hi"}),
        )
        .await;
    assert_problem(res, 404, "not_found").await;

    let res = app
        .put(
            "/api/v1/admin/articles/why-back-cracks",
            Some(&admin),
            &json!({"title": "Why backs crack", "url": "https://example.com/backs",
                    "comments_open": true, "moderation_mode": null}),
        )
        .await;

    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["article_id"], "why-back-cracks");
    assert_eq!(body["title"], "Why backs crack");
    assert_eq!(body["url"], "https://example.com/backs");
    assert_eq!(body["comments_open"], true);
    assert_eq!(body["moderation_mode"], Value::Null);
    assert_eq!(body["comment_count"], 0);
    assert_eq!(body["rating"]["count"], 0);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM articles WHERE id = 'why-back-cracks' AND registered")
            .await,
        1
    );
    app.comment("why-back-cracks", "u-1", "Now it takes comments", None)
        .await;
}

#[tokio::test]
async fn updating_an_article_closes_comments_and_sets_its_mode() {
    let app = spawn_app().await;
    let admin = app.admin("admin-1");
    app.comment("a-1", "u-1", "first", None).await;

    let res = app
        .put(
            "/api/v1/admin/articles/a-1",
            Some(&admin),
            &json!({"title": "A", "comments_open": true, "moderation_mode": "pre"}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "an existing article is updated"
    );
    assert_eq!(res.json::<Value>().await.unwrap()["moderation_mode"], "pre");
    let held = app.comment("a-1", "u-2", "second", None).await;
    assert_eq!(held["status"], "pending");

    let res = app
        .put(
            "/api/v1/admin/articles/a-1",
            Some(&admin),
            &json!({"title": "A", "comments_open": false}),
        )
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["comments_open"].clone(), body["comment_count"].clone()),
        (json!(false), json!(1))
    );
    let res = app
        .post(
            "/api/v1/articles/a-1/comments",
            Some(&app.reader("u-3")),
            &json!({"body": "late"}),
        )
        .await;
    assert_problem(res, 403, "comments_closed").await;
    let summary: Value = app
        .get("/api/v1/articles/a-1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(summary["comments_open"], false);
}

#[tokio::test]
async fn bad_article_registrations_are_refused() {
    let app = spawn_app().await;
    let admin = app.admin("admin-1");
    let cases = [
        (
            json!({"url": "javascript:alert(1)"}),
            "url",
            "not a web URL",
        ),
        (json!({"title": ""}), "title", "empty title"),
        (
            json!({"comments_open": "yes"}),
            "comments_open",
            "not a boolean",
        ),
        (
            json!({"moderation_mode": "sometimes"}),
            "moderation_mode",
            "unknown mode",
        ),
    ];
    for (body, field, why) in cases {
        let res = app
            .put("/api/v1/admin/articles/a-1", Some(&admin), &body)
            .await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec![field], "{why}");
    }
    let res = app
        .put("/api/v1/admin/articles/-nope", Some(&admin), &json!({}))
        .await;
    assert_problem(res, 400, "bad_request").await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM articles").await, 0);
}

#[tokio::test]
async fn a_policy_saved_through_another_instance_applies_here_without_waiting_for_the_cache() {
    let app = spawn_app().await;
    let peer = crate::helpers::spawn_peer(&app, |_| {}).await;
    // This instance reads (and keeps) the default policy: comments go live.
    let live = app.comment("policy-peer", "u-1", "before", None).await;
    assert_eq!(live["status"], "approved");

    let res = app
        .client
        .put(peer.url("/api/v1/admin/settings"))
        .bearer_auth(app.admin("admin-1"))
        .json(&a_policy())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "saved through the peer");

    // The peer's `SettingsChanged` event reaches this instance (LISTEN/NOTIFY, or the
    // outbox poll on SQLite) long before the policy cache's own lifetime ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let held = app.comment("policy-peer", "u-2", "after", None).await;
        if held["status"] == "pending" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pre-moderation never applied here: {held}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
