//! The learned spam model: its summary (moderators) and a rebuild from the stored
//! decisions (admins).

use actix_web::{web, HttpResponse};

use super::spec::{Forbidden, Unauthorized, Unavailable};
use crate::{
    auth::{Admin, Moderator},
    error::ApiError,
    service::spam::{self, ModelSummary},
    state::AppState,
};

/// `GET /api/v1/moderation/model`: how many comments of each kind the model learned from.
#[utoipa::path(
    get,
    path = "/api/v1/moderation/model",
    tag = "moderation",
    operation_id = "spam_model",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The model's examples by kind and its last change: every committed decision counts at once (the model scores with it a few milliseconds later, once its change is folded in).", body = ModelSummary),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn model(state: web::Data<AppState>, _: Moderator) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(spam::summary(&state.db.conn).await?))
}

/// `POST /api/v1/admin/model/rebuild`: relearns the model from the stored decisions (what
/// the last decision on each comment taught); 200 with the model's summary.
#[utoipa::path(
    post,
    path = "/api/v1/admin/model/rebuild",
    tag = "admin",
    operation_id = "rebuild_spam_model",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rebuilt model's examples by kind.", body = ModelSummary),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn rebuild(state: web::Data<AppState>, _: Admin) -> Result<HttpResponse, ApiError> {
    let summary = spam::rebuild(&state.db).await?;
    Ok(HttpResponse::Ok().json(summary))
}
