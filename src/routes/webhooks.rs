//! Webhook administration: subscriptions and their deliveries (admin role).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::json::ApiJson;
use super::query::{bad_query, ApiQuery};
use super::spec::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable, ValidationFailed,
};
use crate::{
    auth::Admin,
    domain::{parse_limit, Cursor, FieldError},
    error::ApiError,
    service::{
        comments::CursorPage,
        webhooks::{self, CreatedWebhook, DeliveryView, WebhookView},
    },
    state::AppState,
};

/// `POST /api/v1/admin/webhooks`'s body.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// Where deliveries are POSTed: http or https, a public address unless
    /// `TALLY_WEBHOOK_ALLOW_PRIVATE=true`.
    #[schema(max_length = 2000)]
    pub url: String,
    /// Event types (`comment.created`, `comment.published`, `comment.status_changed`,
    /// `comment.flagged`, `rating.changed`), or `["*"]` for all. `comment.published` is
    /// sent once per move into `approved`: created approved, a decision, or an edit the
    /// rules let through (then after a `comment.status_changed` by `system`). A comment
    /// event's `data.item` is the moderation item as it stood when the event was turned
    /// into deliveries (normally milliseconds after the commit), the same bytes on
    /// every retry.
    #[schema(min_items = 1, max_items = 5)]
    pub events: Vec<String>,
    /// A note for admins, at most 500 characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// The list of webhooks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

/// `POST /api/v1/admin/webhooks`: subscribes a URL; 201 with the signing secret, which
/// is shown only in this answer.
#[utoipa::path(
    post,
    path = "/api/v1/admin/webhooks",
    tag = "admin",
    operation_id = "create_webhook",
    request_body = WebhookBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The webhook, with its secret.", body = CreatedWebhook),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<WebhookBody>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = vec![];
    let events = webhooks::parse_events(&body.events)
        .map_err(|e| errors.push(e))
        .ok();
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 500 || d.contains('\0'))
    {
        errors.push(FieldError::new(
            "description",
            "must be at most 500 characters",
        ));
    }
    let url = crate::outbound::check_url("url", &body.url, state.settings.webhook_allow_private)
        .await
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(url), Some(events), true) = (url, events, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let tx = state.db.begin_write().await?;
    let created = webhooks::create(
        &*tx,
        url.to_string(),
        events,
        body.description.filter(|d| !d.is_empty()),
    )
    .await?;
    tx.commit().await?;
    state.db.events().webhook_created();
    Ok(HttpResponse::Created().json(created))
}

/// `GET /api/v1/admin/webhooks`: every webhook (without secrets).
#[utoipa::path(
    get,
    path = "/api/v1/admin/webhooks",
    tag = "admin",
    operation_id = "list_webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The webhooks, oldest first.", body = WebhookList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list(state: web::Data<AppState>, _: Admin) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(WebhookList {
        items: webhooks::list(&state.db.conn).await?,
    }))
}

/// A webhook id as the path gives it: what no id can be is simply not found.
fn webhook_id(raw: &str) -> Result<&str, ApiError> {
    if raw.is_empty() || raw.len() > 36 || raw.chars().any(|c| c.is_control()) {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(raw)
}

/// `DELETE /api/v1/admin/webhooks/{id}`: 204; its pending deliveries are dropped.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/webhooks/{id}",
    tag = "admin",
    operation_id = "delete_webhook",
    params(("id" = String, Path, description = "The webhook's id.", max_length = 36)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn delete(
    state: web::Data<AppState>,
    _: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let tx = state.db.begin_write().await?;
    let gone = webhooks::delete(&*tx, id).await?;
    tx.commit().await?;
    if !gone {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The parameters of a deliveries listing; a bad value is 400 naming it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListParams {
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (opaque).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// `GET /api/v1/admin/webhooks/{id}/deliveries`: a webhook's deliveries, newest first.
/// A fresh delivery is listed once its first attempt is over (then `delivered`, or
/// `pending` with its next attempt); a retry's outcome once it is over.
#[utoipa::path(
    get,
    path = "/api/v1/admin/webhooks/{id}/deliveries",
    tag = "admin",
    operation_id = "list_webhook_deliveries",
    params(("id" = String, Path, description = "The webhook's id.", max_length = 36), DeliveryListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of deliveries.", body = CursorPage<DeliveryView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn deliveries(
    state: web::Data<AppState>,
    _: Admin,
    path: web::Path<String>,
    ApiQuery(p): ApiQuery<DeliveryListParams>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let limit = parse_limit(p.limit).map_err(bad_query)?;
    let cursor = p
        .cursor
        .as_deref()
        .map(Cursor::decode)
        .transpose()
        .map_err(bad_query)?;
    let page = webhooks::deliveries(&state.db.conn, id, limit, cursor)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(HttpResponse::Ok().json(page))
}
