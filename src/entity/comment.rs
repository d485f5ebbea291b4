use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "comments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub article_id: String,
    pub parent_id: Option<String>,
    pub author_id: String,
    pub author_name: String,
    pub is_guest: bool,
    pub body: String,
    pub status: String,
    pub version: i32,
    /// Listed direct replies.
    pub reply_count: i64,
    /// Unresolved flags.
    pub flag_count: i32,
    pub auto_score: f64,
    /// JSON array of the rule pipeline's reasons.
    pub auto_reasons: String,
    pub fingerprint: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub edited_at: Option<DateTimeUtc>,
    /// What the learned spam model gave the text when last scored (`null`: too few examples).
    pub spam_probability: Option<f64>,
    /// `comment` or `review` (a rating's text; see `service::reviews`).
    pub kind: String,
    /// A review's stars: its author's current rating. `None` for comments.
    pub stars: Option<i16>,
    /// The author's token carried `"verified": true` when they wrote it.
    pub verified: bool,
    pub votes_up: i64,
    pub votes_down: i64,
    /// Wilson lower bound of the votes (`domain::wilson_lower_bound`), for `sort=best`.
    pub best_score: f64,
    /// The sum of the unresolved flags' weights.
    pub flag_weight: f64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
