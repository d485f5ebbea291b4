//! Logs: JSON lines on stderr, one per request with its id, method, route and status;
//! the request-log middleware also sets the headers every response carries.
//!
//! Lines are formatted by [`JsonLines`], a small formatter written for the one shape we
//! log: tracing-subscriber's own JSON formatter (serde through a field visitor, span
//! fields re-parsed for every line) cost more than the rest of a cached answer. The
//! access line, one per request, is formatted in the same shape without tracing's
//! dispatch (see [`Access`]) when [`init`] installed the batched writer.

use std::{
    borrow::Cow,
    fmt::{self, Write as _},
    io::Write as _,
    sync::OnceLock,
    time::{Instant, SystemTime},
};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform},
    http::header::{HeaderName, HeaderValue, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS},
    http::{Method, StatusCode},
};
use futures_util::future::LocalBoxFuture;
use tracing::{
    field::{Field, Visit},
    Event, Level, Subscriber,
};
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    registry::LookupSpan,
    EnvFilter,
};

use crate::edge::problem_for_framework_errors;
use crate::metrics::{RequestLabels, WorkerMetrics};
use crate::routes::RoutePattern;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The request being handled by this task: lines logged while it runs carry it.
    static REQUEST: RequestContext;
}

/// What every line logged during a request says about it (its `span` object).
struct RequestContext {
    /// The client's `X-Request-Id` (checked to be printable ASCII) or one we made.
    id: HeaderValue,
    method: Cow<'static, str>,
}

impl RequestContext {
    fn id(&self) -> &str {
        // Printable ASCII either way (see `RequestLog`), so never the fallback.
        self.id.to_str().unwrap_or_default()
    }
}

mod batched;

/// Where [`init`] sends lines, set when the filter lets access lines through: they are
/// then written to it directly. (The filter is fixed once installed, so asking it once
/// answers for every request.)
static ACCESS_LOG: OnceLock<batched::BatchedWriter> = OnceLock::new();

/// Installs the global subscriber. `filter` is a tracing filter such as `info` or
/// `tally=debug,sqlx=warn`; an unusable one falls back to `info`.
///
/// Lines are written to stderr by a background thread in batches ([`batched`]), so a
/// request never waits on the write (a pipe or a slow terminal) nor wakes that thread
/// per line. Nothing is dropped: when the thread falls behind, callers wait for room.
/// Keep the returned guard alive until exit: dropping it writes what is still pending.
/// Without a thread (the system refused one), lines are written to stderr directly.
pub fn init(filter: &str) -> Option<batched::Guard> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .event_format(JsonLines)
        .with_env_filter(filter);
    match batched::spawn(std::io::stderr(), batched::LINGER, batched::MAX_PENDING) {
        Ok((writer, guard)) => {
            if builder.with_writer(writer.clone()).try_init().is_ok()
                && tracing::enabled!(Level::INFO)
            {
                let _ = ACCESS_LOG.set(writer);
            }
            Some(guard)
        }
        Err(e) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            tracing::warn!(error = %e, "no log thread; writing log lines directly");
            None
        }
    }
}

/// One JSON object per line: `timestamp` (RFC 3339, UTC, microseconds), `level`,
/// `fields` (the event's fields, `message` among them), `target`, and, for a line
/// logged while a request is handled, `span` with that request's `request_id` and
/// `method`. Strings are escaped as JSON requires; numbers and booleans stay numbers and
/// booleans.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // An access line is about 270 bytes: room for it without growing.
        let mut line = String::with_capacity(384);
        open_line(&mut line, SystemTime::now(), meta.level());
        event.record(&mut JsonFields {
            out: &mut line,
            first: true,
        });
        close_fields(&mut line, meta.target());
        let _ = REQUEST.try_with(|r| {
            line.push_str(",\"span\":{\"name\":\"request\",\"request_id\":");
            push_json_str(&mut line, r.id());
            line.push_str(",\"method\":");
            push_json_str(&mut line, &r.method);
            line.push('}');
        });
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// Appends a line up to its `fields` object's opening brace.
fn open_line(line: &mut String, at: SystemTime, level: &Level) {
    line.push_str("{\"timestamp\":\"");
    push_timestamp(line, at);
    line.push_str("\",\"level\":\"");
    line.push_str(level.as_str());
    line.push_str("\",\"fields\":{");
}

/// What closes the `fields` object and opens the `target`.
const FIELDS_END: &str = "},\"target\":";

/// Closes the `fields` object and adds the `target`.
fn close_fields(line: &mut String, target: &str) {
    line.push_str(FIELDS_END);
    push_json_str(line, target);
}

/// A method or route label as a JSON string: a borrowed one is a `&'static str` of ours
/// (a known method's name, a pattern of `routes::ROUTES`, `unmatched`) and is copied as
/// it is; an owned one (a method we do not know, a pattern actix looked up) is escaped.
#[expect(
    clippy::ptr_arg,
    reason = "whether it is borrowed decides the escaping"
)]
fn push_label(out: &mut String, label: &Cow<'static, str>) {
    match label {
        Cow::Borrowed(ours) => push_plain_json_str(out, ours),
        Cow::Owned(other) => push_json_str(out, other),
    }
}

/// `s`, which needs no escaping (a string of ours: a route pattern, a method's name, a
/// module path), as a JSON string literal.
fn push_plain_json_str(out: &mut String, s: &str) {
    debug_assert!(!needs_escape(s), "{s:?} needs escaping");
    out.push('"');
    out.push_str(s);
    out.push('"');
}

/// `now` as RFC 3339 in UTC with microseconds (`2026-11-24T01:21:40.055711Z`). The
/// date and time of day are formatted once per second and thread.
fn push_timestamp(out: &mut String, now: SystemTime) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let at: chrono::DateTime<chrono::Utc> =
                (SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)).into();
            cached.1 = at.format("%Y-%m-%dT%H:%M:%S").to_string();
            cached.0 = secs;
        }
        out.push_str(&cached.1);
    });
    out.push('.');
    push_decimal(out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
}

/// `n` in decimal, zero-padded to at least `width` digits, `width` at most 20 (what
/// `write!(out, "{n:0width$}")` writes, without the formatting machinery: this is on
/// every request).
fn push_decimal(out: &mut String, mut n: u64, width: usize) {
    debug_assert!(width <= 20, "at most 20 digits");
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || start == digits.len() {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = start.min(digits.len().saturating_sub(width));
    // One byte each, pushed as `char`s: no UTF-8 check of bytes known to be digits.
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// Writes an event's fields as the members of a JSON object.
struct JsonFields<'a> {
    out: &'a mut String,
    first: bool,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        push_json_str(self.out, field.name());
        self.out.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.out, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            // JSON has no NaN or infinity.
            self.out.push_str("null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.out.push('"');
        // `message` and `%value` fields arrive here; their text is escaped as written.
        let _ = write!(Escaped(self.out), "{value:?}");
        self.out.push('"');
    }
}

/// A `fmt::Write` that escapes what it is given for a JSON string.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// `s` as a JSON string literal (quoted, escaped).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// RFC 8259 escaping: quotes, backslashes and control characters; the rest as it is.
fn escape_into(out: &mut String, s: &str) {
    // Ids and most messages need none: one pass to check, one copy.
    if !needs_escape(s) {
        out.push_str(s);
        return;
    }
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
}

/// Whether `s` has a character JSON strings must escape. One pass without an early exit,
/// so it vectorises.
fn needs_escape(s: &str) -> bool {
    s.bytes().fold(false, |seen, b| {
        seen | (b == b'"') | (b == b'\\') | (b < 0x20)
    })
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

/// What the access line of a request says.
struct Access<'a> {
    /// When the request ended.
    at: SystemTime,
    id: &'a str,
    /// A borrowed method or route is one of ours and needs no escaping (see [`push_label`]).
    method: &'a Cow<'static, str>,
    route: &'a Cow<'static, str>,
    status: StatusCode,
    latency_us: u64,
}

impl Access<'_> {
    /// Appends the line to `line`, exactly as [`JsonLines`] formats
    /// `tracing::info!(request_id, method, route, status, latency_us, "request")` logged
    /// from this module after the request ended, without going through tracing's
    /// dispatch and field visitors (most of the cost of a cached answer's line).
    fn write_to(&self, line: &mut String) {
        open_line(line, self.at, &Level::INFO);
        line.push_str("\"message\":\"request\",\"request_id\":");
        push_json_str(line, self.id);
        line.push_str(",\"method\":");
        push_label(line, self.method);
        line.push_str(",\"route\":");
        push_label(line, self.route);
        line.push_str(",\"status\":");
        line.push_str(self.status.as_str());
        line.push_str(",\"latency_us\":");
        push_decimal(line, self.latency_us, 1);
        line.push_str(FIELDS_END);
        push_plain_json_str(line, module_path!());
        line.push_str("}\n");
    }

    /// Hands the line to the log thread's buffer, formatted in this thread's own
    /// reusable buffer (no allocation per request).
    fn log_to(&self, w: &batched::BatchedWriter) {
        thread_local! {
            static LINE: std::cell::RefCell<String> =
                std::cell::RefCell::new(String::with_capacity(384));
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            self.write_to(&mut line);
            let _ = (&*w).write_all(line.as_bytes());
        });
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
        // Read once: the id's time, and with the latency the access line's.
        let started_at = SystemTime::now();
        let id = match req.headers().get(&REQUEST_ID) {
            Some(v) if acceptable_request_id(v) => v.clone(),
            _ => new_request_id(started_at),
        };
        let context = RequestContext {
            id,
            method: method_label(req.method()),
        };
        let handled = REQUEST.scope(context, self.service.call(req));
        Box::pin(async move {
            let mut handled = std::pin::pin!(handled);
            let result = handled.as_mut().await;
            // The context comes back out of the finished future: no copy of the id was needed.
            let Some(RequestContext { id, method }) = handled.as_mut().take_value() else {
                return result.map(ServiceResponse::map_into_left_body);
            };
            let result = match result {
                Ok(res) => res,
                // An error no handler turned into a response (`deadline` gave up on
                // one): logged here, and answered with the request id like any other.
                Err(e) => return Err(answered_error(e, start, &id, &method)),
            };
            let mut res = problem_for_framework_errors(result);
            finish(&mut res, (start, started_at), id, method);
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
    (start, started_at): (Instant, SystemTime),
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
    match ACCESS_LOG.get() {
        Some(w) => Access {
            at: started_at + elapsed,
            id: id_text,
            method: &method,
            route: &route,
            status,
            latency_us,
        }
        .log_to(w),
        // Not installed by `init` (tests, no log thread, or filtered out): through
        // tracing, same shape.
        None => tracing::info!(
            request_id = id_text,
            method = &*method,
            route = &*route,
            status = status.as_u16(),
            latency_us,
            "request"
        ),
    }
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

    #[test]
    fn decimals_are_written_as_format_writes_them() {
        for n in [
            0,
            1,
            9,
            10,
            42,
            99_999,
            100_000,
            999_999,
            1_000_000,
            u64::MAX,
        ] {
            for width in [1, 6, 20] {
                let mut out = String::from("x");
                push_decimal(&mut out, n, width);
                assert_eq!(out, format!("x{n:0width$}"), "{n} width {width}");
            }
        }
    }

    fn lines_of(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_env_filter(EnvFilter::new("debug"))
            .with_writer(move || sink.clone())
            .finish();
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
                nan = f64::NAN,
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
            chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z') && ts.len() == 27,
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
        assert!(f["nan"].is_null());
        assert!(l.get("span").is_none(), "no request, no span: {l}");
    }

    #[test]
    fn the_access_line_is_the_line_tracing_would_write() {
        let id = "id \"with\" \\ quotes";
        // Ours (borrowed, copied as they are) and others (owned, escaped).
        let labels = [
            ("GET", "/api/v1/articles/{article_id}/rating", false),
            ("M\"1\\", "/odd/\"{x}\"\n", true),
        ];
        for (method, route, owned) in labels {
            let label = |s: &'static str| {
                if owned {
                    Cow::Owned(s.to_owned())
                } else {
                    Cow::Borrowed(s)
                }
            };
            let (status, latency_us) = (StatusCode::OK, 365u64);
            let mut through_tracing = lines_of(|| {
                tracing::info!(
                    target: "tally::telemetry",
                    request_id = id,
                    method,
                    route,
                    status = status.as_u16(),
                    latency_us,
                    "request"
                );
            })
            .remove(0);
            let mut text = String::new();
            Access {
                at: SystemTime::now(),
                id,
                method: &label(method),
                route: &label(route),
                status,
                latency_us,
            }
            .write_to(&mut text);
            access_line_matches(&text, through_tracing.take(), id);
        }
    }

    fn access_line_matches(text: &str, mut through_tracing: serde_json::Value, id: &str) {
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text:?}"
        );
        let mut direct: serde_json::Value = serde_json::from_str(text).unwrap();
        let ts = direct["timestamp"].as_str().unwrap().to_owned();
        assert!(
            chrono::DateTime::parse_from_rfc3339(&ts).is_ok() && ts.len() == 27,
            "{ts}"
        );
        for line in [&mut direct, &mut through_tracing] {
            line.as_object_mut().unwrap().remove("timestamp");
        }
        assert_eq!(direct, through_tracing);
        assert_eq!(direct["fields"]["request_id"], id);
    }

    #[tokio::test]
    async fn lines_logged_during_a_request_name_it() {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || sink.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let context = RequestContext {
            id: HeaderValue::from_static("req-\"1\""),
            method: Cow::Borrowed("POST"),
        };
        REQUEST
            .scope(context, async {
                tokio::task::yield_now().await;
                tracing::warn!("inside");
            })
            .await;
        tracing::warn!("outside");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["fields"]["message"], "inside");
        assert_eq!(lines[0]["span"]["request_id"], "req-\"1\"");
        assert_eq!(lines[0]["span"]["method"], "POST");
        assert_eq!(lines[1]["fields"]["message"], "outside");
        assert!(lines[1].get("span").is_none());
    }

    #[test]
    fn timestamps_are_rfc_3339_with_microseconds_across_seconds() {
        for t in [
            SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_795_000_000_000_007),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_795_000_000_999_999),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_795_000_001_000_000),
        ] {
            let mut out = String::new();
            push_timestamp(&mut out, t);
            let expected: chrono::DateTime<chrono::Utc> = t.into();
            assert_eq!(
                out,
                expected.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
        }
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

    #[test]
    fn escaping_covers_every_control_character() {
        let all: String = (0u8..0x20).map(char::from).collect();
        let mut out = String::new();
        push_json_str(&mut out, &all);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, all);
        assert!(!out.bytes().skip(1).take(out.len() - 2).any(|b| b < 0x20));
    }
}
