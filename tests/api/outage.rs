//! When the database cannot be reached, requests that need it answer 503 `unavailable`
//! within the acquire timeout (never hang), `/readyz` is 503, `/healthz` stays 200,
//! nothing is written, and the service recovers by itself.
//!
//! The outage is made by holding the pool's only connection from the test: every
//! request then fails to get one, exactly as when the server is down.

use std::time::{Duration, Instant};

use sea_orm::TransactionTrait;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app_with};

#[tokio::test]
async fn without_a_database_connection_requests_get_503_and_the_service_recovers() {
    let app = spawn_app_with(|s| {
        s.db_max_connections = 1;
        s.db_acquire_timeout_secs = 1;
    })
    .await;
    let token = app.reader("u-1");
    app.rate("a", "u-0", 4).await;

    let held = app.db.begin().await.unwrap(); // the only connection
    let started = Instant::now();
    let res = app
        .put(
            "/api/v1/articles/a/ratings/me",
            Some(&token),
            &json!({"stars": 5}),
        )
        .await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "unavailable").await;
    assert_problem(
        app.get("/api/v1/articles/a/rating", None).await,
        503,
        "unavailable",
    )
    .await;
    assert_problem(app.get("/readyz", None).await, 503, "unavailable").await;
    assert_eq!(
        app.get("/healthz", None).await.status(),
        200,
        "the process itself is fine"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503s come within the acquire timeout"
    );
    held.rollback().await.unwrap();

    assert_eq!(
        app.get("/readyz", None).await.status(),
        200,
        "recovers by itself"
    );
    let agg: serde_json::Value = app
        .get("/api/v1/articles/a/rating", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(agg["count"], 1, "the refused write stored nothing");
    let res = app
        .put(
            "/api/v1/articles/a/ratings/me",
            Some(&token),
            &json!({"stars": 5}),
        )
        .await;
    assert_eq!(res.status(), 201);
}

/// A TCP proxy to PostgreSQL that the test can cut (every connection dropped, new ones
/// refused) and restore.
struct CuttableProxy {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> CuttableProxy {
        use std::sync::{atomic::AtomicBool, Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (open2, links2) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !open2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                links2.lock().unwrap().push(task.abort_handle());
            }
        });
        CuttableProxy { port, open, links }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// PostgreSQL only: a real network cut between the service and the database server.
/// (SQLite is a file in the process; the pool test above covers its failure path.)
#[tokio::test]
async fn a_network_cut_to_postgres_gives_503_and_reconnecting_is_automatic() {
    let Some(_) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        // The SQLite pass has no network to cut; the PostgreSQL pass of CI runs this.
        return;
    };
    let db = crate::helpers::TestDb::fresh().await;
    let mut url = reqwest::Url::parse(&db.url).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = CuttableProxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    let app = spawn_app_with(|s| {
        s.database_url = url.to_string();
        s.db_acquire_timeout_secs = 2;
    })
    .await;
    let token = app.reader("u-1");
    app.rate("a", "u-0", 4).await;

    proxy.cut();
    let started = Instant::now();
    let res = app
        .put(
            "/api/v1/articles/a/ratings/me",
            Some(&token),
            &json!({"stars": 5}),
        )
        .await;
    assert_problem(res, 503, "unavailable").await;
    assert_problem(
        app.get("/api/v1/articles/a/rating", None).await,
        503,
        "unavailable",
    )
    .await;
    assert_problem(app.get("/readyz", None).await, 503, "unavailable").await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no request hangs"
    );

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.get("/readyz", None).await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "did not recover after the network came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let res = app
        .put(
            "/api/v1/articles/a/ratings/me",
            Some(&token),
            &json!({"stars": 5}),
        )
        .await;
    assert_eq!(
        res.status(),
        201,
        "writes work again, and the refused one stored nothing"
    );
}
