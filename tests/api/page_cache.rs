//! Anonymous comment pages served from memory: never stale after a write through this
//! instance (also under concurrency), the same bytes as an uncached answer, a signed-in
//! reader's own comments never shown to others (their pages: `page_overlay.rs`),
//! and bounded staleness across instances.

use futures_util::{future, stream, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tally::domain::ModerationMode;

use crate::helpers::{spawn_app_with, spawn_peer, TestApp};

const PAGE: &str = "/api/v1/articles/paged/comments";

/// Cached pages never expire during a test, so only the write epoch can retire them.
async fn spawn_long_lived_cache() -> TestApp {
    spawn_app_with(|s| s.page_cache_ttl_ms = 600_000).await
}

async fn anonymous_page(app: &TestApp, path: &str) -> Value {
    let res = app.get(path, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(c: &Value) -> String {
    c["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_kind_of_write_shows_on_the_next_anonymous_page() {
    let app = spawn_long_lived_cache().await;
    let first = app.comment("paged", "u-1", "First", None).await;
    assert_eq!(ids(&anonymous_page(&app, PAGE).await), vec![id_of(&first)]);

    // A new comment.
    let second = app.comment("paged", "u-2", "Second", None).await;
    let page = anonymous_page(&app, PAGE).await;
    assert_eq!(ids(&page), vec![id_of(&second), id_of(&first)]);
    assert_eq!(page["total"], 2);

    // An edit.
    let res = app
        .patch(
            &format!("/api/v1/comments/{}", id_of(&first)),
            Some(&app.reader("u-1")),
            &json!({"body": "First, edited"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = anonymous_page(&app, PAGE).await;
    assert_eq!(page["items"][1]["body"], "First, edited");

    // A reply moves its parent's reply count, on the page and in the replies listing.
    let replies = format!("/api/v1/comments/{}/replies", id_of(&first));
    assert_eq!(
        ids(&anonymous_page(&app, &replies).await),
        Vec::<String>::new()
    );
    let reply = app
        .comment("paged", "u-3", "A reply", Some(&id_of(&first)))
        .await;
    assert_eq!(
        anonymous_page(&app, PAGE).await["items"][1]["reply_count"],
        1
    );
    assert_eq!(
        ids(&anonymous_page(&app, &replies).await),
        vec![id_of(&reply)]
    );

    // A moderator's decision.
    let res = app
        .decide(
            "mod-1",
            &id_of(&second),
            &json!({"action": "reject", "expected_version": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(ids(&anonymous_page(&app, PAGE).await), vec![id_of(&first)]);

    // A deletion by its author.
    let res = app
        .delete(
            &format!("/api/v1/comments/{}", id_of(&reply)),
            Some(&app.reader("u-3")),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        ids(&anonymous_page(&app, &replies).await),
        Vec::<String>::new()
    );
    assert_eq!(
        anonymous_page(&app, PAGE).await["items"][0]["reply_count"],
        0
    );
}

#[tokio::test]
async fn a_comment_is_on_the_first_page_as_soon_as_its_post_is_answered() {
    let app = spawn_long_lived_cache().await;
    let writers = stream::iter(0..60)
        .map(|i| {
            let app = &app;
            async move {
                let c = app
                    .comment("paged", &format!("u-{i}"), &format!("Comment {i}"), None)
                    .await;
                let page = anonymous_page(app, &format!("{PAGE}?limit=100")).await;
                assert!(
                    ids(&page).contains(&id_of(&c)),
                    "comment {i} missing from a page read after its POST was answered"
                );
            }
        })
        .buffer_unordered(12)
        .collect::<Vec<()>>();
    // Readers keep filling the cache with pages read around the commits.
    let readers = future::join_all((0..6).map(|_| async {
        for _ in 0..40 {
            anonymous_page(&app, &format!("{PAGE}?limit=100")).await;
        }
    }));
    future::join(writers, readers).await;

    let page = anonymous_page(&app, &format!("{PAGE}?limit=100")).await;
    assert_eq!(ids(&page).len(), 60);
    assert_eq!(page["total"], 60);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn cached_pages_are_the_same_bytes_as_uncached_ones() {
    let cached = spawn_long_lived_cache().await;
    let uncached = spawn_app_with(|s| s.page_cache_entries = 0).await;
    for app in [&cached, &uncached] {
        for i in 0..5 {
            app.comment("paged", "u-1", &format!("Same {i}"), None)
                .await;
        }
    }
    // Ids and times differ between the two databases; compare shapes and headers, and
    // a cache hit against the miss that filled it.
    let paths = [PAGE.to_owned(), format!("{PAGE}?sort=oldest&limit=2")];
    for path in &paths {
        let miss = cached.get(path, None).await;
        let miss_type = miss.headers()["content-type"].clone();
        let miss_body = miss.bytes().await.unwrap();
        let hit = cached.get(path, None).await;
        assert_eq!(hit.headers()["content-type"], miss_type);
        assert_eq!(hit.bytes().await.unwrap(), miss_body, "{path}");

        let plain = uncached.get(path, None).await;
        assert_eq!(plain.headers()["content-type"], miss_type);
        let a: Value = serde_json::from_slice(&miss_body).unwrap();
        let b: Value = plain.json().await.unwrap();
        assert_eq!(
            a["items"].as_array().unwrap().len(),
            b["items"].as_array().unwrap().len()
        );
        assert_eq!(a["total"], b["total"]);
        assert_eq!(a["next_cursor"].is_null(), b["next_cursor"].is_null());
    }
}

#[tokio::test]
async fn a_signed_in_reader_never_gets_the_shared_page() {
    let app = spawn_long_lived_cache().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let approved = app.comment("paged", "u-1", "Approved", None).await;
    let res = app
        .decide(
            "mod-1",
            &id_of(&approved),
            &json!({"action": "approve", "expected_version": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let waiting = app.comment("paged", "u-2", "Waiting", None).await;
    // Fill the anonymous page first.
    assert_eq!(
        ids(&anonymous_page(&app, PAGE).await),
        vec![id_of(&approved)]
    );

    let res = app.get(PAGE, Some(&app.reader("u-2"))).await;
    let mine: Value = res.json().await.unwrap();

    assert_eq!(ids(&mine), vec![id_of(&waiting), id_of(&approved)]);
    assert_eq!(mine["items"][0]["mine"], true);
    assert_eq!(
        ids(&anonymous_page(&app, PAGE).await),
        vec![id_of(&approved)]
    );
}

#[tokio::test]
async fn a_write_through_another_instance_shows_once_the_ttl_has_passed() {
    let app = spawn_app_with(|s| s.page_cache_ttl_ms = 300).await;
    let first = app.comment("paged", "u-1", "Here", None).await;
    assert_eq!(ids(&anonymous_page(&app, PAGE).await), vec![id_of(&first)]);

    let peer = spawn_peer(&app, |_| {}).await;
    let res = app
        .client
        .post(peer.url(PAGE))
        .bearer_auth(app.reader("u-2"))
        .json(&json!({"body": "There"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let there: Value = res.json().await.unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        ids(&anonymous_page(&app, PAGE).await),
        vec![id_of(&there), id_of(&first)]
    );
}
