//! What the state's caches hold for the edge: answers serialised once, ready to send.
//! Built and read by the handlers (`ratings`, `comments`); defined here so that
//! [`AppState`](crate::state::AppState) names them without importing a handler.

use actix_web::{http::header::HeaderValue, web};

use crate::{
    domain::Stars,
    service::comments::{CommentView, Page, ThreadQuery},
};

/// What `GET …/rating` answers for one article in either form, serialised once per
/// database read and then served from `AppState::aggregates`.
pub struct CachedAggregate {
    pub(super) json: web::Bytes,
    pub(super) json_etag: HeaderValue,
    /// The schema.org form; `None` when there are no ratings (that form is then 404).
    pub(super) ld: Option<web::Bytes>,
    pub(super) ld_etag: HeaderValue,
}

/// An anonymous comment page as kept in `AppState::comment_pages`: the body ready to
/// send, and the page itself with the query it answers, from which a signed-in
/// reader's page is composed (`service::page_overlay`).
pub struct SharedPage {
    pub(super) body: web::Bytes,
    pub(super) page: Page<CommentView>,
    pub(super) query: ThreadQuery,
    /// The reviews listing's star filter (`None` for every other listing).
    pub(super) stars: Option<Stars>,
}
