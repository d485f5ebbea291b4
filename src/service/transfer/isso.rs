//! Isso's SQLite database (`threads(id, uri, title)`, `comments(tid, id, parent,
//! created, mode, text, author, …)`), read through sea-orm's SQLite driver. A thread
//! becomes the article named by its `uri`; `mode` 1 is approved, 2 pending, 4 deleted
//! (Isso keeps a deleted comment that has replies, its text and author wiped). Isso
//! stores Markdown source: the text is kept as written.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};

use super::foreign::{self, Foreign};

/// Reads an Isso database; `Err` when it is no readable Isso database (exit 2).
pub async fn read(path: &std::path::Path) -> Result<Foreign, String> {
    if !path.is_file() {
        return Err(format!("{} is no file", path.display()));
    }
    let mut opt = ConnectOptions::new(format!("sqlite://{}?mode=ro", path.display()));
    opt.max_connections(1).sqlx_logging(false);
    let conn = Database::connect(opt).await.map_err(|e| e.to_string())?;
    let result = read_from(&conn).await;
    conn.close().await.ok();
    result
}

async fn read_from(conn: &sea_orm::DatabaseConnection) -> Result<Foreign, String> {
    let not_isso = |e: sea_orm::DbErr| format!("not an Isso database: {e}");
    let threads = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT id, uri, title FROM threads ORDER BY id",
        ))
        .await
        .map_err(not_isso)?;
    let mut out = Foreign::default();
    for row in threads {
        let id: i64 = row.try_get("", "id").map_err(not_isso)?;
        let uri: Option<String> = row.try_get("", "uri").map_err(not_isso)?;
        let title: Option<String> = row.try_get("", "title").map_err(not_isso)?;
        let uri = uri.unwrap_or_default();
        out.threads.push(foreign::Thread {
            source_id: id.to_string(),
            at: format!("thread {id}"),
            article: foreign::article_id_from(&uri),
            title: title.filter(|t| !t.trim().is_empty()),
            url: None,
            comments_open: true,
            created_at: None,
        });
    }
    let comments = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT tid, id, parent, created, mode, text, author FROM comments ORDER BY id",
        ))
        .await
        .map_err(not_isso)?;
    for row in comments {
        let tid: i64 = row.try_get("", "tid").map_err(not_isso)?;
        let id: i64 = row.try_get("", "id").map_err(not_isso)?;
        let parent: Option<i64> = row.try_get("", "parent").map_err(not_isso)?;
        let created: f64 = row.try_get("", "created").map_err(not_isso)?;
        let mode: Option<i64> = row.try_get("", "mode").map_err(not_isso)?;
        let text: Option<String> = row.try_get("", "text").map_err(not_isso)?;
        let author: Option<String> = row.try_get("", "author").map_err(not_isso)?;
        let status = match mode {
            Some(1) => Ok("approved"),
            Some(2) => Ok("pending"),
            Some(4) => Ok("deleted"),
            other => Err(format!("unknown mode {other:?}")),
        };
        let micros = (created * 1e6).round() as i64;
        out.comments.push(foreign::Comment {
            source_id: id.to_string(),
            at: format!("comment {id}"),
            thread_id: tid.to_string(),
            parent_id: parent.map(|p| p.to_string()),
            author_name: foreign::author_name(author.as_deref()),
            body: text
                .unwrap_or_default()
                .replace("\r\n", "\n")
                .trim()
                .to_owned(),
            status,
            created_at: DateTime::<Utc>::from_timestamp_micros(micros)
                .ok_or_else(|| format!("created {created} is no time")),
        });
    }
    Ok(out)
}
