use actix_web::{web, HttpResponse};

use super::paths::ArticleIdPath;
use super::spec::{ArticlePath, BadRequest, NotFound, Unavailable};
use crate::{
    error::ApiError,
    service::articles::{self, ArticleSummary},
    state::AppState,
};

/// `GET /api/v1/articles/{article_id}`: the public summary for an article page.
///
/// An unknown article reads as open and empty while articles are created on demand, and
/// is 404 when automatic creation is off.
#[utoipa::path(
    get,
    path = "/api/v1/articles/{article_id}",
    tag = "articles",
    operation_id = "get_article",
    params(ArticlePath),
    responses(
        (status = 200, description = "Title, URL, whether comments are open, the comment count and the rating aggregate.",
            body = ArticleSummary),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn summary(
    state: web::Data<AppState>,
    ArticleIdPath(id): ArticleIdPath,
) -> Result<HttpResponse, ApiError> {
    let summary =
        articles::summary(&state.db.conn, &id, state.settings.auto_create_articles).await?;
    Ok(HttpResponse::Ok().json(summary))
}
