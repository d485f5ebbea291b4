//! Bounded waits (issue 16): a request body trickled a byte at a time gets 408, and a
//! database that stops answering gets 503 instead of a request that hangs. Behaviour
//! only: the bounds are set small so the tests are quick, and nothing asserts a time.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::helpers::{assert_problem, spawn_app_with, TestApp};

/// The answer to a raw request whose body is sent one byte at a time (at most
/// `trickle` bytes of the `declared` ones), read until the server closes.
async fn trickled_answer(app: &TestApp, path: &str, token: &str, declared: usize) -> String {
    let addr = app.address.trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{"
    );
    write.write_all(head.as_bytes()).await.expect("head");
    // Never the whole body: only the server's bound can end this.
    let trickle = tokio::spawn(async move {
        for _ in 0..declared / 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if write.write_all(b" ").await.is_err() {
                break;
            }
        }
        write
    });
    let mut answer = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(60), read.read_to_end(&mut answer));
    let outcome = read_all.await;
    trickle.abort();
    assert!(
        outcome.is_ok(),
        "the server never answered the trickled request"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_trickled_request_body_gets_408_problem_json_and_the_connection_closes() {
    let app = spawn_app_with(|s| s.request_timeout_ms = 300).await;
    let answer = trickled_answer(
        &app,
        "/api/v1/articles/a-1/comments",
        &app.reader("u-1"),
        1000,
    )
    .await;
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(answer.starts_with("HTTP/1.1 408"), "answer was {answer:?}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "answer was {answer:?}"
    );
    assert!(head.contains("connection: close"), "answer was {answer:?}");
    assert!(
        answer.contains(r#""code":"request_timeout""#),
        "answer was {answer:?}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM comments").await, 0);
}

/// Opens a second connection to the test database and takes a lock every write needs:
/// SQLite's write lock (another process's `BEGIN IMMEDIATE`), or on PostgreSQL an
/// exclusive lock on the comments table. Returned so the caller holds it.
async fn hold_write_lock(app: &TestApp) -> sea_orm::DatabaseConnection {
    let mut opt = ConnectOptions::new(app.settings.database_url.clone());
    opt.max_connections(1).sqlx_logging(false);
    let other = Database::connect(opt).await.expect("second connection");
    let sql = match other.get_database_backend() {
        DbBackend::Sqlite => "BEGIN IMMEDIATE",
        _ => "BEGIN; LOCK TABLE comments IN ACCESS EXCLUSIVE MODE",
    };
    other.execute_unprepared(sql).await.expect("take the lock");
    other
}

#[tokio::test]
async fn a_write_stuck_behind_a_lock_gets_503_unavailable_instead_of_waiting() {
    let app = spawn_app_with(|s| s.db_timeout_ms = 300).await;
    let held = hold_write_lock(&app).await;
    let res = app
        .post(
            "/api/v1/articles/a-1/comments",
            Some(&app.reader("u-1")),
            &json!({"body": "stuck"}),
        )
        .await;
    assert!(res.headers().contains_key("retry-after"), "{res:?}");
    assert_problem(res, 503, "unavailable").await;
    held.execute_unprepared("ROLLBACK").await.expect("release");
    held.close().await.ok();
    // The service carries on once the lock is gone.
    app.comment("a-1", "u-1", "after the lock", None).await;
}

/// A TCP proxy to PostgreSQL that, once armed, goes silent (forwards nothing more, in
/// either direction, and closes nothing) on the connection that sends `needle`.
struct SilentProxy {
    port: u16,
    armed: Arc<AtomicBool>,
}

impl SilentProxy {
    async fn start(upstream: String, needle: &'static [u8]) -> SilentProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let armed = Arc::new(AtomicBool::new(false));
        let armed_in = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, needle, armed_in.clone()));
            }
        });
        SilentProxy { port, armed }
    }
}

async fn pipe(client: TcpStream, server: TcpStream, needle: &'static [u8], armed: Arc<AtomicBool>) {
    let silent = Arc::new(AtomicBool::new(false));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up_silent = silent.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let hit =
                armed.load(Ordering::SeqCst) && buf[..n].windows(needle.len()).any(|w| w == needle);
            if hit {
                up_silent.store(true, Ordering::SeqCst);
            }
            if up_silent.load(Ordering::SeqCst) {
                // Silent from now on: hold both halves open, forward nothing.
                std::future::pending::<()>().await;
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = sr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if silent.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}

#[tokio::test]
async fn a_database_connection_that_goes_silent_mid_query_gets_503_not_a_hang() {
    // A silent network connection exists only on PostgreSQL; SQLite's file cannot go
    // quiet that way (its bounded wait is the test above).
    let Some(base) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return;
    };
    let after_at = base.split_once('@').map_or(base.as_str(), |(_, rest)| rest);
    let upstream = after_at
        .split(['/', '?'])
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let proxy = SilentProxy::start(upstream.clone(), b"queue_counters").await;
    let proxied = format!("127.0.0.1:{}", proxy.port);
    let app = spawn_app_with(|s| {
        // Plain text through the proxy, so it can see which query goes by.
        s.database_url = s.database_url.replacen(&upstream, &proxied, 1) + "&sslmode=disable";
        s.db_timeout_ms = 500;
        s.db_max_connections = 2;
    })
    .await;
    let moderator = app.moderator("mod-1");
    // Another query first (the stats' own would be prepared, and sent again by name only).
    let res = app.get("/api/v1/moderation/queue", Some(&moderator)).await;
    assert_eq!(res.status(), 200, "through the proxy while it forwards");

    proxy.armed.store(true, Ordering::SeqCst);
    let res = app.get("/api/v1/moderation/stats", Some(&moderator)).await;
    assert!(res.headers().contains_key("retry-after"), "{res:?}");
    assert_problem(res, 503, "unavailable").await;
}
