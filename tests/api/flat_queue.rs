//! Queue pages cost the same at any table size: the author history comes from kept
//! per-author counts (never counted per page), and the flagged queue walks a partial
//! index. These tests pin the behaviour those structures must preserve.

use migration::{Migrator, MigratorTrait};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tally::domain::ModerationMode;

use crate::helpers::{spawn_app, TestApp};

async fn pre_moderated() -> TestApp {
    let app = spawn_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    app
}

async fn decide_ok(app: &TestApp, id: &str, action: &str) {
    let res = app
        .decide(
            "mod-1",
            id,
            &json!({"action": action, "expected_version": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{action} {id}");
}

fn id_of(c: &Value) -> String {
    c["id"].as_str().expect("comment id").to_owned()
}

/// u-1 ends with 2 approved, 1 rejected, 1 spam, and one comment still pending.
async fn history_for_u1(app: &TestApp) -> String {
    for (i, action) in ["approve", "approve", "reject", "spam"].iter().enumerate() {
        let c = app
            .comment("a-1", "u-1", &format!("Comment number {i}"), None)
            .await;
        decide_ok(app, &id_of(&c), action).await;
    }
    id_of(&app.comment("a-1", "u-1", "Still waiting", None).await)
}

fn history_of(page: &Value, id: &str) -> Value {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["comment"]["id"] == id)
        .map(|i| i["author_history"].clone())
        .expect("the comment is on the page")
}

#[tokio::test]
async fn the_queue_shows_the_authors_history_from_kept_counts() {
    let app = pre_moderated().await;
    let waiting = history_for_u1(&app).await;
    // Another author's decisions never leak into u-1's history.
    let other = app.comment("a-1", "u-2", "Other author", None).await;
    decide_ok(&app, &id_of(&other), "spam").await;

    let page = app.moderator_get("/api/v1/moderation/queue").await;

    assert_eq!(
        history_of(&page, &waiting),
        json!({"approved": 2, "rejected": 1, "spam": 1})
    );
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_comment_moving_between_final_statuses_moves_its_count() {
    let app = pre_moderated().await;
    let c = app.comment("a-1", "u-1", "Changing fortunes", None).await;
    let id = id_of(&c);
    decide_ok(&app, &id, "approve").await;
    let res = app
        .decide(
            "mod-1",
            &id,
            &json!({"action": "spam", "expected_version": 2}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let item: Value = res.json().await.unwrap();

    assert_eq!(
        item["author_history"],
        json!({"approved": 0, "rejected": 0, "spam": 1})
    );
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn the_migration_fills_author_counts_from_existing_comments() {
    let app = pre_moderated().await;
    let waiting = history_for_u1(&app).await;

    // Undo the migration that added the table, then apply it again over existing rows.
    Migrator::down(&app.db, Some(1)).await.unwrap();
    Migrator::up(&app.db, None).await.unwrap();

    assert_eq!(
        app.scalar("SELECT approved FROM author_counts WHERE author_id = 'u-1'")
            .await,
        2
    );
    let page = app.moderator_get("/api/v1/moderation/queue").await;
    assert_eq!(
        history_of(&page, &waiting),
        json!({"approved": 2, "rejected": 1, "spam": 1})
    );
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn the_flagged_queue_pages_through_flagged_comments_in_both_orders() {
    let app = spawn_app().await;
    let mut flagged = vec![];
    for i in 0..5 {
        let c = app
            .comment("a-1", "u-1", &format!("Flag me {i}"), None)
            .await;
        // Unflagged comments in between must never show up.
        app.comment("a-1", "u-2", &format!("Leave me {i}"), None)
            .await;
        assert_eq!(
            app.flag(&id_of(&c), "u-9", "spam").await.status(),
            StatusCode::CREATED
        );
        flagged.push(id_of(&c));
    }
    for (sort, expected) in [
        ("oldest", flagged.clone()),
        ("newest", flagged.iter().rev().cloned().collect()),
    ] {
        let mut seen = vec![];
        let mut url = format!("/api/v1/moderation/queue?queue=flagged&sort={sort}&limit=2");
        loop {
            let page = app.moderator_get(&url).await;
            for item in page["items"].as_array().unwrap() {
                seen.push(item["comment"]["id"].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => {
                    url = format!(
                        "/api/v1/moderation/queue?queue=flagged&sort={sort}&limit=2&cursor={c}"
                    )
                }
                None => break,
            }
        }
        assert_eq!(seen, expected, "flagged queue, {sort}");
    }
}
