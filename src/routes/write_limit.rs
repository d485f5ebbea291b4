//! The write budget (`rate_limit`) as a middleware on the routes readers write through.

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::Method,
    middleware::Next,
    web, ResponseError,
};

use crate::{auth, client_ip::client_ip, error::ApiError, state::AppState};

/// The budget a request is counted against: its user, or its client IP when it has no
/// valid token (an invalid token is answered 401 later, but still counted).
fn caller_key(req: &actix_web::HttpRequest) -> String {
    match auth::identify(req) {
        Ok(Some(user)) => format!("user:{}", user.id),
        _ => format!("ip:{}", client_ip(req)),
    }
}

/// Middleware for the routes readers write through: unsafe methods spend one unit of the
/// caller's budget, or get 429 `rate_limited` with `Retry-After` before anything runs.
pub async fn limit_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let is_read = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !is_read {
        if let Some(state) = req.app_data::<web::Data<AppState>>() {
            if let Some(limiter) = &state.write_limiter {
                if let Err(secs) = limiter.check_shared(&caller_key(req.request())).await {
                    let response = ApiError::RateLimited(secs).error_response();
                    return Ok(req.into_response(response).map_into_right_body());
                }
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
