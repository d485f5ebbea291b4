//! `tally import`: records checked one by one, written in batched multi-row inserts,
//! all in one transaction; then every kept counter is recounted in that transaction.
//! A record already there (same id; for foreign formats, the same source id remembered
//! in `import_sources`) is skipped, so importing a file twice imports nothing twice.
//! `--dry-run` rolls the transaction back; `--strict` stops at the first refusal and
//! rolls back.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    path::Path,
};

use chrono::SubsecRound;
use sea_orm::{
    sea_query::OnConflict, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use super::{
    foreign::Foreign,
    lines::{self, Header, Line},
    Format, ImportError, Refusal, Summary,
};
use crate::{
    domain::{ArticleId, CommentBody, ModerationStatus},
    entity::{
        article, ban, comment, comment_vote, flag, import_source, moderation_log, rating, setting,
        webhook,
    },
};

/// Rows per INSERT statement (the widest row, a comment, has 25 columns: 25 000
/// parameters, under SQLite's 32 766 and PostgreSQL's 65 535).
const BATCH: usize = 1000;

/// Imports expected to bring fewer rows than this keep the indexes as they are.
const SET_ASIDE_FROM: u64 = 10_000;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub format: Format,
    pub dry_run: bool,
    pub strict: bool,
}

/// Imports `file` into the database behind `conn` (already migrated).
pub async fn import(
    conn: &DatabaseConnection,
    file: &Path,
    opts: Options,
) -> Result<Summary, ImportError> {
    let unreadable =
        |e: std::io::Error| ImportError::Unreadable(format!("{}: {e}", file.display()));
    let summary = match opts.format {
        Format::Tally => {
            let f = std::fs::File::open(file).map_err(unreadable)?;
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            let mut input = BufReader::with_capacity(1 << 20, f);
            let mut first = String::new();
            input.read_line(&mut first).map_err(unreadable)?;
            let header: Header = serde_json::from_str(&first).map_err(|e| {
                ImportError::Unreadable(format!("line 1 is no tally export header: {e}"))
            })?;
            if header.format != lines::FORMAT || header.version != lines::VERSION {
                return Err(ImportError::Unreadable(format!(
                    "line 1: format {:?} version {}; this tally reads {:?} version {}",
                    header.format,
                    header.version,
                    lines::FORMAT,
                    lines::VERSION
                )));
            }
            let bar = super::progress(size, "importing");
            bar.set_position(first.len() as u64);
            // About 620 bytes a comment line: how many rows the file may bring.
            let expected = size / 620;
            let result = in_transaction(conn, opts, expected, |w| {
                Box::pin(async move { w.tally_lines(input, first.len() as u64, &bar).await })
            })
            .await;
            result?
        }
        Format::Disqus | Format::Wxr => {
            let f = std::fs::File::open(file).map_err(unreadable)?;
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = super::progress(size, "reading");
            let input = BufReader::with_capacity(1 << 20, f);
            let progress = |at| bar.set_position(at);
            let parsed = match opts.format {
                Format::Disqus => super::disqus::read(input, progress),
                _ => super::wxr::read(input, progress),
            }
            .map_err(|e| ImportError::Unreadable(format!("{}: {e}", file.display())))?;
            bar.finish_and_clear();
            foreign(conn, opts, parsed).await?
        }
        Format::Isso => {
            let parsed = super::isso::read(file)
                .await
                .map_err(|e| ImportError::Unreadable(format!("{}: {e}", file.display())))?;
            foreign(conn, opts, parsed).await?
        }
    };
    Ok(summary)
}

async fn foreign(
    conn: &DatabaseConnection,
    opts: Options,
    parsed: Foreign,
) -> Result<Summary, ImportError> {
    let expected = parsed.comments.len() as u64;
    in_transaction(conn, opts, expected, |w| {
        Box::pin(async move { w.foreign(opts.format, parsed).await })
    })
    .await
}

type Work<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ImportError>> + 'a>>;

/// Runs `work` in one transaction, recounts, and commits (rolls back on a dry run).
/// `expected`: about how many rows the import brings, to choose whether to set the
/// tables' secondary indexes aside while writing ([`super::indexes`]).
async fn in_transaction(
    conn: &DatabaseConnection,
    opts: Options,
    expected: u64,
    work: impl for<'a> FnOnce(&'a mut Writer) -> Work<'a>,
) -> Result<Summary, ImportError> {
    let tx = conn.begin().await?;
    if tx.get_database_backend() == DbBackend::Sqlite {
        // A large page cache: the comments' indexes outgrow the default 2 MiB long
        // before a million rows, and building an index again reads the whole table
        // (still in the WAL until the COMMIT): 256 MiB, or about 1 KiB a row the file
        // may bring, up to 1 GiB. Sorting for those builds may use a helper thread.
        let kib = (expected.saturating_mul(1024) / 1024).clamp(262_144, 1_048_576);
        tx.execute_unprepared(&format!("PRAGMA cache_size = -{kib}"))
            .await?;
        tx.execute_unprepared("PRAGMA threads = 2").await?;
    }
    let set_aside = if expected >= SET_ASIDE_FROM {
        super::indexes::set_aside(&tx, expected).await?
    } else {
        super::indexes::SetAside::default()
    };
    if !set_aside.is_empty() {
        tracing::info!(
            indexes = set_aside.len(),
            "secondary indexes set aside for the import"
        );
    }
    let mut w = Writer {
        tx,
        strict: opts.strict,
        summary: Summary {
            dry_run: opts.dry_run,
            ..Summary::default()
        },
        articles: HashSet::new(),
    };
    let started = std::time::Instant::now();
    let outcome = work(&mut w).await;
    let Writer { tx, summary, .. } = w;
    let phase = |what: &str, since: std::time::Instant| {
        tracing::info!(
            phase = what,
            secs = since.elapsed().as_secs_f64(),
            "import phase done"
        );
    };
    phase("rows written", started);
    if let Err(e) = outcome {
        tx.rollback().await.ok();
        return Err(e);
    }
    if opts.dry_run {
        // Rolled back: the indexes come back with it, and nothing needs recounting.
        tx.rollback().await?;
        return Ok(summary);
    }
    let started = std::time::Instant::now();
    let restored = !set_aside.is_empty();
    set_aside.restore(&tx).await?;
    if restored {
        phase("indexes created again", started);
    }
    let started = std::time::Instant::now();
    if summary.imported > 0 {
        super::recount::recount(&tx).await?;
        phase("counters recounted", started);
        if tx.get_database_backend() == DbBackend::Postgres {
            // Log rows keep their ids: the sequence must continue after them.
            tx.execute_unprepared(
                "SELECT setval(pg_get_serial_sequence('moderation_log', 'id'), \
                 COALESCE((SELECT MAX(id) FROM moderation_log), 0) + 1, false)",
            )
            .await?;
        }
    }
    let started = std::time::Instant::now();
    tx.commit().await?;
    phase("committed", started);
    Ok(summary)
}

pub(super) struct Writer {
    tx: DatabaseTransaction,
    strict: bool,
    summary: Summary,
    /// Articles known to exist (in the database or written by this import).
    articles: HashSet<String>,
}

/// A record of the file and where it was.
type At<T> = (String, T);

impl Writer {
    fn refuse(&mut self, at: String, reason: impl Into<String>) -> Result<(), ImportError> {
        let refusal = Refusal {
            at,
            reason: reason.into(),
        };
        if self.strict {
            return Err(ImportError::Strict(refusal));
        }
        self.summary.refused.push(refusal);
        Ok(())
    }

    /// Counts a batch of `tried` rows of which `written` went in (the rest were there).
    fn counted(&mut self, tried: usize, written: u64) {
        self.summary.imported += written;
        self.summary.skipped += tried as u64 - written.min(tried as u64);
    }

    /// Inserts `rows`, skipping those whose `key` is taken (a line imported before),
    /// and counts both.
    async fn insert_new<A>(
        &mut self,
        rows: Vec<A>,
        key: impl IntoIterator<Item = <A::Entity as EntityTrait>::Column>,
    ) -> Result<(), DbErr>
    where
        A: ActiveModelTrait + Send,
    {
        let tried = rows.len();
        if tried > 0 {
            let written = <A::Entity as EntityTrait>::insert_many(rows)
                .on_conflict(OnConflict::columns(key).do_nothing().to_owned())
                .exec_without_returning(&self.tx)
                .await?;
            self.counted(tried, written);
        }
        Ok(())
    }

    // ---- tally's own export ----------------------------------------------------

    async fn tally_lines(
        &mut self,
        input: impl BufRead + Send + 'static,
        read: u64,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), ImportError> {
        // Reading and parsing run on a thread of their own, a few thousand lines ahead
        // of the writing: the two overlap instead of taking turns.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Parsed>(4);
        let reader = std::thread::spawn(move || read_lines(input, read, tx));
        let mut pending: Vec<At<Line>> = Vec::with_capacity(BATCH);
        let mut kind = "";
        let mut outcome = Ok(());
        'chunks: while let Some(chunk) = rx.recv().await {
            bar.set_position(chunk.read);
            for (n, line) in chunk.lines {
                let line = match line {
                    Ok(l) => l,
                    Err(ParseError::Refused(reason)) => {
                        if let Err(e) = self.refuse(format!("line {n}"), reason) {
                            outcome = Err(e);
                            break 'chunks;
                        }
                        continue;
                    }
                    Err(ParseError::Unreadable(e)) => {
                        outcome = Err(ImportError::Unreadable(format!("line {n}: {e}")));
                        break 'chunks;
                    }
                };
                if line.kind() != kind || pending.len() >= BATCH {
                    if let Err(e) = self.flush(std::mem::take(&mut pending)).await {
                        outcome = Err(e);
                        break 'chunks;
                    }
                    kind = line.kind();
                }
                pending.push((format!("line {n}"), line));
            }
        }
        // Stops the reader (its next send fails) and waits for it.
        drop(rx);
        reader.join().ok();
        outcome?;
        self.flush(pending).await?;
        bar.finish_and_clear();
        Ok(())
    }

    /// Writes a batch of lines of one type.
    async fn flush(&mut self, batch: Vec<At<Line>>) -> Result<(), ImportError> {
        let Some((_, first)) = batch.first() else {
            return Ok(());
        };
        match first.kind() {
            "settings" => self.settings(batch).await,
            "article" => self.articles_batch(batch).await,
            "comment" => self.comments(batch).await,
            "rating" => self.ratings(batch).await,
            "flag" | "vote" => self.on_comments(batch).await,
            "ban" => self.bans(batch).await,
            "log" => self.log(batch).await,
            _ => self.webhooks(batch).await,
        }
    }

    /// Webhooks keep their id, URL, events, description and time; an export has no
    /// secret, so each gets a new one, listed in the summary (the only place it is
    /// shown, as `POST /admin/webhooks` shows it once). A webhook whose id is there
    /// already is skipped (and keeps its secret).
    async fn webhooks(&mut self, batch: Vec<At<Line>>) -> Result<(), ImportError> {
        for (at, line) in batch {
            let Line::Webhook(fields) = line else {
                continue;
            };
            let text = |k: &str| fields.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let Some(id) = text("id").filter(|id| !id.is_empty() && id.len() <= 36) else {
                self.refuse(at, "id must be 1–36 characters")?;
                continue;
            };
            let url =
                match crate::outbound::check_url("url", &text("url").unwrap_or_default(), true)
                    .await
                {
                    Ok(url) => url.to_string(),
                    Err(e) => {
                        self.refuse(at, format!("url {}", e.message))?;
                        continue;
                    }
                };
            // A JSON array, or its text (the column as the database gave it).
            let events: Option<Vec<String>> = match fields.get("events") {
                Some(serde_json::Value::String(s)) => serde_json::from_str(s).ok(),
                Some(v) => serde_json::from_value(v.clone()).ok(),
                None => None,
            };
            let events = match events.map(|e| crate::service::webhooks::parse_events(&e)) {
                Some(Ok(events)) => events,
                Some(Err(e)) => {
                    self.refuse(at, format!("{} {}", e.field, e.message))?;
                    continue;
                }
                None => {
                    self.refuse(at, "events must be a list of event types")?;
                    continue;
                }
            };
            let description = text("description");
            if description
                .as_ref()
                .is_some_and(|d| d.chars().count() > 500)
            {
                self.refuse(at, "description must be at most 500 characters")?;
                continue;
            }
            let created_at = text("created_at")
                .and_then(|t| parse_time(&t))
                .unwrap_or_else(super::super::now);
            if webhook::Entity::find_by_id(&id)
                .one(&self.tx)
                .await?
                .is_some()
            {
                self.summary.skipped += 1;
                continue;
            }
            crate::service::webhooks::start_cursor_if_first(&self.tx).await?;
            let secret = crate::service::webhooks::new_secret();
            webhook::Entity::insert(webhook::ActiveModel::from(webhook::Model {
                id: id.clone(),
                url: url.clone(),
                events: serde_json::to_string(&events).unwrap_or_else(|_| "[]".into()),
                description,
                secret: secret.clone(),
                created_at,
            }))
            .exec_without_returning(&self.tx)
            .await?;
            self.summary.imported += 1;
            self.summary.new_secrets.push((id, url, secret));
        }
        Ok(())
    }

    async fn settings(&mut self, batch: Vec<At<Line>>) -> Result<(), ImportError> {
        let mut rows = Vec::new();
        for (at, line) in batch {
            let Line::Settings(s) = line else { continue };
            if s.key.is_empty() || s.key.chars().count() > 64 {
                self.refuse(at, "key must be 1–64 characters")?;
                continue;
            }
            rows.push(setting::ActiveModel::from(setting::Model::from(s)));
        }
        self.insert_new(rows, [setting::Column::Key]).await?;
        Ok(())
    }

    async fn articles_batch(&mut self, batch: Vec<At<Line>>) -> Result<(), ImportError> {
        let mut rows = Vec::new();
        for (at, line) in batch {
            let Line::Article(a) = line else { continue };
            if let Err(e) = ArticleId::check(&a.id) {
                self.refuse(at, format!("id: {}", e.message))?;
                continue;
            }
            if a.moderation_mode
                .as_deref()
                .is_some_and(|m| m != "post" && m != "pre")
            {
                self.refuse(at, "moderation_mode must be post, pre or null")?;
                continue;
            }
            self.articles.insert(a.id.clone());
            rows.push(article::ActiveModel::from(article::Model::from(a)));
        }
        self.insert_articles(rows).await
    }

    async fn insert_articles(
        &mut self,
        rows: Vec<article::ActiveModel>,
    ) -> Result<(), ImportError> {
        self.insert_new(rows, [article::Column::Id]).await?;
        Ok(())
    }

    /// Loads which of `ids` are articles of the database into `self.articles`.
    async fn learn_articles(&mut self, ids: impl IntoIterator<Item = String>) -> Result<(), DbErr> {
        let unknown: Vec<String> = ids
            .into_iter()
            .filter(|id| !self.articles.contains(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for chunk in unknown.chunks(BATCH) {
            let found: Vec<String> = article::Entity::find()
                .select_only()
                .column(article::Column::Id)
                .filter(article::Column::Id.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(&self.tx)
                .await?;
            self.articles.extend(found);
        }
        Ok(())
    }

    /// Which of `ids` are comments of the database: id → article id.
    async fn existing_comments(
        &self,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, String>, DbErr> {
        let ids: Vec<String> = ids
            .into_iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut out = HashMap::new();
        for chunk in ids.chunks(BATCH) {
            let found: Vec<(String, String)> = comment::Entity::find()
                .select_only()
                .column(comment::Column::Id)
                .column(comment::Column::ArticleId)
                .filter(comment::Column::Id.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(&self.tx)
                .await?;
            out.extend(found);
        }
        Ok(out)
    }

    async fn comments(&mut self, batch: Vec<At<Line>>) -> Result<(), ImportError> {
        let lines: Vec<At<lines::CommentLine>> = batch
            .into_iter()
            .filter_map(|(at, l)| match l {
                Line::Comment(c) => Some((at, c)),
                _ => None,
            })
            .collect();
        self.learn_articles(lines.iter().map(|(_, c)| c.article_id.clone()))
            .await?;
        let in_batch: HashSet<&str> = lines.iter().map(|(_, c)| c.id.as_str()).collect();
        let outside: Vec<String> = lines
            .iter()
            .filter_map(|(_, c)| c.parent_id.clone())
            .filter(|p| !in_batch.contains(p.as_str()))
            .collect();
        let mut known = self.existing_comments(outside).await?;
        let mut rows = Vec::with_capacity(lines.len());
        for (at, c) in lines {
            if let Err(reason) = self.check_comment(&c, &known) {
                self.refuse(at, reason)?;
                continue;
            }
            known.insert(c.id.clone(), c.article_id.clone());
            rows.push(comment::ActiveModel::from(comment::Model::from(c)));
        }
        self.insert_comments(rows).await
    }

    fn check_comment(
        &self,
        c: &lines::CommentLine,
        known: &HashMap<String, String>,
    ) -> Result<(), String> {
        if c.id.is_empty() || c.id.len() > 36 {
            return Err("id must be 1–36 characters".into());
        }
        if !self.articles.contains(&c.article_id) {
            return Err(format!(
                "article {:?} is neither in the file nor in the database",
                c.article_id
            ));
        }
        if let Some(p) = &c.parent_id {
            match known.get(p) {
                None => {
                    return Err(format!(
                        "parent {p:?} is neither in the file (before it) nor in the database"
                    ))
                }
                Some(a) if *a != c.article_id => {
                    return Err(format!("parent {p:?} belongs to another article"))
                }
                Some(_) => {}
            }
        }
        if ModerationStatus::parse(&c.status).is_none() {
            return Err(format!("unknown status {:?}", c.status));
        }
        if c.kind != "comment" && c.kind != "review" {
            return Err("kind must be comment or review".into());
        }
        if c.stars.is_some_and(|s| !(1..=5).contains(&s)) {
            return Err("stars must be 1–5 or null".into());
        }
        if c.author_id.is_empty() || c.author_id.chars().count() > 160 {
            return Err("author_id must be 1–160 characters".into());
        }
        if c.author_name.chars().count() > 64 {
            return Err("author_name must be at most 64 characters".into());
        }
        if c.fingerprint.as_ref().is_some_and(|f| f.len() > 64) {
            return Err("fingerprint must be at most 64 characters".into());
        }
        Ok(())
    }

    async fn insert_comments(
        &mut self,
        rows: Vec<comment::ActiveModel>,
    ) -> Result<(), ImportError> {
        self.insert_new(rows, [comment::Column::Id]).await?;
        Ok(())
    }

    async fn ratings(&mut self, batch: Vec<At<Line>>) -> Result<(), ImportError> {
        let lines: Vec<At<lines::RatingLine>> = batch
            .into_iter()
            .filter_map(|(at, l)| match l {
                Line::Rating(r) => Some((at, r)),
                _ => None,
            })
            .collect();
        self.learn_articles(lines.iter().map(|(_, r)| r.article_id.clone()))
            .await?;
        let mut rows = Vec::new();
        for (at, r) in lines {
            let problem = if !self.articles.contains(&r.article_id) {
                Some(format!(
                    "article {:?} is neither in the file nor in the database",
                    r.article_id
                ))
            } else if !(1..=5).contains(&r.stars) {
                Some("stars must be 1–5".into())
            } else if r.user_id.is_empty() || r.user_id.chars().count() > 128 {
                Some("user_id must be 1–128 characters".into())
            } else if r.review_id.as_ref().is_some_and(|id| id.len() > 64) {
                Some("review_id must be at most 64 characters".into())
            } else {
                None
            };
            match problem {
                Some(reason) => self.refuse(at, reason)?,
                None => rows.push(rating::ActiveModel::from(rating::Model::from(r))),
            }
        }
        self.insert_new(rows, [rating::Column::ArticleId, rating::Column::UserId])
            .await?;
        Ok(())
    }

    /// Flags and votes: rows on a comment that must exist.
    async fn on_comments(&mut self, batch: Vec<At<Line>>) -> Result<(), ImportError> {
        let known = self
            .existing_comments(batch.iter().filter_map(|(_, l)| match l {
                Line::Flag(f) => Some(f.comment_id.clone()),
                Line::Vote(v) => Some(v.comment_id.clone()),
                _ => None,
            }))
            .await?;
        let mut flags = Vec::new();
        let mut votes = Vec::new();
        for (at, line) in batch {
            let (comment_id, user_id) = match &line {
                Line::Flag(f) => (&f.comment_id, &f.user_id),
                Line::Vote(v) => (&v.comment_id, &v.user_id),
                _ => continue,
            };
            if !known.contains_key(comment_id) {
                self.refuse(
                    at,
                    format!("comment {comment_id:?} is neither in the file nor in the database"),
                )?;
                continue;
            }
            if user_id.is_empty() || user_id.chars().count() > 128 {
                self.refuse(at, "user_id must be 1–128 characters")?;
                continue;
            }
            match line {
                Line::Flag(f) => {
                    if !["spam", "abuse", "off_topic", "other"].contains(&f.reason.as_str()) {
                        self.refuse(at, "reason must be spam, abuse, off_topic or other")?;
                        continue;
                    }
                    flags.push(flag::ActiveModel::from(flag::Model::from(f)));
                }
                Line::Vote(v) => {
                    if v.vote != "up" && v.vote != "down" {
                        self.refuse(at, "vote must be up or down")?;
                        continue;
                    }
                    votes.push(comment_vote::ActiveModel::from(comment_vote::Model::from(
                        v,
                    )));
                }
                _ => {}
            }
        }
        self.insert_new(flags, [flag::Column::CommentId, flag::Column::UserId])
            .await?;
        self.insert_new(
            votes,
            [
                comment_vote::Column::CommentId,
                comment_vote::Column::UserId,
            ],
        )
        .await?;
        Ok(())
    }

    async fn bans(&mut self, batch: Vec<At<Line>>) -> Result<(), ImportError> {
        let mut rows = Vec::new();
        for (at, line) in batch {
            let Line::Ban(b) = line else { continue };
            if b.user_id.is_empty() || b.user_id.chars().count() > 160 {
                self.refuse(at, "user_id must be 1–160 characters")?;
                continue;
            }
            if b.created_by.chars().count() > 128 {
                self.refuse(at, "created_by must be at most 128 characters")?;
                continue;
            }
            rows.push(ban::ActiveModel::from(ban::Model::from(b)));
        }
        self.insert_new(rows, [ban::Column::UserId]).await?;
        Ok(())
    }

    /// Log entries keep their ids (an entry whose id is taken is skipped).
    async fn log(&mut self, batch: Vec<At<Line>>) -> Result<(), ImportError> {
        let mut rows = Vec::new();
        for (at, line) in batch {
            let Line::Log(l) = line else { continue };
            let too_long =
                |v: &Option<String>, n: usize| v.as_ref().is_some_and(|v| v.chars().count() > n);
            if l.actor_id.chars().count() > 128
                || l.actor_name.chars().count() > 64
                || l.action.chars().count() > 24
                || too_long(&l.comment_id, 36)
                || too_long(&l.subject_user_id, 160)
                || too_long(&l.from_status, 16)
                || too_long(&l.to_status, 16)
            {
                self.refuse(at, "a field is longer than its column")?;
                continue;
            }
            rows.push(moderation_log::ActiveModel::from(
                moderation_log::Model::from(l),
            ));
        }
        self.insert_new(rows, [moderation_log::Column::Id]).await?;
        Ok(())
    }

    // ---- Disqus, WordPress, Isso ---------------------------------------------------

    async fn foreign(&mut self, format: Format, f: Foreign) -> Result<(), ImportError> {
        self.summary.skipped += f.skipped;
        let now = super::super::now();
        // Threads → articles.
        let mut thread_article: HashMap<String, Result<String, String>> = HashMap::new();
        let mut rows = Vec::new();
        let mut in_rows = HashSet::new();
        for t in f.threads {
            match t.article {
                Err(reason) => {
                    self.refuse(t.at, reason.clone())?;
                    thread_article.insert(t.source_id, Err(reason));
                }
                Ok(id) => {
                    thread_article.insert(t.source_id, Ok(id.clone()));
                    if !in_rows.insert(id.clone()) {
                        continue;
                    }
                    let created = t.created_at.unwrap_or(now);
                    rows.push(article::ActiveModel::from(article::Model {
                        id,
                        title: t.title,
                        url: t.url,
                        comments_open: t.comments_open,
                        moderation_mode: None,
                        registered: false,
                        rating_count: 0,
                        rating_sum: 0,
                        stars_1: 0,
                        stars_2: 0,
                        stars_3: 0,
                        stars_4: 0,
                        stars_5: 0,
                        comment_count: 0,
                        top_level_count: 0,
                        review_count: 0,
                        created_at: created,
                        updated_at: created,
                    }));
                    if rows.len() >= BATCH {
                        self.insert_articles(std::mem::take(&mut rows)).await?;
                    }
                }
            }
        }
        self.insert_articles(rows).await?;

        // Comments, parents first.
        let comments = f.comments;
        let mut done: HashMap<String, (String, String)> = HashMap::new();
        let source_ids: Vec<String> = comments.iter().map(|c| c.source_id.clone()).collect();
        for chunk in source_ids.chunks(BATCH) {
            let found: Vec<(String, String)> = import_source::Entity::find()
                .select_only()
                .column(import_source::Column::SourceId)
                .column(import_source::Column::CommentId)
                .filter(import_source::Column::Format.eq(format.as_str()))
                .filter(import_source::Column::SourceId.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(&self.tx)
                .await?;
            let articles = self
                .existing_comments(found.iter().map(|(_, c)| c.clone()))
                .await?;
            done.extend(found.into_iter().filter_map(|(s, c)| {
                let a = articles.get(&c)?.clone();
                Some((s, (c, a)))
            }));
        }
        let order = parents_first(&comments);
        let bar = super::progress(comments.len() as u64, "importing");
        let mut batch = Vec::new();
        let mut sources = Vec::new();
        let mut emitted = vec![false; comments.len()];
        for (n, i) in order.into_iter().enumerate() {
            emitted[i] = true;
            if n.is_multiple_of(1024) {
                bar.set_position(n as u64);
            }
            let c = &comments[i];
            if done.contains_key(&c.source_id) {
                self.summary.skipped += 1;
                continue;
            }
            let model = match self.foreign_comment(c, &thread_article, &done) {
                Ok(m) => m,
                Err(reason) => {
                    self.refuse(c.at.clone(), reason)?;
                    continue;
                }
            };
            done.insert(
                c.source_id.clone(),
                (model.id.clone(), model.article_id.clone()),
            );
            sources.push(import_source::ActiveModel::from(import_source::Model {
                format: format.as_str().into(),
                source_id: c.source_id.clone(),
                comment_id: model.id.clone(),
                imported_at: now,
            }));
            batch.push(comment::ActiveModel::from(model));
            if batch.len() >= BATCH {
                self.insert_comments(std::mem::take(&mut batch)).await?;
                insert_sources(&self.tx, std::mem::take(&mut sources)).await?;
            }
        }
        self.insert_comments(batch).await?;
        insert_sources(&self.tx, sources).await?;
        for (i, c) in comments.iter().enumerate() {
            if !emitted[i] {
                self.refuse(c.at.clone(), "its chain of parents loops")?;
            }
        }
        bar.finish_and_clear();
        Ok(())
    }

    fn foreign_comment(
        &self,
        c: &super::foreign::Comment,
        threads: &HashMap<String, Result<String, String>>,
        done: &HashMap<String, (String, String)>,
    ) -> Result<comment::Model, String> {
        let article_id = match threads.get(&c.thread_id) {
            None => return Err(format!("its thread {:?} is not in the file", c.thread_id)),
            Some(Err(_)) => return Err(format!("its thread {:?} was refused", c.thread_id)),
            Some(Ok(a)) => a.clone(),
        };
        let status = c.status.clone()?;
        let created_at = c.created_at.clone()?;
        let body = if status == "deleted" && c.body.trim().is_empty() {
            String::new()
        } else {
            CommentBody::parse(&c.body)
                .map_err(|e| format!("body {}", e.message))?
                .into_inner()
        };
        let parent_id = match &c.parent_id {
            None => None,
            Some(p) => match done.get(p) {
                None => return Err(format!("its parent {p:?} was not imported")),
                Some((_, a)) if *a != article_id => {
                    return Err(format!("its parent {p:?} belongs to another thread"))
                }
                Some((id, _)) => Some(id.clone()),
            },
        };
        let created_at = created_at.trunc_subsecs(6);
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            created_at.timestamp().max(0) as u64,
            created_at.timestamp_subsec_nanos(),
        );
        Ok(comment::Model {
            id: uuid::Uuid::new_v7(ts).to_string(),
            article_id,
            parent_id,
            author_id: format!("guest:{}", c.author_name),
            author_name: c.author_name.clone(),
            is_guest: true,
            fingerprint: Some(crate::service::comments::fingerprint(&body)),
            body,
            status: status.into(),
            version: 1,
            reply_count: 0,
            flag_count: 0,
            auto_score: 0.0,
            auto_reasons: "[]".into(),
            created_at,
            updated_at: created_at,
            edited_at: None,
            spam_probability: None,
            kind: "comment".into(),
            stars: None,
            verified: false,
            votes_up: 0,
            votes_down: 0,
            best_score: 0.0,
            flag_weight: 0.0,
        })
    }
}

/// Lines read and parsed ahead of the writer: `(line number, line)`, and how many
/// bytes of the file are read.
struct Parsed {
    lines: Vec<(u64, Result<Line, ParseError>)>,
    read: u64,
}

enum ParseError {
    /// Not a line of the format: refused, the import goes on (unless `--strict`).
    Refused(String),
    /// The file cannot be read on: the import stops.
    Unreadable(std::io::Error),
}

/// Reads and parses the lines after the header (line 1), sending them in chunks;
/// stops at the end of the file, at an unreadable line, or when the writer hangs up.
fn read_lines(mut input: impl BufRead, mut read: u64, out: tokio::sync::mpsc::Sender<Parsed>) {
    const CHUNK: usize = 1024;
    let mut n = 1u64;
    let mut lines = Vec::with_capacity(CHUNK);
    loop {
        let mut raw = String::new();
        let len = match input.read_line(&mut raw) {
            Ok(len) => len,
            Err(e) => {
                lines.push((n + 1, Err(ParseError::Unreadable(e))));
                break;
            }
        };
        if len == 0 {
            break;
        }
        n += 1;
        read += len as u64;
        if raw.trim().is_empty() {
            continue;
        }
        let line = lines::parse(&mut raw).map_err(|e| ParseError::Refused(e.to_string()));
        lines.push((n, line));
        if lines.len() >= CHUNK {
            let chunk = Parsed {
                lines: std::mem::replace(&mut lines, Vec::with_capacity(CHUNK)),
                read,
            };
            if out.blocking_send(chunk).is_err() {
                return;
            }
        }
    }
    out.blocking_send(Parsed { lines, read }).ok();
}

/// A timestamp as either database hands it out as text.
fn parse_time(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    if let Ok(t) = DateTime::parse_from_rfc3339(t) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f %:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(t, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

async fn insert_sources(
    tx: &DatabaseTransaction,
    rows: Vec<import_source::ActiveModel>,
) -> Result<(), DbErr> {
    if !rows.is_empty() {
        import_source::Entity::insert_many(rows)
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}

/// The comments' indexes in an order that lists every parent before its replies, in
/// time order otherwise; comments whose chain of parents loops are left out.
fn parents_first(comments: &[super::foreign::Comment]) -> Vec<usize> {
    let mut by_time: Vec<usize> = (0..comments.len()).collect();
    by_time.sort_by(|&a, &b| {
        let t = |i: usize| comments[i].created_at.as_ref().ok().copied();
        t(a).cmp(&t(b)).then(a.cmp(&b))
    });
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, c) in comments.iter().enumerate() {
        index.entry(c.source_id.as_str()).or_insert(i);
    }
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for &i in &by_time {
        match comments[i].parent_id.as_deref().and_then(|p| index.get(p)) {
            Some(&p) if p != i => children.entry(p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    let mut order = Vec::with_capacity(comments.len());
    for root in roots {
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            order.push(i);
            if let Some(kids) = children.get(&i) {
                stack.extend(kids.iter().rev());
            }
        }
    }
    order
}
