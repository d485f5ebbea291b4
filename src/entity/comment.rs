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
    /// The sum of the unresolved flags' weights.
    pub flag_weight: f64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
