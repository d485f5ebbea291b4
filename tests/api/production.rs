//! Production concerns (issue 19): TLS to PostgreSQL, write limits shared through Redis
//! (and the fall-back when it goes away), singleton background jobs, the trial-mode
//! guard, `/readyz` on an unmigrated database, and database errors that say what to do.

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::{json, Value};
use tally::{
    config::Settings,
    service::{connect, idempotency, singleton, write::db::Db},
    startup::{Application, StartError},
};

use crate::helpers::{spawn_app_with, spawn_peer, test_settings, TestDb};

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// The local PostgreSQL (ssl = on with Debian's snakeoil certificate, CN=localhost):
/// the database of the PostgreSQL run, else the `test` database.
fn pg_base() -> String {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

async fn open(url: &str) -> Result<Db, String> {
    let settings = Settings {
        database_url: url.to_owned(),
        db_max_connections: 1,
        db_acquire_timeout_secs: 2,
        ..test_settings()
    };
    connect::open(&settings).await
}

/// Whether the connection of `db` is encrypted, as the server sees it.
async fn ssl_in_use(db: &Db) -> bool {
    let row = db
        .conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<bool>(0).unwrap()
}

#[tokio::test]
async fn postgres_tls_modes_against_the_local_server() {
    let base = pg_base();
    let require = open(&with_query(&base, "sslmode=require")).await.unwrap();
    assert!(ssl_in_use(&require).await, "sslmode=require encrypts");

    let verify_ca = open(&with_query(
        &base,
        &format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}"),
    ))
    .await
    .unwrap();
    assert!(
        ssl_in_use(&verify_ca).await,
        "verify-ca with the server's root"
    );

    // No sslmode= on a loopback host: plain text (TLS to this machine protects nothing).
    let default = open(&base).await.unwrap();
    assert!(
        !ssl_in_use(&default).await,
        "a loopback host without sslmode= does not encrypt"
    );
    // `prefer` written out is obeyed: the local server offers TLS, so it encrypts.
    let prefer = open(&with_query(&base, "sslmode=prefer")).await.unwrap();
    assert!(ssl_in_use(&prefer).await, "sslmode=prefer encrypts here");

    let plain = open(&with_query(&base, "sslmode=disable")).await.unwrap();
    assert!(
        !ssl_in_use(&plain).await,
        "sslmode=disable does not encrypt"
    );

    // The certificate names `localhost`, not 127.0.0.1: verify-full must refuse, and say why.
    let ip = base.replace("@localhost", "@127.0.0.1");
    let err = open(&with_query(
        &ip,
        &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("TLS to PostgreSQL at 127.0.0.1:"), "{err}");
    assert!(err.contains("not valid for name"), "{err}");
    assert!(err.contains("verify-full"), "{err}");

    // By its name, verify-full passes.
    let by_name = base.replace("@127.0.0.1", "@localhost");
    let full = open(&with_query(
        &by_name,
        &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"),
    ))
    .await
    .unwrap();
    assert!(ssl_in_use(&full).await);

    // A root that did not sign the certificate: verify-ca refuses.
    let other_root = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other_root.path(), OTHER_ROOT).unwrap();
    let err = open(&with_query(
        &base,
        &format!(
            "sslmode=verify-ca&sslrootcert={}",
            other_root.path().display()
        ),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("TLS to PostgreSQL"), "{err}");
}

/// A self-signed root that signed nothing the local server has (tests only).
const OTHER_ROOT: &str = "-----BEGIN CERTIFICATE-----
MIIBgjCCASegAwIBAgIUJLFjI1X02ph2qf7itQlvsD5NQ48wCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKb3RoZXItcm9vdDAgFw0yNjEyMDYyMDE2NTNaGA8yMTI2MTEx
MjIwMTY1M1owFTETMBEGA1UEAwwKb3RoZXItcm9vdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABLzbvISmVvH+InN95HMwG/jJwBasssJf/0yQ2K5Bi8YHgP57FPqU
fElpxq/m+ux3hn58F8+Ic3NTXbNqIx7WVvejUzBRMB0GA1UdDgQWBBT7Elzet4jL
8ScH3w47lCDJ5UtblzAfBgNVHSMEGDAWgBT7Elzet4jL8ScH3w47lCDJ5UtblzAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDDVApZQ1XaKENvDWjt
Y1Zli9f1C8LBDSMQccuoZPB6EAIhAOp1bX0FvM2enjwHdWLxeg6ZCps3e+sQ+CAe
SNAF3nLD
-----END CERTIFICATE-----
";

// ---- Database errors that say what to do -----------------------------------------

#[tokio::test]
async fn sqlite_errors_name_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("tally.db");
    let err = open(&format!("sqlite://{}?mode=rwc", missing.display()))
        .await
        .unwrap_err();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(
        err.contains("no-such-dir") && err.contains("exists"),
        "{err}"
    );

    let absent = dir.path().join("absent.db");
    let err = open(&format!("sqlite://{}", absent.display()))
        .await
        .unwrap_err();
    assert!(err.contains(&absent.display().to_string()), "{err}");
    assert!(err.contains("?mode=rwc"), "{err}");
}

#[tokio::test]
async fn postgres_errors_name_the_server_and_the_fix() {
    let base = pg_base();
    let (head, _) = base.rsplit_once('/').unwrap();
    let err = open(&format!("{head}/no_such_database_h19"))
        .await
        .unwrap_err();
    assert!(
        err.contains("has no database \"no_such_database_h19\"") && err.contains("CREATE DATABASE"),
        "{err}"
    );
    assert!(!err.contains("at line"), "{err}");

    // A port nobody listens on: "connection refused", not "pool timed out".
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = open(&format!("postgres://postgres@127.0.0.1:{port}/tally"))
        .await
        .unwrap_err();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
}

// ---- Readiness ---------------------------------------------------------------------

#[tokio::test]
async fn readyz_is_503_until_the_database_is_migrated() {
    let app = spawn_app_with(|s| s.migrate = false).await;
    let res = app.get("/readyz", None).await;
    assert_eq!(res.status().as_u16(), 503);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "unavailable");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("migration") && detail.contains("tally migrate"),
        "{detail}"
    );

    Db::with_connection(app.db.clone()).migrate().await.unwrap();
    let res = app.get("/readyz", None).await;
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["rate_limits"], "off", "the tests' limit is 0");
}

// ---- Safe trial mode ---------------------------------------------------------------

#[tokio::test]
async fn without_a_key_a_non_loopback_bind_is_refused_naming_the_variable() {
    let db = TestDb::fresh().await;
    let mut settings = test_settings();
    settings.database_url = db.url.clone();
    settings.jwt.secret = None;
    settings.bind = "0.0.0.0:0".into();
    match Application::build(settings.clone()).await {
        Err(e @ StartError::NoKey(_)) => {
            let text = e.to_string();
            assert!(text.contains("TALLY_JWT_SECRET"), "{text}");
            assert!(text.contains("0.0.0.0:0"), "{text}");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a non-loopback bind without a key must be refused"),
    }
    // On loopback, trying without a key still works.
    settings.bind = "127.0.0.1:0".into();
    let app = Application::build(settings).await.expect("loopback trial");
    assert!(app.keys.ephemeral);
    drop(app);
}

// ---- Singleton jobs ------------------------------------------------------------------

#[tokio::test]
async fn the_idempotency_purge_runs_on_one_instance_at_a_time() {
    let app = spawn_app_with(|_| {}).await;
    let token = app.reader("purger");
    for i in 0..6 {
        let res = app
            .request(
                reqwest::Method::POST,
                "/api/v1/articles/purge/comments",
                Some(&token),
            )
            .header("Idempotency-Key", format!("k-{i}"))
            .json(&json!({"body": format!("Comment {i}.")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
    }
    app.db
        .execute_unprepared("UPDATE idempotency_keys SET created_at = '2000-01-01T00:00:00Z'")
        .await
        .unwrap();
    let cutoff = chrono::Utc::now() - chrono::Duration::hours(idempotency::KEY_TTL_HOURS);
    // Two instances: two pools on the one database.
    let first = Db::with_connection(app.db.clone());
    let second = Db::connect(&app.settings).await.unwrap();

    if first.backend() == DbBackend::Postgres {
        // While one instance holds the job, the other skips it and deletes nothing.
        let holder = first.conn.begin().await.unwrap();
        assert!(singleton::try_lock(&holder, idempotency::PURGE_JOB)
            .await
            .unwrap());
        assert_eq!(
            idempotency::purge_expired(&second, cutoff, 2)
                .await
                .unwrap(),
            0
        );
        assert_eq!(app.scalar("SELECT COUNT(*) FROM idempotency_keys").await, 6);
        holder.rollback().await.unwrap();
    }
    // Both at once: every expired key is deleted exactly once, nothing fails.
    let (a, b) = tokio::join!(
        idempotency::purge_expired(&first, cutoff, 1),
        idempotency::purge_expired(&second, cutoff, 1)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // The one that found the lock held stopped; whatever is left, the next tick takes.
    let rest = idempotency::purge_expired(&second, cutoff, 1)
        .await
        .unwrap();
    assert_eq!(a + b + rest, 6, "{a} + {b} + {rest}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM idempotency_keys").await, 0);
}

// ---- Write limits shared through Redis ---------------------------------------------

/// A redis-server of this test's own on a free port (so that it can be stopped).
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    fn start_on(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        OwnRedis { child, port }
    }

    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        OwnRedis::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn comment_via(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    text: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/v1/articles/shared-budget/comments"))
        .bearer_auth(token)
        .json(&json!({ "body": text }))
        .send()
        .await
        .unwrap()
}

async fn readyz_limits(client: &reqwest::Client, base: &str) -> Value {
    let res = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(
        res.status().as_u16(),
        200,
        "readyz stays 200 whatever Redis does"
    );
    res.json::<Value>().await.unwrap()["rate_limits"].clone()
}

#[tokio::test]
async fn two_instances_share_one_budget_through_redis() {
    let redis = OwnRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.write_rate_per_min = 3;
        s.redis_url = Some(url.clone());
    })
    .await;
    let peer = spawn_peer(&app, |_| {}).await;
    let client = reqwest::Client::new();
    let mia = app.reader("mia");
    assert_eq!(readyz_limits(&client, &app.address).await, "shared");

    // Three writes in all, wherever they go, then the budget is spent on both.
    for (i, base) in [&app.address, &peer.address, &app.address]
        .iter()
        .enumerate()
    {
        let res = comment_via(&client, base, &mia, &format!("Write {i}.")).await;
        assert_eq!(
            res.status().as_u16(),
            201,
            "write {i} is within the one budget"
        );
    }
    for base in [&app.address, &peer.address] {
        let res = comment_via(&client, base, &mia, "One too many.").await;
        assert_eq!(res.status().as_u16(), 429, "the budget is shared");
        let wait: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&wait), "Retry-After {wait}");
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM comments WHERE author_id = 'mia'")
            .await,
        3
    );
    // Another caller has a budget of its own.
    let res = comment_via(&client, &peer.address, &app.reader("noah"), "Mine.").await;
    assert_eq!(res.status().as_u16(), 201);
}

#[tokio::test]
async fn when_redis_goes_away_each_instance_limits_alone_and_recovers() {
    let mut redis = OwnRedis::start();
    let (url, port) = (redis.url(), redis.port);
    let app = spawn_app_with(|s| {
        s.write_rate_per_min = 3;
        s.redis_url = Some(url.clone());
    })
    .await;
    let peer = spawn_peer(&app, |_| {}).await;
    let client = reqwest::Client::new();
    let kim = app.reader("kim");
    for i in 0..3 {
        let base = if i % 2 == 0 {
            &app.address
        } else {
            &peer.address
        };
        assert_eq!(
            comment_via(&client, base, &kim, &format!("Shared {i}."))
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        comment_via(&client, &peer.address, &kim, "Spent.")
            .await
            .status(),
        429
    );

    redis.stop();
    // Each instance now keeps its own budget of 3 for kim: writes go on, bounded per
    // instance, and never fail because Redis is gone.
    for base in [&app.address, &peer.address] {
        for i in 0..3 {
            let res = comment_via(&client, base, &kim, &format!("Local {i}.")).await;
            assert_eq!(
                res.status().as_u16(),
                201,
                "local budget write {i} on {base}"
            );
        }
        let res = comment_via(&client, base, &kim, "Local budget spent.").await;
        assert_eq!(res.status().as_u16(), 429);
        assert_eq!(
            readyz_limits(&client, base).await,
            "per-instance (redis unreachable)"
        );
    }

    // Redis back on the same port: the instances find it again by themselves.
    let _redis = OwnRedis::start_on(port);
    for base in [&app.address, &peer.address] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            if readyz_limits(&client, base).await == "shared" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{base} never used Redis again"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    // The fresh Redis has a full budget for kim, shared again.
    for i in 0..3 {
        let base = if i % 2 == 0 {
            &peer.address
        } else {
            &app.address
        };
        assert_eq!(
            comment_via(&client, base, &kim, &format!("Again {i}."))
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        comment_via(&client, &app.address, &kim, "Spent again.")
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn an_instance_starts_and_limits_alone_when_redis_is_down_from_the_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(|s| {
        s.write_rate_per_min = 2;
        s.redis_url = Some(format!("redis://127.0.0.1:{port}"));
    })
    .await;
    let client = reqwest::Client::new();
    assert_eq!(
        readyz_limits(&client, &app.address).await,
        "per-instance (redis unreachable)"
    );
    let lea = app.reader("lea");
    for i in 0..2 {
        let res = comment_via(&client, &app.address, &lea, &format!("Alone {i}.")).await;
        assert_eq!(res.status().as_u16(), 201);
    }
    let res = comment_via(&client, &app.address, &lea, "Over.").await;
    assert_eq!(res.status().as_u16(), 429, "the local limiter still limits");
}

#[tokio::test]
async fn a_bad_redis_url_is_refused_at_start_naming_the_variable() {
    let db = TestDb::fresh().await;
    let mut settings = test_settings();
    settings.database_url = db.url.clone();
    settings.write_rate_per_min = 5;
    settings.redis_url = Some("http://not-redis".into());
    match Application::build(settings).await {
        Err(e) => assert!(e.to_string().contains("TALLY_REDIS_URL"), "{e}"),
        Ok(_) => panic!("a URL that is not redis:// must be refused"),
    }
}
