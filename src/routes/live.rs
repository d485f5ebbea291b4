//! The live moderation stream: Server-Sent Events of queue moves and sizes.

use actix_web::{web, HttpRequest, HttpResponse};

use super::spec::{Forbidden, Unauthorized, Unavailable};
use crate::{auth::Moderator, error::ApiError, service::live, state::AppState};

/// `GET /api/v1/moderation/events`: a `text/event-stream` of `stats` (on connect and
/// whenever the queue sizes change: the stats object) and `item` events
/// (`{"comment_id", "queue", "change": "entered" | "left"}`), each with an `id:`.
///
/// Reconnect with `Last-Event-ID` to receive what was missed (events stay in the
/// outbox for days), whichever instance the client reaches. A comment line every
/// 15 s keeps the connection open. The token goes in the `Authorization` header (a
/// browser's `EventSource` cannot send one: read the stream with `fetch`).
#[utoipa::path(
    get,
    path = "/api/v1/moderation/events",
    tag = "moderation",
    operation_id = "moderation_events",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "The `id:` of the last event received; the stream resumes after it (an unusable value is ignored).")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event stream (it does not end by itself).",
            content_type = "text/event-stream", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn events(
    state: web::Data<AppState>,
    _: Moderator,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let resume = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0);
    let mut frames = live::open(state.db.clone(), resume);
    let body = futures_util::stream::poll_fn(move |cx| {
        frames
            .poll_recv(cx)
            .map(|f| f.map(|f| Ok::<_, std::convert::Infallible>(web::Bytes::from(f))))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
