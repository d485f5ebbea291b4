//! The live moderation stream (issue 22): stats on connect, item moves, resume with
//! `Last-Event-ID`, events written through another instance.

use std::time::Duration;

use serde_json::{json, Value};
use tally::domain::ModerationMode;

use crate::helpers::{assert_problem, spawn_app, spawn_peer, TestApp};

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
}

/// Reads frames from an open stream.
struct Stream {
    res: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(base: &str, token: &str, last_event_id: Option<&str>) -> Stream {
        let mut req = reqwest::Client::new()
            .get(format!("{base}/api/v1/moderation/events"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Stream {
            res,
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), waiting at most 15 s.
    async fn next(&mut self) -> Sse {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut sse = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        sse.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        sse.event = v.to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        sse.data = serde_json::from_str(v).unwrap();
                    }
                }
                if any {
                    return sse;
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .expect("an event within 15 s")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events until one matching `pred` (at most 20 read).
    async fn until(&mut self, pred: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let mut seen = vec![];
        for _ in 0..20 {
            let e = self.next().await;
            let done = pred(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
        panic!("not found among {seen:?}");
    }
}

fn entered(id: &str, queue: &str) -> impl Fn(&Sse) -> bool {
    let (id, queue) = (id.to_owned(), queue.to_owned());
    move |e: &Sse| {
        e.event == "item"
            && e.data["comment_id"] == id.as_str()
            && e.data["queue"] == queue.as_str()
            && e.data["change"] == "entered"
    }
}

async fn pre_moderated() -> TestApp {
    let app = spawn_app().await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    app
}

#[tokio::test]
async fn the_stream_sends_stats_on_connect_then_queue_moves_and_new_stats() {
    let app = pre_moderated().await;
    let token = app.moderator("mod-1");
    let mut stream = Stream::open(&app.address, &token, None).await;
    let first = stream.next().await;
    assert_eq!(first.event, "stats");
    assert_eq!(first.data["pending"], 0);
    assert!(first.id.is_some());

    let c = app.comment("a-1", "u-1", "Live one", None).await;
    let id = c["id"].as_str().unwrap();
    let seen = stream.until(entered(id, "pending")).await;
    assert!(seen.last().unwrap().id.is_some());
    let stats = stream.until(|e| e.event == "stats").await;
    assert_eq!(stats.last().unwrap().data["pending"], 1);

    app.decide("mod-1", id, &json!({"action": "approve"})).await;
    let seen = stream.until(entered(id, "approved")).await;
    assert!(seen
        .iter()
        .any(|e| e.event == "item" && e.data["queue"] == "pending" && e.data["change"] == "left"));
    let stats = stream.until(|e| e.event == "stats").await;
    let last = &stats.last().unwrap().data;
    assert_eq!(
        (last["pending"].clone(), last["approved"].clone()),
        (json!(0), json!(1))
    );
}

#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_gets_what_it_missed() {
    let app = pre_moderated().await;
    let token = app.moderator("mod-1");
    let mut stream = Stream::open(&app.address, &token, None).await;
    let first = app.comment("a-1", "u-1", "Seen live", None).await;
    let seen = stream
        .until(entered(first["id"].as_str().unwrap(), "pending"))
        .await;
    let last_id = seen.last().unwrap().id.clone().unwrap();
    drop(stream);

    let missed = app.comment("a-1", "u-2", "Missed while away", None).await;
    let mut again = Stream::open(&app.address, &token, Some(&last_id)).await;
    let got = again
        .until(entered(missed["id"].as_str().unwrap(), "pending"))
        .await;
    assert!(
        got.iter().all(|e| e.data["comment_id"] != first["id"]),
        "nothing before Last-Event-ID again: {got:?}"
    );
}

#[tokio::test]
async fn a_write_through_another_instance_reaches_the_stream() {
    let app = pre_moderated().await;
    let peer = spawn_peer(&app, |_| {}).await;
    let token = app.moderator("mod-1");
    let mut stream = Stream::open(&peer.address, &token, None).await;
    assert_eq!(stream.next().await.event, "stats");
    let c = app.comment("a-1", "u-1", "Written elsewhere", None).await;
    stream
        .until(entered(c["id"].as_str().unwrap(), "pending"))
        .await;
}

#[tokio::test]
async fn the_stream_is_for_moderators() {
    let app = spawn_app().await;
    let res = app
        .get("/api/v1/moderation/events", Some(&app.reader("r")))
        .await;
    assert_problem(res, 403, "forbidden").await;
    let res = app.get("/api/v1/moderation/events", None).await;
    assert_problem(res, 401, "unauthorized").await;
}
