use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::openapi::Unavailable;
use crate::{error::ApiError, metrics::Metrics, startup::AppState};

/// The body of the health probes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(value_type = String, examples("ok", "ready"))]
    pub status: &'static str,
}

/// `GET /healthz`: the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}` while the process runs.", body = Health)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// `GET /readyz`: the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`: the database answers `SELECT 1`.", body = Health),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.db.ping().await {
        Ok(HttpResponse::Ok().json(Health { status: "ready" }))
    } else {
        Err(ApiError::Unavailable)
    }
}

/// `GET /metrics`: Prometheus text format.
///
/// Request counts and latencies by method, route pattern and status
/// (`tally_http_requests_total`, `tally_http_request_duration_seconds`) and the
/// moderation queue sizes (`tally_moderation_queue_size{queue=…}`).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn metrics(
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let s = crate::service::moderation::stats(&state.db.conn).await?;
    let queues = [
        ("pending", s.pending),
        ("flagged", s.flagged),
        ("rejected", s.rejected),
        ("spam", s.spam),
        ("approved", s.approved),
    ];
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render(&queues)))
}
