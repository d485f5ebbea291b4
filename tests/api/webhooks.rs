//! Webhooks (issue 22): the admin routes, signed deliveries from the outbox, events
//! after moderation, retries, order per comment, and several instances.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tally::domain::ModerationMode;

use crate::helpers::{assert_problem, error_fields, spawn_app, spawn_app_with, TestApp};
use crate::receiver::{signature_ok, Answer, Receiver};

const WAIT: Duration = Duration::from_secs(20);

async fn create_hook(app: &TestApp, url: &str, events: Value) -> Value {
    let res = app
        .post(
            "/api/v1/admin/webhooks",
            Some(&app.admin("adm")),
            &json!({"url": url, "events": events, "description": "test"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn private_app() -> TestApp {
    spawn_app_with(|s| {
        s.webhook_allow_private = true;
        s.webhook_retry_base_ms = 50;
    })
    .await
}

fn types(got: &[crate::receiver::Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn deliveries(app: &TestApp, hook_id: &str) -> Vec<Value> {
    deliveries_paged(app, hook_id, 100).await
}

/// Every delivery of a webhook, newest first, `limit` a page.
async fn deliveries_paged(app: &TestApp, hook_id: &str, limit: usize) -> Vec<Value> {
    let (mut all, mut cursor) = (vec![], String::new());
    loop {
        let res = app
            .get(
                &format!("/api/v1/admin/webhooks/{hook_id}/deliveries?limit={limit}{cursor}"),
                Some(&app.admin("adm")),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let page: Value = res.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        all.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), limit, "a page before the last is full");
                cursor = format!("&cursor={next}");
            }
            None => return all,
        }
    }
}

#[tokio::test]
async fn admins_create_list_and_delete_webhooks_and_see_the_secret_once() {
    let app = private_app().await;
    let created = create_hook(
        &app,
        "http://127.0.0.1:9/hook",
        json!(["comment.published"]),
    )
    .await;
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 30,
        "{secret}"
    );
    assert_eq!(created["events"], json!(["comment.published"]));
    assert_eq!(created["description"], "test");
    let id = created["id"].as_str().unwrap();

    let list: Value = app
        .get("/api/v1/admin/webhooks", Some(&app.admin("adm")))
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id);
    assert!(items[0].get("secret").is_none(), "no secret in the listing");

    assert!(deliveries(&app, id).await.is_empty());

    let res = app
        .delete(
            &format!("/api/v1/admin/webhooks/{id}"),
            Some(&app.admin("adm")),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .delete(
            &format!("/api/v1/admin/webhooks/{id}"),
            Some(&app.admin("adm")),
        )
        .await;
    assert_problem(res, 404, "not_found").await;
    let res = app
        .get(
            &format!("/api/v1/admin/webhooks/{id}/deliveries"),
            Some(&app.admin("adm")),
        )
        .await;
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn webhook_routes_are_for_admins_only() {
    let app = spawn_app().await;
    let body = json!({"url": "https://93.184.216.34/hook", "events": ["*"]});
    let res = app
        .post("/api/v1/admin/webhooks", Some(&app.moderator("m")), &body)
        .await;
    assert_problem(res, 403, "forbidden").await;
    let res = app.post("/api/v1/admin/webhooks", None, &body).await;
    assert_problem(res, 401, "unauthorized").await;
    let res = app
        .get("/api/v1/admin/webhooks", Some(&app.reader("r")))
        .await;
    assert_problem(res, 403, "forbidden").await;
}

#[tokio::test]
async fn bad_webhooks_are_refused_naming_the_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let admin = app.admin("adm");
    for (body, field, why) in [
        (
            json!({"url": "http://127.0.0.1:8080/x", "events": ["*"]}),
            "url",
            "loopback",
        ),
        (
            json!({"url": "http://localhost/x", "events": ["*"]}),
            "url",
            "a name for loopback",
        ),
        (
            json!({"url": "http://192.168.0.10/x", "events": ["*"]}),
            "url",
            "private",
        ),
        (
            json!({"url": "http://169.254.169.254/latest", "events": ["*"]}),
            "url",
            "link-local",
        ),
        (
            json!({"url": "http://[fd00::1]/x", "events": ["*"]}),
            "url",
            "unique local",
        ),
        (
            json!({"url": "file:///etc/passwd", "events": ["*"]}),
            "url",
            "scheme",
        ),
        (
            json!({"url": "https://93.184.216.34/x", "events": []}),
            "events",
            "empty",
        ),
        (
            json!({"url": "https://93.184.216.34/x", "events": ["*", "rating.changed"]}),
            "events",
            "star not alone",
        ),
        (
            json!({"url": "https://93.184.216.34/x", "events": ["comment.eaten"]}),
            "events[0]",
            "unknown type",
        ),
        (
            json!({"url": "https://93.184.216.34/x", "events": ["*"], "description": "x".repeat(501)}),
            "description",
            "long",
        ),
    ] {
        let res = app
            .post("/api/v1/admin/webhooks", Some(&admin), &body)
            .await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(error_fields(&problem), vec![field.to_owned()], "{why}");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM webhooks").await, 0);
}

#[tokio::test]
async fn a_published_comment_is_delivered_signed_with_its_item() {
    let receiver = Receiver::start(Answer::json(json!({}))).await;
    let app = private_app().await;
    let hook = create_hook(&app, &receiver.url, json!(["*"])).await;
    let secret = hook["secret"].as_str().unwrap();
    let c = app.comment("a-1", "u-1", "Hello hooks", None).await;

    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(types(&got), ["comment.created", "comment.published"]);
    for r in &got {
        let sig = r.header("Tally-Signature").expect("signed");
        assert!(signature_ok(secret, sig, &r.body), "signature verifies");
        let body = r.json();
        assert_eq!(r.header("Tally-Event-Id"), body["id"].as_str());
        assert_eq!(r.header("Tally-Event-Type"), body["type"].as_str());
        assert_eq!(body["data"]["item"]["comment"]["id"], c["id"]);
        assert!(body["created_at"].is_string());
    }
    assert_ne!(got[0].json()["id"], got[1].json()["id"]);

    // The listing shows both delivered, after one attempt each.
    let hook_id = hook["id"].as_str().unwrap();
    let mut listed = vec![];
    for _ in 0..100 {
        listed = deliveries(&app, hook_id).await;
        if listed.iter().all(|d| d["status"] == "delivered") && listed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed.len(), 2);
    for d in &listed {
        assert_eq!(d["status"], "delivered");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_status_code"], 200);
        assert!(d["delivered_at"].is_string());
        assert_eq!(d["next_attempt_at"], Value::Null);
    }
    // Each listed delivery is one of the events received, under its own type.
    let pairs = |v: Vec<(Value, Value)>| {
        let mut v: Vec<String> = v.iter().map(|(i, t)| format!("{i} {t}")).collect();
        v.sort();
        v
    };
    let sent = got
        .iter()
        .map(|r| (r.json()["id"].clone(), r.json()["type"].clone()));
    let listed_pairs = listed
        .iter()
        .map(|d| (d["event_id"].clone(), d["type"].clone()));
    assert_eq!(pairs(listed_pairs.collect()), pairs(sent.collect()));
}

#[tokio::test]
async fn undoing_the_batch_migration_gives_each_delivery_its_row_again() {
    use migration::{Migrator, MigratorTrait};
    let receiver = Receiver::start(Answer::json(json!({}))).await;
    let app = private_app().await;
    let hook = create_hook(&app, &receiver.url, json!(["*"])).await;
    let hook_id = hook["id"].as_str().unwrap();
    app.comment("a-1", "u-1", "Hello hooks", None).await;
    receiver.wait_for(2, WAIT).await;
    let mut listed = vec![];
    for _ in 0..100 {
        listed = deliveries(&app, hook_id).await;
        if listed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed.len(), 2);
    // One round delivered both: one row.
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM webhook_deliveries").await,
        1
    );

    Migrator::down(&app.db, Some(1)).await.unwrap();
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM webhook_deliveries").await,
        2
    );
    for d in &listed {
        let event_id = d["event_id"].as_str().unwrap();
        let row = format!(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = '{event_id}' \
             AND event_type = '{}' AND status = 'delivered' AND attempts = 1 \
             AND last_status_code = 200 AND delivered_at IS NOT NULL",
            d["type"].as_str().unwrap()
        );
        assert_eq!(app.scalar(&row).await, 1, "{event_id}");
    }
    Migrator::up(&app.db, None).await.unwrap();
    assert_eq!(deliveries(&app, hook_id).await, listed);
}

#[tokio::test]
async fn a_held_comment_is_published_only_once_a_moderator_approves_it() {
    let receiver = Receiver::start(Answer::json(json!({}))).await;
    let app = private_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    create_hook(
        &app,
        &receiver.url,
        json!(["comment.published", "comment.status_changed"]),
    )
    .await;
    let c = app.comment("a-1", "u-1", "Wait for me", None).await;
    assert_eq!(c["status"], "pending");
    let res = app
        .decide(
            "mod-1",
            c["id"].as_str().unwrap(),
            &json!({"action": "approve"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(types(&got), ["comment.status_changed", "comment.published"]);
    let changed = got[0].json();
    assert_eq!(changed["data"]["from"], "pending");
    assert_eq!(changed["data"]["to"], "approved");
    assert_eq!(changed["data"]["actor"]["id"], "mod-1");
    assert_eq!(changed["data"]["item"]["comment"]["status"], "approved");
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_until_it_answers_and_order_is_kept() {
    let receiver = Receiver::start(Answer {
        status: 503,
        body: "{}".into(),
        delay: Duration::ZERO,
    })
    .await;
    let app = private_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let hook = create_hook(&app, &receiver.url, json!(["*"])).await;
    let c = app.comment("a-1", "u-1", "Retry me", None).await;
    let id = c["id"].as_str().unwrap();
    app.decide("mod-1", id, &json!({"action": "approve"})).await;
    app.decide("mod-1", id, &json!({"action": "reject"})).await;
    // A few failed attempts of the first event, and nothing of the later ones yet.
    let failed = receiver.wait_for(3, WAIT).await;
    assert!(failed.len() >= 3);
    assert!(
        failed.iter().all(|r| r.json()["type"] == "comment.created"),
        "later events wait for the first: {:?}",
        types(&failed)
    );
    receiver.set_answer(Answer::json(json!({})));
    let deadline = tokio::time::Instant::now() + WAIT;
    let delivered = loop {
        let ok: Vec<crate::receiver::Received> = receiver
            .received()
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect();
        if ok.len() >= 4 || tokio::time::Instant::now() > deadline {
            break ok;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        types(&delivered),
        [
            "comment.created",
            "comment.status_changed",
            "comment.published",
            "comment.status_changed"
        ],
        "in commit order"
    );
    let listed = deliveries(&app, hook["id"].as_str().unwrap()).await;
    let first = listed.last().unwrap();
    assert_eq!(first["type"], "comment.created");
    assert!(first["attempts"].as_i64().unwrap() >= 3);
}

#[tokio::test]
async fn a_rating_change_carries_the_aggregate() {
    let receiver = Receiver::start(Answer::json(json!({}))).await;
    let app = private_app().await;
    create_hook(&app, &receiver.url, json!(["rating.changed"])).await;
    app.rate("a-1", "u-1", 4).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(types(&got), ["rating.changed"]);
    let data = &got[0].json()["data"];
    assert_eq!(data["article_id"], "a-1");
    assert_eq!(data["rating"]["count"], 1);
}

#[tokio::test]
async fn two_instances_deliver_each_event_once() {
    let receiver = Receiver::start(Answer::json(json!({}))).await;
    let app = private_app().await;
    let _peer = crate::helpers::spawn_peer(&app, |_| {}).await;
    create_hook(&app, &receiver.url, json!(["comment.created"])).await;
    for i in 0..20 {
        app.comment("a-1", &format!("u-{i}"), &format!("Comment {i}"), None)
            .await;
    }
    let got = receiver.wait_for(20, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_later = receiver.received();
    assert_eq!(got.len(), 20);
    assert_eq!(got_later.len(), 20, "no event twice");
    let mut ids: Vec<String> = got_later
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
}

#[tokio::test]
async fn events_committed_before_a_kill_9_are_delivered_after_the_restart_exactly_once() {
    use crate::cli::serve_env;
    let db = crate::helpers::TestDb::fresh().await;
    let receiver = Receiver::start(Answer {
        status: 503,
        body: "{}".into(),
        delay: Duration::ZERO,
    })
    .await;
    let env = [
        ("TALLY_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("TALLY_WEBHOOK_RETRY_BASE_MS", "100"),
    ];
    let keys = tally::auth::JwtKeys::from_settings(&tally::config::JwtSettings {
        secret: Some(crate::helpers::SECRET.into()),
        ..Default::default()
    })
    .unwrap();
    let admin = keys
        .mint("adm", None, tally::auth::Role::Admin, 600)
        .unwrap();
    let reader = keys
        .mint("u-1", None, tally::auth::Role::Reader, 600)
        .unwrap();
    let client = reqwest::Client::new();

    let mut first = serve_env(&db.url, &env);
    let res = client
        .post(format!("{}/api/v1/admin/webhooks", first.address))
        .bearer_auth(&admin)
        .json(&json!({"url": receiver.url, "events": ["comment.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let mut ids = vec![];
    for i in 0..10 {
        let res = client
            .post(format!("{}/api/v1/articles/a-1/comments", first.address))
            .bearer_auth(&reader)
            .json(&json!({"body": format!("comment {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let c: Value = res.json().await.unwrap();
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    first.child.kill().unwrap(); // SIGKILL: nothing runs on the way out
    first.child.wait().unwrap();

    receiver.set_answer(Answer::json(json!({})));
    let mut second = serve_env(&db.url, &env);
    // A claim the killed process held runs out after its lease (15 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let ok: Vec<crate::receiver::Received> = receiver
            .received()
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect();
        if ok.len() >= ids.len() || tokio::time::Instant::now() > deadline {
            break ok;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let again = receiver
        .received()
        .into_iter()
        .filter(|r| r.answered == 200)
        .count();
    let mut got: Vec<String> = delivered
        .iter()
        .map(|r| {
            r.json()["data"]["item"]["comment"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each committed comment once");
    assert_eq!(again, ids.len(), "nothing twice");
    let status = crate::cli::sigterm_and_wait(&mut second.child).await;
    assert!(status.success());
}

#[tokio::test]
async fn a_delivery_claimed_at_dispatch_whose_attempt_was_cut_off_is_sent_again_after_its_lease() {
    use crate::cli::serve_env;
    let db = crate::helpers::TestDb::fresh().await;
    // The first attempt hangs (the receiver answers after a minute): the process is
    // killed with it in flight, its outcome never recorded.
    let receiver = Receiver::start(Answer {
        status: 200,
        body: "{}".into(),
        delay: Duration::from_secs(60),
    })
    .await;
    let env = [("TALLY_WEBHOOK_ALLOW_PRIVATE", "true")];
    let keys = tally::auth::JwtKeys::from_settings(&tally::config::JwtSettings {
        secret: Some(crate::helpers::SECRET.into()),
        ..Default::default()
    })
    .unwrap();
    let admin = keys
        .mint("adm", None, tally::auth::Role::Admin, 600)
        .unwrap();
    let reader = keys
        .mint("u-1", None, tally::auth::Role::Reader, 600)
        .unwrap();
    let client = reqwest::Client::new();
    let mut first = serve_env(&db.url, &env);
    let res = client
        .post(format!("{}/api/v1/admin/webhooks", first.address))
        .bearer_auth(&admin)
        .json(&json!({"url": receiver.url, "events": ["comment.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let hook: Value = res.json().await.unwrap();
    let posted = tokio::time::Instant::now();
    let res = client
        .post(format!("{}/api/v1/articles/a-1/comments", first.address))
        .bearer_auth(&reader)
        .json(&json!({"body": "cut off"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "the first attempt is under way");
    first.child.kill().unwrap(); // SIGKILL, the attempt in flight
    first.child.wait().unwrap();

    receiver.set_answer(Answer::json(json!({})));
    let mut second = serve_env(&db.url, &env);
    // The new instance leaves it alone while the dead one's claim holds (15 s from
    // before the first attempt), then sends it again.
    let again = receiver.wait_for(2, Duration::from_secs(60)).await;
    assert_eq!(again.len(), 2, "sent again after the lease");
    assert!(
        posted.elapsed() >= Duration::from_secs(14),
        "not before the lease ran out ({:?})",
        posted.elapsed()
    );
    assert_eq!(
        again[0].header("Tally-Event-Id"),
        again[1].header("Tally-Event-Id"),
        "the same event, for the receiver to tell"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let res = client
            .get(format!(
                "{}/api/v1/admin/webhooks/{}/deliveries",
                second.address,
                hook["id"].as_str().unwrap()
            ))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        let page: Value = res.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        // Listed once its attempt is over (a fresh delivery is written with its
        // outcome), and only once.
        assert!(items.len() <= 1, "{items:?}");
        if items.first().is_some_and(|d| d["status"] == "delivered") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{items:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = crate::cli::sigterm_and_wait(&mut second.child).await;
    assert!(status.success());
}

/// The Python receiver of `tests/receivers/verify_webhook.py`, stopped when dropped.
struct PythonReceiver {
    child: std::process::Child,
    port: u16,
    lines: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl PythonReceiver {
    fn start(secret: &str) -> PythonReceiver {
        use std::io::{BufRead, BufReader};
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/receivers/verify_webhook.py"
        );
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(secret)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the receiver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
        let got = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let sink = got.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        PythonReceiver {
            child,
            port,
            lines: got,
        }
    }
}

impl Drop for PythonReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_independent_python_receiver_verifies_every_signature() {
    let app = private_app().await;
    // The secret is known once the webhook exists, and the receiver needs it to start:
    // create the webhook, start the receiver with its secret, then aim the webhook at it.
    let hook = create_hook(&app, "http://127.0.0.1:9/placeholder", json!(["*"])).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let receiver = PythonReceiver::start(&secret);
    let url = format!("http://127.0.0.1:{}/hook", receiver.port);
    let sql = format!(
        "UPDATE webhooks SET url = '{url}' WHERE id = '{}'",
        hook["id"].as_str().unwrap()
    );
    sea_orm::ConnectionTrait::execute_unprepared(&app.db, &sql)
        .await
        .unwrap();
    let c = app.comment("a-1", "u-1", "Verify me in Python", None).await;
    app.rate("a-1", "u-1", 5).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let got = loop {
        let got = receiver.lines.lock().unwrap().clone();
        if got.len() >= 3 || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|l| l["ok"] == true), "{got:?}");
    let mut kinds: Vec<&str> = got.iter().map(|l| l["type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["comment.created", "comment.published", "rating.changed"]
    );
    assert!(c["id"].is_string());
}

#[tokio::test]
async fn a_held_comment_its_author_edits_past_the_rules_is_published_once() {
    let receiver = Receiver::start(Answer::json(json!({}))).await;
    let app = private_app().await;
    app.set_policy(|p| p.suspect_words = vec!["casino".into()])
        .await;
    create_hook(
        &app,
        &receiver.url,
        json!(["comment.published", "comment.status_changed"]),
    )
    .await;
    let c = app.comment("a-1", "u-1", "Best casino", None).await;
    assert_eq!(c["status"], "pending");
    let id = c["id"].as_str().unwrap();
    // The edit takes the suspect word out: the rules now let it through.
    let res = app
        .patch(
            &format!("/api/v1/comments/{id}"),
            Some(&app.reader("u-1")),
            &json!({"body": "Best card game"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let edited: Value = res.json().await.unwrap();
    assert_eq!(edited["status"], "approved");
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(types(&got), ["comment.status_changed", "comment.published"]);
    let changed = got[0].json();
    assert_eq!(changed["data"]["from"], "pending");
    assert_eq!(changed["data"]["to"], "approved");
    assert_eq!(changed["data"]["actor"]["id"], "system");
    assert_eq!(got[1].json()["data"]["item"]["comment"]["id"], c["id"]);

    // An edit that keeps it approved publishes nothing again; a later comment is the
    // next thing the receiver hears.
    let res = app
        .patch(
            &format!("/api/v1/comments/{id}"),
            Some(&app.reader("u-1")),
            &json!({"body": "Best card game, really"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let later = app.comment("a-1", "u-2", "Plain words", None).await;
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3, "{:?}", types(&got));
    assert_eq!(got[2].json()["type"], "comment.published");
    assert_eq!(got[2].json()["data"]["item"]["comment"]["id"], later["id"]);
}

#[tokio::test]
async fn waves_of_concurrent_comments_reach_two_webhooks_once_each_and_in_order() {
    // Each wave is enough at once for a busy round (`BUSY_ROUND` events), after which
    // the sender pauses (`LINGER`); the next wave commits during that pause and goes
    // out with the round after it. Nothing may be lost, doubled or reordered by that.
    const WAVES: usize = 3;
    const PER_WAVE: usize = 16;
    let receiver = Receiver::start(Answer::json(json!({}))).await;
    let app = private_app().await;
    let (mut hooks, mut hook_ids) = (vec![], vec![]);
    for _ in 0..2 {
        let h = create_hook(&app, &receiver.url, json!(["*"])).await;
        hooks.push(h["secret"].as_str().unwrap().to_owned());
        hook_ids.push(h["id"].as_str().unwrap().to_owned());
    }
    let app = &app;
    let mut created: Vec<Value> = vec![];
    for wave in 0..WAVES {
        let posted = futures_util::future::join_all((0..PER_WAVE).map(|i| async move {
            let (article, user) = (format!("a-{}", i % 3), format!("u-{wave}-{i}"));
            app.comment(&article, &user, &format!("Wave {wave} comment {i}"), None)
                .await
        }))
        .await;
        created.extend(posted);
        // created + published, to each webhook
        let so_far = 2 * created.len() * 2;
        assert!(receiver.wait_for(so_far, WAIT).await.len() >= so_far);
    }
    let expected = 2 * created.len() * 2;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = receiver
        .received()
        .into_iter()
        .filter(|r| r.answered == 200)
        .collect::<Vec<_>>();
    assert_eq!(got.len(), expected, "no delivery twice");
    for secret in &hooks {
        let mine: Vec<Value> = got
            .iter()
            .filter(|r| signature_ok(secret, r.header("Tally-Signature").unwrap(), &r.body))
            .map(|r| r.json())
            .collect();
        assert_eq!(
            mine.len(),
            2 * WAVES * PER_WAVE,
            "each webhook hears every event once"
        );
        for c in &created {
            let id = c["id"].as_str().unwrap();
            let of_it: Vec<&str> = mine
                .iter()
                .filter(|e| e["data"]["item"]["comment"]["id"] == id)
                .map(|e| e["type"].as_str().unwrap())
                .collect();
            assert_eq!(
                of_it,
                ["comment.created", "comment.published"],
                "comment {id}"
            );
        }
    }
    // The listing shows each delivery once, delivered, newest first, page after page
    // (7 a page cuts through the rows that hold a round's deliveries, an even number).
    for (secret, hook_id) in hooks.iter().zip(&hook_ids) {
        let whole = deliveries(app, hook_id).await;
        let paged = deliveries_paged(app, hook_id, 7).await;
        assert_eq!(paged, whole);
        assert_eq!(whole.len(), 2 * WAVES * PER_WAVE);
        let mut heard: Vec<String> = got
            .iter()
            .filter(|r| signature_ok(secret, r.header("Tally-Signature").unwrap(), &r.body))
            .map(|r| format!("{} {}", r.json()["id"], r.json()["type"]))
            .collect();
        let mut listed: Vec<String> = whole
            .iter()
            .map(|d| format!("{} {}", d["event_id"], d["type"]))
            .collect();
        // Newest first: event ids ("<outbox id>-<type>") fall along the listing.
        let outbox = |v: &Value| -> i64 {
            v["event_id"]
                .as_str()
                .unwrap()
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(whole.windows(2).all(|w| outbox(&w[0]) >= outbox(&w[1])));
        for d in &whole {
            assert_eq!(d["status"], "delivered");
            assert_eq!(d["attempts"], 1);
            assert_eq!(d["last_status_code"], 200);
            assert!(d["delivered_at"].is_string());
            assert_eq!(d["next_attempt_at"], Value::Null);
        }
        heard.sort();
        listed.sort();
        assert_eq!(listed, heard, "the listing is what the receiver heard");
    }
    // A round's deliveries delivered at once are stored together: at most one row for
    // a comment's two events to a webhook.
    let rows = app.scalar("SELECT COUNT(*) FROM webhook_deliveries").await;
    assert!(rows <= (2 * WAVES * PER_WAVE) as i64, "{rows} rows");
}
