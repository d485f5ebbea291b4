//! Typed path extractors (STYLE.md #17): the id in a path is parsed into its domain type
//! before the handler runs, so nothing the database would refuse (a NUL byte, a control
//! character, an overlong id) ever reaches a query, and the answer is the same on
//! SQLite and PostgreSQL:
//!
//! - an article id that breaks its pattern is 400 `bad_request` naming `article_id`;
//! - a comment id that cannot exist is 404 `not_found`, as an unknown one is;
//! - a user id (unban) that cannot exist is 400 `bad_request` naming `user_id`.
//!
//! A segment that does not decode at all (invalid UTF-8) is 404, as `web::Path` answers.
//!
//! Each derefs to `&str`, so the services keep taking the id as text.

use std::ops::Deref;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

use crate::{
    domain::{ArticleId, CommentId, FieldError, UserId},
    error::ApiError,
};

/// The decoded text of the route's only path parameter (what `web::Path<String>`
/// gives), or `None` when it does not decode (e.g. invalid UTF-8).
fn segment(req: &HttpRequest) -> Option<String> {
    let mut payload = Payload::None;
    let path = web::Path::<String>::from_request(req, &mut payload).into_inner();
    path.ok().map(web::Path::into_inner)
}

/// `{article_id}`: 400 naming `article_id` when it breaks the pattern. Listed after a
/// handler's other extractors, so their errors come first, as when the handler checked
/// the id itself.
#[derive(Debug)]
pub struct ArticleIdPath(pub ArticleId);

impl FromRequest for ArticleIdPath {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = match segment(req) {
            Some(raw) => article_id(&raw).map(ArticleIdPath),
            None => Err(ApiError::not_found("resource")),
        };
        std::future::ready(id)
    }
}

/// A path segment that must be an article id: 400 naming `article_id` otherwise.
pub fn article_id(raw: &str) -> Result<ArticleId, ApiError> {
    ArticleId::parse(raw).map_err(bad_article_id)
}

/// The 400 of a path segment that is not an article id.
pub fn bad_article_id(e: FieldError) -> ApiError {
    ApiError::BadRequest("bad article id".into(), vec![e])
}

/// `{id}` of a comment: 404 when it cannot be a comment id.
#[derive(Debug)]
pub struct CommentIdPath(pub CommentId);

impl FromRequest for CommentIdPath {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = segment(req)
            .and_then(|raw| CommentId::parse("id", &raw).ok())
            .map(CommentIdPath)
            .ok_or_else(|| ApiError::not_found("comment"));
        std::future::ready(id)
    }
}

impl Deref for CommentIdPath {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

/// `{user_id}` of a ban: 400 naming `user_id` when it cannot be a user id.
#[derive(Debug)]
pub struct UserIdPath(pub UserId);

impl FromRequest for UserIdPath {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let raw = segment(req).unwrap_or_default();
        let id = UserId::parse("user_id", &raw)
            .map(UserIdPath)
            .map_err(|e| ApiError::BadRequest("bad user id".into(), vec![e]));
        std::future::ready(id)
    }
}

impl Deref for UserIdPath {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}
