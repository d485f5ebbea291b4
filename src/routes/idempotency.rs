//! The `Idempotency-Key` header, and the replay of a stored answer.

use actix_web::{dev::Payload, http::StatusCode, mime, FromRequest, HttpRequest, HttpResponse};

use crate::{
    auth::User,
    client_ip::client_ip,
    domain::{request_hash, FieldError, IdempotencyKey},
    error::ApiError,
    service::idempotency::{IdempotentRequest, StoredResponse},
};

/// The optional `Idempotency-Key` header, parsed: 400 naming it when malformed.
pub struct IdempotencyHeader(pub Option<IdempotencyKey>);

impl FromRequest for IdempotencyHeader {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_idempotency_header(req).map(IdempotencyHeader))
    }
}

fn parse_idempotency_header(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let bad = |e: FieldError| ApiError::BadRequest("bad Idempotency-Key header".into(), vec![e]);
    let mut values = req.headers().get_all(IdempotencyKey::HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(bad(FieldError::new(
            IdempotencyKey::HEADER,
            "must be sent once",
        )));
    }
    let text = value.to_str().map_err(|_| {
        bad(FieldError::new(
            IdempotencyKey::HEADER,
            "must be 1–255 printable ASCII characters",
        ))
    })?;
    IdempotencyKey::parse(text).map(Some).map_err(bad)
}

impl IdempotencyHeader {
    /// The request to run under this key, if one was sent: scoped to the caller (the
    /// user, or the client IP for guests) and fingerprinted by method, path and body.
    pub fn request(
        self,
        req: &HttpRequest,
        user: Option<&User>,
        body: &[u8],
    ) -> Option<IdempotentRequest> {
        let key = self.0?;
        let scope = match user {
            Some(u) => format!("user:{}", u.id),
            None => format!("guest-ip:{}", client_ip(req)),
        };
        Some(IdempotentRequest {
            scope,
            key,
            hash: request_hash(req.method().as_str(), req.path(), body),
        })
    }
}

/// A stored response replayed for a repeated idempotent request, marked as such.
pub fn replay(stored: StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    HttpResponse::build(status)
        .content_type(mime::APPLICATION_JSON)
        .insert_header((IDEMPOTENT_REPLAYED, "true"))
        .body(stored.body)
}

/// Marks a replayed response (as Stripe and the IETF draft's implementations do).
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
