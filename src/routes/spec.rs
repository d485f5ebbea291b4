//! The parts of the OpenAPI spec that handlers' `#[utoipa::path]` attributes name: the
//! problem responses, shared path and header parameters, schemas. It imports no handler,
//! so the handlers and the spec that lists them ([`super::openapi`]) do not import each
//! other.

use utoipa::{
    openapi::{
        header::{Header, HeaderBuilder},
        schema::{ObjectBuilder, Type},
        ContentBuilder, Ref, RefOr, Response, ResponseBuilder,
    },
    ToResponse,
};

use crate::error::PROBLEM_JSON;

pub(super) fn string() -> utoipa::openapi::Object {
    ObjectBuilder::new().schema_type(Type::String).build()
}

fn integer_seconds() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .build()
}

/// A problem response with `description`, and the given headers.
fn problem(description: &str, headers: &[(&str, Header)]) -> RefOr<Response> {
    let mut builder = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    for (name, h) in headers {
        builder = builder.header(*name, h.clone());
    }
    RefOr::T(builder.build())
}

macro_rules! problem_response {
    ($(#[$doc:meta])* $name:ident, $description:expr $(, $header:expr)*) => {
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem($description, &[$($header),*]))
            }
        }
    };
}

problem_response!(
    /// 400.
    BadRequest,
    "`bad_request`: malformed JSON, a body that is not `application/json`, a bad query \
     parameter, path segment or `Idempotency-Key`; `errors` names the input."
);
problem_response!(
    /// 401.
    Unauthorized,
    "`unauthorized`: a token is needed and missing, or a token was sent and is invalid or \
     expired.",
    (
        "WWW-Authenticate",
        HeaderBuilder::new()
            .schema(Some(string()))
            .description(Some("Always `Bearer`."))
            .build()
    )
);
problem_response!(
    /// 403.
    Forbidden,
    "`forbidden` (the role does not allow it, not the author, guest comments off), `banned` \
     (the user is banned), `comments_closed` (the article takes no more comments) or \
     `edit_window_expired` (an author edit after the edit window)."
);
problem_response!(
    /// 404.
    NotFound,
    "`not_found`: no such route, an unknown comment, a comment the caller may not see, or \
     (with automatic article creation off) an unregistered article."
);
problem_response!(
    /// 409.
    Conflict,
    "`version_conflict` (a decision's `expected_version` is stale; nothing changed) or \
     `idempotency_conflict` (an `Idempotency-Key` reused with a different request) or \
     `claimed` (another moderator holds the item's claim)."
);
problem_response!(
    /// 413.
    PayloadTooLarge,
    "`payload_too_large`: the request body is over the limit (64 KiB by default)."
);
problem_response!(
    /// 431.
    HeadersTooLarge,
    "`headers_too_large`: the request line and headers exceed 128 KiB (or 96 headers), e.g. \
     thousands of `article_id`s where 1–100 are taken; the connection is closed."
);
problem_response!(
    /// 422.
    ValidationFailed,
    "`validation_failed`: well-formed JSON that breaks a rule; `errors` lists each field."
);
problem_response!(
    /// 429.
    RateLimited,
    "`rate_limited`: the caller's write budget is spent; nothing was written.",
    (
        "Retry-After",
        HeaderBuilder::new()
            .schema(Some(integer_seconds()))
            .description(Some("Seconds until the next write is allowed."))
            .build()
    )
);
problem_response!(
    /// 503.
    Unavailable,
    "`unavailable`: the database cannot be reached (nothing was written), or did not answer \
     within the server's bound (a write may then have been applied: retry it with the same \
     `Idempotency-Key`).",
    (
        "Retry-After",
        HeaderBuilder::new()
            .schema(Some(integer_seconds()))
            .description(Some("Seconds to wait before retrying (5)."))
            .build()
    )
);
problem_response!(
    /// 500.
    InternalError,
    "`internal_error`: a bug; the cause is logged with the request id, never returned."
);

/// `{article_id}` in a path: 400 `bad_request` naming `article_id` when it breaks the
/// pattern (an empty segment matches no route: 404).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ArticlePath {
    /// The host's own key for the article: 1–200 characters of `A-Z a-z 0-9 . _ ~ : -`,
    /// starting with a letter or digit.
    #[param(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9._~:-]{0,199}$",
        min_length = 1,
        max_length = 200,
        example = "why-back-cracks"
    )]
    pub article_id: String,
}

/// `{id}` of a comment in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CommentPath {
    /// The comment's id (opaque; a UUIDv7). Unknown ids, ids that cannot exist (over 64
    /// characters, or with a control character such as NUL), and comments the caller
    /// may not see, are 404.
    #[param(
        min_length = 1,
        max_length = 64,
        example = "019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"
    )]
    pub id: String,
}

/// The optional `Idempotency-Key` request header.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// 1–255 printable ASCII characters. A repeat of the same request (caller, method,
    /// path, body) within 24 hours replays the first response with
    /// `Idempotent-Replayed: true`; the same key with a different request is 409
    /// `idempotency_conflict`. A malformed key is 400.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~][ -~]{0,254}$",
        example = "2f1c7d1e-retry-1"
    )]
    pub idempotency_key: Option<String>,
}

/// The optional `If-None-Match` request header of the aggregate.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfNoneMatchHeader {
    /// An `ETag` from an earlier answer (or `*`): 304 with no body while it is current.
    #[param(
        rename = "If-None-Match",
        nullable = false,
        example = "\"j-0-0-0-2-45-why-back-cracks\""
    )]
    pub if_none_match: Option<String>,
}

/// An article id as a schema (the items of `GET /api/v1/ratings?article_id=…`).
#[derive(utoipa::ToSchema)]
#[schema(as = ArticleId, pattern = r"^[A-Za-z0-9][A-Za-z0-9._~:-]{0,199}$", min_length = 1,
    max_length = 200, example = "why-back-cracks")]
pub struct ArticleIdSchema(pub String);
