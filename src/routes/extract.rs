//! Request extractors that turn bad input into our problem responses: JSON bodies
//! (content type, size limit, syntax → 400/413, rule breaks → 422 naming the field) and
//! query strings (→ 400 naming the parameter).

use std::{future::Future, pin::Pin};

use actix_web::{
    dev::Payload,
    http::{header, StatusCode},
    mime,
    web::{self, Bytes},
    FromRequest, HttpRequest, HttpResponse,
};
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use crate::{
    auth::User,
    domain::{request_hash, FieldError, IdempotencyKey},
    error::ApiError,
    service::idempotency::{IdempotentRequest, StoredResponse},
    startup::AppState,
};

/// A JSON body, parsed and validated before the handler runs.
pub struct ApiJson<T>(pub T);

fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

/// The JSON path serde failed at, or the field named in "missing field `x`".
fn error_field(path: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
    }
    if path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let message = strip_position(&message);
        if inner.is_data() {
            ApiError::Validation(vec![FieldError::new(error_field(&path, message), message)])
        } else {
            ApiError::bad_request(format!("malformed JSON: {message}"))
        }
    })?;
    de.end().map_err(|_| {
        ApiError::bad_request("malformed JSON: trailing characters after the value")
    })?;
    Ok(value)
}

pub fn validation_errors(errors: &ValidationErrors) -> Vec<FieldError> {
    fn walk(prefix: &str, errors: &ValidationErrors, out: &mut Vec<FieldError>) {
        for (field, kind) in errors.errors() {
            let name = if prefix.is_empty() {
                field.to_string()
            } else {
                format!("{prefix}.{field}")
            };
            match kind {
                ValidationErrorsKind::Field(list) => {
                    for e in list {
                        let message = e
                            .message
                            .as_deref()
                            .map(str::to_owned)
                            .unwrap_or_else(|| e.code.to_string());
                        out.push(FieldError::new(name.clone(), message));
                    }
                }
                ValidationErrorsKind::Struct(inner) => walk(&name, inner, out),
                ValidationErrorsKind::List(items) => {
                    for (i, inner) in items {
                        walk(&format!("{name}[{i}]"), inner, out);
                    }
                }
            }
        }
    }
    let mut out = vec![];
    walk("", errors, &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

type JsonFuture<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = JsonFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_json::<T>(req, payload);
        Box::pin(async move { read.await.map(|(value, _)| ApiJson(value)) })
    }
}

/// A JSON body like [`ApiJson`], plus the exact bytes it was sent as (for hashing an
/// idempotent request).
pub struct ApiJsonRaw<T>(pub T, pub Bytes);

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ApiJsonRaw<T> {
    type Error = ApiError;
    type Future = JsonFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_json::<T>(req, payload);
        Box::pin(async move { read.await.map(|(value, raw)| ApiJsonRaw(value, raw)) })
    }
}

fn read_json<T: DeserializeOwned + Validate + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
) -> JsonFuture<(T, Bytes)> {
    let state = req.app_data::<web::Data<AppState>>();
    let limit = state.map_or(65_536, |s| s.settings.max_body_bytes);
    let request_timeout_ms = state.map_or(0, |s| s.settings.request_timeout_ms);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Box::pin(async move { Err(ApiError::PayloadTooLarge(limit)) });
    }
    if !is_json(req) {
        return Box::pin(async {
            Err(ApiError::bad_request(
                "expected Content-Type: application/json",
            ))
        });
    }
    let body = Bytes::from_request(req, payload);
    Box::pin(async move {
        let bytes = body.await.map_err(|e| {
            let text = e.to_string();
            if text.contains(crate::deadline::BODY_TIMEOUT) {
                ApiError::RequestTimeout(request_timeout_ms)
            } else if text.contains("overflow")
                || text.contains("too large")
                || text.contains("larger than")
            {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::bad_request("could not read the request body")
            }
        })?;
        if bytes.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        let value: T = parse_json(&bytes)?;
        refuse_nul(&bytes)?;
        value
            .validate()
            .map_err(|e| ApiError::Validation(validation_errors(&e)))?;
        Ok((value, bytes))
    })
}

/// PostgreSQL refuses a NUL character in text (SQLite would store it): a body with one
/// in any string is 422 naming the field, on both databases, before any query. JSON
/// can only carry it escaped (`\u0000`), so bodies without that sequence (nearly all)
/// cost one scan of their bytes.
fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    let maybe = bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|b| *b == b'0'));
    if !maybe {
        return Ok(());
    }
    fn find(v: &serde_json::Value, path: &str) -> Option<String> {
        let at = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match v {
            serde_json::Value::String(s) => s.contains('\0').then(|| path.to_owned()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| find(item, &format!("{path}[{i}]"))),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, item)| {
                if k.contains('\0') {
                    Some(at(k))
                } else {
                    find(item, &at(k))
                }
            }),
            _ => None,
        }
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| ApiError::bad_request("malformed JSON"))?;
    match find(&value, "") {
        Some(field) => Err(ApiError::validation(
            if field.is_empty() {
                "body".into()
            } else {
                field
            },
            "must not contain a NUL character",
        )),
        None => Ok(()),
    }
}

/// Query parameters; anything that does not parse is a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

pub fn parse_query<T: DeserializeOwned>(qs: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(qs.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        ApiError::BadRequest(
            "bad query string".into(),
            vec![FieldError::new(
                error_field(&path, &message).replace("body", "query"),
                message,
            )],
        )
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiQuery<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(ApiQuery))
    }
}

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

/// The client's IP address: the TCP peer. `X-Forwarded-For` is not trusted (behind a
/// proxy every client shares the proxy's address; trusting a configured proxy is future
/// work).
pub fn client_ip(req: &HttpRequest) -> String {
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map_or(&[][..], |s| &s.settings.trusted_proxies[..]);
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    originating_ip(req.peer_addr().map(|a| a.ip()), &forwarded, trusted)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// The client behind any trusted proxies: `X-Forwarded-For` is read only when the TCP
/// peer is a trusted proxy, from the right (the hop nearest to us), skipping trusted
/// proxies; the first untrusted address is the client. Anything a client wrote to the
/// left of that is never believed.
pub fn originating_ip(
    peer: Option<std::net::IpAddr>,
    forwarded: &[&str],
    trusted: &[ipnet::IpNet],
) -> Option<std::net::IpAddr> {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer?;
    if !is_trusted(&client) {
        return Some(client);
    }
    let hops = forwarded.iter().flat_map(|h| h.split(',')).map(str::trim);
    for hop in hops.collect::<Vec<_>>().into_iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A malformed entry ends what can be believed.
            Err(_) => break,
        }
    }
    Some(client)
}

/// A path segment that must be an article id: 400 naming `article_id` otherwise.
pub fn article_id(raw: &str) -> Result<crate::domain::ArticleId, ApiError> {
    crate::domain::ArticleId::parse(raw).map_err(bad_article_id)
}

/// The 400 of a path segment that is not an article id.
pub fn bad_article_id(e: FieldError) -> ApiError {
    ApiError::BadRequest("bad article id".into(), vec![e])
}

/// Turns a field error found in a query string into a 400.
pub fn bad_query(e: FieldError) -> ApiError {
    ApiError::BadRequest("bad query string".into(), vec![e])
}

/// The application state, for a handler that takes only the request.
pub fn app_state(req: &HttpRequest) -> Result<&AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|data| data.get_ref())
        .ok_or_else(|| ApiError::Internal("no application state in this app".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let cases: [(&str, &[&str], &str, &str); 6] = [
            (
                "203.0.113.9",
                &["1.2.3.4"],
                "203.0.113.9",
                "untrusted peer: header ignored",
            ),
            (
                "10.0.0.2",
                &["198.51.100.7"],
                "198.51.100.7",
                "one trusted proxy",
            ),
            (
                "10.0.0.2",
                &["6.6.6.6, 198.51.100.7, 10.0.0.3"],
                "198.51.100.7",
                "spoofed left part ignored",
            ),
            (
                "10.0.0.2",
                &["6.6.6.6", "198.51.100.7"],
                "198.51.100.7",
                "header repeated",
            ),
            ("10.0.0.2", &[], "10.0.0.2", "no header"),
            (
                "10.0.0.2",
                &["garbage, 10.0.0.5"],
                "10.0.0.5",
                "malformed hop stops the walk",
            ),
        ];
        for (peer, xff, want, why) in cases {
            assert_eq!(
                originating_ip(Some(ip(peer)), xff, &nets),
                Some(ip(want)),
                "{why}"
            );
        }
        assert_eq!(
            originating_ip(Some(ip("10.0.0.2")), &["1.2.3.4"], &[]),
            Some(ip("10.0.0.2")),
            "nothing trusted"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Rate {
        stars: i64,
    }

    #[test]
    fn json_errors_name_the_field() {
        let cases: [(&str, u16, &str); 6] = [
            (r#"{"stars": "four"}"#, 422, "stars"),
            (r#"{"stars": 4.5}"#, 422, "stars"),
            (r#"{}"#, 422, "stars"),
            (r#"[]"#, 422, "body"),
            (r#"{"stars": 4"#, 400, ""),
            (r#"{"stars": 4} x"#, 400, ""),
        ];
        for (input, status, field) in cases {
            let err = parse_json::<Rate>(input.as_bytes()).expect_err(input);
            use actix_web::ResponseError;
            assert_eq!(err.status_code().as_u16(), status, "{input}");
            if let ApiError::Validation(f) = err {
                assert_eq!(f[0].field, field, "{input}");
            }
        }
    }
}
