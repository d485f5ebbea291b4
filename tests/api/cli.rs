//! The `tally` binary's commands, run as a user would.

use std::process::Command;

use tally::{auth::JwtKeys, config::JwtSettings};

use crate::helpers::SECRET;

fn tally() -> Command {
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
