//! Logs: JSON lines on stderr, one per request with its id, method, route and status;
//! the request-log middleware also sets the headers every response carries.

use std::time::Instant;

use actix_web::web;
use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS},
    middleware::Next,
};
use tracing::Instrument;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

use crate::metrics::{Metrics, RequestLabels};
use tracing_subscriber::EnvFilter;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber. `filter` is a tracing filter such as `info` or
/// `tally=debug,sqlx=warn`; an unusable one falls back to `info`.
///
/// Lines are written to stderr by a background thread, so a request never waits on the
/// write (a pipe or a slow terminal). Nothing is dropped: when that thread falls behind,
/// callers wait for room. Keep the returned guard alive until exit: dropping it flushes
/// what is still queued.
pub fn init(filter: &str) -> WorkerGuard {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("tally-log")
        .finish(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
        .try_init();
    guard
}

/// Accepts a client's `X-Request-Id` (if short and printable) or makes one, echoes it,
/// and logs the request when it ends. Query strings are not logged.
pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route);
    let start = Instant::now();
    let mut res = next.call(req).instrument(span).await?;
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, v);
    }
    // On every response, errors included (this middleware is the outermost).
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The contract's JSON is `application/json; charset=utf-8`; actix's `.json()` omits the charset.
    if headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v == "application/json")
    {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    let status = res.status().as_u16();
    // The line carries its own fields rather than the span's: a JSON event inside a span
    // re-reads the span's stored fields on every line, which costs more than the rest of
    // a cached answer. Lines logged while the request runs (errors) still carry the span.
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        latency_us = start.elapsed().as_micros() as u64,
        "request"
    );
    if let Some(m) = metrics {
        m.observe(
            RequestLabels {
                method,
                route,
                status,
            },
            start.elapsed().as_secs_f64(),
        );
    }

    Ok(res)
}
