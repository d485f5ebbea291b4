//! `tally export`: every table as JSON Lines (see [`super::lines`]), read in one
//! snapshot (a read-only repeatable-read transaction on PostgreSQL, one read
//! transaction on SQLite) and streamed row by row into a buffered writer, so memory
//! stays flat whatever the size of the database.

use std::io::Write;

use futures_util::{Stream, StreamExt};
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, FromQueryResult, IsolationLevel, JsonValue, PaginatorTrait, QueryOrder, Statement,
    TransactionTrait,
};

use super::lines::{self, Header, Line};
use crate::entity::{article, ban, comment, comment_vote, flag, moderation_log, rating, setting};

/// What an export wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Exported {
    pub lines: u64,
}

/// Why an export stopped.
#[derive(Debug)]
pub enum ExportError {
    Db(DbErr),
    Io(std::io::Error),
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Db(e) => write!(f, "database: {e}"),
            ExportError::Io(e) => write!(f, "writing: {e}"),
        }
    }
}

impl From<DbErr> for ExportError {
    fn from(e: DbErr) -> Self {
        ExportError::Db(e)
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Io(e)
    }
}

impl From<serde_json::Error> for ExportError {
    fn from(e: serde_json::Error) -> Self {
        ExportError::Io(e.into())
    }
}

/// Writes the whole database to `out` (which the caller buffers).
pub async fn export(
    conn: &DatabaseConnection,
    out: &mut impl Write,
) -> Result<Exported, ExportError> {
    let tx = match conn.get_database_backend() {
        DbBackend::Postgres => {
            conn.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?
        }
        _ => conn.begin().await?,
    };
    let webhooks = has_table(&tx, "webhooks").await?;
    let total = setting::Entity::find().count(&tx).await?
        + article::Entity::find().count(&tx).await?
        + comment::Entity::find().count(&tx).await?
        + rating::Entity::find().count(&tx).await?
        + flag::Entity::find().count(&tx).await?
        + comment_vote::Entity::find().count(&tx).await?
        + ban::Entity::find().count(&tx).await?
        + moderation_log::Entity::find().count(&tx).await?;
    let bar = super::progress(total, "exporting");
    let header = Header {
        format: lines::FORMAT.into(),
        version: lines::VERSION,
        exported_at: lines::micros::format(&chrono::Utc::now()),
    };
    serde_json::to_writer(&mut *out, &header)?;
    out.write_all(b"\n")?;
    let mut n = Exported::default();
    let mut sink = Sink {
        out,
        n: &mut n,
        bar: &bar,
    };
    sink.all(
        setting::Entity::find()
            .order_by_asc(setting::Column::Key)
            .stream(&tx)
            .await?,
        |m| Line::Settings(m.into()),
    )
    .await?;
    sink.all(
        article::Entity::find()
            .order_by_asc(article::Column::Id)
            .stream(&tx)
            .await?,
        |m| Line::Article(m.into()),
    )
    .await?;
    // Parents before their replies: a reply is always written after its parent.
    sink.all(
        comment::Entity::find()
            .order_by_asc(comment::Column::CreatedAt)
            .order_by_asc(comment::Column::Id)
            .stream(&tx)
            .await?,
        |m| Line::Comment(m.into()),
    )
    .await?;
    sink.all(
        rating::Entity::find()
            .order_by_asc(rating::Column::ArticleId)
            .order_by_asc(rating::Column::UserId)
            .stream(&tx)
            .await?,
        |m| Line::Rating(m.into()),
    )
    .await?;
    sink.all(
        flag::Entity::find()
            .order_by_asc(flag::Column::CommentId)
            .order_by_asc(flag::Column::UserId)
            .stream(&tx)
            .await?,
        |m| Line::Flag(m.into()),
    )
    .await?;
    sink.all(
        comment_vote::Entity::find()
            .order_by_asc(comment_vote::Column::CommentId)
            .order_by_asc(comment_vote::Column::UserId)
            .stream(&tx)
            .await?,
        |m| Line::Vote(m.into()),
    )
    .await?;
    sink.all(
        ban::Entity::find()
            .order_by_asc(ban::Column::UserId)
            .stream(&tx)
            .await?,
        |m| Line::Ban(m.into()),
    )
    .await?;
    sink.all(
        moderation_log::Entity::find()
            .order_by_asc(moderation_log::Column::Id)
            .stream(&tx)
            .await?,
        |m| Line::Log(m.into()),
    )
    .await?;
    if webhooks {
        let rows = JsonValue::find_by_statement(Statement::from_string(
            tx.get_database_backend(),
            "SELECT * FROM webhooks ORDER BY id",
        ))
        .all(&tx)
        .await?;
        for row in rows {
            if let JsonValue::Object(mut fields) = row {
                fields.retain(|k, _| !k.contains("secret"));
                sink.line(&Line::Webhook(fields))?;
            }
        }
    }
    tx.rollback().await?;
    out.flush()?;
    bar.finish_and_clear();
    Ok(n)
}

struct Sink<'a, W: Write> {
    out: &'a mut W,
    n: &'a mut Exported,
    bar: &'a indicatif::ProgressBar,
}

impl<W: Write> Sink<'_, W> {
    fn line(&mut self, line: &Line) -> Result<(), ExportError> {
        serde_json::to_writer(&mut *self.out, line)?;
        self.out.write_all(b"\n")?;
        self.n.lines += 1;
        if self.n.lines.is_multiple_of(4096) {
            self.bar.set_position(self.n.lines);
        }
        Ok(())
    }

    async fn all<M>(
        &mut self,
        rows: impl Stream<Item = Result<M, DbErr>>,
        to_line: impl Fn(M) -> Line,
    ) -> Result<(), ExportError> {
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.next().await {
            self.line(&to_line(row?))?;
        }
        Ok(())
    }
}

/// Whether `table` exists in the current schema.
pub async fn has_table(conn: &DatabaseTransaction, table: &str) -> Result<bool, DbErr> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '{table}'"
        ),
        _ => format!(
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
        ),
    };
    let row = conn
        .query_one_raw(Statement::from_string(backend, sql))
        .await?;
    Ok(row
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(0)
        > 0)
}
