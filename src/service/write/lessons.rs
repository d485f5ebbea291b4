//! The spam model's part of a batch: what its decisions taught, written once at the
//! batch's end like the counters (see `service::spam` for the model itself).
//!
//! A decision that teaches the model (`spam::learn_in`) does not write its lesson row
//! and its pending change itself: it records them in its [`Write`](super::Write)'s
//! batch ([`Lessons`]), and [`Batch::apply`](super::Batch::apply) writes the lessons of
//! all the batch's jobs and their summed change of the model's counts as ONE
//! `spam_pending` row (counting the decisions in it): for N teaching decisions one
//! statement on PostgreSQL (two or three in-process ones on SQLite) instead of 2N. A
//! decision outside a batch (`spam::learn`) writes its own the same way
//! ([`write_one`]). A job that fails takes
//! its lessons with it (`Batch::job_ended`). A later decision on the same comment in the
//! same batch (decisions are routed by comment, so they share a writer) reads the
//! lesson the earlier one staged, not the stored row ([`Write::staged_lesson`](super::Write::staged_lesson)), and
//! replaces it.

use std::collections::BTreeMap;

use sea_orm::{
    sea_query::OnConflict,
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement,
};

use crate::{
    domain::SpamLabel,
    entity::{spam_lesson, spam_pending},
};

/// What a decided comment taught the model: its class and its tokens (token → count).
pub type Lesson = (SpamLabel, BTreeMap<String, i64>);

/// A change of the model's counts: per token (spam, ham), and per class.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModelDelta {
    pub tokens: BTreeMap<String, (i64, i64)>,
    pub spam_docs: i64,
    pub ham_docs: i64,
    pub spam_words: i64,
    pub ham_words: i64,
}

impl ModelDelta {
    /// Adds (`sign` 1) or takes back (-1) one lesson.
    pub fn add(&mut self, label: SpamLabel, tokens: &BTreeMap<String, i64>, sign: i64) {
        let words: i64 = tokens.values().sum::<i64>() * sign;
        match label {
            SpamLabel::Spam => {
                self.spam_docs += sign;
                self.spam_words += words;
            }
            SpamLabel::Ham => {
                self.ham_docs += sign;
                self.ham_words += words;
            }
        }
        for (t, n) in tokens {
            let e = self.tokens.entry(t.clone()).or_default();
            match label {
                SpamLabel::Spam => e.0 += n * sign,
                SpamLabel::Ham => e.1 += n * sign,
            }
        }
    }

    /// Adds another change.
    pub fn merge(&mut self, other: ModelDelta) {
        self.spam_docs += other.spam_docs;
        self.ham_docs += other.ham_docs;
        self.spam_words += other.spam_words;
        self.ham_words += other.ham_words;
        for (t, (s, h)) in other.tokens {
            let e = self.tokens.entry(t).or_default();
            e.0 += s;
            e.1 += h;
        }
    }

    /// The token changes that are not zero, as a pending row stores them (JSON object:
    /// token → `[spam, ham]`).
    pub fn tokens_json(&self) -> Result<String, serde_json::Error> {
        let tokens: BTreeMap<&String, &(i64, i64)> = self
            .tokens
            .iter()
            .filter(|(_, (s, h))| *s != 0 || *h != 0)
            .collect();
        serde_json::to_string(&tokens)
    }
}

/// The lessons a write (a job, or the whole batch) staged, and their summed change.
#[derive(Debug, Default)]
pub(super) struct Lessons {
    /// Comment id → its lesson once the batch commits (`None`: taken back).
    pub(super) staged: BTreeMap<String, Option<Lesson>>,
    pub(super) delta: ModelDelta,
    /// How many decisions changed the model (the pending row counts them).
    pub(super) changes: i64,
}

/// Lesson rows per multi-row statement.
const CHUNK: usize = 500;

impl Lessons {
    pub(super) fn stage(&mut self, comment_id: &str, lesson: Option<Lesson>, delta: ModelDelta) {
        self.staged.insert(comment_id.to_owned(), lesson);
        self.delta.merge(delta);
        self.changes += 1;
    }

    /// The later write's lessons replace the earlier's; the changes add up.
    pub(super) fn merge(&mut self, other: Lessons) {
        self.staged.extend(other.staged);
        self.delta.merge(other.delta);
        self.changes += other.changes;
    }

    /// Writes the staged lessons and the summed change as one pending row: on
    /// PostgreSQL in ONE statement ([`PG_WRITE`]), on SQLite (in-process statements)
    /// one upsert per [`CHUNK`] lessons, one delete for the ones taken back and the
    /// pending row's insert. The lesson rows are those of comments the batch's jobs
    /// hold locked; the pending row is a new row: this locks nothing another batch
    /// wants.
    pub(super) async fn write(self, conn: &impl ConnectionTrait) -> Result<(), DbErr> {
        if self.changes == 0 {
            return Ok(());
        }
        let now = crate::service::now();
        let mut taken_back = Vec::new();
        let mut kept = Vec::new();
        for (comment_id, lesson) in self.staged {
            match lesson {
                None => taken_back.push(comment_id),
                Some((label, tokens)) => kept.push((
                    comment_id,
                    label,
                    serde_json::to_string(&tokens)
                        .map_err(|e| DbErr::Custom(format!("a spam lesson: {e}")))?,
                )),
            }
        }
        let d = self.delta;
        let tokens = d
            .tokens_json()
            .map_err(|e| DbErr::Custom(format!("a spam model change: {e}")))?;
        if conn.get_database_backend() == DbBackend::Postgres {
            let lessons: Vec<serde_json::Value> = kept
                .into_iter()
                .map(|(c, l, t)| serde_json::json!({ "c": c, "l": l.as_str(), "t": t }))
                .collect();
            let values: [sea_orm::Value; 9] = [
                serde_json::Value::Array(lessons).to_string().into(),
                now.into(),
                serde_json::to_string(&taken_back)
                    .map_err(|e| DbErr::Custom(format!("spam lessons: {e}")))?
                    .into(),
                d.spam_docs.into(),
                d.ham_docs.into(),
                d.spam_words.into(),
                d.ham_words.into(),
                tokens.into(),
                self.changes.into(),
            ];
            conn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                PG_WRITE,
                values,
            ))
            .await?;
            return Ok(());
        }
        let mut rows =
            kept.into_iter()
                .map(|(comment_id, label, tokens)| spam_lesson::ActiveModel {
                    comment_id: Set(comment_id),
                    label: Set(label.as_str().to_owned()),
                    tokens: Set(tokens),
                    created_at: Set(now),
                });
        loop {
            let chunk: Vec<_> = rows.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            spam_lesson::Entity::insert_many(chunk)
                .on_conflict(
                    OnConflict::column(spam_lesson::Column::CommentId)
                        .update_columns([
                            spam_lesson::Column::Label,
                            spam_lesson::Column::Tokens,
                            spam_lesson::Column::CreatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(conn)
                .await?;
        }
        for chunk in taken_back.chunks(CHUNK) {
            spam_lesson::Entity::delete_many()
                .filter(spam_lesson::Column::CommentId.is_in(chunk.iter().map(String::as_str)))
                .exec(conn)
                .await?;
        }
        let row = spam_pending::ActiveModel {
            id: NotSet,
            spam_docs: Set(d.spam_docs),
            ham_docs: Set(d.ham_docs),
            spam_words: Set(d.spam_words),
            ham_words: Set(d.ham_words),
            tokens: Set(tokens),
            changes: Set(self.changes),
            created_at: Set(now),
        };
        spam_pending::Entity::insert(row)
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }
}

/// PostgreSQL: a batch's lessons (upserted), the lessons it takes back (deleted) and its
/// pending change, in one statement (data-modifying WITHs) of one text whatever the
/// batch's size, so it is prepared once per connection and costs one round trip. The
/// lessons come as one JSON array (`$1`: `c` comment id, `l` label, `t` tokens), the
/// ids taken back as another (`$3`); a comment is in at most one of them.
const PG_WRITE: &str = "\
    WITH kept AS (\
        INSERT INTO spam_lessons (comment_id, label, tokens, created_at) \
        SELECT r.c, r.l, r.t, $2 FROM json_to_recordset($1::json) AS r(c text, l text, t text) \
        ON CONFLICT (comment_id) DO UPDATE SET label = excluded.label, \
        tokens = excluded.tokens, created_at = excluded.created_at\
    ), taken_back AS (\
        DELETE FROM spam_lessons \
        WHERE comment_id IN (SELECT json_array_elements_text($3::json))\
    ) \
    INSERT INTO spam_pending \
    (spam_docs, ham_docs, spam_words, ham_words, tokens, changes, created_at) \
    VALUES ($4, $5, $6, $7, $8, $9, $2)";

/// Writes one decision's lesson (`None`: takes it back) and its change of the model's
/// counts as one pending row, at once in the caller's transaction: what a batch writes
/// for its decisions (see [`Lessons::write`]), for a decision outside a batch
/// (`spam::learn`).
pub async fn write_one(
    conn: &impl ConnectionTrait,
    comment_id: &str,
    lesson: Option<Lesson>,
    delta: ModelDelta,
) -> Result<(), DbErr> {
    let mut lessons = Lessons::default();
    lessons.stage(comment_id, lesson, delta);
    lessons.write(conn).await
}
