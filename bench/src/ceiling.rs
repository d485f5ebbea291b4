//! The ceilings every result is divided by, measured in the same run:
//! - [`serve_static`]: a bare actix-web handler returning a small static JSON body;
//! - [`serve_pk`]: a bare actix-web + sea-orm primary-key read (tally's pool settings);
//! - [`raw_commits`]: single-row INSERTs, each in its own transaction, through tally's
//!   own `Db` (the same pragmas, pool and SQLite writer lock as the service).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix_web::{http::header::ContentType, web, App, HttpResponse, HttpServer};
use sea_orm::{
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
    TransactionTrait,
};
use serde::Serialize;
use tally::{config::Settings, service::write::db::Db};

/// About 200 bytes, shaped like a rating aggregate.
pub const STATIC_BODY: &str = r#"{"article_id":"why-back-cracks","count":47,"average":4.96,"display":"5.0 (47 reviews)","histogram":{"1":0,"2":0,"3":0,"4":2,"5":45},"note":"static ceiling body, about two hundred bytes long"}"#;

async fn static_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(STATIC_BODY)
}

/// `tally-bench ceiling-static`: actix-web with its default workers, one route.
pub fn serve_static(bind: &str) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async {
        HttpServer::new(|| App::new().route("/", web::get().to(static_json)))
            .bind(bind)
            .map_err(|e| format!("cannot listen on {bind}: {e}"))?
            .run()
            .await
            .map_err(|e| e.to_string())
    })
}

/// A database URL from `--db`: a bare path is a SQLite file.
pub fn database_url(db: &str) -> String {
    if db.contains("://") {
        db.to_owned()
    } else {
        format!("sqlite://{db}?mode=rwc")
    }
}

/// Opens a pool with tally's settings: 16 connections; on SQLite WAL, synchronous FULL,
/// a 5 s busy timeout and foreign keys (as in tally's `service::db`).
async fn connect(url: &str) -> Result<DatabaseConnection, String> {
    let d = Settings::default();
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(d.db_max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(d.db_acquire_timeout_secs))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    Database::connect(opt)
        .await
        .map_err(|e| format!("{url}: {e}"))
}

fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

/// Creates and fills `bench_rows` (id, name, value, created_at) when it is empty.
async fn seed_rows(conn: &DatabaseConnection, rows: u32) -> Result<(), String> {
    let e = |e: sea_orm::DbErr| format!("seeding bench_rows: {e}");
    // On SQLite exactly `INTEGER PRIMARY KEY` makes the id the rowid: the fastest read.
    let id_type = match conn.get_database_backend() {
        DbBackend::Sqlite => "INTEGER",
        _ => "BIGINT",
    };
    conn.execute_unprepared(&format!(
        "CREATE TABLE IF NOT EXISTS bench_rows (id {id_type} PRIMARY KEY, name VARCHAR(64) NOT NULL, \
         value BIGINT NOT NULL, created_at VARCHAR(40) NOT NULL)"
    ))
    .await
    .map_err(e)?;
    let have = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM bench_rows",
        ))
        .await
        .map_err(e)?
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(0);
    if have > 0 {
        return Ok(());
    }
    let tx = conn.begin().await.map_err(e)?;
    let now = chrono::Utc::now().to_rfc3339();
    for chunk in (1..=i64::from(rows)).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|id| format!("({id}, 'row {id}', {}, '{now}')", id * 7 % 1000))
            .collect();
        tx.execute_unprepared(&format!(
            "INSERT INTO bench_rows (id, name, value, created_at) VALUES {}",
            values.join(",")
        ))
        .await
        .map_err(e)?;
    }
    tx.commit().await.map_err(e)
}

#[derive(Serialize)]
struct Row {
    id: i64,
    name: String,
    value: i64,
    created_at: String,
}

async fn read_row(conn: web::Data<DatabaseConnection>, id: web::Path<i64>) -> HttpResponse {
    let backend = conn.get_database_backend();
    let sql = format!(
        "SELECT id, name, value, created_at FROM bench_rows WHERE id = {}",
        placeholder(backend, 1)
    );
    let stmt = Statement::from_sql_and_values(backend, sql, [id.into_inner().into()]);
    let row = match conn.query_one_raw(stmt).await {
        Ok(Some(r)) => r,
        Ok(None) => return HttpResponse::NotFound().finish(),
        Err(_) => return HttpResponse::ServiceUnavailable().finish(),
    };
    let get = || -> Result<Row, sea_orm::DbErr> {
        Ok(Row {
            id: row.try_get("", "id")?,
            name: row.try_get("", "name")?,
            value: row.try_get("", "value")?,
            created_at: row.try_get("", "created_at")?,
        })
    };
    match get() {
        Ok(r) => HttpResponse::Ok().json(r),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// `tally-bench ceiling-sqlite-pk`: seeds `bench_rows`, then serves `GET /rows/{id}`.
pub fn serve_pk(bind: &str, db: &str, rows: u32) -> Result<(), String> {
    let url = database_url(db);
    actix_web::rt::System::new().block_on(async move {
        let conn = connect(&url).await?;
        seed_rows(&conn, rows).await?;
        let data = web::Data::new(conn);
        HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/rows/{id}", web::get().to(read_row))
        })
        .bind(bind)
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?
        .run()
        .await
        .map_err(|e| e.to_string())
    })
}

/// Committed single-row transactions per second, over `duration`, from `tasks`
/// concurrent writers sharing one tally `Db` (on SQLite they queue on its writer lock,
/// as tally's requests do).
pub async fn raw_commits(url: &str, duration: Duration, tasks: usize) -> Result<f64, String> {
    let settings = Settings {
        database_url: url.to_owned(),
        ..Settings::default()
    };
    let db = Db::connect(&settings)
        .await
        .map_err(|e| format!("raw commits: {e}"))?;
    db.conn
        .execute_unprepared(
            "CREATE TABLE IF NOT EXISTS bench_commits (id VARCHAR(36) PRIMARY KEY, \
             body TEXT NOT NULL, created_at VARCHAR(40) NOT NULL)",
        )
        .await
        .map_err(|e| format!("raw commits: {e}"))?;
    let backend = db.backend();
    let sql = format!(
        "INSERT INTO bench_commits (id, body, created_at) VALUES ({}, {}, {})",
        placeholder(backend, 1),
        placeholder(backend, 2),
        placeholder(backend, 3)
    );
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = vec![];
    for _ in 0..tasks {
        let (db, sql, done) = (db.clone(), sql.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let tx = db.begin_write().await?;
                let stmt = Statement::from_sql_and_values(
                    backend,
                    sql.as_str(),
                    [
                        uuid::Uuid::now_v7().to_string().into(),
                        "a raw single-row commit".into(),
                        chrono::Utc::now().to_rfc3339().into(),
                    ],
                );
                tx.execute_raw(stmt).await?;
                tx.commit().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), tally::error::ApiError>(())
        }));
    }
    for h in handles {
        h.await
            .map_err(|e| format!("raw commits: {e}"))?
            .map_err(|e| format!("raw commits: {e}"))?;
    }
    let secs = start.elapsed().as_secs_f64();
    db.conn.close_by_ref().await.ok();
    Ok(done.load(Ordering::Relaxed) as f64 / secs)
}
