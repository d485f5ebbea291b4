//! Database migrations for tally. One file per migration, named
//! `mYYYYMMDD_HHMMSS_<what>.rs`; a migration is never edited once it has landed.
//! Every migration runs unchanged on SQLite and PostgreSQL: statuses are short
//! strings with CHECK constraints (no Postgres enums), timestamps carry a time zone,
//! and indexes and foreign keys are named.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_init;
mod m20261123_000002_bans_listing;
mod m20261123_000003_flat_queue;
mod m20261123_000004_listing_indexes;
mod m20261124_000005_idempotency_purge;
mod m20261206_000001_reviews_votes;
mod m20261206_000030_comment_claims;
mod m20261206_000031_log_time_index;
mod m20261206_000032_flag_weights;
mod m20261206_000040_spam_model;
mod m20261207_000010_events;
mod m20261207_000020_webhooks;
mod m20261207_000030_import_sources;
mod m20261207_000040_user_data_indexes;
mod m20261207_000050_spam_pending;
mod m20261208_200010_spam_pending_changes;
mod m20261209_c00010_webhook_dispatch_lease;
mod m20261210_000010_webhook_delivery_batches;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_init::Migration),
            Box::new(m20261123_000002_bans_listing::Migration),
            Box::new(m20261123_000003_flat_queue::Migration),
            Box::new(m20261123_000004_listing_indexes::Migration),
            Box::new(m20261124_000005_idempotency_purge::Migration),
            Box::new(m20261206_000001_reviews_votes::Migration),
            Box::new(m20261206_000030_comment_claims::Migration),
            Box::new(m20261206_000031_log_time_index::Migration),
            Box::new(m20261206_000032_flag_weights::Migration),
            Box::new(m20261206_000040_spam_model::Migration),
            Box::new(m20261207_000010_events::Migration),
            Box::new(m20261207_000030_import_sources::Migration),
            Box::new(m20261207_000040_user_data_indexes::Migration),
            Box::new(m20261207_000020_webhooks::Migration),
            Box::new(m20261207_000050_spam_pending::Migration),
            Box::new(m20261208_200010_spam_pending_changes::Migration),
            Box::new(m20261209_c00010_webhook_dispatch_lease::Migration),
            Box::new(m20261210_000010_webhook_delivery_batches::Migration),
        ]
    }
}
