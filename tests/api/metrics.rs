//! Moderation metrics (issue 21) on a crafted history with hand-computed values.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use reqwest::StatusCode;
use sea_orm::{sea_query::Expr, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use tally::{
    domain::ModerationMode,
    entity::{comment, moderation_log},
};

use crate::helpers::{assert_problem, spawn_app, TestApp};

async fn log_row(app: &TestApp, actor: &str, to: &str, at: DateTime<Utc>) {
    moderation_log::Entity::insert(moderation_log::ActiveModel {
        at: Set(at),
        actor_id: Set(actor.to_owned()),
        actor_name: Set(actor.to_owned()),
        action: Set("crafted".to_owned()),
        comment_id: Set(None),
        subject_user_id: Set(None),
        from_status: Set(Some("pending".to_owned())),
        to_status: Set(Some(to.to_owned())),
        reason: Set(None),
        ..Default::default()
    })
    .exec_without_returning(&app.db)
    .await
    .unwrap();
}

/// Moves a comment's creation, and its decision's log row, to crafted times.
async fn craft(app: &TestApp, id: &str, created: DateTime<Utc>, decided: Option<DateTime<Utc>>) {
    comment::Entity::update_many()
        .col_expr(comment::Column::CreatedAt, Expr::value(created))
        .filter(comment::Column::Id.eq(id))
        .exec(&app.db)
        .await
        .unwrap();
    moderation_log::Entity::update_many()
        .col_expr(
            moderation_log::Column::At,
            Expr::value(decided.unwrap_or(created)),
        )
        .filter(moderation_log::Column::CommentId.eq(id))
        .exec(&app.db)
        .await
        .unwrap();
}

async fn metrics(app: &TestApp, query: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/moderation/metrics{query}"),
            Some(&app.moderator("mod-1")),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn metrics_on_a_crafted_history() {
    let app = spawn_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let mut ids = vec![];
    for i in 0..5 {
        let c = app
            .comment("a-1", &format!("u-{i}"), "Something to decide", None)
            .await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    for (who, i, action) in [
        ("mod-1", 0, "approve"),
        ("mod-1", 1, "reject"),
        ("mod-2", 2, "spam"),
        ("mod-1", 3, "approve"),
    ] {
        let res = app.decide(who, &ids[i], &json!({"action": action})).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let now = Utc::now().trunc_subsecs(0);
    let t0 = now - Duration::days(2);
    // Decided 10, 20, 30 and 40 s after creation; c4 waits, created 3 days ago.
    craft(&app, &ids[0], t0, Some(t0 + Duration::seconds(10))).await;
    craft(&app, &ids[1], t0, Some(t0 + Duration::seconds(20))).await;
    craft(&app, &ids[2], t0, Some(t0 + Duration::seconds(30))).await;
    craft(&app, &ids[3], t0, Some(t0 + Duration::seconds(40))).await;
    craft(&app, &ids[4], now - Duration::days(3), None).await;
    // Automatic decisions, a hold (not a decision), and one before the window.
    log_row(&app, "system", "rejected", t0).await;
    log_row(&app, "external", "approved", t0).await;
    log_row(&app, "system", "pending", t0).await;
    log_row(&app, "mod-3", "approved", now - Duration::days(30)).await;

    let m = metrics(&app, "").await;
    let since: DateTime<Utc> = m["since"].as_str().unwrap().parse().unwrap();
    assert!((since - (now - Duration::days(7))).num_seconds().abs() <= 60);
    assert_eq!(
        m["decisions"],
        json!({
            "total": 6,
            "by_action": {"approve": 3, "reject": 2, "spam": 1},
            "automatic": 2,
            "by_actor": [
                {"id": "mod-1", "name": "Name of mod-1", "count": 3},
                {"id": "mod-2", "name": "Name of mod-2", "count": 1},
            ],
        })
    );
    // Nearest rank over [10, 20, 30, 40]: p50 is the 2nd, p90 the 4th.
    assert_eq!(
        m["time_to_decision_secs"],
        json!({"p50": 20.0, "p90": 40.0})
    );
    let age = m["oldest_pending_age_secs"].as_f64().unwrap();
    let three_days = Duration::days(3).num_seconds() as f64;
    assert!((three_days..three_days + 60.0).contains(&age), "age {age}");
    let stats = app.moderator_get("/api/v1/moderation/stats").await;
    assert_eq!(m["queue"], stats);
    assert_eq!(m["queue"]["pending"], 1);

    // A window reaching back 100 days takes in mod-3's old decision.
    let since = (now - Duration::days(100)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let m = metrics(&app, &format!("?since={since}")).await;
    assert_eq!(m["decisions"]["total"], 7);
    assert_eq!(m["decisions"]["by_actor"][2]["id"], "mod-3");
    // A window after everything: no decisions, no percentiles.
    let since = (now + Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let m = metrics(&app, &format!("?since={since}")).await;
    assert_eq!(m["decisions"]["total"], 0);
    assert_eq!(m["decisions"]["by_actor"], json!([]));
    assert_eq!(
        m["time_to_decision_secs"],
        json!({"p50": null, "p90": null})
    );
}

#[tokio::test]
async fn metrics_refuse_a_bad_since_and_readers() {
    let app = spawn_app().await;
    let res = app
        .get(
            "/api/v1/moderation/metrics?since=yesterday",
            Some(&app.moderator("mod-1")),
        )
        .await;
    let problem = assert_problem(res, 400, "bad_request").await;
    assert_eq!(problem["errors"][0]["field"], "since");
    let res = app
        .get("/api/v1/moderation/metrics", Some(&app.reader("r-1")))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let m = metrics(&app, "").await;
    assert_eq!(m["oldest_pending_age_secs"], Value::Null);
}
