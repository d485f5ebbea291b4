//! Moderation metrics (issue 21): `GET /moderation/metrics?since=…`.
//!
//! Cost: one range read of the log's decision rows since `since` (through
//! `idx_moderation_log_at`), each joined to its comment by primary key for the time to
//! decision; the oldest pending comment is the first entry of `idx_comments_queue`;
//! the queue sizes are the kept counters. Nothing older than `since` is read.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationDef,
};
use serde::Serialize;

use super::moderation::queue::{stats, QueueStats};
use crate::{
    domain::ModerationStatus,
    entity::{comment, moderation_log},
    error::ApiError,
};

/// Actor ids of automatic decisions.
const AUTOMATIC: [&str; 2] = ["system", "external"];

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ByAction {
    pub approve: i64,
    pub reject: i64,
    pub spam: i64,
}

/// One human moderator's decisions in the window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActorCount {
    pub id: String,
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionCounts {
    /// Human and automatic decisions: the sum of `by_action`.
    pub total: i64,
    pub by_action: ByAction,
    /// Those by `system` or `external`.
    pub automatic: i64,
    /// Human moderators only, most decisions first (then by id).
    pub by_actor: Vec<ActorCount>,
}

/// Percentiles (nearest rank) of the seconds from a comment's creation to a human
/// moderator's decision on it; `null` without any.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimeToDecision {
    #[schema(required = true)]
    pub p50: Option<f64>,
    #[schema(required = true)]
    pub p90: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ModerationMetrics)]
pub struct Metrics {
    pub since: DateTime<Utc>,
    pub decisions: DecisionCounts,
    pub time_to_decision_secs: TimeToDecision,
    /// Age of the oldest `pending` comment; `null` when none waits.
    #[schema(required = true)]
    pub oldest_pending_age_secs: Option<f64>,
    pub queue: QueueStats,
}

/// The nearest-rank percentile `p` (0–100) of sorted `xs`.
pub fn percentile(sorted: &[f64], p: u32) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    Some(sorted[rank - 1])
}

/// A decision in the window: actor id and name, new status, when, and when its comment
/// was created (`None` once the comment is gone).
type DecisionRow = (String, String, String, DateTime<Utc>, Option<DateTime<Utc>>);

fn log_to_comment() -> RelationDef {
    moderation_log::Entity::belongs_to(comment::Entity)
        .from(moderation_log::Column::CommentId)
        .to(comment::Column::Id)
        .into()
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

pub async fn metrics(
    conn: &impl ConnectionTrait,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Metrics, ApiError> {
    let rows: Vec<DecisionRow> = moderation_log::Entity::find()
        .select_only()
        .column(moderation_log::Column::ActorId)
        .column(moderation_log::Column::ActorName)
        .column(moderation_log::Column::ToStatus)
        .column(moderation_log::Column::At)
        .column_as(comment::Column::CreatedAt, "created_at")
        .join(JoinType::LeftJoin, log_to_comment())
        .filter(moderation_log::Column::At.gte(since))
        .filter(moderation_log::Column::ToStatus.is_in([
            ModerationStatus::Approved.as_str(),
            ModerationStatus::Rejected.as_str(),
            ModerationStatus::Spam.as_str(),
        ]))
        .into_tuple()
        .all(conn)
        .await?;
    let mut by_action = ByAction::default();
    let mut automatic = 0;
    let mut actors: Vec<ActorCount> = vec![];
    let mut waits = vec![];
    for (actor_id, actor_name, to, at, created) in &rows {
        match to.as_str() {
            "approved" => by_action.approve += 1,
            "rejected" => by_action.reject += 1,
            _ => by_action.spam += 1,
        }
        if AUTOMATIC.contains(&actor_id.as_str()) {
            automatic += 1;
            continue;
        }
        match actors.iter_mut().find(|a| a.id == *actor_id) {
            Some(a) => a.count += 1,
            None => actors.push(ActorCount {
                id: actor_id.clone(),
                name: actor_name.clone(),
                count: 1,
            }),
        }
        if let Some(created) = created {
            waits.push(secs(*at - *created).max(0.0));
        }
    }
    actors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.id.cmp(&b.id)));
    waits.sort_by(f64::total_cmp);
    let oldest: Option<DateTime<Utc>> = comment::Entity::find()
        .select_only()
        .column(comment::Column::CreatedAt)
        .filter(comment::Column::Status.eq(ModerationStatus::Pending.as_str()))
        .order_by_asc(comment::Column::CreatedAt)
        .limit(1)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(Metrics {
        since,
        decisions: DecisionCounts {
            total: by_action.approve + by_action.reject + by_action.spam,
            by_action,
            automatic,
            by_actor: actors,
        },
        time_to_decision_secs: TimeToDecision {
            p50: percentile(&waits, 50),
            p90: percentile(&waits, 90),
        },
        oldest_pending_age_secs: oldest.map(|t| secs(now - t).max(0.0)),
        queue: stats(conn).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&xs, 50), Some(5.0));
        assert_eq!(percentile(&xs, 90), Some(9.0));
        assert_eq!(percentile(&[7.0], 90), Some(7.0));
        assert_eq!(percentile(&[], 50), None);
    }
}
