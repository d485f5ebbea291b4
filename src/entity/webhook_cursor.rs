use sea_orm::entity::prelude::*;

/// The webhook dispatcher's position in the `events` outbox (one row, id 1), and the
/// dispatch lease: the instance that turns events into deliveries, until when.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_cursor")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub last_event_id: i64,
    pub holder: Option<String>,
    pub held_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
