//! The OpenAPI 3.1 description of the service, generated from the handlers'
//! `#[utoipa::path]` attributes and the DTOs' `ToSchema` derives, served at
//! `GET /openapi.json`; and Swagger UI at `GET /docs`, its assets built into the binary.
//!
//! Errors are described once, as reusable responses (`components.responses`, in
//! [`super::spec`], where handlers name them) that all carry the one `Problem` schema as
//! `application/problem+json`; each operation lists the ones it can answer. Every
//! operation can also answer 500 `internal_error` (a bug), added here rather than on
//! each handler.

use std::sync::OnceLock;

use actix_web::{http::header, HttpResponse};
use utoipa::{
    openapi::{
        header::HeaderBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        Ref, RefOr,
    },
    Modify, OpenApi,
};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::spec::{
    string, ArticleIdSchema, BadRequest, Conflict, Forbidden, HeadersTooLarge, InternalError,
    NotFound, PayloadTooLarge, RateLimited, Unauthorized, Unavailable, ValidationFailed,
};
use super::{admin, articles, claims, comments, flags, health, moderation, ratings, votes};
use crate::error::ApiError;

/// Where the spec is served.
pub const SPEC_PATH: &str = "/openapi.json";

const DESCRIPTION: &str = r#"Star ratings and moderated comments for article pages.

**Identity.** Readers and moderators send `Authorization: Bearer <JWT>` minted by the host
site (claims `sub`, `name`, `role`: `reader` | `moderator` | `admin`, `exp`, and the
optional `verified`: `true` marks what the reader writes as `verified`). Public
operations need no token; where a token is optional (reading and posting comments), a
token that is sent but invalid is still 401, never a guest.

**Errors.** Every error, including the framework's own (bad JSON, unknown route, wrong
method, oversized body), is an RFC 9457 problem document (`application/problem+json`,
schema `Problem`) with a stable `code`. Besides the codes of the contract the service
sends `method_not_allowed` (405, any method a path does not list), `internal_error`
(500; the cause is logged with the request id, never returned), `request_timeout` (408:
the head, or the body after it, did not arrive within the server's bound; the
connection is closed) and `headers_too_large` (431: the request line and headers
together exceed 128 KiB or 96 headers, e.g. too many `article_id`s; the connection is
closed). Ids in paths and queries are parsed before any query: a comment id that cannot
exist (over 64 characters, a control character such as NUL) is 404 like an unknown one;
a user id or log filter that cannot exist is 400 naming it; a NUL character anywhere in
a JSON body is 422 naming the field. 503 `unavailable` is also the answer when the
database does not answer within the server's bound. 401 carries
`WWW-Authenticate: Bearer`; 429 and 503 carry `Retry-After` (seconds). Every response
carries `X-Request-Id` (the client's own if it sent a printable one of at most 128
characters, else a new UUIDv7).

**Pagination.** `limit` 1–100 (default 20), `cursor` opaque and keyset-based (stable
while new comments arrive), `next_cursor: null` on the last page.

**Idempotency.** `POST /api/v1/articles/{article_id}/comments`, `PUT
/api/v1/articles/{article_id}/ratings/me` and `PUT /api/v1/comments/{id}/vote` accept an `Idempotency-Key` header (1–255
printable ASCII characters). The same caller sending the same key again with the same
method, path and body within 24 hours gets the first response replayed (same status and
body, `Idempotent-Replayed: true`) and nothing is written; the same key with a different
request is 409 `idempotency_conflict`. Keys belong to the user, or to the client IP for
guests. Only successful responses are remembered.

**Rate limiting.** Comment, flag, rating and vote writes (every method but GET on
`/ratings/me`, `/comments`, `/comments/{id}`, `/comments/{id}/flags` and
`/comments/{id}/vote`) spend the
caller's budget (`TALLY_WRITE_RATE_PER_MIN`, default 20: a burst of that size, then one
every 60/N seconds), per user or, for guests, per client IP. Past it: 429
`rate_limited` with `Retry-After`, and nothing is written. Reads, moderation and admin
actions are never limited.

**Moderation.** New and edited comments run through the rule pipeline (banned words →
`rejected`; guest, pre-moderation, repeat post, suspect words, too many links, a learned
spam probability at or above `spam_threshold`, new author → `pending`; else `approved`).
The spam model learns from moderators' decisions (`approve`: not spam, `spam`: spam). At `flag_threshold` unresolved flags an approved
comment goes back to `pending` until a moderator decides."#;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tally",
        description = DESCRIPTION,
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        openapi_json,
        docs,
        ratings::batch,
        articles::summary,
        ratings::aggregate,
        ratings::get_mine,
        ratings::put_mine,
        ratings::delete_mine,
        comments::list,
        comments::create,
        comments::get,
        comments::edit,
        comments::delete,
        comments::replies,
        flags::create,
        moderation::queue,
        moderation::stats,
        moderation::decide,
        moderation::decide_many,
        moderation::log,
        moderation::bans,
        moderation::ban,
        moderation::unban,
        claims::claim,
        claims::release,
        claims::metrics,
        admin::get_settings,
        admin::put_settings,
        admin::put_article,
        super::spam_model::model,
        super::spam_model::rebuild,
        super::frontend::widget,
        super::frontend::widget_thread,
        super::frontend::console,
        comments::reviews,
        votes::put_vote,
        votes::delete_vote,
        votes::top,
        super::user_data::get_mine,
        super::user_data::erase_mine,
        super::user_data::get_user,
        super::user_data::erase_user,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::delete,
        super::webhooks::deliveries,
        super::live::events,
    ),
    components(
        // Those named only by parameters (bodies and responses bring in their own).
        schemas(
            crate::error::Problem,
            crate::error::ProblemField,
            crate::domain::Sort,
            crate::domain::ThreadSort,
            crate::domain::Vote,
            comments::CommentSort,
            moderation::QueueName,
            moderation::QueueSort,
            ArticleIdSchema,
        ),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            HeadersTooLarge,
            ValidationFailed,
            RateLimited,
            Unavailable,
            InternalError,
        ),
    ),
    modifiers(&Common),
    tags(
        (name = "ratings", description = "One 1–5 star rating per reader per article, and the public aggregates."),
        (name = "comments", description = "Comments, replies and reader flags."),
        (name = "articles", description = "The public summary of an article page."),
        (name = "moderation", description = "Moderator or admin role: queues, decisions, the audit log, bans."),
        (name = "admin", description = "Admin role: the moderation policy and article registration."),
        (name = "your data", description = "A reader's own data: read it all, or erase it (an admin: any user's)."),
        (name = "operations", description = "Health, metrics and this description."),
        (name = "front ends", description = "The embeddable widget and the moderation console, served by tally."),
    ),
)]
pub struct ApiDoc;

/// The security scheme, the 500 every operation can answer, and `X-Request-Id` on every
/// response.
struct Common;

impl Modify for Common {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT minted by the host site: HS256 with the shared secret, or \
                         RS256 / ES256 / EdDSA with the configured public key; `exp` required.",
                    ))
                    .build(),
            ),
        );
        let request_id = HeaderBuilder::new()
            .schema(Some(string()))
            .description(Some(
                "The request's id (the client's own `X-Request-Id` if printable and at most \
                 128 characters, else a new UUIDv7); it is on the request's log lines too.",
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                op.summary = op.summary.as_deref().map(summary);
                op.responses.responses.insert(
                    "500".to_owned(),
                    RefOr::Ref(Ref::from_response_name("InternalError")),
                );
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert("X-Request-Id".to_owned(), RefOr::T(request_id.clone()));
                    }
                }
            }
        }
        for response in components.responses.values_mut() {
            if let RefOr::T(response) = response {
                response
                    .headers
                    .insert("X-Request-Id".to_owned(), RefOr::T(request_id.clone()));
            }
        }
    }
}

/// A handler's doc line without the route it starts with, which the spec says anyway:
/// "`GET /healthz`: the process runs." becomes "The process runs."
fn summary(doc: &str) -> String {
    let text = match doc.split_once("`: ") {
        Some((route, rest)) if route.starts_with('`') => rest,
        _ => doc,
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The name of the security scheme operations refer to.
pub const BEARER: &str = "bearer";

/// The spec as JSON, built once (`None` if it could not be serialised: a bug).
fn spec_json() -> Option<&'static str> {
    static SPEC: OnceLock<Option<String>> = OnceLock::new();
    SPEC.get_or_init(|| ApiDoc::openapi().to_json().ok())
        .as_deref()
}

/// `GET /openapi.json`: this service's OpenAPI 3.1 description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json",
            body = inline(Object)),
    ),
)]
pub async fn openapi_json() -> Result<HttpResponse, ApiError> {
    let spec = spec_json()
        .ok_or_else(|| ApiError::Internal("the OpenAPI document does not serialise".into()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(spec))
}

/// The page at `/docs`: the vendored Swagger UI (assets under `/docs/`) reading
/// `/openapi.json`. Nothing is loaded from outside the service.
const DOCS_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>tally API</title>
    <link rel="stylesheet" type="text/css" href="/docs/swagger-ui.css">
    <link rel="stylesheet" type="text/css" href="/docs/index.css">
    <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <noscript>This page needs JavaScript; the description itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="/docs/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"#;

/// `GET /docs`: Swagger UI for this description, served from the binary.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    responses(
        (status = 200, description = "An HTML page (Swagger UI) that needs no internet.",
            content_type = "text/html", body = String),
    ),
)]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(DOCS_PAGE)
}

/// Swagger UI's own files under `/docs/` (its index, scripts, styles and the initializer
/// that points it at `/openapi.json`). Not an API operation, so not in the spec.
pub fn docs_assets() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").config(
        Config::new([SPEC_PATH])
            .try_it_out_enabled(true)
            .persist_authorization(false),
    )
}

/// The pattern of an article id (`domain::ArticleId::parse`).
pub const ARTICLE_ID_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._~:-]{0,199}$";
