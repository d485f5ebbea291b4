//! The HTTP edge: one route table (`configure`), one module per resource. Handlers
//! extract and authorise, call a service, and map the result to a response.

pub mod admin;
pub mod articles;
pub mod claims;
pub mod comments;
pub mod extract;
pub mod flags;
pub mod frontend;
pub mod health;
pub mod live;
pub mod moderation;
pub mod openapi;
pub mod paths;
pub mod ratings;
pub mod spam_model;
pub mod votes;
pub mod webhooks;

use actix_web::{
    guard::{Guard, GuardContext},
    http::{header::HeaderValue, Method},
    middleware::from_fn,
    web, Resource, Route,
};

use crate::{error::ApiError, rate_limit::limit_writes};

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

/// The contract's JSON content type (what `telemetry` makes of actix's `.json()`), as a
/// header value that needs no parsing per response.
pub fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json; charset=utf-8")
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

/// A route answering one method. actix's own method routes (`Resource::get`,
/// `web::get`, …) also record their method in every request's extensions (a `Vec` and a
/// boxed entry per request), only for the `Allow` header of actix's 405s; ours are
/// built from [`ROUTES`] by `error::problem_for_framework_errors`, so this guard only
/// compares.
fn on(method: Method) -> Route {
    web::route().guard(MethodIs(method))
}

struct MethodIs(Method);

impl Guard for MethodIs {
    fn check(&self, ctx: &GuardContext<'_>) -> bool {
        ctx.head().method == self.0
    }
}

/// Every route of the service. Resources wrapped in `limit_writes` spend the caller's
/// write budget on every non-GET request; moderation and admin tools are not limited.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The API first: the table is tried in order, and the routes before it would each
    // cost every API request a match attempt (Swagger UI's `/docs/{_:.*}` a regex).
    cfg.service(api_scope())
        .service(resource("/healthz").route(on(Method::GET).to(health::healthz)))
        .service(resource("/readyz").route(on(Method::GET).to(health::readyz)))
        .service(resource("/metrics").route(on(Method::GET).to(health::metrics)))
        .service(resource(openapi::SPEC_PATH).route(on(Method::GET).to(openapi::openapi_json)))
        .service(resource("/docs").route(on(Method::GET).to(openapi::docs)))
        .service(openapi::docs_assets())
        .service(resource("/widget/tally.js").route(on(Method::GET).to(frontend::widget)))
        .service(
            resource("/widget/tally-comments.js")
                .route(on(Method::GET).to(frontend::widget_thread)),
        )
        .service(resource("/console/").route(on(Method::GET).to(frontend::console)))
        .default_service(web::to(not_found));
}

/// Everything under `/api/v1`, the hottest route (the aggregate GET) first.
fn api_scope() -> actix_web::Scope {
    web::scope(API)
        // Every pattern is exact, so order decides only how many are tried:
        // the most requested come first (each dynamic one tried costs a regex).
        .service(
            api("/api/v1/articles/{article_id}/rating")
                .route(on(Method::GET).to(ratings::aggregate)),
        )
        .service(
            api("/api/v1/articles/{article_id}/comments")
                .wrap(from_fn(limit_writes))
                .route(on(Method::GET).to(comments::list))
                .route(on(Method::POST).to(comments::create)),
        )
        .service(api("/api/v1/ratings").route(on(Method::GET).to(ratings::batch)))
        .service(api("/api/v1/ratings/top").route(on(Method::GET).to(votes::top)))
        .service(
            api("/api/v1/articles/{article_id}/reviews")
                .route(on(Method::GET).to(comments::reviews)),
        )
        .service(
            api("/api/v1/articles/{article_id}/ratings/me")
                .wrap(from_fn(limit_writes))
                .route(on(Method::GET).to(ratings::get_mine))
                .route(on(Method::PUT).to(ratings::put_mine))
                .route(on(Method::DELETE).to(ratings::delete_mine)),
        )
        .service(api("/api/v1/comments/{id}/replies").route(on(Method::GET).to(comments::replies)))
        .service(
            api("/api/v1/comments/{id}")
                .wrap(from_fn(limit_writes))
                .route(on(Method::GET).to(comments::get))
                .route(on(Method::PATCH).to(comments::edit))
                .route(on(Method::DELETE).to(comments::delete)),
        )
        .service(
            api("/api/v1/comments/{id}/vote")
                .wrap(from_fn(limit_writes))
                .route(on(Method::PUT).to(votes::put_vote))
                .route(on(Method::DELETE).to(votes::delete_vote)),
        )
        .service(
            api("/api/v1/comments/{id}/flags")
                .wrap(from_fn(limit_writes))
                .route(on(Method::POST).to(flags::create)),
        )
        .service(api("/api/v1/articles/{article_id}").route(on(Method::GET).to(articles::summary)))
        .service(api("/api/v1/moderation/queue").route(on(Method::GET).to(moderation::queue)))
        .service(api("/api/v1/moderation/stats").route(on(Method::GET).to(moderation::stats)))
        .service(
            api("/api/v1/moderation/comments/{id}/decision")
                .route(on(Method::POST).to(moderation::decide)),
        )
        .service(
            api("/api/v1/moderation/decisions").route(on(Method::POST).to(moderation::decide_many)),
        )
        .service(api("/api/v1/moderation/log").route(on(Method::GET).to(moderation::log)))
        .service(
            api("/api/v1/moderation/bans")
                .route(on(Method::GET).to(moderation::bans))
                .route(on(Method::POST).to(moderation::ban)),
        )
        .service(
            api("/api/v1/moderation/bans/{user_id}")
                .route(on(Method::DELETE).to(moderation::unban)),
        )
        .service(
            api("/api/v1/moderation/comments/{id}/claim")
                .route(on(Method::POST).to(claims::claim))
                .route(on(Method::DELETE).to(claims::release)),
        )
        .service(api("/api/v1/moderation/metrics").route(on(Method::GET).to(claims::metrics)))
        .service(
            api("/api/v1/admin/settings")
                .route(on(Method::GET).to(admin::get_settings))
                .route(on(Method::PUT).to(admin::put_settings)),
        )
        .service(
            api("/api/v1/admin/articles/{article_id}")
                .route(on(Method::PUT).to(admin::put_article)),
        )
        .service(api("/api/v1/moderation/model").route(on(Method::GET).to(spam_model::model)))
        .service(api("/api/v1/admin/model/rebuild").route(on(Method::POST).to(spam_model::rebuild)))
        .service(
            api("/api/v1/admin/webhooks")
                .route(on(Method::POST).to(webhooks::create))
                .route(on(Method::GET).to(webhooks::list)),
        )
        .service(api("/api/v1/admin/webhooks/{id}").route(on(Method::DELETE).to(webhooks::delete)))
        .service(api("/api/v1/moderation/events").route(on(Method::GET).to(live::events)))
        .service(
            api("/api/v1/admin/webhooks/{id}/deliveries")
                .route(on(Method::GET).to(webhooks::deliveries)),
        )
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}
