//! Retention (issue 21): `retention_days_rejected` and the purge of old rejected and
//! spam comments, counters and log kept consistent.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use tally::{
    entity::comment,
    service::{retention, write::db::Db},
};

use crate::helpers::{assert_problem, error_fields, spawn_app, TestApp};

async fn new_comment(app: &TestApp, author: &str, text: &str) -> String {
    let c = app.comment("a-1", author, text, None).await;
    c["id"].as_str().unwrap().to_owned()
}

async fn age(app: &TestApp, id: &str, days: i64) {
    comment::Entity::update_many()
        .col_expr(
            comment::Column::CreatedAt,
            Expr::value(Utc::now() - Duration::days(days)),
        )
        .filter(comment::Column::Id.eq(id))
        .exec(&app.db)
        .await
        .unwrap();
}

async fn exists(app: &TestApp, id: &str) -> bool {
    app.scalar(&format!("SELECT COUNT(*) FROM comments WHERE id = '{id}'"))
        .await
        == 1
}

#[tokio::test]
async fn the_setting_is_null_by_default_at_least_1_and_kept() {
    let app = spawn_app().await;
    let admin = app.admin("adm");
    let res = app.get("/api/v1/admin/settings", Some(&admin)).await;
    let mut settings: Value = res.json().await.unwrap();
    assert_eq!(settings["retention_days_rejected"], Value::Null);

    settings["retention_days_rejected"] = json!(0);
    let res = app
        .put("/api/v1/admin/settings", Some(&admin), &settings)
        .await;
    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(error_fields(&problem), vec!["retention_days_rejected"]);
    settings["retention_days_rejected"] = json!(-3);
    let res = app
        .put("/api/v1/admin/settings", Some(&admin), &settings)
        .await;
    assert!(res.status().is_client_error());

    settings["retention_days_rejected"] = json!(30);
    let res = app
        .put("/api/v1/admin/settings", Some(&admin), &settings)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.get("/api/v1/admin/settings", Some(&admin)).await;
    let stored: Value = res.json().await.unwrap();
    assert_eq!(stored["retention_days_rejected"], 30);
}

#[tokio::test]
async fn old_rejected_and_spam_comments_are_purged_with_their_counts_and_log_kept() {
    let app = spawn_app().await;
    let old_rejected = new_comment(&app, "u-1", "An old rejected opinion").await;
    let old_spam = new_comment(&app, "u-2", "An old spam message").await;
    let new_rejected = new_comment(&app, "u-3", "A recent rejected opinion").await;
    let old_approved = new_comment(&app, "u-4", "An old approved opinion").await;
    for (id, action) in [
        (&old_rejected, "reject"),
        (&old_spam, "spam"),
        (&new_rejected, "reject"),
    ] {
        let res = app.decide("mod-1", id, &json!({"action": action})).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // A claim on one of them goes with it.
    let res = app
        .post(
            &format!("/api/v1/moderation/comments/{old_spam}/claim"),
            Some(&app.moderator("mod-1")),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    for id in [&old_rejected, &old_spam, &old_approved] {
        age(&app, id, 40).await;
    }
    app.set_policy(|p| p.retention_days_rejected = Some(30))
        .await;
    let logged = app.scalar("SELECT COUNT(*) FROM moderation_log").await;

    let db = Db::with_connection(app.db.clone());
    let cutoff = retention::cutoff(Utc::now(), 30).unwrap();
    // One per transaction: two full batches, then an empty look.
    assert_eq!(retention::purge_rejected(&db, cutoff, 1).await.unwrap(), 2);
    assert_eq!(retention::purge_rejected(&db, cutoff, 1).await.unwrap(), 0);

    assert!(!exists(&app, &old_rejected).await);
    assert!(!exists(&app, &old_spam).await);
    assert!(exists(&app, &new_rejected).await);
    assert!(exists(&app, &old_approved).await);
    // The log keeps every row, those of the purged comments too.
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM moderation_log").await,
        logged
    );
    assert_eq!(app.log_of(&old_rejected).await.len(), 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comment_claims").await, 0);
    let stats = app.moderator_get("/api/v1/moderation/stats").await;
    assert_eq!(stats["rejected"], 1);
    assert_eq!(stats["spam"], 0);
    assert_eq!(stats["approved"], 1);
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn a_purged_review_leaves_its_rating_without_text_and_takes_its_votes_along() {
    let app = spawn_app().await;
    let me = "/api/v1/articles/a-1/ratings/me";
    let res = app
        .put(
            me,
            Some(&app.reader("u-1")),
            &json!({"stars": 2, "review": "Buy cheap watches at my shop"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    let review = body["review"]["id"].as_str().unwrap().to_owned();
    // Voted on while it was listed, then judged spam, then old.
    let res = app
        .put(
            &format!("/api/v1/comments/{review}/vote"),
            Some(&app.reader("u-2")),
            &json!({"vote": "down"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .decide("mod-1", &review, &json!({"action": "spam"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    age(&app, &review, 40).await;

    let db = Db::with_connection(app.db.clone());
    let cutoff = retention::cutoff(Utc::now(), 30).unwrap();
    assert_eq!(retention::purge_rejected(&db, cutoff, 10).await.unwrap(), 1);

    assert!(!exists(&app, &review).await);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM comment_votes WHERE comment_id = '{review}'"
        ))
        .await,
        0
    );
    // The stars stay, without a review; a new text makes a new review.
    let res = app.get(me, Some(&app.reader("u-1"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mine: Value = res.json().await.unwrap();
    assert_eq!(mine["stars"], 2);
    assert_eq!(mine["review"], Value::Null);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM ratings WHERE review_id IS NOT NULL")
            .await,
        0
    );
    let res = app
        .put(
            me,
            Some(&app.reader("u-1")),
            &json!({"stars": 3, "review": "Changed my mind: it is fine."}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_ne!(body["review"]["id"].as_str().unwrap(), review);
    app.assert_counters_match_recounts().await;
}
