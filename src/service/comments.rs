//! Comments: create (through the rule pipeline), list with keyset pagination, read,
//! author edit and delete. Every status change updates the kept counters in the same
//! transaction (`counters::status_changed`).

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, Func, LockType, Query, SelectStatement},
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DerivePartialModel, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Select,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    articles,
    idempotency::{self, IdempotentRequest, Outcome},
    moderation::log::{LogEntry, SYSTEM},
    settings::PolicyCache,
    write::db::{Db, Route},
    write::{counters, Write},
};
use crate::{
    auth::User,
    domain::{
        normalise_for_repeat, Action, ArticleId, AuthorName, CommentBody, CommentKind, Cursor,
        Evaluation, KeyCursor, ModerationMode, ModerationStatus, Sort, Stars, Submission,
        ThreadCursor, ThreadSort, Vote,
    },
    entity::{article, author_count, comment},
    error::ApiError,
};

/// How long an identical text by the same author counts as a repeat.
const REPEAT_WINDOW_HOURS: i64 = 6;

/// Who is writing.
#[derive(Debug, Clone)]
pub enum Author {
    User(User),
    Guest(AuthorName),
}

/// Who wrote a comment; `id` only in moderation items.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Author)]
pub struct AuthorView {
    /// Only moderators see author ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
}

/// A comment as its reader sees it. A deleted comment that has replies keeps its place
/// with an empty `body` and a `null` author.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Comment)]
pub struct CommentView {
    pub id: String,
    pub article_id: String,
    #[schema(required = true)]
    pub parent_id: Option<String>,
    #[schema(required = true)]
    pub author: Option<AuthorView>,
    /// Plain text as written (front ends escape it).
    #[schema(max_length = 5000)]
    pub body: String,
    #[schema(value_type = ModerationStatus)]
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub edited_at: Option<DateTime<Utc>>,
    #[schema(minimum = 0)]
    pub reply_count: i64,
    /// Whether the caller wrote it (their own pending comments show only to them).
    pub mine: bool,
    /// Who `mine` is true for: the author's user id, `None` for a guest. Never sent
    /// (only moderators see author ids); a shared page keeps it so that a signed-in
    /// reader's `mine` can be set on a copy (`service::page_overlay`).
    #[serde(skip)]
    #[schema(ignore)]
    pub owner: Option<String>,
    /// The key `sort=best` orders by (`best_score`, the Wilson lower bound of the
    /// votes), as stored. Never sent; kept so a shared page can be merged with the
    /// reader's pending comments in that order (`service::page_overlay`).
    #[serde(skip)]
    #[schema(ignore)]
    pub best_score: f64,
    /// `review` for a rating's text (top-level, with `stars`), else `comment`.
    pub kind: CommentKind,
    /// A review's stars: its author's current rating; `null` for comments.
    #[schema(required = true, minimum = 1, maximum = 5)]
    pub stars: Option<i16>,
    /// The author's token carried `"verified": true` when they wrote it.
    pub verified: bool,
    pub votes: VoteCounts,
    /// The caller's own vote; `null` for guests and when they have not voted.
    #[schema(required = true)]
    pub my_vote: Option<Vote>,
}

/// Helpful votes on a comment.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct VoteCounts {
    #[schema(minimum = 0)]
    pub up: i64,
    #[schema(minimum = 0)]
    pub down: i64,
}

/// A page of comments: keyset-paginated, `next_cursor` is `null` on the last page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// The visible top-level comments (or replies) in all.
    #[schema(minimum = 0)]
    pub total: i64,
}
pub use super::moderation::moves::status_of;

fn parse_status(status: &str) -> ModerationStatus {
    // The CHECK constraint admits only the five names, so this never falls back.
    ModerationStatus::parse(status).unwrap_or(ModerationStatus::Pending)
}

fn is_mine(c: &comment::Model, caller: Option<&User>) -> bool {
    written_by(&c.author_id, c.is_guest, caller)
}

fn written_by(author_id: &str, is_guest: bool, caller: Option<&User>) -> bool {
    !is_guest && caller.is_some_and(|u| u.id == author_id)
}

/// The columns a [`CommentView`] is made of: what a listing reads (the moderation
/// columns, the fingerprint and the version stay in the database).
#[derive(Debug, Clone, DerivePartialModel)]
#[sea_orm(entity = "comment::Entity")]
pub struct Shown {
    pub id: String,
    pub article_id: String,
    pub parent_id: Option<String>,
    pub author_id: String,
    pub author_name: String,
    pub is_guest: bool,
    pub body: String,
    pub status: String,
    pub reply_count: i64,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub kind: String,
    pub stars: Option<i16>,
    pub verified: bool,
    pub votes_up: i64,
    pub votes_down: i64,
    pub best_score: f64,
}

impl From<comment::Model> for Shown {
    fn from(c: comment::Model) -> Self {
        Shown {
            id: c.id,
            article_id: c.article_id,
            parent_id: c.parent_id,
            author_id: c.author_id,
            author_name: c.author_name,
            is_guest: c.is_guest,
            body: c.body,
            status: c.status,
            reply_count: c.reply_count,
            created_at: c.created_at,
            edited_at: c.edited_at,
            kind: c.kind,
            stars: c.stars,
            verified: c.verified,
            votes_up: c.votes_up,
            votes_down: c.votes_down,
            best_score: c.best_score,
        }
    }
}

/// Whether `caller` may see `c`: listed comments, their own pending ones, and for
/// moderators every comment that was not deleted. A deleted comment without listed
/// replies is gone for everyone (moderators still find it in the log).
pub fn visible_to(c: &comment::Model, caller: Option<&User>) -> bool {
    let status = status_of(c);
    status.is_listed(c.reply_count)
        || (status == ModerationStatus::Pending && is_mine(c, caller))
        || (status != ModerationStatus::Deleted && caller.is_some_and(User::is_moderator))
}

/// The view of `c` for `caller`; `with_author_id` is for moderator tools.
pub fn view(c: impl Into<Shown>, caller: Option<&User>, with_author_id: bool) -> CommentView {
    let c: Shown = c.into();
    let mine = written_by(&c.author_id, c.is_guest, caller);
    let status = parse_status(&c.status);
    let (author, body) = if status == ModerationStatus::Deleted {
        (None, String::new())
    } else {
        let id = with_author_id.then(|| c.author_id.clone());
        (
            Some(AuthorView {
                id,
                name: c.author_name,
            }),
            c.body,
        )
    };
    CommentView {
        id: c.id,
        article_id: c.article_id,
        parent_id: c.parent_id,
        author,
        body,
        status: status.as_str(),
        created_at: c.created_at,
        edited_at: c.edited_at,
        reply_count: c.reply_count,
        mine,
        owner: (!c.is_guest).then_some(c.author_id),
        best_score: c.best_score,
        kind: CommentKind::parse(&c.kind),
        stars: c.stars,
        verified: c.verified,
        votes: VoteCounts {
            up: c.votes_up,
            down: c.votes_down,
        },
        // Per caller: filled in by `votes::overlay_my_votes`.
        my_vote: None,
    }
}

pub(super) fn fingerprint(body: &str) -> String {
    let digest = Sha256::digest(normalise_for_repeat(body).as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A text to run through the rule pipeline.
pub(super) struct Candidate<'a> {
    pub article_mode: Option<&'a str>,
    pub author_id: &'a str,
    pub is_guest: bool,
    pub body: &'a str,
    /// The comment being edited, which is no repeat of itself.
    pub exclude_id: Option<&'a str>,
    /// The text's fingerprint and whether it repeats, when already known (read with
    /// the article, see `create_in`); else `evaluate` finds out.
    pub known: Option<(String, bool)>,
}

/// The author's other comments with the same fingerprint within the repeat window
/// (not deleted), as a subquery for an EXISTS.
pub(super) fn repeat_query(
    author_id: &str,
    fingerprint: &str,
    exclude_id: Option<&str>,
) -> SelectStatement {
    let since = super::now() - Duration::hours(REPEAT_WINDOW_HOURS);
    let mut q = Query::select()
        .expr(Expr::val(1))
        .from(comment::Entity)
        .and_where(comment::Column::AuthorId.eq(author_id))
        .and_where(comment::Column::CreatedAt.gt(since))
        .and_where(comment::Column::Fingerprint.eq(fingerprint))
        .and_where(comment::Column::Status.ne(ModerationStatus::Deleted.as_str()))
        .to_owned();
    if let Some(id) = exclude_id {
        q.and_where(comment::Column::Id.ne(id));
    }
    q
}

/// Runs the rule pipeline for a new or edited text; also returns the text's fingerprint
/// (stored to spot later repeats).
pub(super) async fn evaluate(
    conn: &impl ConnectionTrait,
    policies: &PolicyCache,
    c: Candidate<'_>,
) -> Result<(Evaluation, String), ApiError> {
    let Candidate {
        article_mode,
        author_id,
        is_guest,
        body,
        exclude_id,
        known,
    } = c;
    let policy = policies.get(conn).await?;
    let (fingerprint, is_repeat) = match known {
        Some(known) => known,
        None => {
            let fp = fingerprint(body);
            let repeat = super::exists(conn, repeat_query(author_id, &fp, exclude_id)).await?;
            (fp, repeat)
        }
    };
    let author_approved = if policy.policy.trusted_after_approved > 0 && !is_guest {
        // The kept per-author count: one primary-key read, however prolific the author.
        // Approvals deferred by a group-committed batch (`write::Batch`) are not
        // in it yet, but cannot matter: a comment is approved automatically only when
        // its author already passes this rule.
        author_count::Entity::find_by_id(author_id)
            .one(conn)
            .await?
            .map_or(0, |a| a.approved)
    } else {
        i64::MAX
    };
    let spam_probability = policies
        .spam()
        .probability(conn, body, policy.policy.spam_min_examples)
        .await?;
    let eval = policy.evaluate(&Submission {
        body,
        is_guest,
        article_mode: article_mode.and_then(ModerationMode::parse),
        author_approved,
        is_repeat,
        spam_probability,
    });
    Ok((eval, fingerprint))
}

/// Logs a rule's decision to hold or reject a comment, with actor `system`.
pub(super) async fn log_automatic(
    w: &mut Write<'_>,
    c: &comment::Model,
    from: Option<ModerationStatus>,
    eval: &Evaluation,
) -> Result<(), ApiError> {
    let action = match eval.status {
        ModerationStatus::Rejected => "reject",
        ModerationStatus::Pending => "hold",
        _ => return Ok(()),
    };
    super::moderation::log::append_log(
        w,
        LogEntry {
            actor_id: SYSTEM,
            actor_name: SYSTEM,
            action,
            comment_id: Some(&c.id),
            subject_user_id: Some(&c.author_id),
            from_status: from.map(ModerationStatus::as_str),
            to_status: Some(eval.status.as_str()),
            reason: Some(eval.reasons.join(", ")),
        },
    )
    .await
}

#[derive(Debug, Clone)]
pub struct NewComment {
    pub body: CommentBody,
    pub parent_id: Option<String>,
    /// The external moderation hook's answer, asked before the write
    /// (`external::screen_new`); the comment keeps the id the hook was told.
    pub screened: Option<super::external::Screened>,
}

/// Posts a comment. Its status says whether it is live, waiting, or refused by a rule.
/// Under an idempotency key, a request already done is replayed and nothing is written.
/// Group-committed (`Db::write`): answered once the comment is durable.
pub async fn create(
    db: &Db,
    policies: &PolicyCache,
    auto_create: bool,
    author: Author,
    article_id: &ArticleId,
    input: NewComment,
    idempotency: Option<&IdempotentRequest>,
) -> Result<Outcome<CommentView>, ApiError> {
    let policies = policies.clone();
    let article_id = article_id.clone();
    let idempotency = idempotency.cloned();
    // A reply locks its parents while its batch runs: a thread's replies share a writer.
    // A new thread's counters are all deferred, so it goes by author (see `Route`).
    let route = match (&input.parent_id, &author) {
        (Some(_), _) => Route::article(article_id.as_str()),
        (None, Author::User(u)) => Route::user(&u.id),
        (None, Author::Guest(name)) => Route::user(name.as_str()),
    };
    let outcome = db
        .write(
            route,
            (policies, author, article_id, input, idempotency),
            move |w, job| {
                let (policies, author, article_id, input, idempotency) = job;
                let idempotency = idempotency.as_ref();
                Box::pin(async move {
                    let tx = w.tx();
                    let (author, input) = (author.clone(), input.clone());
                    if let Some(req) = idempotency {
                        if let Some(stored) = idempotency::claim(tx, req).await? {
                            return Ok(Outcome::Replay(stored));
                        }
                    }
                    let (author_id, author_name, caller) = match &author {
                        Author::User(u) => (u.id.clone(), u.name.clone(), Some(u)),
                        Author::Guest(name) => {
                            if !policies.get(tx).await?.policy.guest_comments {
                                return Err(ApiError::Forbidden(
                                    "guest comments are turned off; sign in to comment".into(),
                                ));
                            }
                            let id = format!("guest:{}", name.as_str());
                            (id, name.as_str().to_owned(), None)
                        }
                    };
                    let is_guest = caller.is_none();
                    let body = input.body.into_inner();
                    // The ban check, the article and the repeat rule's lookup in one round trip.
                    let fp = fingerprint(&body);
                    let (article, repeat) = articles::for_user_write(
                        tx,
                        article_id,
                        &author_id,
                        auto_create,
                        Some(repeat_query(&author_id, &fp, None)),
                    )
                    .await?;
                    let known = repeat.map(|r| (fp, r));
                    if !article.comments_open {
                        return Err(ApiError::CommentsClosed);
                    }
                    if let Some(pid) = &input.parent_id {
                        let parent = comment::Entity::find_by_id(pid.as_str()).one(tx).await?;
                        let ok = parent.is_some_and(|p| {
                            p.article_id == article.id
                                && status_of(&p) != ModerationStatus::Deleted
                                && visible_to(&p, caller)
                        });
                        if !ok {
                            return Err(ApiError::validation(
                                "parent_id",
                                "must be a visible comment of the same article",
                            ));
                        }
                    }
                    let (mut eval, fp) = evaluate(
                        tx,
                        policies,
                        Candidate {
                            article_mode: article.moderation_mode.as_deref(),
                            author_id: &author_id,
                            is_guest,
                            body: &body,
                            exclude_id: None,
                            known,
                        },
                    )
                    .await?;
                    let rules = eval.clone();
                    let screened = input.screened;
                    let external = screened
                        .as_ref()
                        .and_then(|s| super::external::apply(&mut eval, &s.answer));
                    let now = super::now();
                    let model = comment::Model {
                        id: screened.map_or_else(|| uuid::Uuid::now_v7().to_string(), |s| s.id),
                        article_id: article.id.clone(),
                        parent_id: input.parent_id,
                        author_id,
                        author_name,
                        is_guest,
                        body,
                        status: eval.status.as_str().to_owned(),
                        version: 1,
                        reply_count: 0,
                        flag_count: 0,
                        auto_score: eval.score,
                        auto_reasons: serde_json::to_string(&eval.reasons)
                            .unwrap_or_else(|_| "[]".into()),
                        fingerprint: Some(fp),
                        created_at: now,
                        updated_at: now,
                        edited_at: None,
                        spam_probability: eval.spam_probability,
                        kind: CommentKind::Comment.as_str().to_owned(),
                        stars: None,
                        verified: caller.is_some_and(|u| u.verified),
                        votes_up: 0,
                        votes_down: 0,
                        best_score: 0.0,
                        flag_weight: 0.0,
                    };
                    let active: comment::ActiveModel = model.clone().into();
                    comment::Entity::insert(active)
                        .exec_without_returning(tx)
                        .await?;
                    counters::status_changed(w, &model, None, eval.status).await?;
                    log_automatic(w, &model, None, &rules).await?;
                    if let Some(decision) = external {
                        decision.log(w, &model).await?;
                    }
                    w.record(super::write::events::comment_created(&model));
                    let created = view(model, caller, false);
                    if let Some(req) = idempotency {
                        idempotency::complete(tx, req, 201, &created).await?;
                    }
                    Ok(Outcome::Done(created))
                })
            },
        )
        .await?;
    if let Outcome::Done(created) = &outcome {
        tracing::info!(comment_id = %created.id, article_id = %created.article_id, status = %created.status, "comment created");
    }
    Ok(outcome)
}

/// One comment, if the caller may see it.
pub async fn get(db: &Db, caller: Option<&User>, id: &str) -> Result<CommentView, ApiError> {
    let c = comment::Entity::find_by_id(id).one(&db.conn).await?;
    match c {
        Some(c) if visible_to(&c, caller) => {
            let mut views = [view(c, caller, false)];
            overlay_my_votes(&db.conn, caller, &mut views).await?;
            let [v] = views;
            Ok(v)
        }
        _ => Err(ApiError::not_found("comment")),
    }
}

pub use super::listing::{after_cursor, comment_cursor, paginate, CursorPage, ListQuery};

/// Sets `my_vote` on each of `items` to the caller's vote (`null` for guests and where
/// they have not voted): at most one query for the whole page.
pub async fn overlay_my_votes(
    conn: &impl ConnectionTrait,
    caller: Option<&User>,
    items: &mut [CommentView],
) -> Result<(), ApiError> {
    let Some(user) = caller else {
        return Ok(());
    };
    // Only comments with votes can have the caller's (the counters are exact): a page
    // nobody voted on costs no query.
    let ids: Vec<&str> = items
        .iter()
        .filter(|c| c.votes.up + c.votes.down > 0)
        .map(|c| c.id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<(String, String)> = crate::entity::comment_vote::Entity::find()
        .select_only()
        .column(crate::entity::comment_vote::Column::CommentId)
        .column(crate::entity::comment_vote::Column::Vote)
        .filter(crate::entity::comment_vote::Column::UserId.eq(&user.id))
        .filter(crate::entity::comment_vote::Column::CommentId.is_in(ids))
        .into_tuple()
        .all(conn)
        .await?;
    let mine: std::collections::HashMap<String, Vote> = rows
        .into_iter()
        .filter_map(|(id, v)| Vote::parse(&v).map(|v| (id, v)))
        .collect();
    for item in items {
        item.my_vote = mine.get(&item.id).copied();
    }
    Ok(())
}

/// Listed comments, plus the caller's own pending ones.
fn visibility(caller: Option<&User>) -> Condition {
    let mut cond = Condition::any()
        .add(comment::Column::Status.eq(ModerationStatus::Approved.as_str()))
        .add(
            Condition::all()
                .add(comment::Column::Status.eq(ModerationStatus::Deleted.as_str()))
                .add(comment::Column::ReplyCount.gt(0)),
        );
    if let Some(u) = caller {
        cond = cond.add(pending_by(u));
    }
    cond
}

/// Comments by `user` still waiting for moderation: only they (and moderators) see them.
pub(crate) fn pending_by(user: &User) -> Condition {
    Condition::all()
        .add(comment::Column::AuthorId.eq(&user.id))
        .add(comment::Column::IsGuest.eq(false))
        .add(comment::Column::Status.eq(ModerationStatus::Pending.as_str()))
}

/// The caller's own pending comments in a thread (top level of an article, of `kind`,
/// or the replies to `parent`): they see them, so they count in the page's `total`.
fn own_pending(
    user: &User,
    article_id: &str,
    parent: Option<&str>,
    filter: &Filter,
) -> Select<comment::Entity> {
    // The kind (and stars) are counted in, not filtered on: filtered, they would make
    // the planners read the article's whole (article, kind) index range instead of the
    // author's few rows (`idx_comments_author`). Literal 1 and 0: an int4 SUM is a
    // bigint on PostgreSQL.
    let matching = Expr::case(filter.condition(), Expr::cust("1")).finally(Expr::cust("0"));
    let counted = Func::coalesce([Func::sum(matching).into(), Expr::cust("0")]);
    comment::Entity::find()
        .select_only()
        .expr(counted)
        .filter(comment::Column::ArticleId.eq(article_id))
        .filter(thread_of(parent))
        .filter(pending_by(user))
}

fn thread_of(parent: Option<&str>) -> Condition {
    Condition::all().add(match parent {
        Some(p) => comment::Column::ParentId.eq(p),
        None => comment::Column::ParentId.is_null(),
    })
}

/// A page of comments, replies or reviews asked for.
#[derive(Debug, Clone)]
pub struct ThreadQuery {
    pub sort: ThreadSort,
    pub limit: u64,
    pub cursor: Option<ThreadCursor>,
}

/// What a top-level listing keeps: one kind, and for reviews maybe one number of stars.
#[derive(Debug, Clone, Copy, Default)]
struct Filter {
    kind: Option<CommentKind>,
    stars: Option<Stars>,
}

impl Filter {
    fn condition(&self) -> Condition {
        let mut cond = Condition::all();
        if let Some(kind) = self.kind {
            cond = cond.add(comment::Column::Kind.eq(kind.as_str()));
        }
        if let Some(stars) = self.stars {
            cond = cond.add(comment::Column::Stars.eq(i16::from(stars.get())));
        }
        cond
    }
}

/// The key column of a keyed sort and whether it runs high to low.
fn key_of(sort: ThreadSort) -> Option<(comment::Column, bool)> {
    match sort {
        ThreadSort::Best => Some((comment::Column::BestScore, true)),
        ThreadSort::Highest => Some((comment::Column::Stars, true)),
        ThreadSort::Lowest => Some((comment::Column::Stars, false)),
        ThreadSort::Newest | ThreadSort::Oldest => None,
    }
}

/// Rows after `c` in a keyed order: the key (descending when `desc`), then newest first.
fn after_key(key: comment::Column, desc: bool, stars: bool, c: &KeyCursor) -> Condition {
    let value: sea_orm::Value = if stars {
        // Stars are whole numbers, compared as what they are.
        (c.key as i16).into()
    } else {
        c.key.into()
    };
    let beyond = if desc {
        key.lt(value.clone())
    } else {
        key.gt(value.clone())
    };
    let (t, i) = (c.created_at, c.id.clone());
    Condition::any().add(beyond).add(
        Condition::all().add(key.eq(value)).add(
            Condition::any().add(comment::Column::CreatedAt.lt(t)).add(
                Condition::all()
                    .add(comment::Column::CreatedAt.eq(t))
                    .add(comment::Column::Id.lt(i)),
            ),
        ),
    )
}

/// Top-level comments of an article (`parent` None) or the replies to one comment, of
/// which there are `total` for the caller.
async fn list(
    conn: &impl ConnectionTrait,
    caller: Option<&User>,
    article_id: &str,
    parent: Option<&str>,
    filter: Filter,
    total: i64,
    q: ThreadQuery,
) -> Result<Page<CommentView>, ApiError> {
    let mut select = comment::Entity::find()
        .filter(comment::Column::ArticleId.eq(article_id))
        .filter(thread_of(parent))
        .filter(filter.condition())
        .filter(visibility(caller));
    let key = key_of(q.sort);
    match (&q.cursor, key) {
        (Some(ThreadCursor::Time(c)), None) => {
            let sort = if q.sort == ThreadSort::Oldest {
                Sort::Oldest
            } else {
                Sort::Newest
            };
            select = select.filter(after_cursor(
                comment::Column::CreatedAt,
                comment::Column::Id,
                sort,
                c,
            ));
        }
        (Some(ThreadCursor::Key(c)), Some((col, desc))) => {
            select = select.filter(after_key(col, desc, q.sort != ThreadSort::Best, c));
        }
        (None, _) => {}
        // `ThreadCursor::decode` gives the kind the sort uses.
        (Some(_), _) => {
            return Err(ApiError::BadRequest(
                "bad query".into(),
                vec![crate::domain::FieldError::new(
                    "cursor",
                    "is not a cursor of this sort",
                )],
            ))
        }
    }
    use sea_orm::Order::{Asc, Desc};
    select = match (q.sort, key) {
        (ThreadSort::Oldest, _) => select
            .order_by(comment::Column::CreatedAt, Asc)
            .order_by(comment::Column::Id, Asc),
        (_, Some((col, desc))) => select.order_by(col, if desc { Desc } else { Asc }),
        _ => select,
    };
    if q.sort != ThreadSort::Oldest {
        select = select
            .order_by(comment::Column::CreatedAt, Desc)
            .order_by(comment::Column::Id, Desc);
    }
    let rows = select
        .limit(q.limit + 1)
        .into_partial_model::<Shown>()
        .all(conn)
        .await?;
    let sort = q.sort;
    let page = paginate(rows, q.limit, |c: &Shown| Cursor {
        created_at: c.created_at,
        id: c.id.clone(),
    });
    // `paginate` cuts with a time cursor; keyed sorts replace it with their own.
    let next_cursor = match (page.next_cursor, page.items.last(), sort) {
        (Some(_), Some(last), ThreadSort::Best) => Some(
            KeyCursor {
                key: last.best_score,
                created_at: last.created_at,
                id: last.id.clone(),
            }
            .encode(),
        ),
        (Some(_), Some(last), ThreadSort::Highest | ThreadSort::Lowest) => Some(
            KeyCursor {
                key: f64::from(last.stars.unwrap_or(0)),
                created_at: last.created_at,
                id: last.id.clone(),
            }
            .encode(),
        ),
        (next, _, _) => next,
    };
    let mut items: Vec<CommentView> = page
        .items
        .into_iter()
        .map(|c| view(c, caller, false))
        .collect();
    overlay_my_votes(conn, caller, &mut items).await?;
    Ok(Page {
        items,
        next_cursor,
        total,
    })
}

/// `GET /articles/{id}/comments`: top-level comments of kind `comment`. The article's
/// count and the caller's own pending comments are read in one statement, so a page is
/// two (three with the caller's votes).
pub async fn list_top_level(
    db: &Db,
    caller: Option<&User>,
    article_id: &ArticleId,
    auto_create: bool,
    q: ThreadQuery,
) -> Result<Page<CommentView>, ApiError> {
    let filter = Filter {
        kind: Some(CommentKind::Comment),
        stars: None,
    };
    list_kind(db, caller, article_id, auto_create, q, filter).await
}

/// `GET /articles/{id}/reviews`: reviews, maybe of one number of stars only.
pub async fn list_reviews(
    db: &Db,
    caller: Option<&User>,
    article_id: &ArticleId,
    auto_create: bool,
    q: ThreadQuery,
    stars: Option<Stars>,
) -> Result<Page<CommentView>, ApiError> {
    let filter = Filter {
        kind: Some(CommentKind::Review),
        stars,
    };
    list_kind(db, caller, article_id, auto_create, q, filter).await
}

async fn list_kind(
    db: &Db,
    caller: Option<&User>,
    article_id: &ArticleId,
    auto_create: bool,
    q: ThreadQuery,
    filter: Filter,
) -> Result<Page<CommentView>, ApiError> {
    let id = article_id.as_str();
    let own = match caller {
        Some(u) => own_pending(u, id, None, &filter).into_query().into(),
        None => Expr::val(0i64),
    };
    let listed = match (filter.kind, filter.stars) {
        (Some(CommentKind::Review), None) => Expr::col(article::Column::ReviewCount),
        (Some(CommentKind::Review), Some(_)) => {
            // Listed reviews of these stars: counted (an article has few reviews per
            // number of stars, read through `idx_comments_review_stars`).
            let listed = comment::Entity::find()
                .select_only()
                .expr(Expr::col(comment::Column::Id).count())
                .filter(comment::Column::ArticleId.eq(id))
                .filter(thread_of(None))
                .filter(filter.condition())
                .filter(visibility(None))
                .into_query();
            listed.into()
        }
        _ => Expr::col(article::Column::TopLevelCount),
    };
    let counts: Option<(i64, i64)> = article::Entity::find_by_id(id)
        .select_only()
        .expr(listed)
        .expr(own)
        .into_tuple()
        .one(&db.conn)
        .await?;
    let total = match counts {
        Some((listed, own)) => listed + own,
        // No article, so no comments yet.
        None if auto_create => 0,
        None => return Err(ApiError::not_found("article")),
    };
    list(&db.conn, caller, id, None, filter, total, q).await
}

/// `GET /comments/{id}/replies`.
pub async fn list_replies(
    db: &Db,
    caller: Option<&User>,
    parent_id: &str,
    q: ThreadQuery,
) -> Result<Page<CommentView>, ApiError> {
    let parent = comment::Entity::find_by_id(parent_id).one(&db.conn).await?;
    let parent = parent
        .filter(|p| visible_to(p, caller))
        .ok_or_else(|| ApiError::not_found("comment"))?;
    let own = match caller {
        Some(u) => own_pending(u, &parent.article_id, Some(&parent.id), &Filter::default())
            .into_tuple::<i64>()
            .one(&db.conn)
            .await?
            .unwrap_or(0),
        None => 0,
    };
    list(
        &db.conn,
        caller,
        &parent.article_id,
        Some(&parent.id),
        Filter::default(),
        parent.reply_count + own,
        q,
    )
    .await
}

/// Loads a comment for a change by its author: 404 when the caller cannot see it,
/// 403 when they can but did not write it. Locked for the transaction on PostgreSQL.
async fn own_comment_for_update(
    conn: &impl ConnectionTrait,
    user: &User,
    id: &str,
) -> Result<comment::Model, ApiError> {
    let c = comment::Entity::find_by_id(id)
        .lock(LockType::NoKeyUpdate)
        .one(conn)
        .await?;
    let c = c.filter(|c| status_of(c) != ModerationStatus::Deleted && visible_to(c, Some(user)));
    let c = c.ok_or_else(|| ApiError::not_found("comment"))?;
    if !is_mine(&c, Some(user)) {
        return Err(ApiError::Forbidden(
            "only the author can change this comment".into(),
        ));
    }
    Ok(c)
}

/// The author edits a comment within the edit window; the new text is moderated again.
pub async fn edit(
    db: &Db,
    policies: &PolicyCache,
    user: &User,
    id: &str,
    body: CommentBody,
    screened: Option<super::external::Screened>,
) -> Result<CommentView, ApiError> {
    super::write::retry::retrying(|| {
        edit_once(db, policies, user, id, body.clone(), screened.as_ref())
    })
    .await
}

async fn edit_once(
    db: &Db,
    policies: &PolicyCache,
    user: &User,
    id: &str,
    body: CommentBody,
    screened: Option<&super::external::Screened>,
) -> Result<CommentView, ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    let c = own_comment_for_update(tx, user, id).await?;
    super::moderation::bans::ensure_not_banned(tx, &user.id).await?;
    let window = policies.get(tx).await?.policy.edit_window_secs;
    let now = super::now();
    if now - c.created_at > Duration::seconds(window as i64) {
        return Err(ApiError::EditWindowExpired);
    }
    let article = articles::find(tx, &ArticleId::parse(&c.article_id)?)
        .await?
        .ok_or_else(|| ApiError::Internal("comment without article".into()))?;
    if !article.comments_open {
        return Err(ApiError::CommentsClosed);
    }
    let body = body.into_inner();
    let (mut eval, fp) = evaluate(
        tx,
        policies,
        Candidate {
            article_mode: article.moderation_mode.as_deref(),
            author_id: &user.id,
            is_guest: false,
            body: &body,
            exclude_id: Some(&c.id),
            known: None,
        },
    )
    .await?;
    let rules = eval.clone();
    let from = status_of(&c);
    let mut to = from
        .apply(Action::Resubmit(eval.status))
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    // The hook's verdict (asked before this transaction) moves it on from there.
    let external = screened.and_then(|s| super::external::apply(&mut eval, &s.answer));
    if let Some(decision) = &external {
        to = to
            .apply(decision.action())
            .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    }
    let updated = comment::Model {
        body,
        status: to.as_str().to_owned(),
        version: c.version + 1,
        auto_score: eval.score,
        auto_reasons: serde_json::to_string(&eval.reasons).unwrap_or_else(|_| "[]".into()),
        fingerprint: Some(fp),
        updated_at: now,
        edited_at: Some(now),
        spam_probability: eval.spam_probability,
        ..c
    };
    comment::Entity::update(comment::ActiveModel {
        id: Set(updated.id.clone()),
        body: Set(updated.body.clone()),
        status: Set(updated.status.clone()),
        version: Set(updated.version),
        auto_score: Set(updated.auto_score),
        auto_reasons: Set(updated.auto_reasons.clone()),
        fingerprint: Set(updated.fingerprint.clone()),
        updated_at: Set(now),
        edited_at: Set(Some(now)),
        spam_probability: Set(updated.spam_probability),
        ..Default::default()
    })
    .exec(tx)
    .await?;
    counters::status_changed(&mut w, &updated, Some(from), to).await?;
    log_automatic(&mut w, &updated, Some(from), &rules).await?;
    if let Some(decision) = external {
        decision.log(&mut w, &updated).await?;
    }
    w.record(super::write::events::comment_edited(
        &updated,
        from.as_str(),
    ));
    wtx.commit().await?;
    Ok(view(updated, Some(user), false))
}

/// The author deletes a comment. With listed replies it stays as a tombstone. Its
/// flags are settled: there is nothing left for a moderator to decide.
pub async fn delete(db: &Db, user: &User, id: &str) -> Result<(), ApiError> {
    super::write::retry::retrying(|| delete_once(db, user, id)).await
}

async fn delete_once(db: &Db, user: &User, id: &str) -> Result<(), ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    let c = own_comment_for_update(tx, user, id).await?;
    let version = c.version;
    super::moderation::moves::move_comment(
        &mut w,
        c,
        version,
        super::moderation::moves::Change {
            action: Action::Delete,
            log_action: "delete",
            actor: super::moderation::moves::Actor::user(user),
            reason: Some("deleted by the author".into()),
            resolve_flags: true,
        },
    )
    .await?;
    wtx.commit().await?;
    Ok(())
}
