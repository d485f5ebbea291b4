//! The in-memory aggregate cache: never stale after a write through this instance (also
//! under concurrency), byte-for-byte the same answers, and bounded staleness across
//! instances.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{future, stream, StreamExt};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, spawn_peer, TestApp};

const ARTICLE: &str = "cached-article";
const AGG: &str = "/api/v1/articles/cached-article/rating";
const ME: &str = "/api/v1/articles/cached-article/ratings/me";
const BATCH: &str =
    "/api/v1/ratings?article_id=other&article_id=cached-article&article_id=cached-article";

/// An app whose cached aggregates never expire during a test, so only invalidation can
/// make a write visible.
async fn spawn_long_lived_cache() -> TestApp {
    spawn_app_with(|s| s.aggregate_cache_ttl_ms = 600_000).await
}

async fn aggregate(app: &TestApp) -> Value {
    let res = app.get(AGG, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The aggregate of `ARTICLE` as the batch answers it, checking both copies agree.
async fn batch_aggregate(app: &TestApp) -> Value {
    let res = app.get(BATCH, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["article_id"], "other");
    assert_eq!(items[1], items[2], "a duplicate is answered the same");
    items[1].clone()
}

fn histogram(agg: &Value) -> [i64; 5] {
    std::array::from_fn(|i| agg["histogram"][(i + 1).to_string()].as_i64().unwrap())
}

/// `seen` reflects at least every rating in `written` (ratings only ever added).
fn assert_not_older(seen: &Value, written: &Value, what: &str) {
    assert!(
        seen["count"].as_i64().unwrap() >= written["count"].as_i64().unwrap(),
        "{what} showed {seen} after a write answered {written}"
    );
    for (s, w) in histogram(seen).iter().zip(histogram(written)) {
        assert!(
            *s >= w,
            "{what} showed {seen} after a write answered {written}"
        );
    }
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut rb = app.request(Method::GET, path, None);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

/// Status, the headers the contract names, and the body bytes.
async fn answer(res: Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let status = res.status().as_u16();
    let headers = ["content-type", "etag", "cache-control", "vary"]
        .iter()
        .filter_map(|h| {
            res.headers()
                .get(*h)
                .map(|v| (h.to_string(), v.to_str().unwrap().to_owned()))
        })
        .collect();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

const WRITES: i64 = 200;

#[tokio::test]
async fn reads_after_a_write_never_show_an_older_aggregate_while_others_refill_the_cache() {
    // Several workers and connections, so reads and writes really overlap.
    let app = spawn_app_with(|s| {
        s.aggregate_cache_ttl_ms = 600_000;
        s.workers = Some(4);
        s.db_max_connections = 12;
    })
    .await;
    let writing = AtomicBool::new(true);

    // Readers keep the cache filled (and racing fills against invalidations) all along.
    let hammer = future::join_all((0..16).map(|i| {
        let (app, writing) = (&app, &writing);
        async move {
            let mut reads = 0;
            while writing.load(Ordering::Relaxed) || reads == 0 {
                if i % 2 == 0 {
                    aggregate(app).await;
                } else {
                    batch_aggregate(app).await;
                }
                reads += 1;
            }
        }
    }));

    // Every writer is a new reader rating once, then reads through this instance.
    let writers = async {
        stream::iter(0..WRITES)
            .for_each_concurrent(16, |i| {
                let app = &app;
                async move {
                    let res = app
                        .put(
                            ME,
                            Some(&app.reader(&format!("w-{i}"))),
                            &json!({"stars": i % 5 + 1}),
                        )
                        .await;
                    assert!(res.status().is_success(), "write failed: {}", res.status());
                    let written: Value = res.json().await.unwrap();
                    let written = &written["rating"];
                    assert_not_older(&aggregate(app).await, written, "GET …/rating");
                    assert_not_older(&batch_aggregate(app).await, written, "GET /ratings");
                }
            })
            .await;
        writing.store(false, Ordering::Relaxed);
    };
    future::join(hammer, writers).await;

    // At rest, the served aggregate is exactly a recount of the rating rows.
    let agg = aggregate(&app).await;
    assert_eq!(agg, batch_aggregate(&app).await);
    assert_eq!(
        agg["count"].as_i64().unwrap(),
        app.scalar(&format!(
            "SELECT COUNT(*) FROM ratings WHERE article_id = '{ARTICLE}'"
        ))
        .await
    );
    for (i, n) in histogram(&agg).iter().enumerate() {
        let counted = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM ratings WHERE article_id = '{ARTICLE}' AND stars = {}",
                i + 1
            ))
            .await;
        assert_eq!(*n, counted, "histogram bucket {}", i + 1);
    }
    assert_eq!(agg["count"], WRITES);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_deleted_rating_disappears_from_the_cached_aggregate_at_once() {
    let app = spawn_long_lived_cache().await;
    app.rate(ARTICLE, "u-1", 5).await;
    app.rate(ARTICLE, "u-2", 3).await;
    assert_eq!(aggregate(&app).await["count"], 2, "now cached");
    assert_eq!(batch_aggregate(&app).await["count"], 2);

    let res = app.delete(ME, Some(&app.reader("u-2"))).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    for agg in [aggregate(&app).await, batch_aggregate(&app).await] {
        assert_eq!(agg["count"], 1, "{agg}");
        assert_eq!(histogram(&agg), [0, 0, 0, 0, 1], "{agg}");
        assert_eq!(agg["display"], "5.0 (1 review)");
    }
}

#[tokio::test]
async fn a_changed_rating_moves_between_histogram_buckets_at_once() {
    let app = spawn_long_lived_cache().await;
    let ld = [("accept", "application/ld+json")];
    app.rate(ARTICLE, "u-1", 4).await;
    assert_eq!(histogram(&aggregate(&app).await), [0, 0, 0, 1, 0]);
    assert_eq!(histogram(&batch_aggregate(&app).await), [0, 0, 0, 1, 0]);
    let res = get_with(&app, AGG, &ld).await;
    assert_eq!(res.json::<Value>().await.unwrap()["ratingValue"], 4.0);

    app.rate(ARTICLE, "u-1", 2).await;
    for agg in [aggregate(&app).await, batch_aggregate(&app).await] {
        assert_eq!(histogram(&agg), [0, 1, 0, 0, 0], "{agg}");
        assert_eq!(agg["average"], 2.0);
    }
    let res = get_with(&app, AGG, &ld).await;
    assert_eq!(res.json::<Value>().await.unwrap()["ratingValue"], 2.0);
}

#[tokio::test]
async fn the_etag_changes_with_a_write_and_the_old_one_gets_the_new_body() {
    let app = spawn_long_lived_cache().await;
    app.rate(ARTICLE, "u-1", 5).await;
    for accept in ["application/json", "application/ld+json"] {
        let res = get_with(&app, AGG, &[("accept", accept)]).await;
        let old = res.headers()["etag"].to_str().unwrap().to_owned();
        let res = get_with(&app, AGG, &[("accept", accept), ("if-none-match", &old)]).await;
        assert_eq!(
            res.status(),
            StatusCode::NOT_MODIFIED,
            "{accept}: unchanged"
        );
        assert_eq!(res.headers()["etag"], old.as_str());
    }
    let old_json = get_with(&app, AGG, &[]).await.headers()["etag"].clone();

    app.rate(ARTICLE, "u-2", 3).await;

    let stale = old_json.to_str().unwrap();
    let res = get_with(&app, AGG, &[("if-none-match", stale)]).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the old tag no longer matches"
    );
    let new = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new, stale);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["count"], 2);
    assert_eq!(histogram(&body), [0, 0, 1, 0, 1]);
    let res = get_with(&app, AGG, &[("if-none-match", &new)]).await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_MODIFIED,
        "the new tag matches"
    );
}

#[tokio::test]
async fn cached_answers_are_byte_for_byte_the_uncached_ones() {
    let cached = spawn_app().await;
    let uncached = spawn_app_with(|s| s.aggregate_cache_entries = 0).await;
    for app in [&cached, &uncached] {
        app.rate(ARTICLE, "u-1", 5).await;
        app.rate(ARTICLE, "u-2", 4).await;
    }
    let requests: [(&str, &[(&str, &str)]); 7] = [
        (AGG, &[]),
        (AGG, &[("accept", "application/ld+json")]),
        (AGG, &[("if-none-match", "\"j-0-0-0-1-1-cached-article\"")]),
        ("/api/v1/articles/unrated/rating", &[]),
        (
            "/api/v1/articles/unrated/rating",
            &[("accept", "application/ld+json")],
        ),
        (BATCH, &[]),
        ("/api/v1/ratings?article_id=unrated", &[]),
    ];
    for (path, headers) in requests {
        // The first request fills the cache, the second is a hit.
        let miss = answer(get_with(&cached, path, headers).await).await;
        let hit = answer(get_with(&cached, path, headers).await).await;
        let reference = answer(get_with(&uncached, path, headers).await).await;
        assert_eq!(miss, reference, "{path} {headers:?} (miss)");
        assert_eq!(hit, reference, "{path} {headers:?} (hit)");
    }
    // And what those are: the contract's content type and caching headers.
    let (status, headers, _) = answer(get_with(&cached, AGG, &[]).await).await;
    assert_eq!(status, 200);
    assert!(headers.contains(&(
        "content-type".into(),
        "application/json; charset=utf-8".into()
    )));
    assert!(headers.contains(&("cache-control".into(), "public, max-age=10".into())));
    assert!(headers.contains(&("vary".into(), "Accept".into())));
}

#[tokio::test]
async fn writes_through_another_instance_show_once_the_ttl_has_passed() {
    let app = spawn_app_with(|s| s.aggregate_cache_ttl_ms = 200).await;
    let peer = spawn_peer(&app, |_| {}).await;
    app.rate(ARTICLE, "u-1", 5).await;
    assert_eq!(aggregate(&app).await["count"], 1, "now cached here");
    assert_eq!(
        batch_aggregate(&app).await["count"],
        1,
        "the batch body too"
    );

    let res = app
        .client
        .put(peer.url(ME))
        .bearer_auth(app.reader("u-2"))
        .json(&json!({"stars": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "written through the peer"
    );

    // This instance was not told; after the TTL its entry has expired for certain.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let agg = aggregate(&app).await;
    assert_eq!(agg["count"], 2, "{agg}");
    assert_eq!(histogram(&agg), [1, 0, 0, 0, 1]);
    // The batch body (kept by the page cache, whose TTL is longer) expires with the
    // aggregates it was built from.
    assert_eq!(batch_aggregate(&app).await, agg);
}
