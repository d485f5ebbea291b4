//! sea-orm entities, one file per table. The schema itself lives in `migration/`.

pub mod article;
pub mod author_count;
pub mod ban;
pub mod comment;
pub mod comment_claim;
pub mod comment_vote;
pub mod event;
pub mod flag;
pub mod flagger_record;
pub mod idempotency_key;
pub mod import_source;
pub mod moderation_log;
pub mod queue_counter;
pub mod rating;
pub mod rating_total;
pub mod setting;
pub mod spam_lesson;
pub mod spam_model;
pub mod spam_pending;
pub mod spam_token;
pub mod webhook;
pub mod webhook_cursor;
pub mod webhook_delivery;
