use sea_orm::entity::prelude::*;

/// One event for one webhook, with its attempts so far; or, with `items`, the
/// deliveries of one dispatch round to one webhook that were delivered at their first
/// attempt.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub comment_id: Option<String>,
    /// The JSON body every attempt sends.
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
    pub claimed_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    /// A batch row's deliveries, a JSON array of `[event id, type, status code]` in
    /// event order (the row's own event, type and code are the first's); null for a
    /// delivery's own row.
    pub items: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
