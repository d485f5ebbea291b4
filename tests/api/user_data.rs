//! A reader's own data: `GET`/`DELETE /api/v1/me/data` and the admin forms. Erasure
//! removes or tombstones their comments, removes their ratings, votes and flags, keeps
//! every counter equal to a recount, leaves nothing of them in any public or moderator
//! answer, and keeps their bans.

use futures_util::{stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use tally::{
    config::Settings,
    service::write::events::{self, Event},
};

use crate::helpers::{
    assert_problem, error_fields, spawn_app, spawn_app_with, spawn_peer, PeerApp, TestApp,
};

/// A user id and a word no other text of the tests contains, so any answer still
/// holding them is found by a substring search.
const EVE: &str = "eve-7f3a";
const EVE_NAME: &str = "Name of eve-7f3a";
const SECRET: &str = "zanzibarquux";

async fn json_of(res: reqwest::Response, what: &str) -> Value {
    assert_eq!(res.status(), StatusCode::OK, "{what}");
    res.json().await.unwrap()
}

async fn my_data(app: &TestApp, user: &str) -> Value {
    json_of(
        app.get("/api/v1/me/data", Some(&app.reader(user))).await,
        "GET /me/data",
    )
    .await
}

async fn erase(app: &TestApp, user: &str) -> Value {
    json_of(
        app.delete("/api/v1/me/data", Some(&app.reader(user))).await,
        "DELETE /me/data",
    )
    .await
}

async fn vote(app: &TestApp, user: &str, comment_id: &str, v: &str) -> StatusCode {
    app.put(
        &format!("/api/v1/comments/{comment_id}/vote"),
        Some(&app.reader(user)),
        &json!({"vote": v}),
    )
    .await
    .status()
}

async fn review(app: &TestApp, article: &str, user: &str, stars: i64, text: &str) -> Value {
    let res = app
        .put(
            &format!("/api/v1/articles/{article}/ratings/me"),
            Some(&app.reader(user)),
            &json!({"stars": stars, "review": text}),
        )
        .await;
    assert!(res.status().is_success(), "review PUT: {}", res.status());
    res.json().await.unwrap()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Every article's kept rating counters and the site's totals equal a recount.
async fn assert_rating_counters_match_recounts(app: &TestApp) {
    // The spam model is compared with the lessons once the decisions' changes are in.
    app.spam_model_folded().await;
    let checks = [
        (
            "articles.rating_count / rating_sum",
            "SELECT COUNT(*) FROM articles a WHERE a.rating_count <> \
             (SELECT COUNT(*) FROM ratings r WHERE r.article_id = a.id) \
             OR a.rating_sum <> (SELECT COALESCE(SUM(r.stars), 0) FROM ratings r \
             WHERE r.article_id = a.id)"
                .to_owned(),
        ),
        (
            "articles.stars_N",
            (1..=5)
                .map(|s| {
                    format!(
                        "(SELECT COUNT(*) FROM articles a WHERE a.stars_{s} <> \
                         (SELECT COUNT(*) FROM ratings r WHERE r.article_id = a.id \
                         AND r.stars = {s}))"
                    )
                })
                .collect::<Vec<_>>()
                .join(" + "),
        ),
        (
            "spam model totals",
            "SELECT (SELECT spam_docs + ham_docs FROM spam_model) - \
             (SELECT COUNT(*) FROM spam_lessons)"
                .to_owned(),
        ),
    ];
    for (what, sql) in checks {
        assert_eq!(app.scalar(&sql).await, 0, "{what} differs from a recount");
    }
}

/// Eve's world: her comments (one answered by bob, one not, one answered only by
/// herself, a reply under bob's), a review with its rating, a vote and flags on bob's
/// comments, a decision on one of hers (the spam model learns it), a comment she
/// deleted herself, and a ban.
struct World {
    answered: String,
    bob_reply: String,
    lonely: String,
    bob_comment: String,
    bob_flagged: String,
}

async fn eves_world(app: &TestApp) -> World {
    let answered = id(&app
        .comment("a-1", EVE, &format!("{SECRET} first thoughts"), None)
        .await);
    let bob_reply = id(&app
        .comment("a-1", "bob", "I disagree", Some(&answered))
        .await);
    let lonely = id(&app
        .comment("a-1", EVE, &format!("{SECRET} nobody answers"), None)
        .await);
    let own_thread = id(&app
        .comment("a-2", EVE, &format!("{SECRET} a thread"), None)
        .await);
    app.comment(
        "a-2",
        EVE,
        &format!("{SECRET} my own reply"),
        Some(&own_thread),
    )
    .await;
    let bob_comment = id(&app.comment("a-1", "bob", "Bob speaks", None).await);
    app.comment(
        "a-1",
        EVE,
        &format!("{SECRET} answering bob"),
        Some(&bob_comment),
    )
    .await;
    let bob_flagged = id(&app.comment("a-1", "bob", "Bob again", None).await);
    review(app, "a-1", EVE, 2, &format!("{SECRET} review text")).await;
    app.rate("a-2", EVE, 5).await;
    app.rate("a-1", "bob", 4).await;
    assert_eq!(vote(app, EVE, &bob_comment, "up").await, StatusCode::OK);
    assert_eq!(
        vote(app, "carol", &bob_comment, "down").await,
        StatusCode::OK
    );
    assert_eq!(vote(app, "carol", &answered, "up").await, StatusCode::OK);
    assert_eq!(
        app.flag(&bob_flagged, EVE, "spam").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.flag(&bob_flagged, "carol", "abuse").await.status(),
        StatusCode::CREATED
    );
    // A flag of hers a moderator settled, and a flag on one of her comments.
    assert_eq!(
        app.flag(&bob_comment, EVE, "other").await.status(),
        StatusCode::CREATED
    );
    let approve = app
        .decide("mod-1", &bob_comment, &json!({"action": "approve"}))
        .await;
    assert_eq!(approve.status(), StatusCode::OK);
    assert_eq!(
        app.flag(&answered, "carol", "spam").await.status(),
        StatusCode::CREATED
    );
    // The model learns from a decision on her comment.
    let spam = app
        .decide("mod-1", &lonely, &json!({"action": "spam"}))
        .await;
    assert_eq!(spam.status(), StatusCode::OK);
    let deleted = id(&app
        .comment("a-2", EVE, &format!("{SECRET} taken back"), None)
        .await);
    let res = app
        .delete(
            &format!("/api/v1/comments/{deleted}"),
            Some(&app.reader(EVE)),
        )
        .await;
    assert!(res.status().is_success(), "author delete");
    let ban = app
        .post(
            "/api/v1/moderation/bans",
            Some(&app.moderator("mod-1")),
            &json!({"user_id": EVE, "reason": "trolling"}),
        )
        .await;
    assert!(ban.status().is_success(), "ban: {}", ban.status());
    World {
        answered,
        bob_reply,
        lonely,
        bob_comment,
        bob_flagged,
    }
}

#[tokio::test]
async fn your_data_is_everything_stored_about_you_even_when_banned() {
    let app = spawn_app().await;
    let w = eves_world(&app).await;

    let data = my_data(&app, EVE).await;

    assert_eq!(data["user_id"], EVE);
    let comments = data["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 6, "every comment in any status: {data}");
    let statuses: Vec<&str> = comments
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    for s in ["approved", "spam", "deleted"] {
        assert!(
            statuses.contains(&s),
            "a {s} comment is listed: {statuses:?}"
        );
    }
    assert!(
        comments
            .iter()
            .all(|c| c["body"].as_str().unwrap().contains(SECRET)),
        "with their text, also the deleted one"
    );
    assert_eq!(data["reviews"].as_array().unwrap().len(), 1);
    assert_eq!(data["reviews"][0]["stars"], 2);
    let mut rated: Vec<(String, i64)> = data["ratings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["article_id"].as_str().unwrap().to_owned(),
                r["stars"].as_i64().unwrap(),
            )
        })
        .collect();
    rated.sort();
    assert_eq!(rated, vec![("a-1".into(), 2), ("a-2".into(), 5)]);
    assert_eq!(
        data["votes"],
        json!([{
            "comment_id": w.bob_comment, "vote": "up",
            "created_at": data["votes"][0]["created_at"], "updated_at": data["votes"][0]["updated_at"],
        }])
    );
    let flags = data["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2);
    assert_eq!(
        flags.iter().filter(|f| f["resolved_at"].is_null()).count(),
        1,
        "one unresolved, one settled: {flags:?}"
    );
    assert_eq!(data["bans"][0]["reason"], "trolling");

    let as_admin = json_of(
        app.get(
            &format!("/api/v1/admin/users/{EVE}/data"),
            Some(&app.admin("root")),
        )
        .await,
        "admin GET",
    )
    .await;
    assert_eq!(as_admin, data, "the admin form reads the same document");
    let nobody = json_of(
        app.get("/api/v1/admin/users/nobody/data", Some(&app.admin("root")))
            .await,
        "admin GET of an unknown user",
    )
    .await;
    assert_eq!(
        nobody,
        json!({"user_id": "nobody", "comments": [], "reviews": [], "ratings": [],
               "flags": [], "votes": [], "bans": []})
    );
}

#[tokio::test]
async fn your_data_needs_a_token_and_another_users_an_admin() {
    let app = spawn_app().await;
    let cases: [(Method, &str, Option<String>, u16, &str); 8] = [
        (Method::GET, "/api/v1/me/data", None, 401, "unauthorized"),
        (Method::DELETE, "/api/v1/me/data", None, 401, "unauthorized"),
        (
            Method::GET,
            "/api/v1/admin/users/u-1/data",
            Some(app.reader("u-1")),
            403,
            "forbidden",
        ),
        (
            Method::DELETE,
            "/api/v1/admin/users/u-1/data",
            Some(app.moderator("m-1")),
            403,
            "forbidden",
        ),
        (
            Method::GET,
            "/api/v1/admin/users/u-1/data",
            None,
            401,
            "unauthorized",
        ),
        (
            Method::DELETE,
            "/api/v1/admin/users/u-1/data",
            None,
            401,
            "unauthorized",
        ),
        (
            Method::GET,
            "/api/v1/admin/users/a%00b/data",
            Some(app.admin("root")),
            400,
            "bad_request",
        ),
        (
            Method::DELETE,
            &format!("/api/v1/admin/users/{}/data", "x".repeat(161)),
            Some(app.admin("root")),
            400,
            "bad_request",
        ),
    ];
    for (method, path, token, status, code) in cases {
        let res = app
            .request(method.clone(), path, token.as_deref())
            .send()
            .await
            .unwrap();
        let problem = assert_problem(res, status, code).await;
        if status == 400 {
            assert_eq!(error_fields(&problem), vec!["user_id"], "{method} {path}");
        }
    }
}

/// The texts of every public and moderator answer that could show a comment, a
/// rating, a flag, a vote or a log entry.
async fn every_answer(app: &TestApp, w: &World) -> Vec<(String, String)> {
    let mut paths: Vec<String> = vec![
        "/api/v1/articles/a-1/comments".into(),
        "/api/v1/articles/a-2/comments".into(),
        "/api/v1/articles/a-1/comments?sort=best".into(),
        "/api/v1/articles/a-1/reviews".into(),
        format!("/api/v1/comments/{}/replies", w.answered),
        format!("/api/v1/comments/{}/replies", w.bob_comment),
        format!("/api/v1/comments/{}", w.answered),
        "/api/v1/articles/a-1".into(),
        "/api/v1/ratings/top?min_count=1".into(),
        "/api/v1/moderation/log?limit=100".into(),
        "/api/v1/moderation/metrics".into(),
        "/api/v1/moderation/stats".into(),
    ];
    for q in ["pending", "approved", "rejected", "spam", "flagged"] {
        paths.push(format!("/api/v1/moderation/queue?queue={q}&limit=100"));
    }
    let token = app.moderator("mod-1");
    let mut out = Vec::new();
    for p in paths {
        for t in [None, Some(token.as_str())] {
            let res = app.get(&p, t).await;
            let status = res.status();
            let body = res.text().await.unwrap();
            assert!(
                status == StatusCode::OK || (t.is_none() && status == StatusCode::UNAUTHORIZED),
                "GET {p}: {status} {body}"
            );
            out.push((p.clone(), body));
        }
    }
    out
}

#[tokio::test]
async fn erasure_leaves_tombstones_only_and_every_counter_follows() {
    let app = spawn_app().await;
    let w = eves_world(&app).await;
    // Warm the caches: the aggregate, the pages, the overlay of the signed-in reader.
    let before = app.get_json("/api/v1/articles/a-1/rating").await;
    assert_eq!(before["count"], 2, "{before}");
    app.get_json("/api/v1/articles/a-1/comments").await;
    app.get("/api/v1/articles/a-1/comments", Some(&app.reader("bob")))
        .await;
    let answers = every_answer(&app, &w).await;
    assert!(
        answers.iter().any(|(_, b)| b.contains(SECRET))
            && answers.iter().any(|(_, b)| b.contains(EVE)),
        "the search finds her before the erasure"
    );

    // Banned, she may still erase.
    let erased = erase(&app, EVE).await;

    assert_eq!(
        erased,
        json!({"comments": 7, "ratings": 2, "flags": 2, "votes": 1}),
        "six comments (the one she deleted too) and the review"
    );
    app.assert_counters_match_recounts().await;
    assert_rating_counters_match_recounts(&app).await;
    for (path, body) in every_answer(&app, &w).await {
        for needle in [EVE, EVE_NAME, SECRET] {
            assert!(
                !body.contains(needle),
                "GET {path} still holds {needle:?}: {body}"
            );
        }
    }
    // Only the answered comment stays, as a tombstone holding bob's reply.
    let page = app.get_json("/api/v1/articles/a-1/comments").await;
    let tomb = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == w.answered.as_str())
        .expect("the tombstone keeps its place")
        .clone();
    assert_eq!(
        (
            tomb["status"].clone(),
            tomb["body"].clone(),
            tomb["author"].clone(),
            tomb["owner"].clone()
        ),
        (json!("deleted"), json!(""), Value::Null, Value::Null),
        "{tomb}"
    );
    let replies = app
        .get_json(&format!("/api/v1/comments/{}/replies", w.answered))
        .await;
    assert_eq!(replies["items"][0]["id"], w.bob_reply.as_str());
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM comments WHERE id = '{}'",
            w.lonely
        ))
        .await,
        0,
        "a comment nobody answered is gone"
    );
    // The cached aggregate was retired: bob's 4 stars alone.
    let after = app.get_json("/api/v1/articles/a-1/rating").await;
    assert_eq!(
        (after["count"].clone(), after["average"].clone()),
        (json!(1), json!(4.0)),
        "{after}"
    );
    // The top list was cached with her ratings (a-2 had hers alone); it is read again.
    let top = app.get_json("/api/v1/ratings/top?min_count=1").await;
    let rated: Vec<(Value, Value)> = top["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["rating"]["article_id"].clone(),
                i["rating"]["count"].clone(),
            )
        })
        .collect();
    assert_eq!(rated, vec![(json!("a-1"), json!(1))], "{top}");
    assert_eq!(top["prior"]["mean"], 4.0, "{top}");
    // Rows: nothing of hers but the ban; log rows stay, anonymised.
    for (what, sql) in [
        ("comments", "SELECT COUNT(*) FROM comments WHERE author_id = '{u}' OR author_name = '{n}' OR body LIKE '%{s}%'"),
        ("ratings", "SELECT COUNT(*) FROM ratings WHERE user_id = '{u}'"),
        ("votes", "SELECT COUNT(*) FROM comment_votes WHERE user_id = '{u}'"),
        ("flags", "SELECT COUNT(*) FROM flags WHERE user_id = '{u}'"),
        ("flagger record", "SELECT COUNT(*) FROM flagger_records WHERE user_id = '{u}'"),
        ("author counts", "SELECT COUNT(*) FROM author_counts WHERE author_id = '{u}'"),
        ("log", "SELECT COUNT(*) FROM moderation_log WHERE actor_id = '{u}' OR actor_name = '{n}' OR subject_user_id = '{u}'"),
        ("idempotency", "SELECT COUNT(*) FROM idempotency_keys WHERE scope = 'user:{u}'"),
        ("spam lessons", "SELECT COUNT(*) FROM spam_lessons WHERE tokens LIKE '%{s}%'"),
        ("spam tokens", "SELECT COUNT(*) FROM spam_tokens WHERE token = '{s}' AND spam + ham > 0"),
    ] {
        let sql = sql.replace("{u}", EVE).replace("{n}", EVE_NAME).replace("{s}", SECRET);
        assert_eq!(app.scalar(&sql).await, 0, "{what} still hold her");
    }
    assert!(
        app.scalar("SELECT COUNT(*) FROM moderation_log WHERE subject_user_id = 'erased'")
            .await
            >= 3,
        "her log rows stay (decision, deletion, ban)"
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM bans WHERE user_id = '{EVE}'"
        ))
        .await,
        1,
        "the ban stays"
    );
    // Carol's flag on the tombstone was settled, bob's comments lost her vote and flag.
    let bob = app
        .get_json(&format!("/api/v1/comments/{}", w.bob_comment))
        .await;
    assert_eq!(bob["votes"], json!({"up": 0, "down": 1}));
    assert_eq!(
        app.scalar(&format!(
            "SELECT CAST(flag_count AS BIGINT) FROM comments WHERE id = '{}'",
            w.bob_flagged
        ))
        .await,
        1,
        "carol's flag alone"
    );

    let data = my_data(&app, EVE).await;
    assert_eq!(data["bans"].as_array().unwrap().len(), 1);
    for kind in ["comments", "reviews", "ratings", "flags", "votes"] {
        assert_eq!(data[kind], json!([]), "{kind} after the erasure");
    }
    let again = erase(&app, EVE).await;
    assert_eq!(
        again,
        json!({"comments": 0, "ratings": 0, "flags": 0, "votes": 0})
    );
}

#[tokio::test]
async fn an_admin_erases_a_users_data() {
    let app = spawn_app().await;
    let c = id(&app.comment("a-1", EVE, SECRET, None).await);
    app.rate("a-1", EVE, 3).await;

    let res = app
        .delete(
            &format!("/api/v1/admin/users/{EVE}/data"),
            Some(&app.admin("root")),
        )
        .await;

    let body = json_of(res, "admin DELETE").await;
    assert_eq!(
        body,
        json!({"comments": 1, "ratings": 1, "flags": 0, "votes": 0})
    );
    let res = app.get(&format!("/api/v1/comments/{c}"), None).await;
    assert_problem(res, 404, "not_found").await;
    assert_eq!(
        app.get_json("/api/v1/articles/a-1/rating").await["count"],
        0
    );
    app.assert_counters_match_recounts().await;
    assert_rating_counters_match_recounts(&app).await;
}

/// `n` comments by bob over articles `a-0` … `a-{articles - 1}`: their ids.
async fn bobs_comments(app: &TestApp, n: usize, articles: usize) -> Vec<String> {
    stream::iter(0..n)
        .then(|i| async move {
            id(&app
                .comment(
                    &format!("a-{}", i % articles),
                    "bob",
                    &format!("Bob text {i}"),
                    None,
                )
                .await)
        })
        .collect()
        .await
}

#[tokio::test]
async fn an_erasure_racing_the_users_own_votes_and_ratings_keeps_counters_exact() {
    let owned = spawn_app().await;
    let app = &owned;
    let targets = bobs_comments(app, 6, 3).await;
    for round in 0..3 {
        let mut ops: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>> =
            Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let v = if (i + round) % 2 == 0 { "up" } else { "down" };
            ops.push(Box::pin(async move {
                let s = vote(app, EVE, t, v).await;
                assert_eq!(s, StatusCode::OK, "vote");
            }));
        }
        for a in 0..6 {
            let stars = 1 + ((a + round) % 5) as i64;
            ops.push(Box::pin(async move {
                review(app, &format!("a-{a}"), EVE, stars, &format!("{SECRET} {a}")).await;
            }));
        }
        for r in 0..2 {
            ops.push(Box::pin(async move {
                let c = app
                    .comment("a-1", EVE, &format!("{SECRET} {round} {r}"), None)
                    .await;
                let _ = vote(app, "bob", c["id"].as_str().unwrap(), "up").await;
            }));
        }
        ops.insert(
            7,
            Box::pin(async move {
                erase(app, EVE).await;
            }),
        );
        stream::iter(ops)
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;

        app.assert_counters_match_recounts().await;
        assert_rating_counters_match_recounts(app).await;
    }
    erase(app, EVE).await;
    app.assert_counters_match_recounts().await;
    assert_rating_counters_match_recounts(app).await;
    let left = app
        .scalar(&format!(
            "SELECT (SELECT COUNT(*) FROM comments WHERE author_id = '{EVE}') \
             + (SELECT COUNT(*) FROM ratings WHERE user_id = '{EVE}') \
             + (SELECT COUNT(*) FROM comment_votes WHERE user_id = '{EVE}')"
        ))
        .await;
    assert_eq!(left, 0, "a last erasure leaves nothing");
}

/// Many of the user's own opposite moves (each of their votes turned over) waiting on the
/// comment locks an erasure holds: a vote that read the user's vote from before the
/// erasure committed must not count it as there (PostgreSQL reads it in the locking
/// statement's snapshot). Every round, counters equal a recount.
#[tokio::test]
async fn an_erasure_holding_the_comment_locks_while_the_user_turns_votes_over_keeps_counters_exact()
{
    let owned = spawn_app().await;
    let app = &owned;
    let targets = bobs_comments(app, 12, 4).await;
    for round in 0..6 {
        let (first, then) = if round % 2 == 0 {
            ("up", "down")
        } else {
            ("down", "up")
        };
        stream::iter(&targets)
            .for_each_concurrent(12, |t| async move {
                assert_eq!(vote(app, EVE, t, first).await, StatusCode::OK, "vote");
            })
            .await;
        let mut ops: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>> =
            vec![Box::pin(async move {
                erase(app, EVE).await;
            })];
        for t in &targets {
            ops.push(Box::pin(async move {
                assert_eq!(vote(app, EVE, t, then).await, StatusCode::OK, "turn over");
            }));
        }
        stream::iter(ops)
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        app.assert_counters_match_recounts().await;
    }
}

/// The property names of the schema `name` in the spec, sorted.
fn properties(spec: &Value, name: &str) -> Vec<String> {
    let s = &spec["components"]["schemas"][name];
    assert!(s.is_object(), "schema {name}");
    let mut keys: Vec<String> = s["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has properties"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn the_spec_describes_the_documents_as_they_are_sent() {
    let app = spawn_app().await;
    eves_world(&app).await;
    let data = my_data(&app, EVE).await;
    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();

    for (schema, sample) in [
        ("UserData", &data),
        ("DataComment", &data["comments"][0]),
        ("DataComment", &data["reviews"][0]),
        ("DataRating", &data["ratings"][0]),
        ("DataFlag", &data["flags"][0]),
        ("DataVote", &data["votes"][0]),
        ("DataBan", &data["bans"][0]),
    ] {
        assert_eq!(properties(&spec, schema), keys(sample), "{schema}");
    }
    assert_ne!(
        properties(&spec, "MyRating"),
        properties(&spec, "DataRating"),
        "the rating PUT's own schema is not replaced"
    );
    let erased = erase(&app, EVE).await;
    assert_eq!(properties(&spec, "Erased"), keys(&erased));
    for (method, path, statuses) in [
        ("get", "/api/v1/me/data", &["200", "401", "500", "503"][..]),
        (
            "delete",
            "/api/v1/me/data",
            &["200", "401", "500", "503"][..],
        ),
        (
            "get",
            "/api/v1/admin/users/{user_id}/data",
            &["200", "400", "401", "403", "500", "503"][..],
        ),
        (
            "delete",
            "/api/v1/admin/users/{user_id}/data",
            &["200", "400", "401", "403", "500", "503"][..],
        ),
    ] {
        let op = &spec["paths"][path][method];
        assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
        assert_eq!(keys(&op["responses"]), statuses.to_vec(), "{method} {path}");
    }
}

#[tokio::test]
async fn an_answered_review_stays_as_a_tombstone_without_stars() {
    let app = spawn_app().await;
    let put = review(&app, "a-1", EVE, 5, &format!("{SECRET} five stars")).await;
    let review_id = put["review"]["id"].as_str().unwrap().to_owned();
    app.comment("a-1", "bob", "Do you work for them?", Some(&review_id))
        .await;
    app.rate("a-1", "bob", 1).await;

    let erased = erase(&app, EVE).await;

    assert_eq!(
        erased,
        json!({"comments": 1, "ratings": 1, "flags": 0, "votes": 0})
    );
    let reviews = app.get_json("/api/v1/articles/a-1/reviews").await;
    let tomb = &reviews["items"][0];
    assert_eq!(tomb["id"], review_id.as_str(), "{reviews}");
    assert_eq!(
        (
            tomb["status"].clone(),
            tomb["body"].clone(),
            tomb["author"].clone(),
            tomb["stars"].clone()
        ),
        (json!("deleted"), json!(""), Value::Null, Value::Null),
        "{tomb}"
    );
    assert!(!reviews.to_string().contains(EVE), "{reviews}");
    let agg = app.get_json("/api/v1/articles/a-1/rating").await;
    assert_eq!(
        (agg["count"].clone(), agg["average"].clone()),
        (json!(1), json!(1.0))
    );
    app.assert_counters_match_recounts().await;
    assert_rating_counters_match_recounts(&app).await;
}

/// The outbox's events after id `after`, as `Event`s.
async fn events_after(app: &TestApp, after: i64) -> Vec<Event> {
    events::read_after(&app.db, after, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

#[tokio::test]
async fn an_erasure_records_what_it_changed_as_events() {
    let app = spawn_app().await;
    let bob = id(&app.comment("a-1", "bob", "Bob speaks", None).await);
    let mine = id(&app.comment("a-1", EVE, SECRET, None).await);
    let spam = app.decide("mod-1", &mine, &json!({"action": "spam"})).await;
    assert_eq!(spam.status(), StatusCode::OK);
    // The decision's own fold (its SpamModelChanged) is done before `before`.
    app.spam_model_folded().await;
    app.rate("a-2", EVE, 4).await;
    assert_eq!(vote(&app, EVE, &bob, "up").await, StatusCode::OK);
    let before = events::last_id(&app.db).await.unwrap();

    erase(&app, EVE).await;

    let recorded = events_after(&app, before).await;
    assert_eq!(
        recorded,
        vec![
            Event::RatingChanged {
                article_id: "a-2".into(),
                user_id: EVE.into(),
                stars: None,
            },
            Event::VoteChanged {
                comment_id: bob.clone(),
                article_id: "a-1".into(),
                user_id: EVE.into(),
                vote: 0,
            },
            Event::CommentStatusChanged {
                comment_id: mine.clone(),
                article_id: "a-1".into(),
                from: "spam".into(),
                to: "deleted".into(),
                actor_id: EVE.into(),
                actor_name: "erased".into(),
            },
            Event::UserDataErased {
                user_id: EVE.into(),
                actor_id: EVE.into(),
            },
            // The fold of the lesson it took back, after its COMMIT, before its answer.
            Event::SpamModelChanged,
        ],
        "in the order the erasure made them"
    );

    // An admin's erasure names the admin; an erasure of nothing still says so.
    let c = id(&app.comment("a-1", "carol", "Carol speaks", None).await);
    let before = events::last_id(&app.db).await.unwrap();
    let res = app
        .delete("/api/v1/admin/users/carol/data", Some(&app.admin("root")))
        .await;
    json_of(res, "admin DELETE").await;
    let recorded = events_after(&app, before).await;
    let status = json!(recorded[0]);
    assert_eq!(
        (
            status["type"].clone(),
            status["comment_id"].clone(),
            status["actor_id"].clone(),
            status["to"].clone()
        ),
        (
            json!("comment_status_changed"),
            json!(c),
            json!("root"),
            json!("deleted")
        ),
        "{recorded:?}"
    );
    assert_eq!(
        recorded.last(),
        Some(&Event::UserDataErased {
            user_id: "carol".into(),
            actor_id: "root".into(),
        })
    );
    let before = events::last_id(&app.db).await.unwrap();
    erase(&app, "nobody").await;
    assert_eq!(
        events_after(&app, before).await,
        vec![Event::UserDataErased {
            user_id: "nobody".into(),
            actor_id: "nobody".into(),
        }]
    );
}

/// Waits (at most 10 s) until `$cond` holds: far less than any cache's lifetime here.
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !$cond {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: not visible through the other instance",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

async fn peer_json(app: &TestApp, peer: &PeerApp, path: &str) -> Value {
    let res = app.client.get(peer.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "GET {path} through the peer");
    res.json().await.unwrap()
}

/// The top list's (article, count) pairs.
fn top_counts(top: &Value) -> Vec<(Value, Value)> {
    top["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["rating"]["article_id"].clone(),
                i["rating"]["count"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_erasure_through_one_instance_shows_through_another_at_once() {
    // Caches that outlive the test: only the erasure's events can retire them (the top
    // list keeps answers a minute). On SQLite the peer polls the outbox, on PostgreSQL
    // it LISTENs.
    let long_lived = |s: &mut Settings| {
        s.aggregate_cache_ttl_ms = 600_000;
        s.page_cache_ttl_ms = 600_000;
    };
    let app = spawn_app_with(long_lived).await;
    let peer = spawn_peer(&app, long_lived).await;
    app.comment("a-1", EVE, SECRET, None).await;
    app.rate("a-1", EVE, 2).await;
    app.rate("a-1", "bob", 4).await;
    app.rate("a-2", EVE, 5).await;
    // Warm the peer's caches with her data.
    assert_eq!(
        peer_json(&app, &peer, "/api/v1/articles/a-1/rating").await["count"],
        2
    );
    let page = peer_json(&app, &peer, "/api/v1/articles/a-1/comments").await;
    assert!(page.to_string().contains(SECRET), "{page}");
    let top = peer_json(&app, &peer, "/api/v1/ratings/top?min_count=1").await;
    assert_eq!(top_counts(&top).len(), 2, "{top}");

    erase(&app, EVE).await;

    eventually!("the aggregate", {
        peer_json(&app, &peer, "/api/v1/articles/a-1/rating").await["count"] == 1
    });
    eventually!("the page", {
        !peer_json(&app, &peer, "/api/v1/articles/a-1/comments")
            .await
            .to_string()
            .contains(SECRET)
    });
    eventually!("the top list", {
        top_counts(&peer_json(&app, &peer, "/api/v1/ratings/top?min_count=1").await)
            == vec![(json!("a-1"), json!(1))]
    });
}
