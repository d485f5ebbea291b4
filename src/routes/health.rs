use actix_web::{web, HttpResponse, ResponseError};
use serde::Serialize;

use super::spec::Unavailable;
use crate::{error::ApiError, metrics::Metrics, state::AppState};

/// The body of the health probes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(value_type = String, examples("ok", "ready"))]
    pub status: &'static str,
    /// `/readyz` only: how write rate limits are kept: `shared` (in Redis, one budget
    /// for all instances), `per-instance`, `per-instance (redis unreachable)` (falling
    /// back until Redis answers again) or `off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, examples("shared", "per-instance"))]
    pub rate_limits: Option<&'static str>,
}

/// `GET /healthz`: the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}` while the process runs.", body = Health)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        rate_limits: None,
    })
}

/// `GET /readyz`: the database answers and its schema is up to date.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "`{\"status\": \"ready\", \"rate_limits\": …}`: the database answers and has every migration this version needs.", body = Health),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.db.ping().await {
        return Err(ApiError::Unavailable);
    }
    match crate::service::schema::pending_migrations(&state.db.conn).await {
        Ok(pending) if pending.is_empty() => {}
        Ok(pending) => {
            return Ok(unavailable(&format!(
                "The database schema is not up to date: {} migration(s) pending ({}). \
                 Run `tally migrate` (or start one instance with TALLY_MIGRATE=true).",
                pending.len(),
                pending.join(", ")
            )))
        }
        Err(_) => return Err(ApiError::Unavailable),
    }
    let rate_limits = match &state.write_limiter {
        Some(limiter) => limiter.mode().await,
        None => "off",
    };
    Ok(HttpResponse::Ok().json(Health {
        status: "ready",
        rate_limits: Some(rate_limits),
    }))
}

/// A 503 `unavailable` problem with its own detail.
fn unavailable(detail: &str) -> HttpResponse {
    let mut problem: serde_json::Value =
        serde_json::from_str(&ApiError::Unavailable.to_problem_json()).unwrap_or_default();
    problem["detail"] = serde_json::Value::from(detail);
    ApiError::Unavailable
        .error_response()
        .set_body(actix_web::body::BoxBody::new(problem.to_string()))
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
