//! Signed-in comment pages composed from the shared page and the reader's overlay are
//! exactly what the uncached path answers: the same bytes, for many shapes (own pending
//! and approved comments on and off the page, guests, tombstones, the reader's votes,
//! every sort including `best`, every cursor, totals, replies, the reviews listing with
//! each of its sorts and `stars` filters), and they follow every write at once.
//!
//! The oracle is a second instance on the same database with the page cache off, whose
//! signed-in pages are read from the database every time. Every write goes through the
//! first instance, whose cached pages never expire during a test, so only its write
//! epoch retires them.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tally::domain::ModerationMode;

use crate::helpers::{spawn_app_with, spawn_peer, PeerApp, TestApp};

const ARTICLE: &str = "overlaid";
const PAGE: &str = "/api/v1/articles/overlaid/comments";

struct Pair {
    app: TestApp,
    oracle: PeerApp,
}

async fn pair() -> Pair {
    let app = spawn_app_with(|s| s.page_cache_ttl_ms = 600_000).await;
    let oracle = spawn_peer(&app, |s| s.page_cache_entries = 0).await;
    Pair { app, oracle }
}

fn id_of(c: &Value) -> String {
    c["id"].as_str().unwrap().to_owned()
}

impl Pair {
    /// The page at `path` for `token`, through the overlay and from the oracle: the same
    /// status, content type and bytes. Returns the page.
    async fn same(&self, path: &str, token: &str) -> Value {
        let got = self.app.get(path, Some(token)).await;
        let want = self
            .app
            .client
            .get(self.oracle.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), want.status(), "{path}");
        assert_eq!(
            got.headers().get("content-type"),
            want.headers().get("content-type"),
            "{path}"
        );
        let (got, want) = (got.bytes().await.unwrap(), want.bytes().await.unwrap());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{path}"
        );
        serde_json::from_slice(&got).unwrap()
    }

    /// Every page of `base` (any query but the cursor), for each of `tokens`, in the
    /// comment listings' sorts and several sizes, cold and warm, after an anonymous read
    /// and before one.
    async fn all_pages_match(&self, base: &str, tokens: &[String]) {
        self.all_pages_match_in(base, &["newest", "oldest", "best"], tokens)
            .await;
    }

    /// [`Pair::all_pages_match`] in `sorts`; `base` may carry a query already.
    async fn all_pages_match_in(&self, base: &str, sorts: &[&str], tokens: &[String]) {
        let joiner = if base.contains('?') { '&' } else { '?' };
        for sort in sorts {
            for limit in [1, 2, 3, 7, 100] {
                let first = format!("{base}{joiner}sort={sort}&limit={limit}");
                for (i, token) in tokens.iter().enumerate() {
                    let mut path = first.clone();
                    for _ in 0..200 {
                        if i % 2 == 1 {
                            // The shared page is filled by an anonymous read first
                            // (a 404 for a thread only some readers may see).
                            self.app.get(&path, None).await;
                        }
                        let page = self.same(&path, token).await;
                        // Again, now from the caches.
                        self.same(&path, token).await;
                        match page["next_cursor"].as_str() {
                            Some(c) => path = format!("{first}&cursor={c}"),
                            None => break,
                        }
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn signed_in_pages_are_the_uncached_ones_in_every_shape() {
    let p = pair().await;
    let app = &p.app;
    app.set_policy(|p| {
        p.moderation_mode = ModerationMode::Pre;
        p.guest_comments = true;
    })
    .await;
    let approve = async |c: &Value| {
        let res = app
            .decide(
                "mod-1",
                &id_of(c),
                &json!({"action": "approve", "expected_version": 1}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    };
    // Interleaved in time: approved comments of several readers, pending ones of u-1
    // and u-2, a rejected one of u-1, a guest's (named like u-1), replies.
    let mut parents = vec![];
    for i in 0..9 {
        let author = ["u-1", "u-2", "u-3"][i % 3];
        let c = app
            .comment(ARTICLE, author, &format!("Approved {i}"), None)
            .await;
        approve(&c).await;
        parents.push(c);
        let pending_by = ["u-1", "u-2"][i % 2];
        app.comment(ARTICLE, pending_by, &format!("Waiting {i}"), None)
            .await;
    }
    let rejected = app.comment(ARTICLE, "u-1", "Rejected", None).await;
    let res = app
        .decide(
            "mod-1",
            &id_of(&rejected),
            &json!({"action": "reject", "expected_version": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post(
            PAGE,
            None,
            &json!({"body": "A guest", "author_name": "u-1"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    approve(&res.json().await.unwrap()).await;

    // Replies to an approved parent: approved and pending, by u-1 and others.
    let parent = id_of(&parents[1]);
    for i in 0..5 {
        let author = ["u-1", "u-3"][i % 2];
        let r = app
            .comment(ARTICLE, author, &format!("Reply {i}"), Some(&parent))
            .await;
        if i < 3 {
            approve(&r).await;
        }
    }
    // u-1's own approved comment with a reply, then deleted: a tombstone that is theirs.
    let doomed = id_of(&parents[3]);
    let r = app
        .comment(ARTICLE, "u-2", "Reply to the doomed", Some(&doomed))
        .await;
    approve(&r).await;
    let res = app
        .delete(
            &format!("/api/v1/comments/{doomed}"),
            Some(&app.reader("u-1")),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // A pending top-level comment of u-1's with a pending reply of their own: its
    // replies are visible to them (and moderators) only.
    let hidden = app.comment(ARTICLE, "u-1", "Hidden parent", None).await;
    app.comment(ARTICLE, "u-1", "Hidden reply", Some(&id_of(&hidden)))
        .await;

    // Votes: the readers' own on others' comments (up and down, so `best` has ties
    // and differences), and a moderator's on pending comments (which they see), so a
    // pending comment can rank above listed ones in `best`.
    let listed: Vec<Value> = app
        .get(&format!("{PAGE}?limit=100"), None)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .clone();
    // (Tombstones take no votes.)
    for (i, c) in listed
        .iter()
        .filter(|c| c["status"] != "deleted")
        .enumerate()
    {
        for (j, voter) in ["u-1", "u-2", "u-3", "u-4"].iter().enumerate() {
            let v = match (i + j) % 4 {
                0 => "up",
                1 => "down",
                2 if i % 2 == 0 => "up",
                _ => continue,
            };
            // Their own comments refuse votes (403): skipped.
            let res = app
                .put(
                    &format!("/api/v1/comments/{}/vote", id_of(c)),
                    Some(&app.reader(voter)),
                    &json!({"vote": v}),
                )
                .await;
            assert!(
                res.status() == StatusCode::OK || res.status() == StatusCode::FORBIDDEN,
                "{}",
                res.status()
            );
        }
    }
    let everything: Value = app
        .get(&format!("{PAGE}?limit=100"), Some(&app.moderator("mod-1")))
        .await
        .json()
        .await
        .unwrap();
    for c in everything["items"].as_array().unwrap() {
        if c["status"] == "pending" && c["body"] == "Waiting 4" {
            let res = app
                .put(
                    &format!("/api/v1/comments/{}/vote", id_of(c)),
                    Some(&app.moderator("mod-1")),
                    &json!({"vote": "up"}),
                )
                .await;
            assert_eq!(res.status(), StatusCode::OK);
        }
    }

    let tokens: Vec<String> = ["u-1", "u-2", "u-3", "u-4"]
        .iter()
        .map(|u| app.reader(u))
        .chain([app.moderator("mod-1"), app.reader("guest:u-1")])
        .collect();
    p.all_pages_match(PAGE, &tokens).await;
    for parent in [&parent, &doomed, &id_of(&hidden)] {
        p.all_pages_match(&format!("/api/v1/comments/{parent}/replies"), &tokens)
            .await;
    }

    // The overlay's content shows: u-1 has pending comments on the page, and their
    // approved ones are marked.
    let mine = p.same(&format!("{PAGE}?limit=100"), &tokens[0]).await;
    let items = mine["items"].as_array().unwrap();
    assert!(items
        .iter()
        .any(|c| c["status"] == "pending" && c["mine"] == true));
    assert!(items
        .iter()
        .any(|c| c["status"] == "approved" && c["mine"] == true));
    assert!(items
        .iter()
        .any(|c| c["status"] == "deleted" && c["mine"] == true));
    assert!(items.iter().any(|c| c["my_vote"] == "up"));
    assert!(items.iter().any(|c| c["my_vote"] == "down"));
    let anonymous: Value = app
        .get(&format!("{PAGE}?limit=100"), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(mine["total"].as_i64().unwrap() > anonymous["total"].as_i64().unwrap());

    // Errors are the same too.
    for path in [
        format!("{PAGE}?sort=sideways"),
        format!("{PAGE}?cursor=nonsense"),
        format!("{PAGE}?sort=highest"),
        format!("{PAGE}?limit=0"),
        "/api/v1/comments/no-such-comment/replies".to_owned(),
        format!("/api/v1/comments/{}/replies", id_of(&rejected)),
    ] {
        let got = app.get(&path, Some(&tokens[0])).await;
        assert!(got.status().is_client_error(), "{path}");
        let want = app
            .client
            .get(p.oracle.url(&path))
            .bearer_auth(&tokens[0])
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), want.status(), "{path}");
    }
}

#[tokio::test]
async fn a_readers_page_follows_their_writes_and_decisions_at_once() {
    let p = pair().await;
    let app = &p.app;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let u1 = app.reader("u-1");
    let first = app.comment(ARTICLE, "u-2", "Someone else's", None).await;
    let res = app
        .decide(
            "mod-1",
            &id_of(&first),
            &json!({"action": "approve", "expected_version": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Warm every cache: nothing of u-1's yet.
    let page = p.same(PAGE, &u1).await;
    assert_eq!(page["total"], 1);
    p.same(PAGE, &u1).await;

    // Their new comment waits, and shows to them at once.
    let waiting = app.comment(ARTICLE, "u-1", "Mine, waiting", None).await;
    let page = p.same(PAGE, &u1).await;
    assert_eq!(page["items"][0]["id"], waiting["id"]);
    assert_eq!(page["items"][0]["mine"], true);
    assert_eq!(page["total"], 2);

    // An edit shows at once.
    let res = app
        .patch(
            &format!("/api/v1/comments/{}", id_of(&waiting)),
            Some(&u1),
            &json!({"body": "Mine, edited"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = p.same(PAGE, &u1).await;
    assert_eq!(page["items"][0]["body"], "Mine, edited");

    // Approved: still theirs, now for everyone; rejected: gone for them too.
    let res = app
        .decide(
            "mod-1",
            &id_of(&waiting),
            &json!({"action": "approve", "expected_version": 2}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = p.same(PAGE, &u1).await;
    assert_eq!(page["items"][0]["status"], "approved");
    assert_eq!(page["items"][0]["mine"], true);
    let other = app.comment(ARTICLE, "u-1", "Another, waiting", None).await;
    assert_eq!(p.same(PAGE, &u1).await["total"], 3);
    let res = app
        .decide(
            "mod-1",
            &id_of(&other),
            &json!({"action": "reject", "expected_version": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = p.same(PAGE, &u1).await;
    assert_eq!(page["total"], 2);

    // Deleted by them: gone.
    let res = app
        .delete(&format!("/api/v1/comments/{}", id_of(&waiting)), Some(&u1))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(p.same(PAGE, &u1).await["total"], 1);
}

#[tokio::test]
async fn a_reader_with_many_pending_comments_still_gets_their_exact_page() {
    let p = pair().await;
    let app = &p.app;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    // More pending comments than an overlay keeps: the page is read for them.
    for i in 0..=tally::service::page_overlay::MAX_PENDING {
        app.comment(ARTICLE, "u-1", &format!("Waiting {i}"), None)
            .await;
    }
    let u1 = app.reader("u-1");
    p.all_pages_match(PAGE, std::slice::from_ref(&u1)).await;
    let page = p.same(&format!("{PAGE}?limit=5"), &u1).await;
    assert_eq!(
        page["total"],
        tally::service::page_overlay::MAX_PENDING as i64 + 1
    );
}

#[tokio::test]
async fn signed_in_pages_are_served_from_memory() {
    // This instance does not hear of other instances' writes here (it reads the outbox
    // once an hour, no LISTEN), so a write through another one does not move its write
    // epoch: a page that still lacks it after it was answered came from the caches.
    let app = spawn_app_with(|s| {
        s.page_cache_ttl_ms = 600_000;
        s.events_poll_ms = 3_600_000;
    })
    .await;
    let oracle = spawn_peer(&app, |s| s.page_cache_entries = 0).await;
    let p = Pair { app, oracle };
    let app = &p.app;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let theirs = app.comment(ARTICLE, "u-2", "Listed", None).await;
    let res = app
        .decide(
            "mod-1",
            &id_of(&theirs),
            &json!({"action": "approve", "expected_version": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // The approval taught the spam model: its fold commits after the answer, and any
    // commit of this instance retires its cached pages. Let it land before warming.
    app.spam_model_folded().await;
    let waiting = app.comment(ARTICLE, "u-1", "Mine, waiting", None).await;
    let (u1, u3) = (app.reader("u-1"), app.reader("u-3"));
    // Warm: the shared page, u-1's overlay (a pending comment: a composed page) and
    // u-3's (nothing of theirs: the shared bytes).
    let before_u1 = p.same(PAGE, &u1).await;
    assert_eq!(before_u1["total"], 2);
    let before_u3 = p.same(PAGE, &u3).await;
    assert_eq!(before_u3["total"], 1);

    // u-1 posts again through the other instance.
    let res = app
        .client
        .post(p.oracle.url(PAGE))
        .bearer_auth(&u1)
        .json(&json!({"body": "Mine, elsewhere"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    for (token, before) in [(&u1, &before_u1), (&u3, &before_u3)] {
        let cached: Value = app.get(PAGE, Some(token)).await.json().await.unwrap();
        assert_eq!(&cached, before, "served from memory");
    }
    let fresh: Value = app
        .client
        .get(p.oracle.url(PAGE))
        .bearer_auth(&u1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fresh["total"], 3);
    assert_eq!(before_u1["items"][0]["id"], waiting["id"]);
}

#[tokio::test]
async fn a_pending_comment_is_on_its_authors_page_as_soon_as_its_post_is_answered() {
    use futures_util::{future, stream, StreamExt};
    let p = pair().await;
    let app = &p.app;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let path = format!("{PAGE}?limit=100");
    let writers = stream::iter(0..40)
        .map(|i| {
            let path = &path;
            async move {
                // Each writer posts twice: its overlay is cached in between.
                let user = format!("u-{}", i % 20);
                let c = app
                    .comment(ARTICLE, &user, &format!("Waiting {i}"), None)
                    .await;
                let page: Value = app
                    .get(path, Some(&app.reader(&user)))
                    .await
                    .json()
                    .await
                    .unwrap();
                let mine: Vec<&Value> = page["items"].as_array().unwrap().iter().collect();
                assert!(
                    mine.iter().any(|m| m["id"] == c["id"] && m["mine"] == true),
                    "comment {i} missing from its author's page read after its POST"
                );
                assert!(mine.iter().all(|m| m["mine"] == true), "only their own");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>();
    // Readers keep filling the caches with pages read around the commits.
    let readers = future::join_all((0..4).map(|r| {
        let path = &path;
        async move {
            for _ in 0..30 {
                app.get(path, Some(&app.reader(&format!("u-{r}")))).await;
                app.get(path, None).await;
            }
        }
    }));
    future::join(writers, readers).await;
    for u in 0..20 {
        let page = p.same(&path, &app.reader(&format!("u-{u}"))).await;
        assert_eq!(page["total"], 2);
    }
}

#[tokio::test]
async fn signed_in_review_pages_are_the_uncached_ones_in_every_sort() {
    let p = pair().await;
    let app = &p.app;
    app.set_policy(|p| p.moderation_mode = ModerationMode::Pre)
        .await;
    let reviews = format!("/api/v1/articles/{ARTICLE}/reviews");
    // Reviews of every number of stars by ten readers, half approved; u-1's and u-2's
    // stay pending. Votes by the others on the approved ones and on u-2's pending
    // one (a moderator's), so `best` has differences and ties.
    let mut ids = vec![];
    for i in 0..10 {
        let user = format!("u-{i}");
        let res = app
            .put(
                &format!("/api/v1/articles/{ARTICLE}/ratings/me"),
                Some(&app.reader(&user)),
                &json!({"stars": i % 5 + 1, "review": format!("Review {i}")}),
            )
            .await;
        assert!(res.status().is_success(), "review PUT: {}", res.status());
        let body: Value = res.json().await.unwrap();
        let id = body["review"]["id"].as_str().unwrap().to_owned();
        if i % 2 == 0 && i > 2 || i == 3 || i == 5 {
            let res = app
                .decide(
                    "mod-1",
                    &id,
                    &json!({"action": "approve", "expected_version": 1}),
                )
                .await;
            assert_eq!(res.status(), StatusCode::OK);
        }
        ids.push(id);
    }
    // A plain comment of u-1's, pending: never in the reviews listing.
    app.comment(ARTICLE, "u-1", "A comment, not a review", None)
        .await;
    for (i, id) in ids.iter().enumerate() {
        for (j, voter) in ["u-1", "u-2", "u-7", "u-8"].iter().enumerate() {
            let v = match (i * 3 + j) % 5 {
                0 | 2 => "up",
                1 => "down",
                _ => continue,
            };
            // Own reviews (403) and pending ones others cannot see (404): skipped.
            app.put(
                &format!("/api/v1/comments/{id}/vote"),
                Some(&app.reader(voter)),
                &json!({"vote": v}),
            )
            .await;
        }
    }
    let res = app
        .put(
            &format!("/api/v1/comments/{}/vote", ids[2]),
            Some(&app.moderator("mod-1")),
            &json!({"vote": "up"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let tokens: Vec<String> = ["u-1", "u-2", "u-7", "u-9"]
        .iter()
        .map(|u| app.reader(u))
        .chain([app.moderator("mod-1")])
        .collect();
    let sorts = ["best", "newest", "oldest", "highest", "lowest"];
    p.all_pages_match_in(&reviews, &sorts, &tokens).await;
    for stars in [1, 2, 3] {
        p.all_pages_match_in(&format!("{reviews}?stars={stars}"), &sorts, &tokens)
            .await;
    }

    // The overlay's content shows: u-2 sees their pending review and their votes.
    let mine = p.same(&format!("{reviews}?limit=100"), &tokens[1]).await;
    let items = mine["items"].as_array().unwrap();
    assert!(items
        .iter()
        .any(|c| c["status"] == "pending" && c["mine"] == true && c["kind"] == "review"));
    assert!(items.iter().any(|c| c["my_vote"].is_string()));
    assert!(items.iter().all(|c| c["kind"] == "review"));

    // A vote shows on the voter's next page at once.
    let target = items
        .iter()
        .find(|c| c["mine"] == false && c["my_vote"].is_null())
        .map(id_of)
        .unwrap();
    let res = app
        .put(
            &format!("/api/v1/comments/{target}/vote"),
            Some(&tokens[1]),
            &json!({"vote": "down"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = p.same(&format!("{reviews}?limit=100"), &tokens[1]).await;
    let voted = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == target.as_str())
        .unwrap()
        .clone();
    assert_eq!(voted["my_vote"], "down");
    let res = app
        .delete(&format!("/api/v1/comments/{target}/vote"), Some(&tokens[1]))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    p.same(&format!("{reviews}?limit=100&sort=best"), &tokens[1])
        .await;

    // Errors are the same too.
    for path in [
        format!("{reviews}?sort=sideways"),
        format!("{reviews}?stars=6"),
        format!("{reviews}?sort=best&cursor=nonsense"),
    ] {
        let got = app.get(&path, Some(&tokens[0])).await;
        assert!(got.status().is_client_error(), "{path}");
        let want = app
            .client
            .get(p.oracle.url(&path))
            .bearer_auth(&tokens[0])
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), want.status(), "{path}");
    }
}
