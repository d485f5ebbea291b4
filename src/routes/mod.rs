//! The HTTP edge: one route table (`configure`), one module per resource. Handlers
//! extract and authorise, call a service, and map the result to a response.

pub mod admin;
pub mod articles;
pub mod cached;
pub mod claims;
pub mod comments;
pub mod flags;
pub mod frontend;
pub mod health;
pub mod idempotency;
pub mod json;
pub mod live;
pub mod moderation;
pub mod openapi;
pub mod paths;
pub mod query;
pub mod ratings;
pub mod spam_model;
pub mod spec;
pub mod user_data;
pub mod votes;
pub mod webhooks;
pub mod write_limit;

use actix_web::{middleware::from_fn, web, Resource};

use self::write_limit::limit_writes;
use crate::error::ApiError;

/// Every operation of [`configure`] as `(method, path)`, in its order. The OpenAPI spec
/// (`openapi::ApiDoc`, whose `paths(...)` names the same handlers) must describe exactly
/// these, and each must answer on a live server: tests/api/openapi.rs checks both, so
/// a route added here without its `#[utoipa::path]` (or the other way round) fails the
/// tests. The one exception is Swagger UI's asset tree under `/docs/`, which is not
/// an API operation.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/api/v1/articles/{article_id}/rating"),
    ("GET", "/api/v1/articles/{article_id}/comments"),
    ("POST", "/api/v1/articles/{article_id}/comments"),
    ("GET", "/api/v1/ratings"),
    ("GET", "/api/v1/articles/{article_id}/ratings/me"),
    ("PUT", "/api/v1/articles/{article_id}/ratings/me"),
    ("DELETE", "/api/v1/articles/{article_id}/ratings/me"),
    ("GET", "/api/v1/comments/{id}/replies"),
    ("GET", "/api/v1/comments/{id}"),
    ("PATCH", "/api/v1/comments/{id}"),
    ("DELETE", "/api/v1/comments/{id}"),
    ("POST", "/api/v1/comments/{id}/flags"),
    ("GET", "/api/v1/articles/{article_id}"),
    ("GET", "/api/v1/moderation/queue"),
    ("GET", "/api/v1/moderation/stats"),
    ("POST", "/api/v1/moderation/comments/{id}/decision"),
    ("POST", "/api/v1/moderation/decisions"),
    ("GET", "/api/v1/moderation/log"),
    ("GET", "/api/v1/moderation/bans"),
    ("POST", "/api/v1/moderation/bans"),
    ("DELETE", "/api/v1/moderation/bans/{user_id}"),
    ("POST", "/api/v1/moderation/comments/{id}/claim"),
    ("DELETE", "/api/v1/moderation/comments/{id}/claim"),
    ("GET", "/api/v1/moderation/metrics"),
    ("GET", "/api/v1/admin/settings"),
    ("PUT", "/api/v1/admin/settings"),
    ("PUT", "/api/v1/admin/articles/{article_id}"),
    ("GET", "/api/v1/moderation/model"),
    ("POST", "/api/v1/admin/model/rebuild"),
    ("GET", "/widget/tally.js"),
    ("GET", "/widget/tally-comments.js"),
    ("GET", "/console/"),
    ("GET", "/api/v1/articles/{article_id}/reviews"),
    ("PUT", "/api/v1/comments/{id}/vote"),
    ("DELETE", "/api/v1/comments/{id}/vote"),
    ("GET", "/api/v1/ratings/top"),
    ("GET", "/api/v1/me/data"),
    ("DELETE", "/api/v1/me/data"),
    ("GET", "/api/v1/admin/users/{user_id}/data"),
    ("DELETE", "/api/v1/admin/users/{user_id}/data"),
    ("POST", "/api/v1/admin/webhooks"),
    ("GET", "/api/v1/admin/webhooks"),
    ("DELETE", "/api/v1/admin/webhooks/{id}"),
    ("GET", "/api/v1/moderation/events"),
    ("GET", "/api/v1/admin/webhooks/{id}/deliveries"),
];

/// The `Allow` header of a route pattern (`GET, PUT, DELETE`), for 405 answers.
pub fn allowed_methods(pattern: &str) -> Option<String> {
    let methods: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, path)| *path == pattern)
        .map(|(method, _)| *method)
        .collect();
    (!methods.is_empty()).then(|| methods.join(", "))
}

/// The prefix of every API route.
const API: &str = "/api/v1";

/// The route pattern a request matched, for its log line and metrics. Every resource of
/// [`configure`] carries its own as app data, so the request-log middleware reads it
/// instead of matching the path against the route table once more.
#[derive(Debug, Clone, Copy)]
pub struct RoutePattern(pub &'static str);

fn resource(pattern: &'static str) -> Resource {
    web::resource(pattern).app_data(RoutePattern(pattern))
}

/// A resource under [`API`], given by its full pattern (as in [`ROUTES`]).
fn api(pattern: &'static str) -> Resource {
    debug_assert!(pattern.starts_with(API), "{pattern} is not under {API}");
    let relative = pattern.strip_prefix(API).unwrap_or(pattern);
    web::resource(relative).app_data(RoutePattern(pattern))
}

/// Every route of the service. Resources wrapped in `limit_writes` spend the caller's
/// write budget on every non-GET request; moderation and admin tools are not limited.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The API first: the table is tried in order, and the routes before it would each
    // cost every API request a match attempt (Swagger UI's `/docs/{_:.*}` a regex).
    cfg.service(api_scope())
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/metrics").route(web::get().to(health::metrics)))
        .service(resource(openapi::SPEC_PATH).route(web::get().to(openapi::openapi_json)))
        .service(resource("/docs").route(web::get().to(openapi::docs)))
        .service(openapi::docs_assets())
        .service(resource("/widget/tally.js").route(web::get().to(frontend::widget)))
        .service(
            resource("/widget/tally-comments.js").route(web::get().to(frontend::widget_thread)),
        )
        .service(resource("/console/").route(web::get().to(frontend::console)))
        .default_service(web::to(not_found));
}

/// Everything under `/api/v1`, the hottest route (the aggregate GET) first.
fn api_scope() -> actix_web::Scope {
    web::scope(API)
        // Every pattern is exact, so order decides only how many are tried:
        // the most requested come first (each dynamic one tried costs a regex).
        .service(
            api("/api/v1/articles/{article_id}/rating").route(web::get().to(ratings::aggregate)),
        )
        .service(
            api("/api/v1/articles/{article_id}/comments")
                .wrap(from_fn(limit_writes))
                .route(web::get().to(comments::list))
                .route(web::post().to(comments::create)),
        )
        .service(api("/api/v1/ratings").route(web::get().to(ratings::batch)))
        .service(api("/api/v1/ratings/top").route(web::get().to(votes::top)))
        .service(
            api("/api/v1/articles/{article_id}/reviews").route(web::get().to(comments::reviews)),
        )
        .service(
            api("/api/v1/articles/{article_id}/ratings/me")
                .wrap(from_fn(limit_writes))
                .route(web::get().to(ratings::get_mine))
                .route(web::put().to(ratings::put_mine))
                .route(web::delete().to(ratings::delete_mine)),
        )
        .service(api("/api/v1/comments/{id}/replies").route(web::get().to(comments::replies)))
        .service(
            api("/api/v1/comments/{id}")
                .wrap(from_fn(limit_writes))
                .route(web::get().to(comments::get))
                .route(web::patch().to(comments::edit))
                .route(web::delete().to(comments::delete)),
        )
        .service(
            api("/api/v1/comments/{id}/vote")
                .wrap(from_fn(limit_writes))
                .route(web::put().to(votes::put_vote))
                .route(web::delete().to(votes::delete_vote)),
        )
        .service(
            api("/api/v1/comments/{id}/flags")
                .wrap(from_fn(limit_writes))
                .route(web::post().to(flags::create)),
        )
        .service(api("/api/v1/articles/{article_id}").route(web::get().to(articles::summary)))
        .service(api("/api/v1/moderation/queue").route(web::get().to(moderation::queue)))
        .service(api("/api/v1/moderation/stats").route(web::get().to(moderation::stats)))
        .service(
            api("/api/v1/moderation/comments/{id}/decision")
                .route(web::post().to(moderation::decide)),
        )
        .service(api("/api/v1/moderation/decisions").route(web::post().to(moderation::decide_many)))
        .service(api("/api/v1/moderation/log").route(web::get().to(moderation::log)))
        .service(
            api("/api/v1/moderation/bans")
                .route(web::get().to(moderation::bans))
                .route(web::post().to(moderation::ban)),
        )
        .service(
            api("/api/v1/moderation/bans/{user_id}").route(web::delete().to(moderation::unban)),
        )
        .service(
            api("/api/v1/moderation/comments/{id}/claim")
                .route(web::post().to(claims::claim))
                .route(web::delete().to(claims::release)),
        )
        .service(api("/api/v1/moderation/metrics").route(web::get().to(claims::metrics)))
        .service(
            api("/api/v1/admin/settings")
                .route(web::get().to(admin::get_settings))
                .route(web::put().to(admin::put_settings)),
        )
        .service(
            api("/api/v1/admin/articles/{article_id}").route(web::put().to(admin::put_article)),
        )
        .service(api("/api/v1/moderation/model").route(web::get().to(spam_model::model)))
        .service(api("/api/v1/admin/model/rebuild").route(web::post().to(spam_model::rebuild)))
        .service(
            api("/api/v1/me/data")
                .route(web::get().to(user_data::get_mine))
                .route(web::delete().to(user_data::erase_mine)),
        )
        .service(
            api("/api/v1/admin/users/{user_id}/data")
                .route(web::get().to(user_data::get_user))
                .route(web::delete().to(user_data::erase_user)),
        )
        .service(
            api("/api/v1/admin/webhooks")
                .route(web::post().to(webhooks::create))
                .route(web::get().to(webhooks::list)),
        )
        .service(api("/api/v1/admin/webhooks/{id}").route(web::delete().to(webhooks::delete)))
        .service(api("/api/v1/moderation/events").route(web::get().to(live::events)))
        .service(
            api("/api/v1/admin/webhooks/{id}/deliveries")
                .route(web::get().to(webhooks::deliveries)),
        )
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}
