//! tally: a comment-and-rating moderation service.
//!
//! Map of the crate (requests flow one way: routes → service → entity):
//! - [`routes`]: the HTTP edge, one route table in [`routes::configure`] (its operations
//!   listed in [`routes::ROUTES`]); the generated OpenAPI spec in [`routes::openapi`].
//! - [`service`]: use cases, one transaction each; kept counters in [`service::counters`],
//!   group-committed writes in [`service::group_commit`], the in-memory aggregates and
//!   pages in [`service::aggregate_cache`].
//! - [`entity`]: sea-orm entities; the schema is in the `migration` crate.
//! - [`domain`]: pure types and rules (ids, stars, bodies, statuses, rating maths, the
//!   rule pipeline), used by both and importing neither actix nor sea-orm.
//! - [`auth`]: JWT verification and the `Reader` / `MaybeReader` / `Moderator` / `Admin` extractors.
//! - [`error`]: `ApiError`, the one problem+json error type.
//! - [`cors`]: CORS for the API and the widget script (`TALLY_CORS_ORIGINS`).
//! - [`edge`]: the HTTP server, with actix-http's and actix-web's own bare error answers
//!   made problems.
//! - [`deadline`]: bounded waits per request (the body's arrival: 408; the database: 503).
//! - [`rate_limit`]: the per-caller write budget (spent by `routes::write_limit` on the
//!   routes readers write through); [`client_ip`]: who a request comes from.
//! - [`state`]: `AppState`, what every request can reach.
//! - [`outbound`]: outbound HTTP (webhooks, external moderation): signing, the address rule.
//! - [`config`], [`startup`], [`telemetry`], [`metrics`], [`cli`]: settings, application
//!   assembly, logs, Prometheus metrics, and the command line.

pub mod auth;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod cors;
pub mod deadline;
pub mod domain;
pub mod edge;
pub mod entity;
pub mod error;
pub mod metrics;
pub mod outbound;
pub mod rate_limit;
pub mod routes;
pub mod service;
pub mod shared_limit;
pub mod startup;
pub mod state;
pub mod telemetry;
