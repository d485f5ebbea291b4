//! Logs: JSON lines on stderr (tracing-subscriber's JSON format), one per request with
//! its id, method, route and status; the request-log middleware also sets the headers
//! every response carries.

use std::{
    borrow::Cow,
    time::{Instant, SystemTime},
};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform},
    http::header::{HeaderName, HeaderValue, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS},
    http::Method,
};
use futures_util::future::LocalBoxFuture;
use tracing::Instrument as _;
use tracing_subscriber::{util::SubscriberInitExt as _, EnvFilter};

use crate::edge::problem_for_framework_errors;
use crate::metrics::{RequestLabels, WorkerMetrics};
use crate::routes::RoutePattern;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber, writing to stderr. `filter` is a tracing filter such
/// as `info` or `tally=debug,sqlx=warn`; an unusable one falls back to `info`.
///
/// One JSON object per line: `timestamp` (RFC 3339, UTC, microseconds), `level`,
/// `fields` (the event's fields, `message` among them), `target`, and, for a line
/// logged while a request is handled, `span` with that request's `request_id` and
/// `method`.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = subscriber(filter, std::io::stderr).try_init();
}

/// The subscriber [`init`] installs, writing to `writer`.
fn subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

fn method_label(m: &Method) -> Cow<'static, str> {
    match *m {
        Method::GET => Cow::Borrowed("GET"),
        Method::POST => Cow::Borrowed("POST"),
        Method::PUT => Cow::Borrowed("PUT"),
        Method::PATCH => Cow::Borrowed("PATCH"),
        Method::DELETE => Cow::Borrowed("DELETE"),
        Method::HEAD => Cow::Borrowed("HEAD"),
        Method::OPTIONS => Cow::Borrowed("OPTIONS"),
        _ => Cow::Owned(m.as_str().to_owned()),
    }
}

/// A client's `X-Request-Id` is kept if it is 1–128 printable ASCII characters.
fn acceptable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
}

/// A new request id: a UUIDv7 whose 74 bits after the Unix time in milliseconds are 48
/// random bits drawn once per thread and the thread's count of ids so far. Unique within
/// the process (two threads share a prefix with odds of 2^-48) and, with the random
/// prefix, across processes; time-ordered to the millisecond, not strictly monotonic.
/// uuid's `now_v7` would take a process-wide mutex on every request, and drawing 74
/// random bits per id costs more than the rest of it.
fn new_request_id(now: SystemTime) -> HeaderValue {
    thread_local! {
        static PREFIX_AND_COUNT: std::cell::Cell<([u8; 6], u32)> =
            std::cell::Cell::new((rand::random(), 0));
    }
    let (prefix, count) = PREFIX_AND_COUNT.with(|c| {
        let (prefix, count) = c.get();
        c.set((prefix, count.wrapping_add(1)));
        (prefix, count)
    });
    let mut bits = [0u8; 10];
    bits[..6].copy_from_slice(&prefix);
    bits[6..].copy_from_slice(&count.to_be_bytes());
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid();
    let mut text = uuid::Uuid::encode_buffer();
    // Hex digits and hyphens: always a valid header value.
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The outermost middleware, on every request:
/// - accepts a client's `X-Request-Id` (if short and printable) or makes one, and echoes
///   it; lines logged while the request is handled name it;
/// - turns error responses actix made itself into problems
///   ([`problem_for_framework_errors`]);
/// - adds `X-Content-Type-Options: nosniff` and the JSON charset;
/// - logs the access line (query strings are not logged) and records the metrics.
///
/// One middleware written for the purpose rather than `from_fn` and actix's
/// `ErrorHandlers`: each layer boxes a future or clones its handlers and moves the
/// request and response through, and those two cost several per cent of a cached
/// aggregate's throughput (BENCHMARKS.md).
pub struct RequestLog;

impl<S, B> Transform<S, ServiceRequest> for RequestLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RequestLogService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(RequestLogService { service }))
    }
}

/// [`RequestLog`] around a service.
pub struct RequestLogService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        // The id's time.
        let started_at = SystemTime::now();
        let id = match req.headers().get(&REQUEST_ID) {
            Some(v) if acceptable_request_id(v) => v.clone(),
            _ => new_request_id(started_at),
        };
        let method = method_label(req.method());
        // Lines logged while the request is handled name it.
        let span = tracing::info_span!(
            "request",
            request_id = id.to_str().unwrap_or_default(),
            method = &*method
        );
        let handled = self.service.call(req).instrument(span);
        Box::pin(async move {
            let result = match handled.await {
                Ok(res) => res,
                // An error no handler turned into a response (`deadline` gave up on
                // one): logged here, and answered with the request id like any other.
                Err(e) => return Err(answered_error(e, start, &id, &method)),
            };
            let mut res = problem_for_framework_errors(result);
            finish(&mut res, start, id, method);
            Ok(res)
        })
    }
}

/// The response of an error that reached the log middleware, with the request id, as
/// an error again (actix renders it); logged like a response.
fn answered_error(
    e: actix_web::Error,
    start: Instant,
    id: &HeaderValue,
    method: &str,
) -> actix_web::Error {
    let mut res = e.error_response();
    let status = res.status();
    res.headers_mut().insert(REQUEST_ID, id.clone());
    res.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    tracing::info!(
        request_id = id.to_str().unwrap_or_default(),
        method,
        route = "unmatched",
        status = status.as_u16(),
        latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    actix_web::error::InternalError::from_response(e.to_string(), res).into()
}

/// Logs and counts a response, and adds the headers every response carries.
fn finish<B>(
    res: &mut ServiceResponse<B>,
    start: Instant,
    id: HeaderValue,
    method: Cow<'static, str>,
) {
    // Every resource of `routes::configure` names its pattern; anything else (Swagger
    // UI's assets, 404s) is looked up, which costs a walk of the route table.
    let route = match res.request().app_data::<RoutePattern>() {
        Some(p) => Cow::Borrowed(p.0),
        None => res
            .request()
            .match_pattern()
            .map_or(Cow::Borrowed("unmatched"), Cow::Owned),
    };
    let status = res.status();
    let elapsed = start.elapsed();
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let id_text = id.to_str().unwrap_or_default();
    tracing::info!(
        request_id = id_text,
        method = &*method,
        route = &*route,
        status = status.as_u16(),
        latency_us,
        "request"
    );
    if let Some(m) = res.request().app_data::<WorkerMetrics>() {
        m.observe(
            RequestLabels {
                // Bounded: any client can make up a method.
                method: match method {
                    Cow::Borrowed(known) => Cow::Borrowed(known),
                    Cow::Owned(_) => Cow::Borrowed("other"),
                },
                route,
                status: status.as_u16(),
            },
            elapsed.as_secs_f64(),
        );
    }
    let headers = res.headers_mut();
    headers.insert(REQUEST_ID, id);
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
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = subscriber(EnvFilter::new("debug"), move || sink.clone());
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn a_line_is_one_json_object_with_typed_fields() {
        let lines = lines_of(|| {
            tracing::info!(
                text = "quote \" backslash \\ newline \n tab \t bell \u{7} é ✓",
                shown = %"display \"x\"",
                n = -3i64,
                u = 7u64,
                ok = true,
                ratio = 0.5f64,
                "hello {}",
                "world"
            );
        });
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["level"], "INFO");
        assert_eq!(l["target"], module_path!());
        let ts = l["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
            "{ts}"
        );
        let f = &l["fields"];
        assert_eq!(f["message"], "hello world");
        assert_eq!(
            f["text"],
            "quote \" backslash \\ newline \n tab \t bell \u{7} é ✓"
        );
        assert_eq!(f["shown"], "display \"x\"");
        assert_eq!(f["n"], -3);
        assert_eq!(f["u"], 7);
        assert_eq!(f["ok"], true);
        assert_eq!(f["ratio"], 0.5);
        assert!(l.get("span").is_none(), "no request, no span: {l}");
    }

    #[test]
    fn lines_logged_during_a_request_name_it() {
        let lines = lines_of(|| {
            let span = tracing::info_span!("request", request_id = "req-\"1\"", method = "POST");
            span.in_scope(|| tracing::warn!("inside"));
            tracing::warn!("outside");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["fields"]["message"], "inside");
        assert_eq!(lines[0]["span"]["request_id"], "req-\"1\"");
        assert_eq!(lines[0]["span"]["method"], "POST");
        assert_eq!(lines[1]["fields"]["message"], "outside");
        assert!(lines[1].get("span").is_none());
    }

    #[test]
    fn request_ids_are_distinct_uuid_v7s_of_the_time_given() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        let ids = move |n| -> Vec<String> {
            (0..n)
                .map(|_| new_request_id(at).to_str().unwrap().to_owned())
                .collect()
        };
        let mut all = ids(1000);
        all.extend(std::thread::spawn(move || ids(1000)).join().unwrap());
        let distinct: std::collections::HashSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), 2000, "ids repeat");
        for id in &all {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
            assert_eq!((secs, nanos), (1_795_000_000, 123_000_000), "{id}");
            assert_eq!(id, &id.to_lowercase());
        }
    }
}
