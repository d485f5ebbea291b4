//! Black-box tests over HTTP. Each test spawns the app on port 0 with a fresh database
//! built by the real migrations: a temporary SQLite file, or a fresh PostgreSQL schema
//! when `TEST_DATABASE_URL` is set.

// The whole crate is test code: unwrap is how a test says "this must hold".
#![allow(clippy::unwrap_used)]

mod helpers;

mod admin;
mod aggregate_cache;
mod auth;
mod claims;
mod cli;
mod cli_ops;
mod comments;
mod concurrency;
mod cors;
mod edge;
mod events;
mod external_moderation;
mod flag_weights;
mod flags;
mod flat_queue;
mod frontend;
mod group_commit;
mod health;
mod hostile_ids;
mod idempotency;
mod live;
mod metrics;
mod migrations;
mod moderation;
mod openapi;
mod outage;
mod page_cache;
mod page_overlay;
mod production;
mod rate_limit;
mod ratings;
mod receiver;
mod retention;
mod reviews;
mod spam_model;
mod timeouts;
mod transfer;
mod user_data;
mod webhooks;
