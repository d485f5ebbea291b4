//! The `tally` binary's commands, run as a user would.

use std::process::Command;

use tally::{auth::JwtKeys, config::JwtSettings};

use crate::helpers::SECRET;

pub(crate) fn tally() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tally"));
    // Only what each test sets: no developer's TALLY_* or .env leaks in.
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.current_dir(std::env::temp_dir());
    cmd
}

#[test]
fn token_mints_a_token_the_server_accepts() {
    let out = tally()
        .env("TALLY_JWT_SECRET", SECRET)
        .args([
            "token",
            "--sub",
            "u-9",
            "--name",
            "Mia",
            "--role",
            "moderator",
            "--ttl",
            "60",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let keys = JwtKeys::from_settings(&JwtSettings {
        secret: Some(SECRET.into()),
        ..Default::default()
    })
    .unwrap();
    let user = keys.verify(token.trim()).unwrap();
    assert_eq!(
        (user.id.as_str(), user.name.as_str(), user.role.as_str()),
        ("u-9", "Mia", "moderator")
    );
}

#[test]
fn token_without_a_secret_says_what_to_set() {
    let out = tally().args(["token", "--sub", "u-1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TALLY_JWT_SECRET"));
}

#[test]
fn migrate_creates_the_schema_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    for run in 0..2 {
        let out = tally()
            .env("TALLY_DATABASE_URL", &url)
            .arg("migrate")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(db.exists());
}

#[test]
fn a_bad_configuration_value_exits_2_naming_the_variable() {
    let out = tally()
        .env("TALLY_MAX_BODY_BYTES", "lots")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TALLY_MAX_BODY_BYTES"));
}

/// A `tally serve` process on a free port; its log lines (stderr) are collected.
pub(crate) struct Served {
    pub(crate) child: std::process::Child,
    pub(crate) address: String,
    pub(crate) logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub(crate) fn serve(database_url: &str) -> Served {
    serve_env(database_url, &[])
}

/// [`serve`] with `extra` variables set too.
pub(crate) fn serve_env(database_url: &str, extra: &[(&str, &str)]) -> Served {
    use std::io::{BufRead, BufReader};
    let mut child = tally()
        .envs(extra.iter().copied())
        .env("TALLY_DATABASE_URL", database_url)
        .env("TALLY_JWT_SECRET", SECRET)
        .env("TALLY_BIND", "127.0.0.1:0")
        .env("TALLY_WORKERS", "1")
        .env("TALLY_WRITE_RATE_PER_MIN", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .arg("serve")
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut before = Vec::new();
    let port = loop {
        let line = lines
            .next()
            .expect("tally exited before listening")
            .unwrap();
        before.push(line.clone());
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["fields"]["message"] == "tally listening" {
            break v["fields"]["port"].as_u64().unwrap();
        }
    };
    // Keep reading the logs so the child never blocks on a full pipe.
    let logs = std::sync::Arc::new(std::sync::Mutex::new(before));
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Served {
        child,
        address: format!("http://127.0.0.1:{port}"),
        logs,
    }
}

fn reader_token() -> String {
    JwtKeys::from_settings(&JwtSettings {
        secret: Some(SECRET.into()),
        ..Default::default()
    })
    .unwrap()
    .mint("u-crash", None, tally::auth::Role::Reader, 600)
    .unwrap()
}

#[tokio::test]
async fn acknowledged_writes_survive_a_kill_9_and_sigterm_stops_cleanly() {
    let db = crate::helpers::TestDb::fresh().await;
    let client = reqwest::Client::new();
    let token = reader_token();

    let mut first = serve(&db.url);
    let mut acknowledged = 0;
    for i in 0..20 {
        let res = client
            .post(format!("{}/api/v1/articles/crash/comments", first.address))
            .bearer_auth(&token)
            .json(&serde_json::json!({"body": format!("comment {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        acknowledged += 1;
    }
    first.child.kill().unwrap(); // SIGKILL: no shutdown code runs
    first.child.wait().unwrap();

    let mut second = serve(&db.url);
    let page: serde_json::Value = client
        .get(format!(
            "{}/api/v1/articles/crash/comments?limit=100",
            second.address
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["total"], acknowledged,
        "every acknowledged comment is still there"
    );
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        acknowledged as usize
    );

    let status = sigterm_and_wait(&mut second.child).await;
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
}

/// Sends SIGTERM to `child` and waits (at most 35 s) for it to exit.
pub(crate) async fn sigterm_and_wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    sigterm(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(35);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tally did not stop after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn sigterm(child: &std::process::Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
}

#[tokio::test]
async fn a_sigterm_right_after_the_listening_line_is_a_clean_stop() {
    // The handlers must be in place before the server says it listens: a signal in
    // that window used to take the default action and kill the process.
    let db = crate::helpers::TestDb::fresh().await;
    for _ in 0..3 {
        let mut served = serve(&db.url);
        sigterm(&served.child);
        let status = served.child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_writes_finish_and_loses_nothing_acknowledged() {
    let db = crate::helpers::TestDb::fresh().await;
    let client = reqwest::Client::new();
    let token = reader_token();
    let mut served = serve(&db.url);
    let address = served.address.clone();

    let writes: Vec<_> = (0..30)
        .map(|i| {
            let (client, token, address) = (client.clone(), token.clone(), address.clone());
            tokio::spawn(async move {
                client
                    .post(format!("{address}/api/v1/articles/term/comments"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"body": format!("in flight {i}")}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    sigterm(&served.child);
    let mut acknowledged = 0;
    for w in writes {
        // Requests that arrive after the listener closed fail to connect; none may fail
        // half-way with a server error.
        match w.await.unwrap() {
            Ok(201) => acknowledged += 1,
            Ok(other) => panic!("a write answered {other} during shutdown"),
            Err(_) => {}
        }
    }
    let status = served.child.wait().unwrap();
    assert!(
        status.success(),
        "{status}: {:#?}",
        served.logs.lock().unwrap()
    );

    let mut again = serve(&db.url);
    let page: serde_json::Value = client
        .get(format!(
            "{}/api/v1/articles/term/comments?limit=100",
            again.address
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = page["total"].as_i64().unwrap_or(0);
    assert_eq!(
        stored, acknowledged,
        "every acknowledged write is stored, and only those"
    );
    again.child.kill().unwrap();
    again.child.wait().unwrap();
}

#[tokio::test]
async fn logs_are_json_lines_with_the_request_id_and_no_sql_at_info() {
    let db = crate::helpers::TestDb::fresh().await;
    let mut served = serve(&db.url);
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/api/v1/articles/logs/comments", served.address))
        .bearer_auth(reader_token())
        .header("x-request-id", "trace-me-42")
        .json(&serde_json::json!({"body": "hello logs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    // Lines are written by a background thread; a clean stop flushes what is queued.
    sigterm_and_wait(&mut served.child).await;
    std::thread::sleep(std::time::Duration::from_millis(100));

    let logs = served.logs.lock().unwrap().clone();
    let parsed: Vec<serde_json::Value> = logs
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let request_line = parsed
        .iter()
        .find(|v| v["fields"]["message"] == "request" && v["fields"]["request_id"] == "trace-me-42")
        .unwrap_or_else(|| panic!("no request log line with the request id in {logs:#?}"));
    assert_eq!(request_line["fields"]["status"], 201);
    assert_eq!(
        request_line["fields"]["route"],
        "/api/v1/articles/{article_id}/comments"
    );
    assert_eq!(request_line["fields"]["method"], "POST");
    assert!(request_line["fields"]["latency_us"].is_u64());
    // A line logged while the request ran names the request it belongs to.
    let created = parsed
        .iter()
        .find(|v| v["fields"]["message"] == "comment created")
        .unwrap_or_else(|| panic!("no 'comment created' line in {logs:#?}"));
    assert_eq!(created["span"]["request_id"], "trace-me-42");
    assert_eq!(created["level"], "INFO");
    for line in &logs {
        assert!(
            !line.contains("INSERT INTO") && !line.contains("SELECT \""),
            "SQL logged at info: {line}"
        );
    }
}
