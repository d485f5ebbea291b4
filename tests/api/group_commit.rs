//! Group commit: writes queued behind a busy writer are committed by ONE transaction,
//! each in its own savepoint, and answered only after that transaction committed.
//!
//! The deterministic tests hold the writer with a first write that waits on a `Notify`
//! until the others are queued (`Db::queued_writes`), then let it go: everything queued
//! meanwhile forms the next batch.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use reqwest::Method;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{json, Value};
use tally::{
    auth::{Role, User},
    domain::{ArticleId, CommentBody, IdempotencyKey, Stars},
    error::ApiError,
    metrics::Metrics,
    service::{
        comments::{self, Author, NewComment},
        idempotency::{IdempotentRequest, Outcome},
        ratings,
        settings::PolicyCache,
        write::db::{Db, Route},
    },
};
use tokio::{sync::Notify, task::JoinHandle};

use crate::helpers::{spawn_app, test_settings, TestApp, TestDb};

/// Any route: the `Db`s of these tests have one writer.
const ROUTE: Route = Route::ANY;

/// A `Db` (with its own writer) on a fresh database with a scratch table.
async fn scratch_db() -> (Db, TestDb) {
    let database = TestDb::fresh().await;
    let mut settings = test_settings();
    settings.database_url = database.url.clone();
    // One writer: these tests hold it to gather a batch behind it.
    let db = Db::with_writers(Db::connect(&settings).await.expect("connect").conn, 1);
    db.conn
        .execute_unprepared("CREATE TABLE gc_probe (n INTEGER NOT NULL)")
        .await
        .expect("scratch table");
    (db, database)
}

async fn count_rows(conn: &impl ConnectionTrait) -> Result<i64, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT CAST(COUNT(*) AS BIGINT) FROM gc_probe",
        ))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no row".into()))?;
    row.try_get_by_index::<i64>(0)
}

async fn probe_values(conn: &DatabaseConnection) -> Vec<i64> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT CAST(n AS BIGINT) FROM gc_probe ORDER BY n",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index::<i64>(0).unwrap())
        .collect()
}

async fn insert(conn: &impl ConnectionTrait, n: i64) -> Result<(), ApiError> {
    conn.execute_unprepared(&format!("INSERT INTO gc_probe (n) VALUES ({n})"))
        .await?;
    Ok(())
}

/// Occupies `db`'s writer: a write (inserting 0) that waits until `release` is notified.
/// Returns once the writer runs it, so everything written next queues behind it.
async fn hold_writer(db: &Db, release: Arc<Notify>) -> JoinHandle<Result<(), ApiError>> {
    let started = Arc::new(Notify::new());
    let handle = tokio::spawn({
        let (db, started) = (db.clone(), started.clone());
        async move {
            db.write(ROUTE, (), move |w, _| {
                let tx = w.tx();
                let (started, release) = (started.clone(), release.clone());
                Box::pin(async move {
                    insert(tx, 0).await?;
                    started.notify_one();
                    release.notified().await;
                    Ok(())
                })
            })
            .await
        }
    });
    started.notified().await;
    handle
}

/// Waits until `n` writes are queued behind the held writer.
async fn until_queued(db: &Db, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.queued_writes() < n {
        assert!(Instant::now() < deadline, "writes never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn writes_queued_behind_a_busy_writer_are_committed_by_one_transaction() {
    let (db, _database) = scratch_db().await;
    let release = Arc::new(Notify::new());
    let first = hold_writer(&db, release.clone()).await;

    const N: i64 = 10;
    let queued: Vec<_> = (1..=N)
        .map(|i| {
            let db = db.clone();
            // A connection of the pool outside the writer's transaction.
            let outside = db.conn.clone();
            tokio::spawn(async move {
                db.write(ROUTE, (), move |w, _| {
                    let tx = w.tx();
                    let outside = outside.clone();
                    Box::pin(async move {
                        insert(tx, i).await?;
                        let seen_inside = count_rows(tx).await?;
                        let committed = count_rows(&outside).await?;
                        Ok((seen_inside, committed))
                    })
                })
                .await
            })
        })
        .collect();
    until_queued(&db, N as usize).await;
    release.notify_one();

    first.await.unwrap().expect("the first write commits");
    let mut seen = Vec::new();
    for (i, handle) in queued.into_iter().enumerate() {
        let (seen_inside, committed) = handle.await.unwrap().expect("queued write commits");
        assert_eq!(
            committed, 1,
            "write {i} ran while only the first write was committed: its batch-mates' rows \
             were not committed yet, so they all share one transaction"
        );
        seen.push(seen_inside);
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (2..=N + 1).collect::<Vec<_>>(),
        "each write saw the uncommitted rows of the writes before it in its batch"
    );
    assert_eq!(count_rows(&db.conn).await.unwrap(), N + 1, "all durable");
    let text = Metrics::default()
        .with_write_batch_sizes(db.write_batch_sizes())
        .render(&[]);
    assert!(
        text.contains("tally_write_batch_size_count 2"),
        "two transactions in all: {text}"
    );
    assert!(
        text.contains(&format!("tally_write_batch_size_sum {}", N + 1)),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_or_panicking_write_is_rolled_back_alone_and_the_batch_commits() {
    let (db, _database) = scratch_db().await;
    let release = Arc::new(Notify::new());
    let first = hold_writer(&db, release.clone()).await;

    let write = |n: i64, fail: Option<fn() -> ApiError>, panic: bool| {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(ROUTE, (), move |w, _| {
                let tx = w.tx();
                Box::pin(async move {
                    insert(tx, n).await?;
                    if panic {
                        panic!("a bug in write {n}");
                    }
                    match fail {
                        Some(error) => Err(error()),
                        None => Ok(n),
                    }
                })
            })
            .await
        })
    };
    // An internal error inside a batch of several gets one more run alone: this one
    // fails only on its first run.
    let runs = Arc::new(AtomicUsize::new(0));
    let flaky = {
        let (db, runs) = (db.clone(), runs.clone());
        tokio::spawn(async move {
            db.write(ROUTE, (), move |w, _| {
                let tx = w.tx();
                let runs = runs.clone();
                Box::pin(async move {
                    insert(tx, 6).await?;
                    match runs.fetch_add(1, Ordering::SeqCst) {
                        0 => Err(ApiError::Internal("transient".into())),
                        _ => Ok(6),
                    }
                })
            })
            .await
        })
    };
    until_queued(&db, 1).await;
    let writes = vec![
        write(1, None, false),
        write(2, None, true),
        write(3, Some(|| ApiError::Banned), false),
        write(4, Some(|| ApiError::validation("parent_id", "bad")), false),
        write(5, None, false),
    ];
    until_queued(&db, 6).await;
    release.notify_one();
    first.await.unwrap().unwrap();

    let results: Vec<_> = join_all(writes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(results[0], Ok(1)), "{:?}", results[0]);
    assert!(
        matches!(&results[1], Err(ApiError::Internal(m)) if m.contains("panicked")),
        "a panic is a 500 for that write only: {:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(ApiError::Banned)),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(results[3], Err(ApiError::Validation(_))),
        "{:?}",
        results[3]
    );
    assert!(matches!(results[4], Ok(5)), "{:?}", results[4]);
    assert!(
        matches!(flaky.await.unwrap(), Ok(6)),
        "rerun alone after the batch"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        probe_values(&db.conn).await,
        vec![0, 1, 5, 6],
        "only the failed writes' rows are gone, the rerun's row is there once"
    );

    // The writer survived the panic.
    let after = db
        .write(ROUTE, (), |w, _| {
            let tx = w.tx();
            Box::pin(async move { insert(tx, 7).await.map(|()| 7) })
        })
        .await;
    assert!(matches!(after, Ok(7)), "{after:?}");
}

#[tokio::test]
async fn a_write_whose_caller_went_away_does_not_break_its_batch() {
    let (db, _database) = scratch_db().await;
    let release = Arc::new(Notify::new());
    let first = hold_writer(&db, release.clone()).await;
    let spawn_write = |n: i64| {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(ROUTE, (), move |w, _| {
                let tx = w.tx();
                Box::pin(async move { insert(tx, n).await.map(|()| n) })
            })
            .await
        })
    };
    let kept = spawn_write(1);
    let dropped = spawn_write(2);
    let kept_too = spawn_write(3);
    until_queued(&db, 3).await;
    dropped.abort(); // the client disconnected while its write was queued
    let _ = dropped.await;
    release.notify_one();
    first.await.unwrap().unwrap();
    assert!(matches!(kept.await.unwrap(), Ok(1)));
    assert!(matches!(kept_too.await.unwrap(), Ok(3)));
    let values = probe_values(&db.conn).await;
    assert_eq!(values, vec![0, 1, 3], "the abandoned write was not done");
}

fn reader(id: &str) -> User {
    User {
        id: id.into(),
        name: format!("Name of {id}"),
        role: Role::Reader,
        verified: false,
    }
}

/// Rating counters on every article equal a recount of the rating rows.
async fn assert_rating_counters_match_recounts(app: &TestApp) {
    let mut checks = vec![
        (
            "rating_count".to_owned(),
            "SELECT COUNT(*) FROM articles a WHERE a.rating_count <> \
             (SELECT COUNT(*) FROM ratings r WHERE r.article_id = a.id)"
                .to_owned(),
        ),
        (
            "rating_sum".to_owned(),
            "SELECT COUNT(*) FROM articles a WHERE a.rating_sum <> \
             (SELECT COALESCE(SUM(r.stars), 0) FROM ratings r WHERE r.article_id = a.id)"
                .to_owned(),
        ),
    ];
    for s in 1..=5 {
        checks.push((
            format!("stars_{s}"),
            format!(
                "SELECT COUNT(*) FROM articles a WHERE a.stars_{s} <> \
                 (SELECT COUNT(*) FROM ratings r WHERE r.article_id = a.id AND r.stars = {s})"
            ),
        ));
    }
    for (what, sql) in checks {
        assert_eq!(app.scalar(&sql).await, 0, "{what} differs from a recount");
    }
}

#[tokio::test]
async fn refused_comments_and_ratings_in_a_batch_get_their_4xx_and_the_rest_commits() {
    let app = spawn_app().await;
    let parent = app.comment("hot", "u-0", "the first word", None).await;
    let parent_id = parent["id"].as_str().unwrap().to_owned();
    let moderator = app.moderator("mod-1");
    let res = app
        .post(
            "/api/v1/moderation/bans",
            Some(&moderator),
            &json!({"user_id": "banned", "reason": "trolling"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .send_with_key(
            Method::POST,
            "/api/v1/articles/hot/comments",
            Some(&app.reader("u-key")),
            "key-1",
            &json!({"body": "keyed"}),
        )
        .await;
    assert_eq!(res.status(), 201);

    // A second writer on the app's pool, so the test can hold it.
    let db = Db::with_writers(app.db.clone(), 1);
    let policies = PolicyCache::default();
    let hot = ArticleId::parse("hot").unwrap();
    let release = Arc::new(Notify::new());
    let first = hold_writer_without_probe(&db, release.clone()).await;

    let comment = |user: &str, body: &str, parent: Option<&str>, key: Option<IdempotentRequest>| {
        let (db, policies, hot) = (db.clone(), policies.clone(), hot.clone());
        let input = NewComment {
            body: CommentBody::parse(body).unwrap(),
            parent_id: parent.map(str::to_owned),
            screened: None,
        };
        let author = Author::User(reader(user));
        tokio::spawn(async move {
            comments::create(&db, &policies, true, author, &hot, input, key.as_ref())
                .await
                .map(|outcome| match outcome {
                    Outcome::Done(view) => view.id,
                    Outcome::Replay(_) => "replayed".into(),
                })
        })
    };
    let rate = |user: &str, stars: u8| {
        let (db, hot, user) = (db.clone(), hot.clone(), reader(user));
        tokio::spawn(async move {
            ratings::put(
                &db,
                &user,
                &hot,
                Stars::try_from(i64::from(stars)).unwrap(),
                true,
                None,
            )
            .await
            .map(|outcome| match outcome {
                Outcome::Done((view, created)) => (view.stars, created),
                Outcome::Replay(_) => (0, false),
            })
        })
    };
    let reused_key = IdempotentRequest {
        scope: "user:u-key".into(),
        key: IdempotencyKey::parse("key-1").unwrap(),
        hash: "a different request".into(),
    };
    let c1 = comment("u-1", "first in the batch", None, None);
    let c_banned = comment("banned", "let me in", None, None);
    let r1 = rate("u-2", 4);
    let c_bad_parent = comment("u-3", "orphan", Some("no-such-comment"), None);
    let r_banned = rate("banned", 1);
    let c_conflict = comment("u-key", "not the keyed text", None, Some(reused_key));
    let c_reply = comment("u-4", "a reply", Some(&parent_id), None);
    let r2 = rate("u-5", 2);
    until_queued(&db, 8).await;
    release.notify_one();
    first.await.unwrap().unwrap();

    let c1 = c1.await.unwrap().expect("comment commits");
    assert!(matches!(c_banned.await.unwrap(), Err(ApiError::Banned)));
    assert_eq!(r1.await.unwrap().expect("rating commits"), (4, true));
    assert!(matches!(
        c_bad_parent.await.unwrap(),
        Err(ApiError::Validation(_))
    ));
    assert!(matches!(r_banned.await.unwrap(), Err(ApiError::Banned)));
    assert!(matches!(
        c_conflict.await.unwrap(),
        Err(ApiError::IdempotencyConflict)
    ));
    let reply = c_reply.await.unwrap().expect("reply commits");
    assert_eq!(r2.await.unwrap().expect("rating commits"), (2, true));
    let text = Metrics::default()
        .with_write_batch_sizes(db.write_batch_sizes())
        .render(&[]);
    assert!(
        text.contains("tally_write_batch_size_count 2")
            && text.contains("tally_write_batch_size_sum 9"),
        "the held write, then the eight in one transaction: {text}"
    );

    // Durable and visible to everyone, with the counters to match.
    let listing: Value = app
        .get("/api/v1/articles/hot/comments?sort=oldest", None)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&c1.as_str()), "{listing}");
    assert_eq!(listing["total"], 3, "u-0's, u-key's and u-1's: {listing}");
    let replies: Value = app
        .get(&format!("/api/v1/comments/{parent_id}/replies"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replies["items"][0]["id"], reply.as_str());
    let agg = app.get_json("/api/v1/articles/hot/rating").await;
    assert_eq!(agg["count"], 2, "{agg}");
    assert_eq!(agg["histogram"]["4"], 1);
    assert_eq!(agg["histogram"]["2"], 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM comments WHERE author_id = 'banned'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM idempotency_keys").await,
        1,
        "the conflicting request stored nothing"
    );
    app.assert_counters_match_recounts().await;
    assert_rating_counters_match_recounts(&app).await;
}

/// Like `hold_writer`, for a database without the scratch table: the held write only waits.
async fn hold_writer_without_probe(
    db: &Db,
    release: Arc<Notify>,
) -> JoinHandle<Result<(), ApiError>> {
    let started = Arc::new(Notify::new());
    let handle = tokio::spawn({
        let (db, started) = (db.clone(), started.clone());
        async move {
            db.write(ROUTE, (), move |_, _| {
                let (started, release) = (started.clone(), release.clone());
                Box::pin(async move {
                    started.notify_one();
                    release.notified().await;
                    Ok(())
                })
            })
            .await
        }
    });
    started.notified().await;
    handle
}

/// Through the service's own writers (two on PostgreSQL, whose batches write their
/// counters side by side). Each rating is answered with the aggregate right after it in
/// commit order, so the answers' counts are exactly 1..=N, as if made one by one.
#[tokio::test]
async fn many_concurrent_ratings_and_comments_on_one_article_are_all_acknowledged_and_counted() {
    let app = spawn_app().await;
    const N: usize = 40;
    let ratings = (0..N).map(|i| {
        let token = app.reader(&format!("rater-{i}"));
        let app = &app;
        async move {
            let res = app
                .put(
                    "/api/v1/articles/hot/ratings/me",
                    Some(&token),
                    &json!({"stars": i % 5 + 1}),
                )
                .await;
            let status = res.status();
            let body: Value = res.json().await.unwrap_or_default();
            let h = &body["rating"]["histogram"];
            let sum: i64 = (1..=5).filter_map(|s| h[s.to_string()].as_i64()).sum();
            assert_eq!(body["rating"]["count"], sum, "{body}");
            (status, sum)
        }
    });
    let comments = (0..N).map(|i| {
        let token = app.reader(&format!("writer-{i}"));
        let app = &app;
        async move {
            app.post(
                "/api/v1/articles/hot/comments",
                Some(&token),
                &json!({"body": format!("comment number {i}")}),
            )
            .await
            .status()
        }
    });
    let (rated, commented) = tokio::join!(join_all(ratings), join_all(comments));
    assert!(rated.iter().all(|(s, _)| *s == 201), "{rated:?}");
    let mut counts: Vec<i64> = rated.iter().map(|(_, n)| *n).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=N as i64).collect::<Vec<_>>());
    assert!(commented.iter().all(|s| *s == 201), "{commented:?}");

    let agg = app.get_json("/api/v1/articles/hot/rating").await;
    assert_eq!(agg["count"], N);
    for s in 1..=5 {
        assert_eq!(agg["histogram"][s.to_string()], N / 5, "{agg}");
    }
    let summary: Value = app
        .get("/api/v1/articles/hot", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(summary["comment_count"], N, "{summary}");
    app.assert_counters_match_recounts().await;
    assert_rating_counters_match_recounts(&app).await;
}

/// PostgreSQL only: a write in a batch that waits on a row lock held elsewhere gives up
/// after `BATCH_LOCK_TIMEOUT` and runs again alone, so the rest of its batch commits and
/// is answered while that lock is still held. (A rating change locks the user's rating
/// row while the batch runs; the article's counters wait for the batch's end.)
#[tokio::test]
async fn on_postgres_a_batched_write_stuck_on_a_lock_lets_its_batch_commit_and_runs_alone() {
    if std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .is_none()
    {
        return; // SQLite has one writer: nothing else can hold a row lock.
    }
    let app = spawn_app().await;
    app.rate("locked", "u-1", 3).await;
    let db = Db::with_writers(app.db.clone(), 1);
    let release = Arc::new(Notify::new());
    let first = hold_writer_without_probe(&db, release.clone()).await;
    // Ok(created) once answered.
    let rate = |article: &str, user: &str| {
        let (db, article, user) = (db.clone(), ArticleId::parse(article).unwrap(), reader(user));
        tokio::spawn(async move {
            let stars = Stars::try_from(5_i64).unwrap();
            ratings::put(&db, &user, &article, stars, true, None)
                .await
                .map(|outcome| match outcome {
                    Outcome::Done((view, created)) => (view.rating.count, created),
                    Outcome::Replay(_) => (-1, false),
                })
        })
    };

    let other = sea_orm::TransactionTrait::begin(&app.db).await.unwrap();
    other
        .execute_unprepared(
            "SELECT 1 FROM ratings WHERE article_id = 'locked' AND user_id = 'u-1' FOR UPDATE",
        )
        .await
        .unwrap();
    let stuck = rate("locked", "u-1");
    let free = rate("free", "u-2");
    until_queued(&db, 2).await;
    release.notify_one();
    first.await.unwrap().unwrap();

    let free = tokio::time::timeout(Duration::from_secs(30), free)
        .await
        .expect("the batch-mate is answered while the lock is still held")
        .unwrap();
    assert!(matches!(free, Ok((1, true))), "{free:?}");
    assert!(
        !stuck.is_finished(),
        "the stuck write waits for the lock, alone"
    );
    other.rollback().await.unwrap();
    let stuck = stuck.await.unwrap();
    assert!(matches!(stuck, Ok((1, false))), "then commits: {stuck:?}");
    let stars: i64 = app
        .scalar("SELECT stars_5 FROM articles WHERE id = 'locked'")
        .await;
    assert_eq!(stars, 1, "the change moved the counters");
    assert_rating_counters_match_recounts(&app).await;
}

/// Ratings in one batch: each is answered with its article's aggregate as it stood
/// right after it (the batch's counters are written once, at its end), a user rating
/// twice in the batch included.
#[tokio::test]
async fn ratings_in_one_batch_are_each_answered_with_the_aggregate_right_after_them() {
    let app = spawn_app().await;
    app.rate("hot", "u-0", 4).await;
    let db = Db::with_writers(app.db.clone(), 1);
    let release = Arc::new(Notify::new());
    let first = hold_writer_without_probe(&db, release.clone()).await;
    let rate = |user: &str, stars: i64| {
        let (db, user) = (db.clone(), reader(user));
        tokio::spawn(async move {
            let article = ArticleId::parse("hot").unwrap();
            let stars = Stars::try_from(stars).unwrap();
            match ratings::put(&db, &user, &article, stars, true, None).await {
                Ok(Outcome::Done((view, _))) => {
                    let h = &view.rating.histogram;
                    Ok([h.one, h.two, h.three, h.four, h.five])
                }
                Ok(Outcome::Replay(_)) => Err("replayed".to_owned()),
                Err(e) => Err(format!("{e:?}")),
            }
        })
    };
    // Spawned one after the other, so they queue (and run) in this order.
    let a = rate("u-1", 5);
    until_queued(&db, 1).await;
    let b = rate("u-2", 3);
    until_queued(&db, 2).await;
    let c = rate("u-1", 1);
    until_queued(&db, 3).await;
    let d = {
        let (db, user) = (db.clone(), reader("u-2"));
        tokio::spawn(
            async move { ratings::delete(&db, &user, &ArticleId::parse("hot").unwrap()).await },
        )
    };
    until_queued(&db, 4).await;
    release.notify_one();
    first.await.unwrap().unwrap();

    assert_eq!(a.await.unwrap(), Ok([0, 0, 0, 1, 1]), "u-1's 5 on u-0's 4");
    assert_eq!(b.await.unwrap(), Ok([0, 0, 1, 1, 1]), "u-2's 3");
    assert_eq!(c.await.unwrap(), Ok([1, 0, 1, 1, 0]), "u-1's 5 became 1");
    d.await.unwrap().expect("u-2's rating removed");
    let agg = app.get_json("/api/v1/articles/hot/rating").await;
    assert_eq!(
        agg["histogram"],
        json!({"1": 1, "2": 0, "3": 0, "4": 1, "5": 0})
    );
    assert_rating_counters_match_recounts(&app).await;
}

/// A write that stores a new top-level comment, counts it and logs it (both deferred, in
/// a batch), then fails when `fail` says so: its counts and log entry must go with its
/// rows.
fn count_a_comment(db: &Db, id: &str, fail: bool) -> JoinHandle<Result<(), ApiError>> {
    let (db, id) = (db.clone(), id.to_owned());
    tokio::spawn(async move {
        db.write(ROUTE, (), move |w, _| {
            let tx = w.tx();
            let id = id.clone();
            Box::pin(async move {
                let now = chrono::Utc::now();
                let model = tally::entity::comment::Model {
                    id,
                    article_id: "hot".into(),
                    parent_id: None,
                    author_id: "u-count".into(),
                    author_name: "U".into(),
                    is_guest: false,
                    body: "counted".into(),
                    status: "approved".into(),
                    version: 1,
                    reply_count: 0,
                    flag_count: 0,
                    auto_score: 0.0,
                    auto_reasons: "[]".into(),
                    fingerprint: None,
                    created_at: now,
                    updated_at: now,
                    edited_at: None,
                    spam_probability: None,
                    kind: "comment".into(),
                    stars: None,
                    verified: false,
                    votes_up: 0,
                    votes_down: 0,
                    best_score: 0.0,
                    flag_weight: 0.0,
                };
                let active: tally::entity::comment::ActiveModel = model.clone().into();
                sea_orm::EntityTrait::insert(active)
                    .exec_without_returning(tx)
                    .await?;
                tally::service::write::counters::status_changed(
                    w,
                    &model,
                    None,
                    tally::domain::ModerationStatus::Approved,
                )
                .await?;
                let log = tally::service::moderation::LogEntry {
                    actor_id: "system",
                    actor_name: "system",
                    action: "hold",
                    comment_id: Some(&model.id),
                    subject_user_id: Some(&model.author_id),
                    from_status: None,
                    to_status: Some("approved"),
                    reason: None,
                };
                tally::service::moderation::append_log(w, log).await?;
                if fail {
                    return Err(ApiError::Forbidden("failed after counting".into()));
                }
                Ok(())
            })
        })
        .await
    })
}

#[tokio::test]
async fn counters_deferred_by_a_batch_are_written_once_and_only_for_the_writes_that_commit() {
    let app = spawn_app().await;
    app.comment("hot", "u-0", "the first word", None).await;
    let db = Db::with_writers(app.db.clone(), 1);

    // One batch: two writes that count a comment each, one that counts and fails.
    let release = Arc::new(Notify::new());
    let first = hold_writer_without_probe(&db, release.clone()).await;
    let ok_1 = count_a_comment(&db, "c-ok-1", false);
    let failed = count_a_comment(&db, "c-failed", true);
    let ok_2 = count_a_comment(&db, "c-ok-2", false);
    until_queued(&db, 3).await;
    release.notify_one();
    first.await.unwrap().unwrap();
    ok_1.await.unwrap().expect("commits");
    assert!(matches!(failed.await.unwrap(), Err(ApiError::Forbidden(_))));
    ok_2.await.unwrap().expect("commits");

    // And one write alone (no batch): counted by the same deferral.
    count_a_comment(&db, "c-alone", false)
        .await
        .unwrap()
        .expect("commits");

    assert_eq!(
        app.scalar("SELECT comment_count FROM articles WHERE id = 'hot'")
            .await,
        4,
        "u-0's, the two of the batch and the one alone"
    );
    assert_eq!(
        app.scalar("SELECT approved FROM author_counts WHERE author_id = 'u-count'")
            .await,
        3
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM comments WHERE id = 'c-failed'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM moderation_log WHERE subject_user_id = 'u-count'")
            .await,
        3,
        "logged once per committed write, not for the failed one"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM moderation_log WHERE comment_id = 'c-failed'")
            .await,
        0
    );
    app.assert_counters_match_recounts().await;
}
