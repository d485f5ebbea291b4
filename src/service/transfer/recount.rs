//! Every kept counter set from the rows it counts, after a bulk import, in the
//! import's transaction: comments' flag, vote and reply counts, the articles' rating
//! histogram and comment counts, the site's rating totals, the queue sizes and the
//! authors' history counts (the same definitions `tests/api/helpers.rs`
//! `assert_counters_match_recounts` checks).

use sea_orm::{ConnectionTrait, DbErr};

/// A listed reply: approved, or a deleted one still showing as a tombstone.
const LISTED: &str = "(r.status = 'approved' OR (r.status = 'deleted' AND r.reply_count > 0))";

pub async fn recount(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    conn.execute_unprepared(
        "UPDATE comments SET \
         flag_count = (SELECT COUNT(*) FROM flags f WHERE f.comment_id = comments.id AND f.resolved_at IS NULL), \
         flag_weight = (SELECT COALESCE(SUM(f.weight), 0) FROM flags f \
           WHERE f.comment_id = comments.id AND f.resolved_at IS NULL) \
         WHERE flag_count <> 0 OR flag_weight <> 0 OR id IN (SELECT comment_id FROM flags)",
    )
    .await?;
    conn.execute_unprepared(
        "UPDATE comments SET \
         votes_up = (SELECT COUNT(*) FROM comment_votes v WHERE v.comment_id = comments.id AND v.vote = 'up'), \
         votes_down = (SELECT COUNT(*) FROM comment_votes v WHERE v.comment_id = comments.id AND v.vote = 'down') \
         WHERE votes_up <> 0 OR votes_down <> 0 OR id IN (SELECT comment_id FROM comment_votes)",
    )
    .await?;
    // A deleted reply is listed while it has listed replies, so a count depends on the
    // counts below it: repeat until nothing moves (as many rounds as the deepest
    // thread, plus one; one round when the counts were right already).
    let count =
        format!("(SELECT COUNT(*) FROM comments r WHERE r.parent_id = comments.id AND {LISTED})");
    for _ in 0..10_000 {
        let moved = conn
            .execute_unprepared(&format!(
                "UPDATE comments SET reply_count = {count} WHERE reply_count <> {count}"
            ))
            .await?
            .rows_affected();
        if moved == 0 {
            break;
        }
    }
    let stars: String = (1..=5)
        .map(|s| {
            format!(
                "stars_{s} = (SELECT COUNT(*) FROM ratings r WHERE r.article_id = articles.id AND r.stars = {s}), "
            )
        })
        .collect();
    conn.execute_unprepared(&format!(
        "UPDATE articles SET \
         rating_count = (SELECT COUNT(*) FROM ratings r WHERE r.article_id = articles.id), \
         rating_sum = (SELECT COALESCE(SUM(r.stars), 0) FROM ratings r WHERE r.article_id = articles.id), \
         {stars} \
         comment_count = (SELECT COUNT(*) FROM comments r WHERE r.article_id = articles.id AND r.status = 'approved'), \
         top_level_count = (SELECT COUNT(*) FROM comments r WHERE r.article_id = articles.id \
           AND r.parent_id IS NULL AND r.kind = 'comment' AND {LISTED}), \
         review_count = (SELECT COUNT(*) FROM comments r WHERE r.article_id = articles.id \
           AND r.parent_id IS NULL AND r.kind = 'review' AND {LISTED})"
    ))
    .await?;
    for sql in [
        "UPDATE rating_totals SET \
         rating_count = (SELECT COUNT(*) FROM ratings), \
         rating_sum = (SELECT COALESCE(SUM(stars), 0) FROM ratings)",
        "UPDATE queue_counters SET count = (SELECT COUNT(*) FROM comments c \
         WHERE c.status = queue_counters.queue) WHERE queue <> 'flagged'",
        "UPDATE queue_counters SET count = (SELECT COUNT(*) FROM comments c \
         WHERE c.flag_count > 0) WHERE queue = 'flagged'",
        "DELETE FROM author_counts",
        "INSERT INTO author_counts (author_id, approved, rejected, spam) \
         SELECT author_id, \
                SUM(CASE WHEN status = 'approved' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN status = 'spam' THEN 1 ELSE 0 END) \
         FROM comments WHERE status IN ('approved', 'rejected', 'spam') GROUP BY author_id",
    ] {
        conn.execute_unprepared(sql).await?;
    }
    Ok(())
}
