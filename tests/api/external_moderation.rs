//! The external moderation hook (issue 21): every answer, a late one, garbage, a refused
//! connection; the id sent is the id kept; the signature; the log's `external` actor;
//! the address rule on the setting.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, spawn_app_with, TestApp};
use crate::receiver::{closed_port_url, signature_ok, Answer, Receiver};

const SECRET: &str = "ext-secret-for-tests";

async fn app_with_hook(url: &str, timeout_ms: u32) -> TestApp {
    let app = spawn_app_with(|s| {
        s.webhook_allow_private = true;
        s.external_moderation_secret = Some(SECRET.into());
    })
    .await;
    let url = url.to_owned();
    app.set_policy(move |p| {
        p.external_moderation_url = Some(url);
        p.external_moderation_timeout_ms = timeout_ms;
    })
    .await;
    app
}

async fn post_comment(app: &TestApp, body: &str) -> Value {
    app.comment("a-1", "u-1", body, None).await
}

/// The moderation item of `id` as a moderator sees it in any queue.
async fn item(app: &TestApp, id: &str) -> Value {
    for queue in ["pending", "approved", "rejected", "spam"] {
        let page = app
            .moderator_get(&format!("/api/v1/moderation/queue?queue={queue}"))
            .await;
        if let Some(found) = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["comment"]["id"] == id)
        {
            return found.clone();
        }
    }
    panic!("{id} is in no queue");
}

#[tokio::test]
async fn each_answer_decides_the_status_and_is_logged_as_external() {
    let receiver = Receiver::start(Answer::json(json!({"action": null}))).await;
    let app = app_with_hook(&receiver.url, 2000).await;
    for (action, status) in [
        (json!("approve"), "approved"),
        (json!("reject"), "rejected"),
        (json!("spam"), "spam"),
        (json!("pending"), "pending"),
    ] {
        receiver.set_answer(Answer::json(
            json!({"action": action, "reason": format!("model says {action}")}),
        ));
        let c = post_comment(&app, &format!("Hello {action}")).await;
        assert_eq!(c["status"], status, "answer {action}");
        let id = c["id"].as_str().unwrap();
        let log = app.log_of(id).await;
        let ext = log
            .iter()
            .find(|l| l["actor"]["id"] == "external")
            .unwrap_or_else(|| panic!("no external log row for {action}: {log:?}"));
        assert_eq!(ext["to_status"], status);
        assert_eq!(ext["reason"], format!("model says {action}"));
    }
    // `null` keeps the rules' verdict (post mode: approved), and logs nothing external.
    receiver.set_answer(Answer::json(json!({"action": null})));
    let c = post_comment(&app, "Keep what the rules say").await;
    assert_eq!(c["status"], "approved");
    assert!(app
        .log_of(c["id"].as_str().unwrap())
        .await
        .iter()
        .all(|l| l["actor"]["id"] != "external"));
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn the_call_carries_the_item_with_the_id_the_comment_keeps_and_is_signed() {
    let receiver = Receiver::start(Answer::json(json!({"action": "pending"}))).await;
    let app = app_with_hook(&receiver.url, 2000).await;
    let c = post_comment(&app, "Check my id").await;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let call = &got[0];
    let sent = call.json();
    assert_eq!(sent["comment"]["comment"]["id"], c["id"]);
    assert_eq!(sent["comment"]["comment"]["body"], "Check my id");
    assert_eq!(
        sent["comment"]["comment"]["status"], "approved",
        "the rules' verdict"
    );
    assert!(sent["comment"]["auto_moderation"]["reasons"].is_array());
    let sig = call.header("Tally-Signature").expect("signed");
    assert!(signature_ok(SECRET, sig, &call.body), "signature verifies");
    assert!(!signature_ok("another secret", sig, &call.body));
}

#[tokio::test]
async fn without_a_secret_the_call_is_not_signed() {
    let receiver = Receiver::start(Answer::json(json!({"action": null}))).await;
    let app = spawn_app_with(|s| s.webhook_allow_private = true).await;
    let url = receiver.url.clone();
    app.set_policy(move |p| p.external_moderation_url = Some(url))
        .await;
    post_comment(&app, "Unsigned").await;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].header("Tally-Signature").is_none());
}

#[tokio::test]
async fn a_late_a_garbled_or_a_refused_answer_keeps_the_rules_verdict_with_a_reason() {
    let receiver = Receiver::start(Answer::json(json!({"action": "spam"}))).await;
    let app = app_with_hook(&receiver.url, 300).await;
    let cases = [
        (
            "late",
            Answer {
                status: 200,
                body: json!({"action": "spam"}).to_string(),
                delay: Duration::from_millis(1500),
            },
        ),
        (
            "garbage",
            Answer {
                status: 200,
                body: "not json at all".into(),
                delay: Duration::ZERO,
            },
        ),
        (
            "unknown action",
            Answer::json(json!({"action": "delete-everything"})),
        ),
        (
            "server error",
            Answer {
                status: 500,
                body: json!({"action": "spam"}).to_string(),
                delay: Duration::ZERO,
            },
        ),
    ];
    for (name, answer) in cases {
        receiver.set_answer(answer);
        let c = post_comment(&app, &format!("Case {name}")).await;
        assert_eq!(c["status"], "approved", "{name}: the rules' verdict");
        let it = item(&app, c["id"].as_str().unwrap()).await;
        let reasons = it["auto_moderation"]["reasons"].as_array().unwrap();
        assert!(
            reasons.contains(&json!("external:unavailable")),
            "{name}: {reasons:?}"
        );
    }
    // Nothing listening at all.
    let closed = closed_port_url();
    app.set_policy(move |p| {
        p.external_moderation_url = Some(closed);
        p.external_moderation_timeout_ms = 300;
    })
    .await;
    let c = post_comment(&app, "Case refused").await;
    assert_eq!(c["status"], "approved");
    let it = item(&app, c["id"].as_str().unwrap()).await;
    assert!(it["auto_moderation"]["reasons"]
        .as_array()
        .unwrap()
        .contains(&json!("external:unavailable")));
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn an_edit_is_screened_again() {
    let receiver = Receiver::start(Answer::json(json!({"action": null}))).await;
    let app = app_with_hook(&receiver.url, 2000).await;
    let c = post_comment(&app, "First text").await;
    assert_eq!(c["status"], "approved");
    let id = c["id"].as_str().unwrap();
    receiver.set_answer(Answer::json(
        json!({"action": "pending", "reason": "edited"}),
    ));
    let res = app
        .patch(
            &format!("/api/v1/comments/{id}"),
            Some(&app.reader("u-1")),
            &json!({"body": "Second text"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let edited: Value = res.json().await.unwrap();
    assert_eq!(edited["status"], "pending");
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let sent = got[1].json();
    assert_eq!(sent["comment"]["comment"]["id"], id);
    assert_eq!(sent["comment"]["comment"]["body"], "Second text");
    assert!(app
        .log_of(id)
        .await
        .iter()
        .any(|l| l["actor"]["id"] == "external" && l["to_status"] == "pending"));
    app.assert_counters_match_recounts().await;
}

#[tokio::test]
async fn the_setting_refuses_non_public_addresses_and_bad_values() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.admin("adm");
    let mut base = serde_json::to_value(tally::domain::Policy::default()).unwrap();
    for (url, timeout, field) in [
        (
            json!("http://127.0.0.1:9/hook"),
            json!(1000),
            "external_moderation_url",
        ),
        (
            json!("http://localhost/hook"),
            json!(1000),
            "external_moderation_url",
        ),
        (
            json!("http://10.0.0.8/hook"),
            json!(1000),
            "external_moderation_url",
        ),
        (
            json!("http://[::1]/hook"),
            json!(1000),
            "external_moderation_url",
        ),
        (
            json!("ftp://93.184.216.34/"),
            json!(1000),
            "external_moderation_url",
        ),
        (json!(null), json!(0), "external_moderation_timeout_ms"),
        (json!(null), json!(10001), "external_moderation_timeout_ms"),
    ] {
        base["external_moderation_url"] = url.clone();
        base["external_moderation_timeout_ms"] = timeout;
        let res = app.put("/api/v1/admin/settings", Some(&admin), &base).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec![field.to_owned()], "{url}");
    }
    // Nothing was stored.
    let stored: Value = app
        .get("/api/v1/admin/settings", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["external_moderation_url"], Value::Null);
    assert_eq!(stored["external_moderation_timeout_ms"], 1000);
}
