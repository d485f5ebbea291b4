use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{error::ApiError, metrics::Metrics, startup::AppState};

/// `GET /healthz`: the process runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.db.ping().await {
        Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
    } else {
        Err(ApiError::Unavailable)
    }
}

/// `GET /metrics`: Prometheus text format.
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
