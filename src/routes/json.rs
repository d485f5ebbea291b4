//! JSON bodies: the extractors that parse and validate them before the handler runs
//! (content type, size limit, syntax → 400/413, rule breaks → 422 naming the field), and
//! the content type JSON answers carry.

use std::{future::Future, pin::Pin};

use actix_web::{
    dev::Payload,
    http::header::{self, HeaderValue},
    web::{self, Bytes},
    FromRequest, HttpRequest,
};
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use crate::{domain::FieldError, error::ApiError, state::AppState};

/// The contract's JSON content type (what `telemetry` makes of actix's `.json()`), as a
/// header value that needs no parsing per response.
pub fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json; charset=utf-8")
}

/// A JSON body, parsed and validated before the handler runs.
pub struct ApiJson<T>(pub T);

fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

/// The JSON path serde failed at, or the field named in "missing field `x`".
pub(super) fn error_field(path: &str, message: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
