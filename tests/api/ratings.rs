use futures_util::{stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, spawn_app, spawn_app_with, TestApp};

const ME: &str = "/api/v1/articles/why-back-cracks/ratings/me";
const AGG: &str = "/api/v1/articles/why-back-cracks/rating";

/// The stored counters of an article equal a recount of its rating rows.
async fn assert_counters_match_rows(app: &TestApp, article: &str) {
    let kept = app
        .scalar(&format!(
            "SELECT rating_count * 1000000 + rating_sum FROM articles WHERE id = '{article}'"
        ))
        .await;
    let counted = app
        .scalar(&format!(
            "SELECT COUNT(*) * 1000000 + COALESCE(SUM(stars), 0) FROM ratings WHERE article_id = '{article}'"
        ))
        .await;
    assert_eq!(
        kept, counted,
        "rating_count/rating_sum must equal a recount"
    );
    for s in 1..=5 {
        let kept = app
            .scalar(&format!(
                "SELECT stars_{s} FROM articles WHERE id = '{article}'"
            ))
            .await;
        let counted = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM ratings WHERE article_id = '{article}' AND stars = {s}"
            ))
            .await;
        assert_eq!(kept, counted, "histogram bucket {s}");
    }
}

#[tokio::test]
async fn first_rating_is_201_and_rating_again_replaces_it_with_200() {
    let app = spawn_app().await;
    let token = app.reader("u-1");

    let res = app.put(ME, Some(&token), &json!({"stars": 4})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["article_id"], "why-back-cracks");
    assert_eq!(body["stars"], 4);
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["rating"]["count"], 1);
    assert_eq!(body["rating"]["display"], "4.0 (1 review)");

    let res = app.put(ME, Some(&token), &json!({"stars": 2})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["stars"], 2);
    assert_eq!(body["rating"]["count"], 1, "replaced, not added");
    assert_eq!(
        body["rating"]["histogram"],
        json!({"1": 0, "2": 1, "3": 0, "4": 0, "5": 0})
    );

    assert_eq!(app.scalar("SELECT COUNT(*) FROM ratings").await, 1);
    assert_counters_match_rows(&app, "why-back-cracks").await;
}

#[tokio::test]
async fn my_rating_is_readable_and_404_when_absent() {
    let app = spawn_app().await;
    let token = app.reader("u-1");
    assert_problem(app.get(ME, Some(&token)).await, 404, "not_found").await;

    app.rate("why-back-cracks", "u-1", 5).await;
    let res = app.get(ME, Some(&token)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["stars"], 5);
    assert_eq!(body["rating"]["average"], 5.0);

    // Someone else's rating is not mine.
    assert_problem(
        app.get(ME, Some(&app.reader("u-2"))).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn deleting_my_rating_is_204_even_when_there_was_none() {
    let app = spawn_app().await;
    let token = app.reader("u-1");
    app.rate("why-back-cracks", "u-1", 3).await;
    app.rate("why-back-cracks", "u-2", 5).await;

    assert_eq!(app.delete(ME, Some(&token)).await.status(), 204);
    assert_eq!(
        app.delete(ME, Some(&token)).await.status(),
        204,
        "second delete"
    );
    assert_eq!(
        app.delete("/api/v1/articles/never-rated/ratings/me", Some(&token))
            .await
            .status(),
        204
    );

    let agg: Value = app.get(AGG, None).await.json().await.unwrap();
    assert_eq!(agg["count"], 1);
    assert_eq!(agg["average"], 5.0);
    assert_counters_match_rows(&app, "why-back-cracks").await;
}

#[tokio::test]
async fn forty_seven_reviews_display_as_five_point_oh() {
    let app = spawn_app().await;
    for i in 0..47 {
        app.rate(
            "why-back-cracks",
            &format!("u-{i}"),
            if i < 2 { 4 } else { 5 },
        )
        .await;
    }
    let res = app.get(AGG, None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"article_id": "why-back-cracks", "count": 47, "average": 4.96,
               "display": "5.0 (47 reviews)",
               "histogram": {"1": 0, "2": 0, "3": 0, "4": 2, "5": 45}})
    );
}

#[tokio::test]
async fn an_unrated_or_unknown_article_has_count_zero_not_404() {
    let app = spawn_app().await;
    let body: Value = app
        .get("/api/v1/articles/nobody-knows/rating", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"article_id": "nobody-knows", "count": 0, "average": null, "display": "No reviews yet",
               "histogram": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}})
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM articles").await,
        0,
        "reading creates nothing"
    );
}

/// Rates `article` with the given number of ratings per star, 16 requests at a time.
async fn rate_many(app: &TestApp, article: &str, per_star: [usize; 5]) {
    let jobs: Vec<(String, i64)> = per_star
        .iter()
        .enumerate()
        .flat_map(|(i, n)| (0..*n).map(move |k| (format!("s{}-{k}", i + 1), i as i64 + 1)))
        .collect();
    stream::iter(jobs)
        .for_each_concurrent(16, |(user, stars)| async move {
            app.rate(article, &user, stars).await;
        })
        .await;
}

#[tokio::test]
async fn rounding_is_exact_half_up_over_a_thousand_ratings() {
    let app = spawn_app().await;
    // 4950 / 1000 = 4.95 exactly: the display rounds half-up to 5.0.
    rate_many(&app, "half", [0, 0, 0, 50, 950]).await;
    // 4949 / 1000 = 4.949: average 4.95, but the display rounds the exact mean to 4.9.
    rate_many(&app, "just-under", [0, 0, 1, 49, 950]).await;

    let half: Value = app
        .get("/api/v1/articles/half/rating", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (half["count"].clone(), half["average"].clone()),
        (json!(1000), json!(4.95))
    );
    assert_eq!(half["display"], "5.0 (1000 reviews)");
    let under: Value = app
        .get("/api/v1/articles/just-under/rating", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(under["average"], 4.95);
    assert_eq!(under["display"], "4.9 (1000 reviews)");
    assert_counters_match_rows(&app, "half").await;
    assert_counters_match_rows(&app, "just-under").await;
}

#[tokio::test]
async fn concurrent_upserts_from_overlapping_users_keep_counters_equal_to_a_recount() {
    let app = spawn_app().await;
    // 300 writes from 40 users: each user rates, re-rates and sometimes deletes, all at once.
    let ops: Vec<(usize, Option<i64>)> = (0..300)
        .map(|i| {
            let user = (i * 7) % 40;
            let stars = if i % 11 == 0 {
                None
            } else {
                Some(((i * 13) % 5 + 1) as i64)
            };
            (user, stars)
        })
        .collect();
    stream::iter(ops)
        .for_each_concurrent(24, |(user, stars)| {
            let app = &app;
            async move {
                let token = app.reader(&format!("c-{user}"));
                let res = match stars {
                    Some(s) => app.put(ME, Some(&token), &json!({"stars": s})).await,
                    None => app.delete(ME, Some(&token)).await,
                };
                assert!(
                    res.status().is_success(),
                    "write failed with {}",
                    res.status()
                );
            }
        })
        .await;
    assert_counters_match_rows(&app, "why-back-cracks").await;
    let agg: Value = app.get(AGG, None).await.json().await.unwrap();
    assert_eq!(
        agg["count"].as_i64().unwrap(),
        app.scalar("SELECT COUNT(*) FROM ratings").await
    );
}

#[tokio::test]
async fn aggregate_has_a_strong_etag_and_answers_304_while_unchanged() {
    let app = spawn_app().await;
    app.rate("why-back-cracks", "u-1", 5).await;
    let res = app.get(AGG, None).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong etag: {etag}"
    );
    let cc = res.headers()["cache-control"].to_str().unwrap();
    assert!(cc.starts_with("public, max-age="), "{cc}");

    let res = app
        .request(Method::GET, AGG, None)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert!(res.bytes().await.unwrap().is_empty(), "304 has no body");

    app.rate("why-back-cracks", "u-2", 4).await;
    let res = app
        .request(Method::GET, AGG, None)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a write changes the tag");
    assert_ne!(res.headers()["etag"], etag.as_str());
}

#[tokio::test]
async fn json_ld_gives_a_schema_org_aggregate_rating() {
    let app = spawn_app().await;
    let ld = |path: &str| {
        app.request(Method::GET, path, None)
            .header("accept", "application/ld+json")
            .send()
    };

    assert_problem(ld(AGG).await.unwrap(), 404, "not_found").await;

    for i in 0..3 {
        app.rate(
            "why-back-cracks",
            &format!("u-{i}"),
            if i == 0 { 4 } else { 5 },
        )
        .await;
    }
    let res = ld(AGG).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/ld+json"));
    let json_etag = app.get(AGG, None).await.headers()["etag"].clone();
    assert_ne!(
        res.headers()["etag"],
        json_etag,
        "each representation has its own tag"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"@context": "https://schema.org", "@type": "AggregateRating", "ratingValue": 4.67,
               "ratingCount": 3, "reviewCount": 3, "bestRating": 5, "worstRating": 1})
    );
}

#[tokio::test]
async fn batch_answers_in_the_order_asked_with_duplicates() {
    let app = spawn_app().await;
    app.rate("a", "u-1", 5).await;
    app.rate("b", "u-1", 3).await;
    let res = app
        .get(
            "/api/v1/ratings?article_id=b&article_id=unknown&article_id=a&article_id=b",
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["article_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b", "unknown", "a", "b"]);
    assert_eq!(items[0]["average"], 3.0);
    assert_eq!(items[1]["count"], 0);
    assert_eq!(items[2]["display"], "5.0 (1 review)");
}

#[tokio::test]
async fn batch_refuses_bad_id_lists() {
    let app = spawn_app().await;
    let hundred_and_one: String = (0..101)
        .map(|i| format!("article_id=a{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let hundred: String = (0..100)
        .map(|i| format!("article_id=a{i}"))
        .collect::<Vec<_>>()
        .join("&");
    for (query, why) in [
        ("".to_owned(), "no ids"),
        ("other=1".to_owned(), "no article_id"),
        (hundred_and_one, "over 100"),
        ("article_id=bad%20id".to_owned(), "invalid id"),
    ] {
        let res = app.get(&format!("/api/v1/ratings?{query}"), None).await;
        let problem = assert_problem(res, 400, "bad_request").await;
        assert_eq!(error_fields(&problem), ["article_id"], "{why}");
    }
    assert_eq!(
        app.get(&format!("/api/v1/ratings?{hundred}"), None)
            .await
            .status(),
        200,
        "100 is allowed"
    );
}

#[tokio::test]
async fn the_aggregate_refuses_a_bad_article_id_and_reads_an_escaped_good_one() {
    let app = spawn_app().await;
    for segment in [
        "-bad",
        "bad%20id",
        "a%2Fb",
        "a+b",
        "a%2Bb",
        "a%25b",
        "%C3%A9t%C3%A9",
    ] {
        let res = app
            .get(&format!("/api/v1/articles/{segment}/rating"), None)
            .await;
        let problem = assert_problem(res, 400, "bad_request").await;
        assert_eq!(error_fields(&problem), ["article_id"], "{segment}");
    }
    // An unreserved character written as an escape is the character itself.
    app.rate("a-1", "u-1", 3).await;
    for path in [
        "/api/v1/articles/a-1/rating",
        "/api/v1/articles/%61-1/rating",
    ] {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["article_id"], "a-1", "{path}");
        assert_eq!(body["count"], 1, "{path}");
    }
}

#[tokio::test]
async fn a_whole_number_written_with_a_decimal_point_is_a_valid_rating() {
    // JSON Schema's `integer` (the OpenAPI spec says `stars` is one) admits `4.0`.
    let app = spawn_app().await;
    let token = app.reader("u-1");

    let res = app.put(ME, Some(&token), &json!({"stars": 4.0})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["stars"], 4);
    assert_eq!(
        app.scalar("SELECT stars FROM ratings WHERE user_id = 'u-1'")
            .await,
        4
    );

    let problem = assert_problem(
        app.put(ME, Some(&token), &json!({"stars": 6.0})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["stars"], "out of range");
}

#[tokio::test]
async fn bad_ratings_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let token = app.reader("u-1");
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({"stars": 0}), 422, "validation_failed", "zero stars"),
        (json!({"stars": 6}), 422, "validation_failed", "six stars"),
        (json!({"stars": -1}), 422, "validation_failed", "negative"),
        (json!({"stars": 4.5}), 422, "validation_failed", "fraction"),
        (json!({"stars": "4"}), 422, "validation_failed", "string"),
        (json!({"stars": null}), 422, "validation_failed", "null"),
        (json!({}), 422, "validation_failed", "missing"),
    ];
    for (body, status, code, why) in cases {
        let problem = assert_problem(app.put(ME, Some(&token), &body).await, status, code).await;
        assert_eq!(error_fields(&problem), ["stars"], "{why}");
    }
    let raw = |body: &'static str, ct: &'static str| {
        app.request(Method::PUT, ME, Some(&token))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    assert_problem(
        raw("{\"stars\": 4", "application/json").await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    assert_problem(
        raw("stars=4", "application/x-www-form-urlencoded")
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
    assert_problem(
        raw("{\"stars\": 4}", "text/plain").await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    let bad_id = "/api/v1/articles/-bad/ratings/me";
    let problem = assert_problem(
        app.put(bad_id, Some(&token), &json!({"stars": 4})).await,
        400,
        "bad_request",
    )
    .await;
    assert_eq!(error_fields(&problem), ["article_id"]);

    assert_eq!(app.scalar("SELECT COUNT(*) FROM ratings").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM articles").await, 0);
}

#[tokio::test]
async fn guests_cannot_rate() {
    let app = spawn_app().await;
    let res = app.put(ME, None, &json!({"stars": 5})).await;
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_problem(res, 401, "unauthorized").await;
    assert_problem(app.get(ME, None).await, 401, "unauthorized").await;
    assert_problem(app.delete(ME, None).await, 401, "unauthorized").await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM ratings").await, 0);
}

#[tokio::test]
async fn with_auto_creation_off_only_registered_articles_take_ratings() {
    let app = spawn_app_with(|s| s.auto_create_articles = false).await;
    let res = app
        .put(ME, Some(&app.reader("u-1")), &json!({"stars": 5}))
        .await;
    assert_problem(res, 404, "not_found").await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM articles").await, 0);
}

#[tokio::test]
async fn the_article_summary_carries_the_aggregate() {
    let app = spawn_app().await;
    app.rate("why-back-cracks", "u-1", 5).await;
    app.comment("why-back-cracks", "u-1", "Thanks!", None).await;
    let body: Value = app
        .get("/api/v1/articles/why-back-cracks", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["article_id"], "why-back-cracks");
    assert_eq!(body["comments_open"], true);
    assert_eq!(body["comment_count"], 1);
    assert_eq!(body["rating"]["display"], "5.0 (1 review)");
    assert!(body.get("title").is_some() && body.get("url").is_some());
}
