//! Seeding by direct inserts (never through HTTP): tally's own sea-orm entities in
//! multi-row INSERTs, 50 000 rows per transaction, so ids (UUIDv7 strings), statuses
//! and timestamps are stored exactly as the service stores them. The kept counters are
//! then set by recount SQL, so they equal the rows as the service's invariants demand.
//!
//! Data: articles `a-1` … `a-1000`; `hot` with 47 ratings (the viral story); `thread`
//! with exactly 10 000 approved top-level comments; and a population of other comments
//! on the `a-*` articles (10 % pending, 82 % approved, 4 % rejected, 3 % spam, 1 %
//! deleted; a fifth are replies; 1 % of the approved carry an unresolved flag).

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use rand::{rngs::StdRng, Rng, SeedableRng};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait, TransactionTrait,
};
use tally::entity::{article, comment, comment_vote, flag, rating};

pub const ARTICLES: u32 = 1000;
pub const HOT: &str = "hot";
pub const THREAD: &str = "thread";
pub const THREAD_COMMENTS: u64 = 10_000;
pub const HOT_RATINGS: u32 = 47;
/// Reviews (ratings with text, with votes) on the `thread` article.
pub const THREAD_REVIEWS: u32 = 2_000;
/// Rows per INSERT statement (18 columns: well under SQLite's 32 766 parameters).
const ROWS_PER_INSERT: usize = 1000;
/// Rows per transaction.
const ROWS_PER_TX: u64 = 50_000;
/// Seeded comments are this far apart in time, starting 200 days ago (1 M comments
/// end about 85 days ago, before anything the server writes).
const STEP_MICROS: i64 = 10_000_000;

fn db_err(what: &str) -> impl Fn(sea_orm::DbErr) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Deterministic data generator; its state carries over from the first seeding to the
/// growth to `--big-comments`.
pub struct Seeder {
    rng: StdRng,
    base: DateTime<Utc>,
    /// Comments generated so far (drives the timestamps).
    n: i64,
    /// Per `a-*` article: the last approved top-level comment already committed, the
    /// parent of the next reply there.
    parents: Vec<Option<String>>,
    flagger: u64,
}

struct Batch {
    comments: Vec<comment::ActiveModel>,
    flags: Vec<flag::ActiveModel>,
    /// (article index, comment id): parents usable once this batch is committed.
    new_parents: Vec<(usize, String)>,
}

impl Seeder {
    pub fn new() -> Seeder {
        Seeder {
            rng: StdRng::seed_from_u64(20_261_123),
            // Microsecond precision, as the service stores times.
            base: tally::service::now() - Duration::days(200),
            n: 0,
            parents: vec![None; ARTICLES as usize],
            flagger: 0,
        }
    }

    fn next_time(&mut self) -> DateTime<Utc> {
        self.n += 1;
        self.base + Duration::microseconds(self.n * STEP_MICROS)
    }

    fn new_comment(
        &mut self,
        article_id: String,
        parent_id: Option<String>,
        status: &str,
        flag_count: i32,
    ) -> comment::Model {
        let at = self.next_time();
        let mut random = [0u8; 10];
        self.rng.fill(&mut random);
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &random)
            .into_uuid()
            .to_string();
        let author = self.rng.random_range(1..=50_000u32);
        comment::Model {
            id,
            article_id,
            parent_id,
            author_id: format!("seed-{author}"),
            author_name: format!("Seed reader {author}"),
            is_guest: false,
            body: format!(
                "Seeded comment number {}: the open-book stretch helps, thank you for writing this up.",
                self.n
            ),
            status: status.to_owned(),
            version: 1,
            reply_count: 0,
            flag_count,
            auto_score: 0.0,
            auto_reasons: "[]".to_owned(),
            fingerprint: None,
            created_at: at,
            updated_at: at,
            edited_at: None,
            spam_probability: None,
            kind: "comment".to_owned(),
            stars: None,
            verified: false,
            votes_up: 0,
            votes_down: 0,
            best_score: 0.0,
            flag_weight: f64::from(flag_count),
        }
    }

    /// One comment of the general population, with its flag row when flagged.
    fn other(&mut self, batch: &mut Batch) {
        let idx = self.rng.random_range(0..ARTICLES as usize);
        let article_id = format!("a-{}", idx + 1);
        let status = match self.rng.random_range(0..1000u32) {
            0..100 => "pending",
            100..920 => "approved",
            920..960 => "rejected",
            960..990 => "spam",
            _ => "deleted",
        };
        let parent = match &self.parents[idx] {
            Some(p) if self.rng.random_range(0..5u32) == 0 => Some(p.clone()),
            _ => None,
        };
        let flagged = status == "approved" && self.rng.random_range(0..100u32) == 0;
        let is_top = parent.is_none();
        let c = self.new_comment(article_id, parent, status, i32::from(flagged));
        if flagged {
            self.flagger += 1;
            batch.flags.push(
                flag::Model {
                    comment_id: c.id.clone(),
                    user_id: format!("seed-flagger-{}", self.flagger),
                    reason: "spam".to_owned(),
                    note: None,
                    created_at: c.created_at,
                    resolved_at: None,
                    weight: 1.0,
                }
                .into(),
            );
        }
        if is_top && status == "approved" {
            batch.new_parents.push((idx, c.id.clone()));
        }
        batch.comments.push(c.into());
    }

    async fn flush(&mut self, tx: &impl ConnectionTrait, batch: Batch) -> Result<(), String> {
        for chunk in batch.comments.chunks(ROWS_PER_INSERT) {
            comment::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(tx)
                .await
                .map_err(db_err("inserting comments"))?;
        }
        for chunk in batch.flags.chunks(ROWS_PER_INSERT) {
            flag::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(tx)
                .await
                .map_err(db_err("inserting flags"))?;
        }
        for (idx, id) in batch.new_parents {
            self.parents[idx] = Some(id);
        }
        Ok(())
    }

    /// Articles, ratings, the 10 000-comment thread and `others` general comments.
    pub async fn seed_base(
        &mut self,
        conn: &DatabaseConnection,
        others: u64,
    ) -> Result<(), String> {
        let started = Instant::now();
        let now = tally::service::now();
        let tx = conn.begin().await.map_err(db_err("seeding"))?;
        let mut articles = vec![];
        for id in (1..=ARTICLES)
            .map(|i| format!("a-{i}"))
            .chain([HOT.to_owned(), THREAD.to_owned()])
        {
            articles.push(article::ActiveModel::from(article::Model {
                title: Some(format!("Article {id}")),
                url: Some(format!("https://example.org/articles/{id}")),
                comments_open: true,
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
                created_at: self.base,
                updated_at: now,
                id,
            }));
        }
        for chunk in articles.chunks(ROWS_PER_INSERT / 2) {
            article::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&tx)
                .await
                .map_err(db_err("inserting articles"))?;
        }
        // The hot article: 45 five-star and 2 four-star ratings; the others 0–30 each.
        let mut ratings = vec![];
        let mut rating = |article_id: String, user: String, stars: i16| {
            ratings.push(rating::ActiveModel::from(rating::Model {
                article_id,
                user_id: user,
                stars,
                created_at: now,
                updated_at: now,
                review_id: None,
            }));
        };
        for u in 1..=HOT_RATINGS {
            rating(HOT.into(), format!("seed-{u}"), if u <= 2 { 4 } else { 5 });
        }
        for a in 1..=ARTICLES {
            for u in 1..=self.rng.random_range(0..=30u32) {
                rating(
                    format!("a-{a}"),
                    format!("seed-{u}"),
                    self.rng.random_range(1..=5),
                );
            }
        }
        let rating_rows = ratings.len();
        for chunk in ratings.chunks(ROWS_PER_INSERT) {
            rating::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&tx)
                .await
                .map_err(db_err("inserting ratings"))?;
        }
        let mut batch = Batch {
            comments: vec![],
            flags: vec![],
            new_parents: vec![],
        };
        for _ in 0..THREAD_COMMENTS {
            let c = self.new_comment(THREAD.into(), None, "approved", 0);
            batch.comments.push(c.into());
        }
        self.flush(&tx, batch).await?;
        self.reviews(&tx).await?;
        tx.commit().await.map_err(db_err("seeding"))?;
        eprintln!(
            "  seeded {} articles, {rating_rows} ratings, the {THREAD_COMMENTS}-comment thread in {:.1}s",
            ARTICLES + 2,
            started.elapsed().as_secs_f64()
        );
        self.add_others(conn, others).await
    }

    /// The thread's [`THREAD_REVIEWS`] reviews: a rating by `reviewer-N` each, with its
    /// review (approved, its stars) and 0–11 votes by `voter-N` readers, the counters
    /// and best score set as the service keeps them.
    async fn reviews(&mut self, tx: &impl ConnectionTrait) -> Result<(), String> {
        let now = tally::service::now();
        let (mut ratings, mut reviews, mut votes) = (vec![], vec![], vec![]);
        for i in 1..=THREAD_REVIEWS {
            let stars: i16 = self.rng.random_range(1..=5);
            let mut c = self.new_comment(THREAD.into(), None, "approved", 0);
            c.author_id = format!("reviewer-{i}");
            c.author_name = format!("Reviewer {i}");
            c.body = format!("Review {i}: {stars} stars, the stretch section is the useful part.");
            c.kind = "review".into();
            c.stars = Some(stars);
            let up = self.rng.random_range(0..=8i64);
            let down = self.rng.random_range(0..=3i64);
            for v in 0..up + down {
                votes.push(comment_vote::ActiveModel::from(comment_vote::Model {
                    comment_id: c.id.clone(),
                    user_id: format!("voter-{v}"),
                    vote: if v < up { "up" } else { "down" }.into(),
                    created_at: now,
                    updated_at: now,
                }));
            }
            c.votes_up = up;
            c.votes_down = down;
            c.best_score = tally::domain::wilson_lower_bound(up, down);
            ratings.push(rating::ActiveModel::from(rating::Model {
                article_id: THREAD.into(),
                user_id: c.author_id.clone(),
                stars,
                created_at: now,
                updated_at: now,
                review_id: Some(c.id.clone()),
            }));
            reviews.push(comment::ActiveModel::from(c));
        }
        for chunk in reviews.chunks(ROWS_PER_INSERT / 2) {
            comment::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(tx)
                .await
                .map_err(db_err("inserting reviews"))?;
        }
        for chunk in ratings.chunks(ROWS_PER_INSERT) {
            rating::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(tx)
                .await
                .map_err(db_err("inserting review ratings"))?;
        }
        for chunk in votes.chunks(ROWS_PER_INSERT) {
            comment_vote::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(tx)
                .await
                .map_err(db_err("inserting votes"))?;
        }
        Ok(())
    }

    /// Adds `count` comments of the general population.
    pub async fn add_others(
        &mut self,
        conn: &DatabaseConnection,
        count: u64,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut done = 0;
        while done < count {
            let n = ROWS_PER_TX.min(count - done);
            let mut batch = Batch {
                comments: Vec::with_capacity(n as usize),
                flags: vec![],
                new_parents: vec![],
            };
            for _ in 0..n {
                self.other(&mut batch);
            }
            let tx = conn.begin().await.map_err(db_err("seeding"))?;
            big_cache(&tx).await?;
            self.flush(&tx, batch).await?;
            tx.commit().await.map_err(db_err("seeding"))?;
            done += n;
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "  seeding comments: {done}/{count} ({:.0} %), {:.0} rows/s",
                done as f64 * 100.0 / count as f64,
                done as f64 / secs
            );
        }
        Ok(())
    }
}

/// On SQLite, a 256 MiB page cache for the seeding connection: the comments' indexes
/// outgrow the default 2 MiB cache long before 1 M rows, and every insert would then
/// reread index pages through the kernel.
async fn big_cache(tx: &impl ConnectionTrait) -> Result<(), String> {
    if tx.get_database_backend() == DbBackend::Sqlite {
        tx.execute_unprepared("PRAGMA cache_size = -262144")
            .await
            .map_err(db_err("cache_size"))?;
    }
    Ok(())
}

/// Sets every kept counter from the rows: flag and reply counts, the articles' rating
/// and comment counters, the queue sizes and the per-author history counts. On PostgreSQL the tables are then
/// vacuumed and analysed (as autovacuum would eventually do) so plans are stable.
pub async fn recount(conn: &DatabaseConnection) -> Result<(), String> {
    let started = Instant::now();
    let listed = "(r.status = 'approved' OR (r.status = 'deleted' AND r.reply_count > 0))";
    let stars: String = (1..=5)
        .map(|s| {
            format!(
                "stars_{s} = (SELECT COUNT(*) FROM ratings r WHERE r.article_id = articles.id AND r.stars = {s}),"
            )
        })
        .collect();
    let statements = [
        "UPDATE comments SET flag_count = (SELECT COUNT(*) FROM flags f \
         WHERE f.comment_id = comments.id AND f.resolved_at IS NULL), \
         flag_weight = (SELECT COALESCE(SUM(f.weight), 0) FROM flags f \
         WHERE f.comment_id = comments.id AND f.resolved_at IS NULL) \
         WHERE id IN (SELECT comment_id FROM flags)"
            .to_owned(),
        // Replies are one level deep, so one pass over the parents is exact.
        format!(
            "UPDATE comments SET reply_count = (SELECT COUNT(*) FROM comments r \
             WHERE r.parent_id = comments.id AND {listed}) \
             WHERE id IN (SELECT parent_id FROM comments WHERE parent_id IS NOT NULL)"
        ),
        format!(
            "UPDATE articles SET \
             rating_count = (SELECT COUNT(*) FROM ratings r WHERE r.article_id = articles.id), \
             rating_sum = (SELECT COALESCE(SUM(r.stars), 0) FROM ratings r WHERE r.article_id = articles.id), \
             {stars} \
             comment_count = (SELECT COUNT(*) FROM comments r WHERE r.article_id = articles.id AND r.status = 'approved'), \
             top_level_count = (SELECT COUNT(*) FROM comments r WHERE r.article_id = articles.id \
               AND r.parent_id IS NULL AND r.kind = 'comment' AND {listed}), \
             review_count = (SELECT COUNT(*) FROM comments r WHERE r.article_id = articles.id \
               AND r.parent_id IS NULL AND r.kind = 'review' AND {listed})"
        ),
        "UPDATE rating_totals SET \
         rating_count = (SELECT COUNT(*) FROM ratings), \
         rating_sum = (SELECT COALESCE(SUM(stars), 0) FROM ratings)"
            .to_owned(),
        "UPDATE queue_counters SET count = (SELECT COUNT(*) FROM comments c \
         WHERE c.status = queue_counters.queue) WHERE queue <> 'flagged'"
            .to_owned(),
        "UPDATE queue_counters SET count = (SELECT COUNT(*) FROM comments c \
         WHERE c.flag_count > 0) WHERE queue = 'flagged'"
            .to_owned(),
        "DELETE FROM author_counts".to_owned(),
        "INSERT INTO author_counts (author_id, approved, rejected, spam) \
         SELECT author_id, \
                SUM(CASE WHEN status = 'approved' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN status = 'spam' THEN 1 ELSE 0 END) \
         FROM comments WHERE status IN ('approved', 'rejected', 'spam') GROUP BY author_id"
            .to_owned(),
    ];
    let tx = conn.begin().await.map_err(db_err("recount"))?;
    for sql in &statements {
        tx.execute_unprepared(sql)
            .await
            .map_err(db_err("recount"))?;
    }
    tx.commit().await.map_err(db_err("recount"))?;
    match conn.get_database_backend() {
        DbBackend::Postgres => {
            conn.execute_unprepared("VACUUM ANALYZE")
                .await
                .map_err(db_err("vacuum"))?;
        }
        _ => {
            conn.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
                .map_err(db_err("checkpoint"))?;
        }
    }
    eprintln!(
        "  counters recounted in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Comments in the database.
pub async fn comment_count(conn: &DatabaseConnection) -> Result<u64, String> {
    comment::Entity::find()
        .count(conn)
        .await
        .map_err(db_err("counting comments"))
}
