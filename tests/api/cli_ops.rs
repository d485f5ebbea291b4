//! The operator's side of the binary (issue 19): `--help` lists every variable, unknown
//! variables are warned about, the database in use is logged with its password masked,
//! fatal errors are printed once, trial mode stays on loopback, `tally healthcheck`
//! and `tally backup`.

use crate::{
    cli::{serve, sigterm_and_wait, tally},
    helpers::SECRET,
};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_every_variable_with_its_default() {
    for args in [&["--help"][..], &["serve", "--help"][..]] {
        let out = tally().args(args).output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for (name, default, _) in tally::config::VARIABLES {
            assert!(help.contains(name), "{args:?}: {name} missing from\n{help}");
            assert!(help.contains(&format!("[default: {default}]")), "{name}");
        }
    }
}

#[tokio::test]
async fn unknown_variables_are_named_with_the_closest_known_one_and_the_database_logged_masked() {
    let db = crate::helpers::TestDb::fresh().await;
    let mut served = serve_with(
        &db.url,
        &[
            ("TALLY_DATABSE_URL", "sqlite://typo.db"),
            ("TALLY_H19_NOTHING_LIKE_IT", "1"),
        ],
    );
    sigterm_and_wait(&mut served.child).await;
    std::thread::sleep(std::time::Duration::from_millis(100));
    let logs = served.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("TALLY_DATABSE_URL") && logs.contains("did you mean TALLY_DATABASE_URL?"),
        "{logs}"
    );
    assert!(
        logs.contains("unknown variable TALLY_H19_NOTHING_LIKE_IT is ignored"),
        "{logs}"
    );
    // The database in use and the bind address are logged at start.
    assert!(
        logs.contains("tally starting") && logs.contains(&db.url),
        "{logs}"
    );
    assert!(logs.contains("127.0.0.1:0"), "{logs}");
}

/// `serve` with extra variables.
fn serve_with(database_url: &str, extra: &[(&str, &str)]) -> crate::cli::Served {
    crate::cli::serve_env(database_url, extra)
}

#[test]
fn a_fatal_error_is_printed_once_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone").join("tally.db");
    let out = tally()
        .env(
            "TALLY_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", missing.display()),
        )
        .env("TALLY_JWT_SECRET", SECRET)
        .env("TALLY_BIND", "127.0.0.1:0")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = stderr_of(&out);
    let mentions = stderr.matches("unable to open database file").count();
    assert_eq!(mentions, 1, "printed once:\n{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    // The database in use was logged before, password-free (there is none here).
    assert!(stderr.contains("tally starting"), "{stderr}");
}

#[test]
fn without_a_key_serving_on_all_interfaces_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = tally()
        .env(
            "TALLY_DATABASE_URL",
            format!("sqlite://{}/t.db?mode=rwc", dir.path().display()),
        )
        .env("TALLY_BIND", "0.0.0.0:0")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = stderr_of(&out);
    assert!(stderr.contains("TALLY_JWT_SECRET"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("admin"),
        "no tokens printed"
    );
}

#[test]
fn the_database_url_is_logged_with_the_password_masked() {
    let out = tally()
        .env(
            "TALLY_DATABASE_URL",
            "postgres://tally:hunter2@127.0.0.1:1/tally?sslmode=disable",
        )
        .env("TALLY_DB_ACQUIRE_TIMEOUT_SECS", "1")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(stderr.contains("tally:***@127.0.0.1:1"), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
}

#[tokio::test]
async fn healthcheck_exits_0_when_ready_and_1_when_not() {
    let db = crate::helpers::TestDb::fresh().await;
    let mut served = serve(&db.url);
    let ok = tally()
        .args(["healthcheck", "--url", &served.address])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stderr_of(&ok));
    sigterm_and_wait(&mut served.child).await;

    let down = tally()
        .args(["healthcheck", "--url", &served.address, "--timeout", "1"])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr_of(&down).contains("healthcheck"),
        "{}",
        stderr_of(&down)
    );
}

#[tokio::test]
async fn backup_copies_a_live_sqlite_database_and_refuses_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("live.db").display());
    let mut served = serve(&url);
    let client = reqwest::Client::new();
    let token = tally::auth::JwtKeys::from_settings(&tally::config::JwtSettings {
        secret: Some(SECRET.into()),
        ..Default::default()
    })
    .unwrap()
    .mint("u-backup", None, tally::auth::Role::Reader, 600)
    .unwrap();
    for i in 0..5 {
        let res = client
            .post(format!(
                "{}/api/v1/articles/backup/comments",
                served.address
            ))
            .bearer_auth(&token)
            .json(&serde_json::json!({"body": format!("Kept {i}.")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    // While the server runs.
    let copy = dir.path().join("copy.db");
    let out = tally()
        .env("TALLY_DATABASE_URL", &url)
        .args(["backup", copy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    sigterm_and_wait(&mut served.child).await;

    // The copy serves the same comments.
    let restored = format!("sqlite://{}", copy.display());
    let mut again = serve(&restored);
    let page: serde_json::Value = client
        .get(format!("{}/api/v1/articles/backup/comments", again.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 5);
    sigterm_and_wait(&mut again.child).await;

    // Never over an existing file.
    let out = tally()
        .env("TALLY_DATABASE_URL", &url)
        .args(["backup", copy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("exists"), "{}", stderr_of(&out));

    // Not a database made up on the spot: the one named must exist.
    let out = tally()
        .env(
            "TALLY_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("absent.db").display()
            ),
        )
        .args(["backup", dir.path().join("other.db").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("absent.db"), "{}", stderr_of(&out));
    assert!(!dir.path().join("absent.db").exists());

    let out = tally()
        .env(
            "TALLY_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        )
        .args(["backup", dir.path().join("pg.db").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("pg_dump"), "{}", stderr_of(&out));
}
