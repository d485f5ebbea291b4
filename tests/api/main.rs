//! Black-box tests over HTTP. Each test spawns the app on port 0 with a fresh database
//! built by the real migrations: a temporary SQLite file, or a fresh PostgreSQL schema
//! when `TEST_DATABASE_URL` is set.

mod helpers;

mod auth;
mod comments;
mod health;
mod ratings;
