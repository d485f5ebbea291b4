//! Moderation: queues, stats, decisions (single, bulk, concurrent), the log, bans, and
//! the automatic rules seen from the moderator's side.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use tally::domain::ModerationMode;

use crate::helpers::{assert_problem, error_fields, spawn_app, spawn_app_with, TestApp};

/// An app where every comment waits in the queue (pre-moderation).
async fn app_in_pre_mode() -> TestApp {
    let app = spawn_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    app
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["comment"]["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn stored_status(app: &TestApp, id: &str) -> (String, i64) {
    let status = app
        .scalar(&format!(
            "SELECT CAST(CASE status WHEN 'pending' THEN 0 WHEN 'approved' THEN 1 \
             WHEN 'rejected' THEN 2 WHEN 'spam' THEN 3 ELSE 4 END AS BIGINT) \
             FROM comments WHERE id = '{id}'"
        ))
        .await;
    let version = app
        .scalar(&format!(
            "SELECT CAST(version AS BIGINT) FROM comments WHERE id = '{id}'"
        ))
        .await;
    let name = ["pending", "approved", "rejected", "spam", "deleted"][status as usize];
    (name.to_owned(), version)
}

#[tokio::test]
async fn the_pending_queue_lists_held_comments_oldest_first_with_what_a_moderator_needs() {
    let app = app_in_pre_mode().await;
    let first = app.comment("a-1", "u-1", "First thoughts", None).await;
    let second = app.comment("a-1", "u-2", "Second thoughts", None).await;

    let page = app.moderator_get("/api/v1/moderation/queue").await;

    assert_eq!(
        ids(&page),
        vec![
            first["id"].as_str().unwrap(),
            second["id"].as_str().unwrap()
        ]
    );
    assert_eq!(page["next_cursor"], Value::Null);
    let item = &page["items"][0];
    assert_eq!(
        item["comment"]["author"],
        json!({"id": "u-1", "name": "Name of u-1"})
    );
    assert_eq!(item["comment"]["status"], "pending");
    assert_eq!(item["comment"]["body"], "First thoughts");
    assert_eq!(item["version"], 1);
    assert_eq!(item["flag_count"], 0);
    assert_eq!(item["flags"], json!({}));
    assert_eq!(
        item["auto_moderation"]["reasons"],
        json!(["pre_moderation"])
    );
    assert!(item["auto_moderation"]["score"].is_number());
    assert_eq!(
        item["author_history"],
        json!({"approved": 0, "rejected": 0, "spam": 0})
    );
}

#[tokio::test]
async fn queues_page_with_cursors_sort_newest_and_filter_by_article() {
    let app = app_in_pre_mode().await;
    let mut in_a = vec![];
    for i in 0..5 {
        let c = app
            .comment("a", &format!("u-{i}"), &format!("comment {i}"), None)
            .await;
        in_a.push(c["id"].as_str().unwrap().to_owned());
    }
    app.comment("b", "u-9", "elsewhere", None).await;

    let mut seen = vec![];
    let mut path = "/api/v1/moderation/queue?article_id=a&limit=2".to_owned();
    loop {
        let page = app.moderator_get(&path).await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/moderation/queue?article_id=a&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, in_a, "three pages, oldest first, article a only");

    let newest = app
        .moderator_get("/api/v1/moderation/queue?queue=pending&sort=newest&limit=1")
        .await;
    assert_eq!(newest["items"][0]["comment"]["article_id"], "b");
    assert!(newest["next_cursor"].is_string());
    let approved = app
        .moderator_get("/api/v1/moderation/queue?queue=approved")
        .await;
    assert_eq!(ids(&approved), Vec::<String>::new());
}

#[tokio::test]
async fn bad_queue_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    let token = app.moderator("mod-1");
    let cases = [
        ("queue=deleted", "queue", "deleted is no queue"),
        ("queue=everything", "queue", "unknown queue"),
        ("sort=best", "sort", "unknown sort"),
        ("limit=0", "limit", "limit below 1"),
        ("limit=101", "limit", "limit above 100"),
        ("limit=ten", "limit", "limit not a number"),
        ("cursor=garbage!", "cursor", "cursor not given out"),
        ("article_id=-bad", "article_id", "bad article id"),
    ];
    for (query, field, why) in cases {
        let res = app
            .get(&format!("/api/v1/moderation/queue?{query}"), Some(&token))
            .await;
        let problem = assert_problem(res, 400, "bad_request").await;
        assert_eq!(error_fields(&problem), vec![field], "{why}");
    }
}

#[tokio::test]
async fn moderator_routes_refuse_guests_with_401_and_readers_with_403() {
    let app = spawn_app().await;
    let reader = app.reader("u-1");
    let decision = json!({"action": "approve"});
    let routes: [(&str, &str, Option<&Value>); 8] = [
        ("GET", "/api/v1/moderation/queue", None),
        ("GET", "/api/v1/moderation/stats", None),
        ("GET", "/api/v1/moderation/log", None),
        ("GET", "/api/v1/moderation/bans", None),
        (
            "POST",
            "/api/v1/moderation/comments/x/decision",
            Some(&decision),
        ),
        ("POST", "/api/v1/moderation/decisions", Some(&decision)),
        ("POST", "/api/v1/moderation/bans", Some(&decision)),
        ("DELETE", "/api/v1/moderation/bans/u-2", None),
    ];
    for (method, path, body) in routes {
        for (token, status, code) in [
            (None, 401, "unauthorized"),
            (Some(reader.as_str()), 403, "forbidden"),
        ] {
            let mut rb = app.request(method.parse().unwrap(), path, token);
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let res = rb.send().await.unwrap();
            assert_problem(res, status, code).await;
        }
    }
}

#[tokio::test]
async fn approving_a_pending_comment_publishes_it_bumps_its_version_and_logs_the_decision() {
    let app = app_in_pre_mode().await;
    let c = app.comment("a-1", "u-1", "Worth a look", None).await;
    let id = c["id"].as_str().unwrap();

    let res = app
        .decide(
            "mod-1",
            id,
            &json!({"action": "approve", "reason": "fine", "expected_version": 1}),
        )
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    let item: Value = res.json().await.unwrap();
    assert_eq!(item["version"], 2);
    assert_eq!(item["comment"]["status"], "approved");
    assert_eq!(item["author_history"]["approved"], 1);
    assert_eq!(stored_status(&app, id).await, ("approved".into(), 2));
    assert_eq!(
        app.scalar("SELECT comment_count FROM articles WHERE id = 'a-1'")
            .await,
        1
    );
    let public = app.get(&format!("/api/v1/comments/{id}"), None).await;
    assert_eq!(public.status(), StatusCode::OK);
    let log = app.log_of(id).await;
    assert_eq!(log.len(), 2, "the rule's hold, then the decision: {log:?}");
    assert_eq!(
        log[0]["actor"],
        json!({"id": "mod-1", "name": "Name of mod-1"})
    );
    assert_eq!(log[0]["action"], "approve");
    assert_eq!(log[0]["from_status"], "pending");
    assert_eq!(log[0]["to_status"], "approved");
    assert_eq!(log[0]["reason"], "fine");
    assert_eq!(log[1]["actor"]["id"], "system");
    let stats = app.moderator_get("/api/v1/moderation/stats").await;
    assert_eq!(
        stats,
        json!({"pending": 0, "flagged": 0, "rejected": 0, "spam": 0, "approved": 1})
    );
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn rejecting_and_marking_spam_take_a_live_comment_down() {
    let app = spawn_app().await;
    let a = app.comment("a-1", "u-1", "one", None).await;
    let b = app.comment("a-1", "u-2", "two", None).await;

    for (c, action, status) in [(&a, "reject", "rejected"), (&b, "spam", "spam")] {
        let id = c["id"].as_str().unwrap();
        let res = app.decide("mod-1", id, &json!({"action": action})).await;
        assert_eq!(res.status(), StatusCode::OK, "{action}");
        assert_eq!(
            stored_status(&app, id).await,
            (status.into(), 2),
            "{action}"
        );
        let queue = app
            .moderator_get(&format!("/api/v1/moderation/queue?queue={status}"))
            .await;
        assert_eq!(ids(&queue), vec![id], "{status} queue");
    }
    assert_eq!(
        app.scalar("SELECT comment_count FROM articles WHERE id = 'a-1'")
            .await,
        0
    );
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_stale_expected_version_is_409_and_changes_nothing() {
    let app = app_in_pre_mode().await;
    let c = app.comment("a-1", "u-1", "hello", None).await;
    let id = c["id"].as_str().unwrap();
    app.decide(
        "mod-1",
        id,
        &json!({"action": "approve", "expected_version": 1}),
    )
    .await;
    let log_before = app.log_of(id).await.len();

    let res = app
        .decide(
            "mod-2",
            id,
            &json!({"action": "reject", "expected_version": 1}),
        )
        .await;

    assert_problem(res, 409, "version_conflict").await;
    assert_eq!(stored_status(&app, id).await, ("approved".into(), 2));
    assert_eq!(app.log_of(id).await.len(), log_before);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn bad_decisions_are_refused_with_the_field_named() {
    let app = app_in_pre_mode().await;
    let c = app.comment("a-1", "u-1", "hello", None).await;
    let id = c["id"].as_str().unwrap();
    let cases = [
        (json!({"action": "delete"}), "action", "unknown action"),
        (json!({}), "action", "missing action"),
        (
            json!({"action": "approve", "reason": "x".repeat(501)}),
            "reason",
            "reason too long",
        ),
        (
            json!({"action": "approve", "expected_version": "one"}),
            "expected_version",
            "not a number",
        ),
    ];
    for (body, field, why) in cases {
        let problem = assert_problem(
            app.decide("mod-1", id, &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(error_fields(&problem), vec![field], "{why}");
    }
    assert_eq!(stored_status(&app, id).await, ("pending".into(), 1));
    assert_problem(
        app.decide("mod-1", "no-such-comment", &json!({"action": "approve"}))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_decision_on_a_deleted_comment_is_422_on_action() {
    let app = spawn_app().await;
    let c = app.comment("a-1", "u-1", "regret", None).await;
    let id = c["id"].as_str().unwrap();
    let res = app
        .delete(&format!("/api/v1/comments/{id}"), Some(&app.reader("u-1")))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let res = app.decide("mod-1", id, &json!({"action": "approve"})).await;

    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(error_fields(&problem), vec!["action"]);
    assert_eq!(stored_status(&app, id).await.0, "deleted");
}

#[tokio::test]
async fn of_two_concurrent_conflicting_decisions_exactly_one_wins() {
    let app = app_in_pre_mode().await;
    let mut comments = vec![];
    for i in 0..20 {
        let c = app
            .comment("a-1", &format!("u-{i}"), &format!("race {i}"), None)
            .await;
        comments.push(c["id"].as_str().unwrap().to_owned());
    }

    let approve = json!({"action": "approve", "expected_version": 1});
    let reject = json!({"action": "reject", "expected_version": 1});
    let pairs = comments.iter().map(|id| {
        let approve = app.decide("mod-1", id, &approve);
        let reject = app.decide("mod-2", id, &reject);
        async move {
            let (a, r) = tokio::join!(approve, reject);
            (a.status().as_u16(), r.status().as_u16())
        }
    });
    let outcomes = futures_util::future::join_all(pairs).await;

    for (id, (a, r)) in comments.iter().zip(outcomes) {
        let mut statuses = [a, r];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "comment {id}");
        let winner = if a == 200 { "approved" } else { "rejected" };
        assert_eq!(
            stored_status(&app, id).await,
            (winner.into(), 2),
            "comment {id}"
        );
        let decisions = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM moderation_log WHERE comment_id = '{id}' AND actor_id <> 'system'"
            ))
            .await;
        assert_eq!(decisions, 1, "one logged decision for {id}");
    }
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn bulk_decisions_answer_each_item_alone_and_in_order() {
    let app = app_in_pre_mode().await;
    let a = app.comment("a-1", "u-1", "one", None).await;
    let b = app.comment("a-1", "u-2", "two", None).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    let res = app
        .post(
            "/api/v1/moderation/decisions",
            Some(&app.moderator("mod-1")),
            &json!({"items": [
                {"comment_id": a, "action": "approve"},
                {"comment_id": "missing", "action": "approve"},
                {"comment_id": b, "action": "spam", "expected_version": 7},
                {"comment_id": b, "action": "explode"},
                {"action": "approve"},
                {"comment_id": b, "action": "reject", "reason": "off topic"},
            ]}),
        )
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    let summary: Vec<(Value, bool, Value)> = results
        .iter()
        .map(|r| {
            (
                r["comment_id"].clone(),
                r["ok"].as_bool().unwrap(),
                r["error"]["code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!(a), true, Value::Null),
            (json!("missing"), false, json!("not_found")),
            (json!(b), false, json!("version_conflict")),
            (json!(b), false, json!("validation_failed")),
            (Value::Null, false, json!("validation_failed")),
            (json!(b), true, Value::Null),
        ]
    );
    assert_eq!(results[0]["item"]["comment"]["status"], "approved");
    assert_eq!(results[2]["error"]["status"], 409);
    assert_eq!(error_fields(&results[3]["error"]), vec!["action"]);
    assert_eq!(error_fields(&results[4]["error"]), vec!["comment_id"]);
    assert_eq!(stored_status(&app, a).await, ("approved".into(), 2));
    assert_eq!(stored_status(&app, b).await, ("rejected".into(), 2));
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn bulk_requests_need_1_to_100_items() {
    let app = spawn_app().await;
    let token = app.moderator("mod-1");
    let item = json!({"comment_id": "x", "action": "approve"});
    for (items, why) in [(vec![], "empty"), (vec![item.clone(); 101], "over 100")] {
        let res = app
            .post(
                "/api/v1/moderation/decisions",
                Some(&token),
                &json!({"items": items}),
            )
            .await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec!["items"], "{why}");
    }
    let res = app
        .post(
            "/api/v1/moderation/decisions",
            Some(&token),
            &json!({"items": [item]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "one item is fine");
}

#[tokio::test]
async fn the_log_lists_newest_first_filters_by_comment_and_actor_and_pages() {
    let app = app_in_pre_mode().await;
    let a = app.comment("a-1", "u-1", "one", None).await;
    let b = app.comment("a-1", "u-2", "two", None).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    app.decide("mod-1", a, &json!({"action": "approve"})).await;
    app.decide("mod-2", b, &json!({"action": "reject"})).await;

    let all = app.moderator_get("/api/v1/moderation/log").await;
    let by_mod2 = app
        .moderator_get("/api/v1/moderation/log?actor=mod-2")
        .await;
    let first = app.moderator_get("/api/v1/moderation/log?limit=3").await;
    assert_eq!(all["items"][4]["action"], "settings", "the oldest: {all}");
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = app
        .moderator_get(&format!("/api/v1/moderation/log?limit=3&cursor={cursor}"))
        .await;

    let entry_ids: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        entry_ids.len(),
        5,
        "the settings change (pre-moderation), two holds and two decisions"
    );
    assert!(entry_ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let e = &all["items"][0];
    for key in [
        "id",
        "at",
        "actor",
        "action",
        "comment_id",
        "from_status",
        "to_status",
        "reason",
    ] {
        assert!(e.get(key).is_some(), "entry has {key}: {e}");
    }
    assert_eq!(by_mod2["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_mod2["items"][0]["comment_id"], b);
    let paged: Vec<i64> = [first, second]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().clone())
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(paged, entry_ids);
    assert_eq!(app.log_of(a).await.len(), 2);
}

#[tokio::test]
async fn a_banned_user_gets_403_banned_on_every_write_until_unbanned() {
    let app = spawn_app().await;
    let target = app.comment("a-1", "u-2", "to flag", None).await;
    let moderator = app.moderator("mod-1");
    let res = app
        .post(
            "/api/v1/moderation/bans",
            Some(&moderator),
            &json!({"user_id": "u-1", "reason": "trolling"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let ban: Value = res.json().await.unwrap();
    assert_eq!(ban["user_id"], "u-1");
    assert_eq!(ban["created_by"], "mod-1");
    assert_eq!(ban["expires_at"], Value::Null);

    let reader = app.reader("u-1");
    let writes = [
        app.post(
            "/api/v1/articles/a-1/comments",
            Some(&reader),
            &json!({"body": "hi"}),
        )
        .await,
        app.put(
            "/api/v1/articles/a-1/ratings/me",
            Some(&reader),
            &json!({"stars": 5}),
        )
        .await,
        app.post(
            &format!("/api/v1/comments/{}/flags", target["id"].as_str().unwrap()),
            Some(&reader),
            &json!({"reason": "spam"}),
        )
        .await,
    ];
    for res in writes {
        assert_problem(res, 403, "banned").await;
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM ratings").await, 0);

    let res = app
        .delete("/api/v1/moderation/bans/u-1", Some(&moderator))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    app.comment("a-1", "u-1", "back again", None).await;
    let actions: Vec<Value> = app
        .moderator_get("/api/v1/moderation/log?actor=mod-1")
        .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!([e["action"], e["comment_id"], e["subject_user_id"]]))
        .collect();
    assert_eq!(
        actions,
        vec![json!(["unban", null, "u-1"]), json!(["ban", null, "u-1"])]
    );
}

#[tokio::test]
async fn a_ban_with_purge_rejects_the_users_pending_comments() {
    let app = app_in_pre_mode().await;
    let mine = [
        app.comment("a-1", "u-1", "spam one", None).await,
        app.comment("a-2", "u-1", "spam two", None).await,
    ];
    let other = app.comment("a-1", "u-2", "innocent", None).await;

    let res = app
        .post(
            "/api/v1/moderation/bans",
            Some(&app.moderator("mod-1")),
            &json!({"user_id": "u-1", "reason": "spammer", "purge": true}),
        )
        .await;

    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["purged"], 2);
    for c in &mine {
        let id = c["id"].as_str().unwrap();
        assert_eq!(stored_status(&app, id).await, ("rejected".into(), 2));
        assert_eq!(app.log_of(id).await[0]["action"], "reject");
    }
    assert_eq!(
        stored_status(&app, other["id"].as_str().unwrap()).await.0,
        "pending"
    );
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn bans_expire_by_themselves() {
    let app = spawn_app().await;
    app.db
        .execute_unprepared(
            "INSERT INTO bans (user_id, reason, created_by, created_at, expires_at) \
             VALUES ('u-old', 'long ago', 'mod-1', '2020-01-01T00:00:00Z', '2020-01-02T00:00:00Z')",
        )
        .await
        .unwrap();
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1200)).to_rfc3339();
    let res = app
        .post(
            "/api/v1/moderation/bans",
            Some(&app.moderator("mod-1")),
            &json!({"user_id": "u-short", "reason": "cool off", "expires_at": soon}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let bad = app
        .post(
            "/api/v1/articles/a-1/comments",
            Some(&app.reader("u-short")),
            &json!({"body": "hi"}),
        )
        .await;
    assert_problem(bad, 403, "banned").await;
    let listed = app.moderator_get("/api/v1/moderation/bans").await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "only bans in force: {listed}"
    );

    app.comment("a-1", "u-old", "an expired ban does not apply", None)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    app.comment("a-1", "u-short", "and this one has run out", None)
        .await;
}

#[tokio::test]
async fn banning_again_replaces_the_ban_and_the_list_pages() {
    let app = spawn_app().await;
    let token = app.moderator("mod-1");
    for i in 0..3 {
        let res = app
            .post(
                "/api/v1/moderation/bans",
                Some(&token),
                &json!({"user_id": format!("u-{i}"), "reason": "r"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let res = app
        .post(
            "/api/v1/moderation/bans",
            Some(&token),
            &json!({"user_id": "u-0", "reason": "again"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "a re-ban updates");

    let first = app.moderator_get("/api/v1/moderation/bans?limit=2").await;
    let cursor = first["next_cursor"].as_str().expect("more");
    let second = app
        .moderator_get(&format!("/api/v1/moderation/bans?limit=2&cursor={cursor}"))
        .await;

    let users: Vec<Value> = [&first, &second]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().clone())
        .map(|b| json!([b["user_id"], b["reason"]]))
        .collect();
    assert_eq!(
        users,
        vec![
            json!(["u-0", "again"]),
            json!(["u-2", "r"]),
            json!(["u-1", "r"])
        ]
    );
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM bans").await, 3);
}

#[tokio::test]
async fn bad_bans_are_422_naming_the_field() {
    let app = spawn_app().await;
    let token = app.moderator("mod-1");
    let cases = [
        (json!({"reason": "r"}), "user_id", "missing user"),
        (
            json!({"user_id": "", "reason": "r"}),
            "user_id",
            "empty user",
        ),
        (
            json!({"user_id": "u", "reason": " "}),
            "reason",
            "blank reason",
        ),
        (
            json!({"user_id": "u", "reason": "r", "expires_at": "tomorrow"}),
            "expires_at",
            "not a time",
        ),
        (
            json!({"user_id": "u", "reason": "r", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
            "in the past",
        ),
    ];
    for (body, field, why) in cases {
        let res = app
            .post("/api/v1/moderation/bans", Some(&token), &body)
            .await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec![field], "{why}");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM bans").await, 0);
}

/// How a rule is tripped: the policy, then one post.
struct RuleCase {
    name: &'static str,
    policy: fn(&mut tally::domain::Policy),
    article_mode: Option<&'static str>,
    guest: bool,
    posts: &'static [&'static str],
    status: &'static str,
    reason: &'static str,
}

#[tokio::test]
async fn every_rule_holds_or_rejects_with_its_reason_in_the_queue_and_a_system_log_row() {
    let cases = [
        RuleCase {
            name: "banned word",
            policy: |p| p.banned_words = vec!["scam".into()],
            article_mode: None,
            guest: false,
            posts: &["What a scam"],
            status: "rejected",
            reason: "banned_word:scam",
        },
        RuleCase {
            name: "suspect word",
            policy: |p| p.suspect_words = vec!["casino".into()],
            article_mode: None,
            guest: false,
            posts: &["Best casino"],
            status: "pending",
            reason: "suspect_word:casino",
        },
        RuleCase {
            name: "links",
            policy: |p| p.max_links = 1,
            article_mode: None,
            guest: false,
            posts: &["http://a.example http://b.example"],
            status: "pending",
            reason: "links:2",
        },
        RuleCase {
            name: "repeat post",
            policy: |_| {},
            article_mode: None,
            guest: false,
            posts: &["Same again", "same, AGAIN!"],
            status: "pending",
            reason: "repeat_post",
        },
        RuleCase {
            name: "new author",
            policy: |p| p.trusted_after_approved = 1,
            article_mode: None,
            guest: false,
            posts: &["Hello"],
            status: "pending",
            reason: "new_author:0/1",
        },
        RuleCase {
            name: "site pre-moderation",
            policy: |p| p.moderation_mode = ModerationMode::Pre,
            article_mode: None,
            guest: false,
            posts: &["Hello"],
            status: "pending",
            reason: "pre_moderation",
        },
        RuleCase {
            name: "article pre-moderation",
            policy: |_| {},
            article_mode: Some("pre"),
            guest: false,
            posts: &["Hello"],
            status: "pending",
            reason: "pre_moderation",
        },
        RuleCase {
            name: "guest",
            policy: |p| p.guest_comments = true,
            article_mode: None,
            guest: true,
            posts: &["Hello"],
            status: "pending",
            reason: "guest",
        },
    ];
    for case in cases {
        let app = spawn_app().await;
        app.set_policy(case.policy).await;
        if let Some(mode) = case.article_mode {
            let res = app
                .put(
                    "/api/v1/admin/articles/a-1",
                    Some(&app.admin("admin-1")),
                    &json!({"moderation_mode": mode}),
                )
                .await;
            assert_eq!(res.status(), StatusCode::CREATED, "{}", case.name);
        }
        let mut last = Value::Null;
        for body in case.posts {
            let token = (!case.guest).then(|| app.reader("u-1"));
            let res = app
                .post(
                    "/api/v1/articles/a-1/comments",
                    token.as_deref(),
                    &json!({"body": body, "author_name": "Guest"}),
                )
                .await;
            assert_eq!(res.status(), StatusCode::CREATED, "{}", case.name);
            last = res.json().await.unwrap();
        }
        let id = last["id"].as_str().unwrap();
        assert_eq!(last["status"], case.status, "{}", case.name);

        let queue = app
            .moderator_get(&format!("/api/v1/moderation/queue?queue={}", case.status))
            .await;
        let item = queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["comment"]["id"] == id)
            .unwrap_or_else(|| panic!("{}: not in the {} queue", case.name, case.status));
        let reasons = item["auto_moderation"]["reasons"].as_array().unwrap();
        assert!(
            reasons.contains(&json!(case.reason)),
            "{}: {reasons:?}",
            case.name
        );
        assert!(item["auto_moderation"]["score"].as_f64().unwrap() >= 0.0);
        let log = app.log_of(id).await;
        assert_eq!(log.len(), 1, "{}", case.name);
        assert_eq!(log[0]["actor"]["id"], "system", "{}", case.name);
        assert_eq!(log[0]["to_status"], case.status, "{}", case.name);
        assert!(
            log[0]["reason"].as_str().unwrap().contains(case.reason),
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn counters_equal_recounts_after_a_random_mix_of_operations() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let app = spawn_app_with(|_| {}).await;
    app.set_policy(|p| {
        p.flag_threshold = 2;
        p.suspect_words = vec!["maybe".into()];
    })
    .await;
    let mut rng = StdRng::seed_from_u64(0x7a11);
    let mut comments: Vec<(String, String)> = vec![];
    for step in 0..120 {
        let user = format!("u-{}", rng.random_range(0..5));
        let pick =
            (!comments.is_empty()).then(|| comments[rng.random_range(0..comments.len())].clone());
        match (rng.random_range(0..6), pick) {
            (0 | 1, _) | (_, None) => {
                let article = format!("a-{}", rng.random_range(0..3));
                let body = if rng.random_bool(0.3) {
                    format!("maybe {step}")
                } else {
                    format!("text {step}")
                };
                let res = app
                    .post(
                        &format!("/api/v1/articles/{article}/comments"),
                        Some(&app.reader(&user)),
                        &json!({"body": body}),
                    )
                    .await;
                let c: Value = res.json().await.unwrap();
                if let Some(id) = c["id"].as_str() {
                    comments.push((id.to_owned(), user));
                }
            }
            (2, Some((parent, _))) => {
                let res = app.get(&format!("/api/v1/comments/{parent}"), None).await;
                if res.status() == StatusCode::OK {
                    let p: Value = res.json().await.unwrap();
                    let article = p["article_id"].as_str().unwrap().to_owned();
                    let res = app
                        .post(
                            &format!("/api/v1/articles/{article}/comments"),
                            Some(&app.reader(&user)),
                            &json!({"body": format!("reply {step}"), "parent_id": parent}),
                        )
                        .await;
                    if let Some(id) = res.json::<Value>().await.unwrap()["id"].as_str() {
                        comments.push((id.to_owned(), user));
                    }
                }
            }
            (3, Some((id, _))) => {
                let action = ["approve", "reject", "spam"][rng.random_range(0..3)];
                app.decide("mod-1", &id, &json!({"action": action})).await;
            }
            (4, Some((id, _))) => {
                app.flag(&id, &user, "spam").await;
            }
            (_, Some((id, author))) => {
                app.delete(
                    &format!("/api/v1/comments/{id}"),
                    Some(&app.reader(&author)),
                )
                .await;
            }
        }
    }
    assert!(comments.len() > 20, "the mix made comments");
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_repeated_text_waits_on_the_same_or_a_new_article_and_a_ban_holds_on_new_articles() {
    let app = spawn_app().await;
    let first = app
        .comment("a-1", "u-1", "Great piece, read it twice!", None)
        .await;
    assert_eq!(first["status"], "approved");
    // The same words again (case and punctuation aside), on the same article: held.
    let again = app
        .comment("a-1", "u-1", "great piece read it twice", None)
        .await;
    assert_eq!(again["status"], "pending", "{again}");
    // And on an article nobody wrote to yet (it is created by this comment).
    let elsewhere = app
        .comment("a-new", "u-1", "Great piece, read it twice", None)
        .await;
    assert_eq!(elsewhere["status"], "pending", "{elsewhere}");
    let reasons = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM comments WHERE id IN ('{}', '{}') AND auto_reasons LIKE '%repeat_post%'",
            again["id"].as_str().unwrap(),
            elsewhere["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reasons, 2);
    // Someone else's same words are no repeat.
    let other = app
        .comment("a-1", "u-2", "Great piece, read it twice!", None)
        .await;
    assert_eq!(other["status"], "approved");

    let moderator = app.moderator("mod-1");
    let res = app
        .post(
            "/api/v1/moderation/bans",
            Some(&moderator),
            &json!({"user_id": "u-1", "reason": "repeats"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let reader = app.reader("u-1");
    for res in [
        app.post(
            "/api/v1/articles/never-written/comments",
            Some(&reader),
            &json!({"body": "hi"}),
        )
        .await,
        app.put(
            "/api/v1/articles/never-written/ratings/me",
            Some(&reader),
            &json!({"stars": 5}),
        )
        .await,
    ] {
        assert_problem(res, 403, "banned").await;
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM articles WHERE id = 'never-written'")
            .await,
        0,
        "a refused write creates no article"
    );
    app.assert_counters_match_recounts().await;
}
