//! `spawn_app`: one application and one fresh database per test.

#![allow(dead_code)]

use std::sync::Arc;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use tally::{
    auth::{JwtKeys, Role},
    config::{JwtSettings, Settings},
    domain::Policy,
    service::write::db::Db,
    startup::Application,
};

pub const SECRET: &str = "tests-only-secret-0123456789abcdef";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// A connection to the same database, for asserting on stored rows.
    pub db: DatabaseConnection,
    /// The app's own handle on it (its writers, event bus and spam model folds).
    pub server_db: Db,
    pub keys: Arc<JwtKeys>,
    /// The settings this app was built with (database URL included).
    pub settings: Settings,
    server: actix_web::dev::ServerHandle,
    /// Dropped after the server is stopped (fields drop after `Drop::drop`).
    _database: TestDb,
}

/// The settings every test starts from (literal, never from the environment).
pub fn test_settings() -> Settings {
    Settings {
        bind: "127.0.0.1:0".into(),
        jwt: JwtSettings {
            secret: Some(SECRET.into()),
            ..Default::default()
        },
        write_rate_per_min: 0,
        workers: Some(1),
        db_max_connections: 5,
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    let database = TestDb::fresh().await;
    settings.database_url = database.url.clone();
    configure(&mut settings);
    let app = Application::build(settings.clone())
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let keys = app.keys.clone();
    let db = app.db.conn.clone();
    let server_db = app.db.clone();
    let server = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        db,
        server_db,
        keys,
        settings,
        server,
        _database: database,
    }
}

/// A second instance on the database of `app` (as PostgreSQL deployments run several),
/// with `configure` applied to a copy of `app`'s settings. Stopped when dropped.
pub async fn spawn_peer(app: &TestApp, configure: impl FnOnce(&mut Settings)) -> PeerApp {
    let mut settings = app.settings.clone();
    settings.migrate = false;
    configure(&mut settings);
    let peer = Application::build(settings)
        .await
        .expect("peer application builds");
    let address = format!("http://127.0.0.1:{}", peer.port());
    let server = peer.handle();
    tokio::spawn(peer.run_until_stopped());
    PeerApp { address, server }
}

pub struct PeerApp {
    pub address: String,
    server: actix_web::dev::ServerHandle,
}

impl PeerApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }
}

impl Drop for PeerApp {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the server first (not gracefully: the test is over), so no request of a
        // failed test keeps a transaction open on the schema about to be dropped.
        drop(self.server.stop(false));
    }
}

/// A fresh, migrated-on-first-use database: a temporary SQLite file, or a new schema in
/// the PostgreSQL database of `TEST_DATABASE_URL`, dropped again with this value.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn fresh() -> TestDb {
        // Test clients (reqwest) need a TLS provider: tally's, aws-lc.
        tally::outbound::install_crypto_provider();
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(base) => {
                let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
                let admin = Database::connect(&base)
                    .await
                    .expect("TEST_DATABASE_URL must be reachable");
                admin
                    .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .expect("create test schema");
                admin.close().await.ok();
                let sep = if base.contains('?') { '&' } else { '?' };
                TestDb {
                    url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                    _dir: None,
                    pg: Some((base, schema)),
                }
            }
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                TestDb {
                    url: format!(
                        "sqlite://{}?mode=rwc",
                        dir.path().join("tally.db").display()
                    ),
                    _dir: Some(dir),
                    pg: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg.take() {
            // Drop the schema from a thread with its own runtime (Drop cannot be async), and
            // never wait on it for long: this thread may be the one driving the app's sockets.
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(db) = Database::connect(&base).await {
                        let _ = db.execute_unprepared("SET lock_timeout = '10s'").await;
                        let _ = db
                            .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .await;
                        let _ = db.close().await;
                    }
                });
                let _ = done_tx.send(());
            });
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(15));
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Folds the spam model's pending changes through the app's own handle (as its
    /// fold after each decision does, which a decision's answer does not wait for):
    /// once this returns, every decision answered before is in the model.
    pub async fn spam_model_folded(&self) {
        tally::service::spam::fold_pending(&self.server_db)
            .await
            .expect("fold the spam model's pending changes");
    }

    pub fn token(&self, sub: &str, role: Role) -> String {
        self.keys
            .mint(sub, Some(&format!("Name of {sub}")), role, 600)
            .expect("mint")
    }

    pub fn reader(&self, sub: &str) -> String {
        self.token(sub, Role::Reader)
    }

    pub fn moderator(&self, sub: &str) -> String {
        self.token(sub, Role::Moderator)
    }

    pub fn admin(&self, sub: &str) -> String {
        self.token(sub, Role::Admin)
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let rb = self.client.request(method, self.url(path));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token)
            .send()
            .await
            .expect("request")
    }

    /// The JSON body of an anonymous GET.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path, None)
            .await
            .json()
            .await
            .expect("a JSON body")
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Response {
        self.request(method, path, token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send_json(Method::POST, path, token, body).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send_json(Method::PUT, path, token, body).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send_json(Method::PATCH, path, token, body).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::DELETE, path, token)
            .send()
            .await
            .expect("request")
    }

    /// Rates `article` as `user`; panics unless 200/201.
    pub async fn rate(&self, article: &str, user: &str, stars: i64) -> Value {
        let res = self
            .put(
                &format!("/api/v1/articles/{article}/ratings/me"),
                Some(&self.reader(user)),
                &serde_json::json!({"stars": stars}),
            )
            .await;
        assert!(res.status().is_success(), "rating failed: {}", res.status());
        res.json().await.expect("json")
    }

    /// Posts a comment as `user`; returns the created comment.
    pub async fn comment(
        &self,
        article: &str,
        user: &str,
        body: &str,
        parent: Option<&str>,
    ) -> Value {
        let res = self
            .post(
                &format!("/api/v1/articles/{article}/comments"),
                Some(&self.reader(user)),
                &serde_json::json!({"body": body, "parent_id": parent}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "comment failed");
        res.json().await.expect("json")
    }

    /// Replaces the moderation policy through the admin API (the instance keeps the
    /// policy it read for a second, so a row written behind its back would not apply
    /// at once).
    pub async fn set_policy(&self, f: impl FnOnce(&mut Policy)) {
        let mut p = Policy::default();
        f(&mut p);
        let body = serde_json::to_value(&p).expect("policy as JSON");
        let res = self
            .put(
                "/api/v1/admin/settings",
                Some(&self.admin("policy-admin")),
                &body,
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "store policy");
    }

    /// Runs a query returning one integer (cast to BIGINT: PostgreSQL sums are NUMERIC).
    pub async fn scalar(&self, sql: &str) -> i64 {
        let sql = format!("SELECT CAST(({sql}) AS BIGINT)");
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql,
            ))
            .await
            .expect("query")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("integer")
    }
}

/// Asserts a problem+json response with `status` and `code`; returns its body.
pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/problem+json"),
        "content type was {ct:?}"
    );
    let body: Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["code"], code, "problem was {body}");
    assert_eq!(body["status"], status, "problem was {body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "problem was {body}"
    );
    body
}

/// The fields named in a problem's `errors`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ---- Moderation helpers -----------------------------------------------------------

impl TestApp {
    /// A moderator's decision on one comment.
    pub async fn decide(&self, moderator: &str, comment_id: &str, body: &Value) -> Response {
        self.post(
            &format!("/api/v1/moderation/comments/{comment_id}/decision"),
            Some(&self.moderator(moderator)),
            body,
        )
        .await
    }

    /// GETs `path` as moderator `mod-1`; panics unless 200.
    pub async fn moderator_get(&self, path: &str) -> Value {
        let res = self.get(path, Some(&self.moderator("mod-1"))).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.json().await.expect("json")
    }

    /// The audit log entries of one comment, newest first.
    pub async fn log_of(&self, comment_id: &str) -> Vec<Value> {
        let page = self
            .moderator_get(&format!("/api/v1/moderation/log?comment_id={comment_id}"))
            .await;
        page["items"].as_array().cloned().unwrap_or_default()
    }

    /// Flags a comment as reader `user`.
    pub async fn flag(&self, comment_id: &str, user: &str, reason: &str) -> Response {
        self.post(
            &format!("/api/v1/comments/{comment_id}/flags"),
            Some(&self.reader(user)),
            &serde_json::json!({"reason": reason}),
        )
        .await
    }

    /// Asserts that every kept counter equals a recount of the rows it counts.
    pub async fn assert_counters_match_recounts(&self) {
        for status in ["pending", "approved", "rejected", "spam", "deleted"] {
            let kept = self
                .scalar(&format!(
                    "SELECT count FROM queue_counters WHERE queue = '{status}'"
                ))
                .await;
            let counted = self
                .scalar(&format!(
                    "SELECT COUNT(*) FROM comments WHERE status = '{status}'"
                ))
                .await;
            assert_eq!(kept, counted, "queue counter {status}");
        }
        let checks = [
            (
                "flagged queue",
                "SELECT (SELECT count FROM queue_counters WHERE queue = 'flagged') \
                 - (SELECT COUNT(*) FROM comments WHERE flag_count > 0)",
            ),
            (
                "comments.flag_count",
                "SELECT COUNT(*) FROM comments c WHERE c.flag_count <> \
                 (SELECT COUNT(*) FROM flags f WHERE f.comment_id = c.id AND f.resolved_at IS NULL)",
            ),
            (
                "articles.comment_count",
                "SELECT COUNT(*) FROM articles a WHERE a.comment_count <> \
                 (SELECT COUNT(*) FROM comments c WHERE c.article_id = a.id AND c.status = 'approved')",
            ),
            (
                "articles.top_level_count",
                "SELECT COUNT(*) FROM articles a WHERE a.top_level_count <> \
                 (SELECT COUNT(*) FROM comments c WHERE c.article_id = a.id AND c.parent_id IS NULL \
                  AND c.kind = 'comment' \
                  AND (c.status = 'approved' OR (c.status = 'deleted' AND c.reply_count > 0)))",
            ),
            (
                "articles.review_count",
                "SELECT COUNT(*) FROM articles a WHERE a.review_count <> \
                 (SELECT COUNT(*) FROM comments c WHERE c.article_id = a.id AND c.parent_id IS NULL \
                  AND c.kind = 'review' \
                  AND (c.status = 'approved' OR (c.status = 'deleted' AND c.reply_count > 0)))",
            ),
            (
                "comments.votes_up / votes_down",
                "SELECT COUNT(*) FROM comments c WHERE \
                 c.votes_up <> (SELECT COUNT(*) FROM comment_votes v WHERE v.comment_id = c.id AND v.vote = 'up') \
                 OR c.votes_down <> (SELECT COUNT(*) FROM comment_votes v WHERE v.comment_id = c.id AND v.vote = 'down')",
            ),
            (
                "rating_totals",
                "SELECT (SELECT rating_count FROM rating_totals) - (SELECT COUNT(*) FROM ratings) \
                 + 1000 * ((SELECT rating_sum FROM rating_totals) - (SELECT COALESCE(SUM(stars), 0) FROM ratings))",
            ),
            (
                "review stars follow ratings",
                "SELECT COUNT(*) FROM ratings r JOIN comments c ON c.id = r.review_id \
                 WHERE c.status <> 'deleted' AND (c.stars IS NULL OR c.stars <> r.stars)",
            ),
            (
                "comments.reply_count",
                "SELECT COUNT(*) FROM comments p WHERE p.reply_count <> \
                 (SELECT COUNT(*) FROM comments c WHERE c.parent_id = p.id \
                  AND (c.status = 'approved' OR (c.status = 'deleted' AND c.reply_count > 0)))",
            ),
            (
                "author_counts",
                "SELECT COUNT(*) FROM (SELECT author_id, \
                   SUM(CASE WHEN status = 'approved' THEN 1 ELSE 0 END) AS a, \
                   SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END) AS r, \
                   SUM(CASE WHEN status = 'spam' THEN 1 ELSE 0 END) AS s \
                 FROM comments GROUP BY author_id) c \
                 LEFT JOIN author_counts k ON k.author_id = c.author_id \
                 WHERE COALESCE(k.approved, 0) <> c.a OR COALESCE(k.rejected, 0) <> c.r \
                    OR COALESCE(k.spam, 0) <> c.s",
            ),
            (
                "author_counts without comments",
                "SELECT COUNT(*) FROM author_counts k WHERE k.approved + k.rejected + k.spam > 0 \
                 AND NOT EXISTS (SELECT 1 FROM comments c WHERE c.author_id = k.author_id)",
            ),
            (
                "comments.flag_weight",
                "SELECT COUNT(*) FROM comments c WHERE ABS(c.flag_weight - COALESCE((SELECT \
                 SUM(f.weight) FROM flags f WHERE f.comment_id = c.id \
                 AND f.resolved_at IS NULL), 0)) > 0.000001",
            ),
        ];
        for (what, sql) in checks {
            assert_eq!(self.scalar(sql).await, 0, "{what} differs from a recount");
        }
    }
}

// ---- Idempotency helpers ----------------------------------------------------------

impl TestApp {
    /// Sends `body` as JSON with an `Idempotency-Key` header.
    pub async fn send_with_key(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        key: &str,
        body: &Value,
    ) -> Response {
        self.request(method, path, token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }
}
