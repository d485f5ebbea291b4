//! Concurrent writes on shared counter rows: opposite moderator decisions must not
//! deadlock on PostgreSQL (issue 16) and the counters must still equal a recount.

use futures_util::{stream, StreamExt};
use serde_json::json;
use tally::domain::ModerationMode;

use crate::helpers::{spawn_app_with, TestApp};

/// A small deterministic generator (no timing, no seed from the clock): the same
/// sequence of decisions every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

/// Comments on a few articles: a third approved and flagged (a decision settles the
/// `flagged` queue too), a third replies to those (a decision on a reply climbs its
/// thread), the rest pending.
async fn comments(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids: Vec<String> = vec![];
    for i in 0..n {
        let parent = (i % 3 == 2).then(|| ids[i - 2].clone());
        let c = app
            .comment(
                &format!("article-{}", (i / 3) % 4),
                &format!("u-{}", i % 7),
                &format!("comment number {i}"),
                parent.as_deref(),
            )
            .await;
        let id = c["id"].as_str().unwrap().to_owned();
        if i % 3 == 0 {
            let res = app
                .decide("mod-0", &id, &json!({"action": "approve"}))
                .await;
            assert_eq!(res.status(), 200);
            let res = app.flag(&id, "flagger", "spam").await;
            assert!(res.status().is_success(), "flag {id}: {}", res.status());
        }
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn hundreds_of_concurrent_opposite_decisions_never_fail_and_keep_counters_exact() {
    let app = spawn_app_with(|s| {
        s.db_max_connections = 12;
        s.workers = Some(2);
    })
    .await;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let ids = comments(&app, 36).await;

    let verdicts = ["approve", "reject", "spam"];
    let mut rng = Lcg(16);
    let decisions: Vec<(String, &str, String)> = (0..360)
        .map(|i| {
            let id = ids[rng.next(ids.len())].clone();
            (id, verdicts[rng.next(3)], format!("mod-{}", i % 5))
        })
        .collect();
    let statuses: Vec<(String, u16, String)> = stream::iter(decisions)
        .map(|(id, verdict, moderator)| {
            let app = &app;
            async move {
                // No expected_version: each waits for the one before it on its comment.
                let res = app
                    .decide(&moderator, &id, &json!({"action": verdict}))
                    .await;
                let status = res.status().as_u16();
                let body = if status == 200 {
                    String::new()
                } else {
                    res.text().await.unwrap_or_default()
                };
                (id, status, body)
            }
        })
        .buffer_unordered(48)
        .collect()
        .await;

    let failed: Vec<&(String, u16, String)> =
        statuses.iter().filter(|(_, s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "every decision without expected_version succeeds, got {} failures: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    app.assert_counters_match_recounts().await;
}
