//! Reviews and votes: the review on the rating PUT, the reviews listing, helpful votes,
//! `sort=best` (Wilson lower bound), the `verified` claim and `GET /ratings/top`.

use futures_util::{stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tally::domain::{wilson_lower_bound, ModerationMode};

use crate::helpers::{assert_problem, error_fields, spawn_app, TestApp, SECRET};

const A: &str = "why-back-cracks";

fn me(article: &str) -> String {
    format!("/api/v1/articles/{article}/ratings/me")
}

async fn review(app: &TestApp, user: &str, stars: i64, text: Option<&str>) -> Value {
    let res = app
        .put(
            &me(A),
            Some(&app.reader(user)),
            &json!({"stars": stars, "review": text}),
        )
        .await;
    assert!(res.status().is_success(), "review PUT: {}", res.status());
    res.json().await.unwrap()
}

async fn page(app: &TestApp, path: &str) -> Value {
    let res = app.get(path, None).await;
    assert_eq!(res.status(), StatusCode::OK, "GET {path}");
    res.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn summary(app: &TestApp) -> Value {
    page(app, &format!("/api/v1/articles/{A}")).await
}

fn vote_path(id: &str) -> String {
    format!("/api/v1/comments/{id}/vote")
}

async fn vote(app: &TestApp, user: &str, id: &str, v: &str) -> Value {
    let res = app
        .put(&vote_path(id), Some(&app.reader(user)), &json!({"vote": v}))
        .await;
    assert_eq!(res.status(), StatusCode::OK, "vote");
    res.json().await.unwrap()
}

/// A reader token with the `verified` claim.
fn verified_token(sub: &str) -> String {
    let claims = json!({"sub": sub, "name": "Vera", "role": "reader", "verified": true,
        "exp": chrono::Utc::now().timestamp() + 600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_review_is_written_edited_follows_the_stars_and_is_removed_through_the_rating() {
    let app = spawn_app().await;
    // Add.
    let res = app
        .put(
            &me(A),
            Some(&app.reader("u-1")),
            &json!({"stars": 4, "review": "  Clear and practical.  "}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    let r = &body["review"];
    assert_eq!(r["kind"], "review");
    assert_eq!(r["stars"], 4);
    assert_eq!(r["body"], "Clear and practical.");
    assert_eq!(r["status"], "approved");
    assert_eq!(r["parent_id"], Value::Null);
    assert_eq!(r["verified"], false);
    assert_eq!(r["votes"], json!({"up": 0, "down": 0}));
    assert_eq!(r["my_vote"], Value::Null);
    assert_eq!(body["rating"]["count"], 1);
    let id = r["id"].as_str().unwrap().to_owned();

    let reviews = page(&app, &format!("/api/v1/articles/{A}/reviews")).await;
    assert_eq!(ids(&reviews), vec![id.clone()]);
    assert_eq!(reviews["total"], 1);
    let comments = page(&app, &format!("/api/v1/articles/{A}/comments")).await;
    assert_eq!(
        comments["total"], 0,
        "reviews are not in the comments listing"
    );
    assert!(ids(&comments).is_empty());
    let s = summary(&app).await;
    assert_eq!(
        (s["comment_count"].clone(), s["review_count"].clone()),
        (json!(1), json!(1))
    );

    // Edit the text.
    let body = review(&app, "u-1", 4, Some("Clearer now.")).await;
    assert_eq!(body["review"]["id"], id.as_str(), "the same review");
    assert_eq!(body["review"]["body"], "Clearer now.");
    assert!(body["review"]["edited_at"].is_string());

    // Change the stars only: the review follows.
    let body = review_without_text(&app, "u-1", 2).await;
    assert_eq!(body["review"]["stars"], 2);
    assert_eq!(body["review"]["body"], "Clearer now.");
    let listed = page(&app, &format!("/api/v1/articles/{A}/reviews")).await;
    assert_eq!(listed["items"][0]["stars"], 2);
    let got = app.get(&me(A), Some(&app.reader("u-1"))).await;
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["review"]["id"], id.as_str());

    // Remove the text: the stars stay.
    let body = review(&app, "u-1", 2, None).await;
    assert_eq!(body["review"], Value::Null);
    assert_eq!(body["stars"], 2);
    assert_eq!(body["rating"]["count"], 1);
    let reviews = page(&app, &format!("/api/v1/articles/{A}/reviews")).await;
    assert_eq!(reviews["total"], 0);
    let s = summary(&app).await;
    assert_eq!(
        (s["comment_count"].clone(), s["review_count"].clone()),
        (json!(0), json!(0))
    );
    let res = app.get(&format!("/api/v1/comments/{id}"), None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "the review is gone");

    // Write one again, then delete the rating: the review goes with it.
    let body = review(&app, "u-1", 5, Some("Back again.")).await;
    assert_ne!(body["review"]["id"], id.as_str(), "a new review");
    let res = app.delete(&me(A), Some(&app.reader("u-1"))).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let reviews = page(&app, &format!("/api/v1/articles/{A}/reviews")).await;
    assert_eq!(reviews["total"], 0);
    assert_eq!(summary(&app).await["rating"]["count"], 0);
    app.assert_counters_match_recounts().await;
}

async fn review_without_text(app: &TestApp, user: &str, stars: i64) -> Value {
    let res = app
        .put(&me(A), Some(&app.reader(user)), &json!({"stars": stars}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn deleting_a_rating_whose_review_has_replies_leaves_a_tombstone() {
    let app = spawn_app().await;
    let body = review(&app, "u-1", 5, Some("Loved it.")).await;
    let id = body["review"]["id"].as_str().unwrap().to_owned();
    let reply = app.comment(A, "u-2", "Agreed!", Some(&id)).await;
    assert_eq!(reply["kind"], "comment");
    assert_eq!(reply["stars"], Value::Null);
    let s = summary(&app).await;
    assert_eq!(
        (s["comment_count"].clone(), s["review_count"].clone()),
        (json!(2), json!(1))
    );

    let res = app.delete(&me(A), Some(&app.reader("u-1"))).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let reviews = page(&app, &format!("/api/v1/articles/{A}/reviews")).await;
    assert_eq!(ids(&reviews), vec![id.clone()], "kept as a tombstone");
    assert_eq!(reviews["items"][0]["status"], "deleted");
    assert_eq!(reviews["items"][0]["body"], "");
    assert_eq!(reviews["items"][0]["author"], Value::Null);
    let replies = page(&app, &format!("/api/v1/comments/{id}/replies")).await;
    assert_eq!(replies["total"], 1);
    let s = summary(&app).await;
    assert_eq!(
        (s["comment_count"].clone(), s["review_count"].clone()),
        (json!(1), json!(1))
    );
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_review_is_moderated_like_a_comment_and_its_stars_count_at_once() {
    let app = spawn_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let body = review(&app, "u-1", 3, Some("Needs a look.")).await;
    assert_eq!(body["review"]["status"], "pending");
    assert_eq!(
        body["rating"]["count"], 1,
        "the stars count whatever the status"
    );
    let id = body["review"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        page(&app, &format!("/api/v1/articles/{A}/reviews")).await["total"],
        0
    );
    // The author sees their own pending review.
    let own = app
        .get(
            &format!("/api/v1/articles/{A}/reviews"),
            Some(&app.reader("u-1")),
        )
        .await;
    let own: Value = own.json().await.unwrap();
    assert_eq!(ids(&own), vec![id.clone()]);
    assert_eq!(own["total"], 1);

    // The queue shows it with its kind and stars.
    let queue = app
        .moderator_get("/api/v1/moderation/queue?queue=pending")
        .await;
    let item = &queue["items"][0]["comment"];
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["kind"], "review");
    assert_eq!(item["stars"], 3);

    let res = app
        .decide("mod-1", &id, &json!({"action": "approve"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let reviews = page(&app, &format!("/api/v1/articles/{A}/reviews")).await;
    assert_eq!(ids(&reviews), vec![id.clone()]);
    assert_eq!(summary(&app).await["review_count"], 1);
    // The log shows it as a review with its stars.
    let log = app.log_of(&id).await;
    assert!(!log.is_empty());
    for entry in &log {
        assert_eq!(entry["comment_kind"], "review");
        assert_eq!(entry["stars"], 3);
    }

    // Banned words reject a review like a comment.
    app.set_policy(|p| p.banned_words = vec!["scam".into()])
        .await;
    let body = review(&app, "u-2", 1, Some("A scam")).await;
    assert_eq!(body["review"]["status"], "rejected");
    assert_eq!(body["rating"]["count"], 2);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn bad_reviews_are_refused_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let token = app.reader("u-1");
    let long = "x".repeat(5001);
    for (body, why) in [
        (json!({"stars": 4, "review": ""}), "empty"),
        (json!({"stars": 4, "review": "   "}), "blank"),
        (json!({"stars": 4, "review": long}), "too long"),
        (
            json!({"stars": 4, "review": "bad\u{0007}bell"}),
            "control character",
        ),
    ] {
        let res = app.put(&me(A), Some(&token), &body).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec!["review"], "{why}");
    }
    let res = app
        .put(&me(A), Some(&token), &json!({"stars": 4, "review": 5}))
        .await;
    assert!(res.status().is_client_error(), "a number is no review");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM ratings").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 0);

    // Closed article: the review is refused with the rating.
    let res = app
        .put(
            &format!("/api/v1/admin/articles/{A}"),
            Some(&app.admin("adm")),
            &json!({"comments_open": false}),
        )
        .await;
    assert!(res.status().is_success());
    let res = app
        .put(&me(A), Some(&token), &json!({"stars": 4, "review": "Hi"}))
        .await;
    assert_problem(res, 403, "comments_closed").await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM ratings").await, 0);
}

#[tokio::test]
async fn reviews_sort_by_stars_filter_by_stars_and_page_by_cursor() {
    let app = spawn_app().await;
    let mut made = vec![];
    for (user, stars) in [("u-1", 5), ("u-2", 1), ("u-3", 4), ("u-4", 5), ("u-5", 2)] {
        let body = review(
            &app,
            user,
            stars,
            Some(&format!("{stars} stars from {user}")),
        )
        .await;
        made.push((body["review"]["id"].as_str().unwrap().to_owned(), stars));
    }
    let id = |i: usize| made[i].0.clone();
    let base = format!("/api/v1/articles/{A}/reviews");
    let highest = page(&app, &format!("{base}?sort=highest")).await;
    // Stars, then newest first.
    assert_eq!(ids(&highest), vec![id(3), id(0), id(2), id(4), id(1)]);
    let lowest = page(&app, &format!("{base}?sort=lowest")).await;
    assert_eq!(ids(&lowest), vec![id(1), id(4), id(2), id(3), id(0)]);
    let newest = page(&app, &format!("{base}?sort=newest")).await;
    assert_eq!(ids(&newest), vec![id(4), id(3), id(2), id(1), id(0)]);
    let oldest = page(&app, &format!("{base}?sort=oldest")).await;
    assert_eq!(ids(&oldest), vec![id(0), id(1), id(2), id(3), id(4)]);
    let fives = page(&app, &format!("{base}?stars=5")).await;
    assert_eq!(fives["total"], 2);
    assert_eq!(ids(&fives).len(), 2);

    // Paged two at a time, every order gives the same rows as one page.
    for sort in ["highest", "lowest", "best", "newest", "oldest"] {
        let whole = ids(&page(&app, &format!("{base}?sort={sort}")).await);
        let mut got = vec![];
        let mut path = format!("{base}?sort={sort}&limit=2");
        loop {
            let p = page(&app, &path).await;
            got.extend(ids(&p));
            match p["next_cursor"].as_str() {
                Some(c) => path = format!("{base}?sort={sort}&limit=2&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(got, whole, "sort={sort}");
    }

    for (query, field) in [
        ("sort=top", "sort"),
        ("stars=0", "stars"),
        ("stars=6", "stars"),
        ("stars=x", "stars"),
        ("limit=0", "limit"),
        ("cursor=nope", "cursor"),
    ] {
        let res = app.get(&format!("{base}?{query}"), None).await;
        let problem = assert_problem(res, 400, "bad_request").await;
        assert_eq!(error_fields(&problem), vec![field], "{query}");
    }
    // A time cursor does not cut a page by stars.
    let time_cursor = page(&app, &format!("{base}?sort=newest&limit=1")).await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .get(&format!("{base}?sort=highest&cursor={time_cursor}"), None)
        .await;
    assert_problem(res, 400, "bad_request").await;
    // Comments and replies take best, not highest.
    let res = app
        .get(&format!("/api/v1/articles/{A}/comments?sort=highest"), None)
        .await;
    assert_problem(res, 400, "bad_request").await;
}

#[tokio::test]
async fn votes_count_switch_and_are_taken_back() {
    let app = spawn_app().await;
    let c = app.comment(A, "author", "Helpful?", None).await;
    let id = c["id"].as_str().unwrap();
    assert_eq!(c["votes"], json!({"up": 0, "down": 0}));
    assert_eq!(c["kind"], "comment");

    let v = vote(&app, "r-1", id, "up").await;
    assert_eq!(v, json!({"votes": {"up": 1, "down": 0}, "my_vote": "up"}));
    let v = vote(&app, "r-1", id, "up").await;
    assert_eq!(
        v,
        json!({"votes": {"up": 1, "down": 0}, "my_vote": "up"}),
        "once"
    );
    let v = vote(&app, "r-2", id, "up").await;
    assert_eq!(v["votes"], json!({"up": 2, "down": 0}));
    let v = vote(&app, "r-1", id, "down").await;
    assert_eq!(
        v,
        json!({"votes": {"up": 1, "down": 1}, "my_vote": "down"}),
        "switched"
    );

    // my_vote per reader, in listings and on the comment.
    let mine = app
        .get(
            &format!("/api/v1/articles/{A}/comments"),
            Some(&app.reader("r-1")),
        )
        .await;
    let mine: Value = mine.json().await.unwrap();
    assert_eq!(mine["items"][0]["my_vote"], "down");
    assert_eq!(mine["items"][0]["votes"], json!({"up": 1, "down": 1}));
    let anon = page(&app, &format!("/api/v1/articles/{A}/comments")).await;
    assert_eq!(anon["items"][0]["my_vote"], Value::Null);
    assert_eq!(
        anon["items"][0]["votes"],
        json!({"up": 1, "down": 1}),
        "pages follow votes"
    );
    let one = app
        .get(&format!("/api/v1/comments/{id}"), Some(&app.reader("r-2")))
        .await;
    let one: Value = one.json().await.unwrap();
    assert_eq!(one["my_vote"], "up");

    let res = app.delete(&vote_path(id), Some(&app.reader("r-1"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v, json!({"votes": {"up": 1, "down": 0}, "my_vote": null}));
    let res = app.delete(&vote_path(id), Some(&app.reader("r-1"))).await;
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v,
        json!({"votes": {"up": 1, "down": 0}, "my_vote": null}),
        "again: nothing"
    );
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn bad_votes_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let c = app.comment(A, "author", "Mine", None).await;
    let id = c["id"].as_str().unwrap();

    let res = app
        .put(
            &vote_path(id),
            Some(&app.reader("author")),
            &json!({"vote": "up"}),
        )
        .await;
    assert_problem(res, 403, "own_comment").await;
    let res = app.put(&vote_path(id), None, &json!({"vote": "up"})).await;
    assert_problem(res, 401, "unauthorized").await;
    let res = app.delete(&vote_path(id), None).await;
    assert_problem(res, 401, "unauthorized").await;
    let res = app
        .put(
            &vote_path("no-such"),
            Some(&app.reader("r-1")),
            &json!({"vote": "up"}),
        )
        .await;
    assert_problem(res, 404, "not_found").await;
    let res = app
        .put(
            &vote_path(id),
            Some(&app.reader("r-1")),
            &json!({"vote": "sideways"}),
        )
        .await;
    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(error_fields(&problem), vec!["vote"]);
    let res = app
        .put(&vote_path(id), Some(&app.reader("r-1")), &json!({}))
        .await;
    assert!(res.status().is_client_error());
    let res = app
        .request(Method::PUT, &vote_path(id), Some(&app.reader("r-1")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "bad_request").await;

    // A banned reader cannot vote.
    let res = app
        .post(
            "/api/v1/moderation/bans",
            Some(&app.moderator("mod-1")),
            &json!({"user_id": "r-banned", "reason": "trolling"}),
        )
        .await;
    assert!(res.status().is_success(), "ban: {}", res.status());
    let res = app
        .put(
            &vote_path(id),
            Some(&app.reader("r-banned")),
            &json!({"vote": "up"}),
        )
        .await;
    assert_problem(res, 403, "banned").await;

    // Pending comments of others are not visible: 404.
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let pending = app.comment(A, "author", "Waiting", None).await;
    let res = app
        .put(
            &vote_path(pending["id"].as_str().unwrap()),
            Some(&app.reader("r-1")),
            &json!({"vote": "up"}),
        )
        .await;
    assert_problem(res, 404, "not_found").await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comment_votes").await, 0);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_vote_with_an_idempotency_key_is_replayed() {
    let app = spawn_app().await;
    let c = app.comment(A, "author", "Helpful?", None).await;
    let id = c["id"].as_str().unwrap();
    let token = app.reader("r-1");
    let first = app
        .send_with_key(
            Method::PUT,
            &vote_path(id),
            Some(&token),
            "k-1",
            &json!({"vote": "up"}),
        )
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    // Switched meanwhile; the replay answers as the first time and writes nothing.
    vote(&app, "r-1", id, "down").await;
    let again = app
        .send_with_key(
            Method::PUT,
            &vote_path(id),
            Some(&token),
            "k-1",
            &json!({"vote": "up"}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let other = app
        .send_with_key(
            Method::PUT,
            &vote_path(id),
            Some(&token),
            "k-1",
            &json!({"vote": "down"}),
        )
        .await;
    assert_problem(other, 409, "idempotency_conflict").await;
    assert_eq!(
        app.scalar("SELECT votes_down FROM comments").await,
        1,
        "still the later vote"
    );
}

#[tokio::test]
async fn concurrent_votes_leave_counters_equal_to_a_recount() {
    let app = spawn_app().await;
    let a = app.comment(A, "author-a", "First", None).await;
    let b = app.comment(A, "author-b", "Second", None).await;
    let targets = [
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    ];
    // 40 readers, each voting on both comments in opposite moves, some switching and
    // taking their vote back, all at once.
    let jobs: Vec<(usize, usize)> = (0..40).flat_map(|r| [(r, 0), (r, 1)]).collect();
    stream::iter(jobs)
        .for_each_concurrent(32, |(r, t)| {
            let app = &app;
            let id = targets[if r % 2 == 0 { t } else { 1 - t }].clone();
            async move {
                let token = app.reader(&format!("r-{r}"));
                let first = if r % 3 == 0 { "down" } else { "up" };
                let res = app
                    .put(&vote_path(&id), Some(&token), &json!({"vote": first}))
                    .await;
                assert_eq!(res.status(), StatusCode::OK);
                if r % 4 == 0 {
                    let res = app
                        .put(&vote_path(&id), Some(&token), &json!({"vote": "up"}))
                        .await;
                    assert_eq!(res.status(), StatusCode::OK);
                }
                if r % 5 == 0 {
                    let res = app.delete(&vote_path(&id), Some(&token)).await;
                    assert_eq!(res.status(), StatusCode::OK);
                }
            }
        })
        .await;
    app.assert_counters_match_recounts().await;
    let votes = app.scalar("SELECT COUNT(*) FROM comment_votes").await;
    assert_eq!(votes, 80 - 16, "every vote but those taken back");
    // best_score follows the counters.
    for id in &targets {
        let c = app.get_json(&format!("/api/v1/comments/{id}")).await;
        let (up, down) = (
            c["votes"]["up"].as_i64().unwrap(),
            c["votes"]["down"].as_i64().unwrap(),
        );
        let stored = stored_best(&app, id).await;
        assert!((stored - wilson_lower_bound(up, down)).abs() < 1e-9);
    }
}

async fn stored_best(app: &TestApp, id: &str) -> f64 {
    let micro = app
        .scalar(&format!(
            "SELECT CAST(best_score * 1000000000 AS BIGINT) FROM comments WHERE id = '{id}'"
        ))
        .await;
    micro as f64 / 1e9
}

#[tokio::test]
async fn best_ranks_by_the_wilson_lower_bound_then_newest() {
    let app = spawn_app().await;
    let many = app.comment(A, "a-1", "Ninety of a hundred", None).await;
    let one = app.comment(A, "a-2", "One vote", None).await;
    let none_old = app.comment(A, "a-3", "No votes, older", None).await;
    let none_new = app.comment(A, "a-4", "No votes, newer", None).await;
    let id = |c: &Value| c["id"].as_str().unwrap().to_owned();
    vote(&app, "r-1", &id(&one), "up").await;
    // 90 up / 10 down, crafted in the row (the vote path itself is tested above).
    let crafted = format!(
        "UPDATE comments SET votes_up = 90, votes_down = 10, best_score = {} WHERE id = '{}'",
        wilson_lower_bound(90, 10),
        id(&many)
    );
    sea_orm::ConnectionTrait::execute_unprepared(&app.db, &crafted)
        .await
        .unwrap();
    let expected = vec![id(&many), id(&one), id(&none_new), id(&none_old)];
    let base = format!("/api/v1/articles/{A}/comments?sort=best");
    assert_eq!(ids(&page(&app, &base).await), expected);
    // Page by page, the same order.
    let mut got = vec![];
    let mut path = format!("{base}&limit=1");
    loop {
        let p = page(&app, &path).await;
        got.extend(ids(&p));
        match p["next_cursor"].as_str() {
            Some(c) => path = format!("{base}&limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(got, expected);

    // Replies too.
    let r1 = app.comment(A, "a-5", "reply one", Some(&id(&many))).await;
    let r2 = app.comment(A, "a-6", "reply two", Some(&id(&many))).await;
    vote(&app, "r-1", &id(&r1), "up").await;
    let replies = page(
        &app,
        &format!("/api/v1/comments/{}/replies?sort=best", id(&many)),
    )
    .await;
    assert_eq!(ids(&replies), vec![id(&r1), id(&r2)]);
    let res = app
        .get(&format!("/api/v1/articles/{A}/comments?sort=worst"), None)
        .await;
    let problem = assert_problem(res, 400, "bad_request").await;
    assert_eq!(error_fields(&problem), vec!["sort"]);
}

#[tokio::test]
async fn verified_comes_from_the_token_claim_at_write_time() {
    let app = spawn_app().await;
    let res = app
        .post(
            &format!("/api/v1/articles/{A}/comments"),
            Some(&verified_token("v-1")),
            &json!({"body": "I bought it"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let c: Value = res.json().await.unwrap();
    assert_eq!(c["verified"], true);
    let res = app
        .put(
            &me(A),
            Some(&verified_token("v-1")),
            &json!({"stars": 5, "review": "Verified review"}),
        )
        .await;
    let r: Value = res.json().await.unwrap();
    assert_eq!(r["review"]["verified"], true);
    let plain = app.comment(A, "v-1", "Without the claim", None).await;
    assert_eq!(plain["verified"], false);
    let listed = page(&app, &format!("/api/v1/articles/{A}/comments?sort=oldest")).await;
    assert_eq!(listed["items"][0]["verified"], true, "kept as written");
}

async fn top(app: &TestApp, query: &str) -> Value {
    page(app, &format!("/api/v1/ratings/top{query}")).await
}

#[tokio::test]
async fn top_ranks_by_the_bayesian_average_with_hand_computed_scores() {
    let app = spawn_app().await;
    // Site: a = 5 (1 rating), b = 5,5,5 (3), c = 1,1 (2), d = 4,4,4,4 (4).
    // Ratings 10, sum 5 + 15 + 2 + 16 = 38, mean 3.8; C = 5.
    let plan: [(&str, &[i64]); 4] = [
        ("a", &[5]),
        ("b", &[5, 5, 5]),
        ("c", &[1, 1]),
        ("d", &[4, 4, 4, 4]),
    ];
    for (article, stars) in plan {
        for (i, s) in stars.iter().enumerate() {
            app.rate(article, &format!("u-{i}"), *s).await;
        }
    }
    let body = top(&app, "").await;
    assert_eq!(body["prior"], json!({"mean": 3.8, "weight": 5}));
    // b: (19 + 15) / 8 = 4.25; d: (19 + 16) / 9 = 3.888… → 3.89;
    // a: (19 + 5) / 6 = 4.0; c: (19 + 2) / 7 = 3.0.
    let got: Vec<(String, f64)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["rating"]["article_id"].as_str().unwrap().to_owned(),
                i["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("b".into(), 4.25),
            ("a".into(), 4.0),
            ("d".into(), 3.89),
            ("c".into(), 3.0)
        ]
    );
    assert_eq!(body["items"][0]["rating"]["count"], 3);
    // limit=2 takes the bounded path (the 2 most-rated, d and b, set the bar): still b, a.
    let two = top(&app, "?limit=2").await;
    let names: Vec<&str> = two["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["rating"]["article_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["b", "a"]);
    let popular = top(&app, "?min_count=3").await;
    let names: Vec<&str> = popular["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["rating"]["article_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["b", "d"]);

    // C = 0: the plain means; ties by more ratings, then id. 4.125 rounds half-up.
    let res = app
        .put(
            "/api/v1/admin/settings",
            Some(&app.admin("adm")),
            &json!({"moderation_mode": "post", "guest_comments": false, "banned_words": [],
                "suspect_words": [], "max_links": 2, "flag_threshold": 3,
                "edit_window_secs": 900, "trusted_after_approved": 0,
                "rating_prior_weight": 0}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let settings: Value = res.json().await.unwrap();
    assert_eq!(settings["rating_prior_weight"], 0);
    for (i, s) in [5, 4, 4, 4, 4, 4, 4, 4].iter().enumerate() {
        app.rate("e", &format!("u-{i}"), *s).await;
    }
    let plain = top(&app, "").await;
    assert_eq!(plain["prior"]["weight"], 0);
    let got: Vec<(String, f64)> = plain["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["rating"]["article_id"].as_str().unwrap().to_owned(),
                i["score"].as_f64().unwrap(),
            )
        })
        .collect();
    // b (5.0, 3 ratings) before a (5.0, 1 rating); e = 33/8 = 4.125 → 4.13.
    assert_eq!(
        got,
        vec![
            ("b".into(), 5.0),
            ("a".into(), 5.0),
            ("e".into(), 4.13),
            ("d".into(), 4.0),
            ("c".into(), 1.0)
        ]
    );
}

#[tokio::test]
async fn top_refuses_bad_queries_and_settings_refuse_a_bad_prior_weight() {
    let app = spawn_app().await;
    let empty = top(&app, "").await;
    assert_eq!(
        empty,
        json!({"items": [], "prior": {"mean": null, "weight": 5}})
    );
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("min_count=-1", "min_count"),
    ] {
        let res = app.get(&format!("/api/v1/ratings/top?{query}"), None).await;
        let problem = assert_problem(res, 400, "bad_request").await;
        assert_eq!(error_fields(&problem), vec![field], "{query}");
    }
    for weight in [json!(-1), json!(1_000_001)] {
        let res = app
            .put(
                "/api/v1/admin/settings",
                Some(&app.admin("adm")),
                &json!({"moderation_mode": "post", "guest_comments": false, "banned_words": [],
                    "suspect_words": [], "max_links": 2, "flag_threshold": 3,
                    "edit_window_secs": 900, "trusted_after_approved": 0,
                    "rating_prior_weight": weight}),
            )
            .await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec!["rating_prior_weight"]);
    }
    let settings = app
        .get("/api/v1/admin/settings", Some(&app.admin("adm")))
        .await;
    let settings: Value = settings.json().await.unwrap();
    assert_eq!(settings["rating_prior_weight"], 5, "unchanged, the default");
}
