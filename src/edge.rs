//! The HTTP server's edge: actix-web's `HttpServer::listen`, plus one thing it cannot
//! be told to do. actix-http's HTTP/1 dispatcher answers some requests itself, before
//! any of our code runs, with a bare status and an empty body: 431 when the request
//! line and headers exceed what it reads (128 KiB or 96 headers: a 1 MB query string,
//! 10,000 `article_id`s), 408 when the head does not arrive within
//! `client_request_timeout`, 400 when the head does not parse. Every error we send is a
//! problem document (`application/problem+json` with a `code`), so each accepted
//! connection is wrapped in [`ProblemIo`], which replaces exactly those bare answers
//! (a 400, 408 or 431 head with no content type and no body, written alone) with the
//! same status as a problem.
//!
//! Everything else passes through untouched: our own responses always carry a
//! content type ([`problem_for_framework_errors`]), so none of them matches.
//!
//! The answers actix-web makes itself (no route, a wrong method, a path parameter that
//! does not decode) are made problems here too: [`problem_for_framework_errors`] on
//! every response, and [`path_errors`] for path parameters.

use std::{
    fmt, io,
    net::TcpListener,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use actix_http::{body::MessageBody, HttpService, Protocol, Request, Response};
use actix_rt::net::TcpStream;
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::{
    body::EitherBody,
    dev::{AppConfig, Server, ServiceResponse},
    http::{header, StatusCode},
    web, ResponseError,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    error::{ApiError, PROBLEM_JSON},
    routes,
    state::AppState,
};

/// A path parameter that does not decode (e.g. `web::Path<String>` of invalid UTF-8)
/// is 404, as an unknown resource.
pub fn path_errors() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| ApiError::not_found("resource").into())
}

/// Safety net for responses actix produces itself (unknown route, wrong method, bodies
/// from extractors we did not configure): any error response (4xx, 5xx) that is not
/// already a problem becomes one, with the code matching its status. Applied to every
/// response by `telemetry::RequestLog`.
pub fn problem_for_framework_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<B>> {
    let status = res.status();
    let is_problem = || {
        res.headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
    };
    if !(status.is_client_error() || status.is_server_error()) || is_problem() {
        return res.map_into_left_body();
    }
    let error = match res.status() {
        StatusCode::NOT_FOUND => ApiError::NotFound("no such route".into()),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
            res.request()
                .app_data::<web::Data<AppState>>()
                .map_or(0, |s| s.settings.max_body_bytes),
        ),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized("authentication required".into()),
        StatusCode::FORBIDDEN => ApiError::Forbidden("not allowed".into()),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable,
        s if s.is_client_error() => {
            ApiError::bad_request(s.canonical_reason().unwrap_or("bad request"))
        }
        _ => ApiError::Internal(format!("framework error {}", res.status())),
    };
    // RFC 9110: a 405 says which methods the route does have.
    let allow = match error {
        ApiError::MethodNotAllowed => res
            .request()
            .match_pattern()
            .and_then(|pattern| routes::allowed_methods(&pattern)),
        _ => None,
    };
    let (req, _) = res.into_parts();
    let mut response = error.error_response();
    *response.status_mut() = error.status_code();
    if let Some(allow) = allow.and_then(|a| header::HeaderValue::from_str(&a).ok()) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    ServiceResponse::new(req, response.map_into_boxed_body()).map_into_right_body::<B>()
}

/// The most bytes of request line and headers actix-http reads (its `MAX_BUFFER_SIZE`).
pub const MAX_HEAD_BYTES: usize = 131_072;

/// Serves `factory`'s app on `listener` as `HttpServer` would (same service, same
/// timeouts), with every connection wrapped in [`ProblemIo`].
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    workers: Option<usize>,
    client_request_timeout: Option<Duration>,
    factory: F,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let request_timeout_ms = client_request_timeout.map_or(5_000, |d| d.as_millis() as u64);
    let mut builder = Server::build()
        .shutdown_timeout(30)
        // Signals are ours (`Application::stop_on_signals`).
        .disable_signals();
    if let Some(n) = workers {
        builder = builder.workers(n);
    }
    builder
        .listen("tally", listener, move || {
            let mut svc = HttpService::build().local_addr(addr);
            if let Some(t) = client_request_timeout {
                svc = svc.client_request_timeout(t);
            }
            let app = factory()
                .into_factory()
                .map_err(|err| err.into().error_response());
            let http = svc.finish(map_config(app, |()| AppConfig::default()));
            fn_service(move |io: TcpStream| async move {
                // As actix-web's own listener: the peer for `peer_addr`, Nagle left as is.
                let peer = io.peer_addr().ok();
                Ok((
                    ProblemIo::new(io, request_timeout_ms),
                    Protocol::Http1,
                    peer,
                ))
            })
            .and_then(http)
        })
        .map(|b| b.run())
}

/// A connection whose dispatcher-made bare error answers are rewritten as problems.
pub struct ProblemIo<T> {
    inner: T,
    /// Bytes of a rewritten answer still to be written, and how many were.
    pending: Vec<u8>,
    written: usize,
    request_timeout_ms: u64,
}

impl<T> ProblemIo<T> {
    pub fn new(inner: T, request_timeout_ms: u64) -> Self {
        ProblemIo {
            inner,
            pending: Vec::new(),
            written: 0,
            request_timeout_ms,
        }
    }
}

/// The problem that replaces `head` if it is one of the dispatcher's bare answers.
fn replacement(head: &[u8], request_timeout_ms: u64) -> Option<Vec<u8>> {
    let status = match head.get(..13)? {
        b"HTTP/1.1 400 " | b"HTTP/1.0 400 " => 400,
        b"HTTP/1.1 408 " | b"HTTP/1.0 408 " => 408,
        b"HTTP/1.1 431 " | b"HTTP/1.0 431 " => 431,
        _ => return None,
    };
    // One whole head, nothing after it.
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != head.len() {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?.to_ascii_lowercase();
    if text.contains("\r\ncontent-type:") || !text.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let error = match status {
        408 => ApiError::RequestTimeout(request_timeout_ms),
        431 => ApiError::HeadersTooLarge(MAX_HEAD_BYTES),
        _ => ApiError::bad_request("malformed request: the request line or headers do not parse"),
    };
    let body = error.to_problem_json();
    let reason = match status {
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    // The dispatcher's own `date` header, kept as it wrote it.
    let date = std::str::from_utf8(head)
        .ok()?
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("date:"))
        .map(|l| format!("{l}\r\n"))
        .unwrap_or_default();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\n\
             connection: close\r\nx-request-id: {}\r\nx-content-type-options: nosniff\r\n{date}\r\n{body}",
            body.len(),
            uuid::Uuid::now_v7()
        )
        .into_bytes(),
    )
}

impl<T: AsyncWrite + Unpin> ProblemIo<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = replacement(buf, self.request_timeout_ms) {
            self.pending = answer;
            // Started now; the rest goes out on the next write, flush or shutdown.
            if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dispatchers_bare_answers_are_replaced() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: Sun, 06 Dec 2026 20:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(replacement(bare, 5000).expect("replaced")).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(
            answer.contains("content-type: application/problem+json"),
            "{answer}"
        );
        assert!(answer.contains(r#""code":"headers_too_large""#), "{answer}");
        assert!(
            answer.contains("date: Sun, 06 Dec 2026 20:00:00 GMT\r\n"),
            "{answer}"
        );
        let bare_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(replacement(bare_408, 5000).unwrap())
            .unwrap()
            .contains(r#""code":"request_timeout""#));

        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n";
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let with_body = b"HTTP/1.1 431 X\r\ncontent-length: 0\r\n\r\nmore";
        for not in [&ours[..], ok, with_body, b"HTTP/1.1 431 "] {
            assert!(
                replacement(not, 5000).is_none(),
                "{}",
                String::from_utf8_lossy(not)
            );
        }
    }
}
