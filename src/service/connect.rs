//! Opening the database at start-up with errors an operator can act on: which file or
//! host, what went wrong, and what to change (the driver's own messages name neither
//! the path nor the host, and a refused connection surfaces as "pool timed out").

use std::{str::FromStr, time::Duration};

use sea_orm::{
    sqlx::{
        postgres::{PgConnectOptions, PgSslMode},
        sqlite::SqliteConnectOptions,
        ConnectOptions,
    },
    DbErr, RuntimeErr,
};

use super::write::db::Db;
use crate::config::{masked_url, Settings};

/// [`Db::connect`], its error explained (see the module docs).
pub async fn open(settings: &Settings) -> Result<Db, String> {
    match Db::connect(settings).await {
        Ok(db) => Ok(db),
        Err(e) => Err(explain(settings, &e).await),
    }
}

/// The sqlx error inside a sea-orm one.
fn sqlx_error(e: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    match e {
        DbErr::Conn(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => {
            Some(e.as_ref())
        }
        _ => None,
    }
}

async fn explain(settings: &Settings, e: &DbErr) -> String {
    let url = &settings.database_url;
    if url.starts_with("sqlite:") {
        return explain_sqlite(url, e);
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        if let Ok(options) = PgConnectOptions::from_str(url) {
            return explain_postgres(settings, &options, e).await;
        }
    }
    format!("database {}: {e}", masked_url(url))
}

fn explain_sqlite(url: &str, e: &DbErr) -> String {
    let path = SqliteConnectOptions::from_str(url)
        .map(|o| o.get_filename().display().to_string())
        .unwrap_or_else(|_| url.to_owned());
    let text = sqlx_error(e).map_or_else(|| e.to_string(), ToString::to_string);
    if text.contains("unable to open database file") {
        let dir = std::path::Path::new(&path)
            .parent()
            .map(|d| d.display().to_string())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| ".".into());
        let hint = if url.contains("mode=rwc") {
            format!("check that the directory {dir} exists and that this user may write to it")
        } else {
            format!(
                "if the file should be created, end TALLY_DATABASE_URL with ?mode=rwc; \
                 otherwise check the path and that the directory {dir} is readable and writable"
            )
        };
        return format!(
            "cannot open the SQLite database file {path}: unable to open database file; {hint}"
        );
    }
    format!("SQLite database {path}: {text}")
}

async fn explain_postgres(settings: &Settings, options: &PgConnectOptions, e: &DbErr) -> String {
    let server = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let database = options
        .get_database()
        .unwrap_or(options.get_username())
        .to_owned();
    let mut error = sqlx_error(e);
    // A pool gives up with "pool timed out" and hides why: connect once more, alone,
    // for the real cause (refused, TLS, authentication).
    let retried;
    if matches!(error, Some(sea_orm::sqlx::Error::PoolTimedOut)) {
        let wait = Duration::from_secs(settings.db_acquire_timeout_secs.max(1));
        retried = match tokio::time::timeout(wait, options.connect()).await {
            Ok(Ok(_)) | Err(_) => None,
            Ok(Err(e)) => Some(e),
        };
        if let Some(e) = &retried {
            error = Some(e);
        } else {
            return format!(
                "PostgreSQL at {server} did not accept a connection within {}s \
                 (TALLY_DB_ACQUIRE_TIMEOUT_SECS); check that the host is reachable from here \
                 (firewall, security group) and that the server is up",
                wait.as_secs()
            );
        }
    }
    let Some(error) = error else {
        return format!("PostgreSQL at {server}, database {database}: {e}");
    };
    match error {
        sea_orm::sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!(
                "cannot connect to PostgreSQL at {server}: connection refused; is the server \
                 running and listening on that address and port (listen_addresses, port)?"
            )
        }
        // rustls reports a refused certificate as an I/O error of the handshake.
        sea_orm::sqlx::Error::Io(io) if is_tls_failure(io) => tls_failure(&server, options, io),
        sea_orm::sqlx::Error::Io(io) => {
            format!("cannot connect to PostgreSQL at {server}: {io}; check the host in TALLY_DATABASE_URL")
        }
        sea_orm::sqlx::Error::Tls(tls) => tls_failure(&server, options, tls),
        sea_orm::sqlx::Error::Database(db) => {
            let message = db.message();
            if db.code().as_deref() == Some("3D000") {
                format!(
                    "PostgreSQL at {server} has no database \"{database}\": create it \
                     (CREATE DATABASE \"{database}\"; or createdb) or fix the database name in \
                     TALLY_DATABASE_URL"
                )
            } else if db.code().as_deref() == Some("28P01") || db.code().as_deref() == Some("28000")
            {
                format!(
                    "PostgreSQL at {server} refused user \"{}\": {message}; check the user and \
                     password in TALLY_DATABASE_URL and the server's pg_hba.conf (sslmode= too: \
                     a hostssl rule needs TLS)",
                    options.get_username()
                )
            } else {
                format!("PostgreSQL at {server}, database {database}: {message}")
            }
        }
        other => format!("PostgreSQL at {server}, database {database}: {other}"),
    }
}

fn is_tls_failure(io: &std::io::Error) -> bool {
    let text = io.to_string().to_ascii_lowercase();
    ["certificate", "tls", "handshake", "alert"]
        .iter()
        .any(|w| text.contains(w))
}

fn tls_failure(server: &str, options: &PgConnectOptions, e: &dyn std::fmt::Display) -> String {
    let hint = match options.get_ssl_mode() {
        PgSslMode::VerifyFull => {
            "with sslmode=verify-full the certificate must be signed by a root in sslrootcert= \
             (or the system's roots) and name the host used in TALLY_DATABASE_URL; \
             sslmode=verify-ca checks the signature but not the name"
        }
        PgSslMode::VerifyCa => {
            "with sslmode=verify-ca the certificate must be signed by a root in sslrootcert= \
             (or the system's roots)"
        }
        _ => "check sslmode= and sslrootcert= in TALLY_DATABASE_URL",
    };
    format!("TLS to PostgreSQL at {server} failed: {e}; {hint}")
}
