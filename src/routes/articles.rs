use actix_web::{web, HttpResponse};

use super::extract::article_id;
use crate::{error::ApiError, service::articles, startup::AppState};

/// `GET /api/v1/articles/{article_id}`: the public summary for an article page.
pub async fn summary(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = article_id(&path)?;
    let summary =
        articles::summary(&state.db.conn, &id, state.settings.auto_create_articles).await?;
    Ok(HttpResponse::Ok().json(summary))
}
