//! The command line: `tally serve` (default), `tally migrate`, `tally token`,
//! `tally healthcheck`, `tally backup FILE`, `tally export`, `tally import`.

use clap::{Parser, Subcommand};

use crate::{
    auth::{JwtKeys, Role},
    config::Settings,
    startup::Application,
};

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Comment-and-rating moderation service",
    after_help = crate::config::variables_help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default): connect to TALLY_DATABASE_URL, migrate it
    /// (unless TALLY_MIGRATE=false), listen on TALLY_BIND. SIGTERM stops gracefully
    /// (in-flight requests get up to 30 s).
    #[command(after_help = crate::config::variables_help())]
    Serve,
    /// Run database migrations and exit.
    Migrate,
    /// Mint a token with the configured TALLY_JWT_SECRET (for trying and for tests).
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "reader", value_parser = ["reader", "moderator", "admin"])]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Exit 0 when the server's GET /readyz answers 200, 1 otherwise (for a container
    /// HEALTHCHECK; waits at most --timeout seconds).
    Healthcheck {
        /// The server to ask [default: http://TALLY_BIND, 0.0.0.0 and [::] asked on loopback].
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Copy a live SQLite database to FILE (a consistent snapshot through VACUUM INTO,
    /// safe while the server runs). For PostgreSQL use pg_dump.
    Backup {
        /// Where to write the copy; must not exist yet.
        file: std::path::PathBuf,
    },
    /// Write the whole database as JSON Lines (a header line, then settings, articles,
    /// comments (parents first), ratings, flags, votes, bans, log entries and webhooks
    /// without their secrets). Migrates first. Progress on standard error.
    Export {
        /// Where to write [default: standard output].
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Import tally's own export, a Disqus XML export, a WordPress WXR file or an Isso
    /// SQLite database, in one transaction, then recount every counter. Running it
    /// twice imports nothing twice. Prints `imported`, `skipped` and `refused` (each
    /// refusal with its line or source id). Exit 0 when it completed, 1 when --strict
    /// stopped at a bad record (nothing written), 2 when FILE cannot be read.
    Import {
        #[arg(long, value_parser = crate::service::transfer::Format::NAMES)]
        format: String,
        file: std::path::PathBuf,
        /// Check and count everything, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Stop at the first bad record and write nothing.
        #[arg(long)]
        strict: bool,
    },
}

/// Why a command failed: what the operator sees, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { message, code: 1 }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs a command; the error text is what the operator sees.
pub async fn run(cli: Cli, settings: Settings) -> Result<(), Failure> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            tracing::info!(
                database = %crate::config::masked_url(&settings.database_url),
                bind = %settings.bind,
                rate_limits = if settings.redis_url.is_some() { "shared (redis)" } else { "per-instance" },
                "tally starting"
            );
            let mut app = Application::build(settings.clone())
                .await
                .map_err(|e| e.to_string())?;
            app.stop_on_signals()
                .map_err(|e| format!("cannot handle signals: {e}"))?;
            tracing::info!(port = app.port(), bind = %settings.bind, "tally listening");
            app.print_trial_tokens();
            Ok(app.run_until_stopped().await.map_err(|e| e.to_string())?)
        }
        Command::Migrate => {
            tracing::info!(
                database = %crate::config::masked_url(&settings.database_url),
                "migrating"
            );
            let db = crate::service::connect::open(&settings).await?;
            db.migrate()
                .await
                .map_err(|e| format!("migration failed: {e}"))?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Token {
            sub,
            name,
            role,
            ttl,
        } => {
            if settings.jwt.secret.is_none() {
                return Err("tally token needs TALLY_JWT_SECRET: the server must verify with the same secret".into());
            }
            let keys = JwtKeys::from_settings(&settings.jwt).map_err(|e| e.to_string())?;
            let role = Role::parse(&role).unwrap_or(Role::Reader);
            let token = keys
                .mint(&sub, name.as_deref(), role, ttl)
                .map_err(|e| e.to_string())?;
            println!("{token}");
            Ok(())
        }
        Command::Healthcheck { url, timeout } => {
            let url = url.unwrap_or_else(|| format!("http://{}", local_address(&settings.bind)));
            Ok(healthcheck(
                &url,
                std::time::Duration::from_secs(timeout.max(1)),
            )?)
        }
        Command::Backup { file } => Ok(backup(&settings, &file).await?),
        Command::Export { out } => Ok(export(&settings, out.as_deref()).await?),
        Command::Import {
            format,
            file,
            dry_run,
            strict,
        } => import(&settings, &format, &file, dry_run, strict).await,
    }
}

/// The database for `export` and `import`: migrated, and without the per-statement
/// timeout meant for requests (a recount of a million comments takes longer).
async fn open_for_transfer(settings: &Settings) -> Result<crate::service::write::db::Db, String> {
    let mut settings = settings.clone();
    settings.db_timeout_ms = 0;
    let db = crate::service::connect::open(&settings).await?;
    db.migrate()
        .await
        .map_err(|e| format!("migration failed: {e}"))?;
    Ok(db)
}

/// `tally export [--out FILE]`.
async fn export(settings: &Settings, out: Option<&std::path::Path>) -> Result<(), String> {
    use crate::service::transfer::export::export;
    let db = open_for_transfer(settings).await?;
    let started = std::time::Instant::now();
    let exported = match out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| format!("export: {}: {e}", path.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            export(&db.conn, &mut w).await
        }
        None => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            export(&db.conn, &mut w).await
        }
    }
    .map_err(|e| format!("export: {e}"))?;
    eprintln!(
        "exported {} lines in {:.1}s{}",
        exported.lines + 1,
        started.elapsed().as_secs_f64(),
        out.map(|p| format!(" to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// `tally import --format F FILE [--dry-run] [--strict]`.
async fn import(
    settings: &Settings,
    format: &str,
    file: &std::path::Path,
    dry_run: bool,
    strict: bool,
) -> Result<(), Failure> {
    use crate::service::transfer::{import, Format, ImportError};
    let format = Format::parse(format).ok_or("import: unknown --format")?;
    let db = open_for_transfer(settings).await?;
    let started = std::time::Instant::now();
    let options = import::Options {
        format,
        dry_run,
        strict,
    };
    match import::import(&db.conn, file, options).await {
        Ok(summary) => {
            println!("{summary}");
            eprintln!(
                "import of {} ({}) took {:.1}s",
                file.display(),
                format.as_str(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(e) => {
            let code = match e {
                ImportError::Unreadable(_) => 2,
                _ => 1,
            };
            Err(Failure {
                message: format!("import: {e}"),
                code,
            })
        }
    }
}

/// The address to reach a server bound to `bind` from the same host.
fn local_address(bind: &str) -> String {
    if let Some(port) = bind.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = bind.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        bind.to_owned()
    }
}

/// GET `url`/readyz over plain HTTP/1.1 (no client library: the probe must stay tiny);
/// Ok when it answers 200 within `timeout`.
fn healthcheck(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("healthcheck: {url} is not an http:// URL"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("healthcheck: {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("healthcheck: {authority} resolves to no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("healthcheck: cannot connect to {authority}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("healthcheck: {authority}: {e}"))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    // The status line and the (small) body; stop at 16 kB whatever comes.
    while response.len() < 16_384 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if response.is_empty() => {
                return Err(format!("healthcheck: no answer from {authority}: {e}"))
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    if status == "200" {
        println!("ready: {body}");
        Ok(())
    } else {
        Err(format!("healthcheck: /readyz answered {status}: {body}"))
    }
}

/// `tally backup FILE`: SQLite's `VACUUM INTO`, a consistent copy taken in one read
/// transaction while the server keeps serving.
async fn backup(settings: &Settings, file: &std::path::Path) -> Result<(), String> {
    if settings.database_url.starts_with("postgres") {
        return Err(
            "tally backup copies SQLite databases; for PostgreSQL use pg_dump \
             (e.g. pg_dump --format=custom --file=tally.dump \"$DATABASE_URL\"; see docs/production.md)"
                .into(),
        );
    }
    if file.exists() {
        return Err(format!(
            "backup: {} exists already; choose a new file",
            file.display()
        ));
    }
    let path = file
        .to_str()
        .ok_or_else(|| format!("backup: {} is not valid UTF-8", file.display()))?;
    // Never back up a database made up on the spot (the default URL creates one).
    use std::str::FromStr;
    let source = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(&settings.database_url)
        .map_err(|e| format!("backup: TALLY_DATABASE_URL: {e}"))?
        .get_filename()
        .to_path_buf();
    if !source.exists() {
        return Err(format!(
            "backup: there is no database at {} (TALLY_DATABASE_URL={}); point \
             TALLY_DATABASE_URL at the database to copy",
            source.display(),
            crate::config::masked_url(&settings.database_url)
        ));
    }
    let mut settings = settings.clone();
    settings.db_max_connections = 1;
    let db = crate::service::connect::open(&settings).await?;
    use sea_orm::ConnectionTrait;
    db.conn
        .execute_unprepared(&format!("VACUUM INTO '{}'", path.replace('\'', "''")))
        .await
        .map_err(|e| format!("backup to {}: {e}", file.display()))?;
    tracing::info!(file = %file.display(), "backup written");
    println!("backup written to {}", file.display());
    Ok(())
}
