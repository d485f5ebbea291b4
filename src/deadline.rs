//! Bounded waits for every request (issue 16), as one middleware:
//!
//! - **Receiving.** A request's body must arrive within `request_timeout_ms` of its
//!   head (actix bounds the head itself by the same setting, `client_request_timeout`):
//!   a client trickling its body a byte at a time gets 408 `request_timeout` and the
//!   connection is closed, instead of holding a worker's attention for as long as it
//!   likes. The body stream is wrapped so the deadline is only armed while a handler
//!   is waiting for bytes.
//! - **The database.** Once the request is received (no body, or the whole body read),
//!   the handler has `db_timeout_ms` to answer; past it the client gets 503
//!   `unavailable` and the handler is dropped (its transaction rolls back). This is
//!   what bounds a query on a connection that went silent (no RST, no FIN): neither
//!   the pool's acquire timeout nor PostgreSQL's `statement_timeout` (which the server
//!   applies, and whose answer cannot cross a silent network) would.
//!
//! The timer is only registered if the handler does not finish on its first poll, so
//! answers served from memory pay nothing for it.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform},
    error::PayloadError,
    http::{header, Method},
    web::Bytes,
    HttpMessage,
};
use futures_util::{future::LocalBoxFuture, Stream};
use tokio::time::{sleep_until, Instant, Sleep};

use crate::error::ApiError;

/// The I/O error message a timed-out body read ends with (see `routes::extract`).
pub const BODY_TIMEOUT: &str = "request body not received in time";

/// The middleware; `0` turns either bound off.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub request_timeout: Duration,
    pub db_timeout: Duration,
}

impl Deadline {
    pub fn new(request_timeout_ms: u64, db_timeout_ms: u64) -> Self {
        Deadline {
            request_timeout: Duration::from_millis(request_timeout_ms),
            db_timeout: Duration::from_millis(db_timeout_ms),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Deadline
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = DeadlineService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(DeadlineService {
            service,
            bounds: *self,
        }))
    }
}

pub struct DeadlineService<S> {
    service: S,
    bounds: Deadline,
}

/// Whether the request announces a body (RFC 9112: a length or a transfer coding).
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// When the request's body was fully received (`None`: not yet), and a wake-up for the
/// deadline when it is.
#[derive(Default)]
struct Received {
    at: Cell<Option<Instant>>,
    notify: tokio::sync::Notify,
}

impl Received {
    fn now(&self) {
        self.at.set(Some(Instant::now()));
        self.notify.notify_one();
    }
}

impl<S, B> Service<ServiceRequest> for DeadlineService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        let Deadline {
            request_timeout,
            db_timeout,
        } = self.bounds;
        let received = Rc::new(Received::default());
        if has_body(&req) && !request_timeout.is_zero() {
            let body = TimedBody {
                inner: req.take_payload(),
                deadline: Box::pin(sleep_until(start + request_timeout)),
                received: received.clone(),
                done: false,
            };
            let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(body);
            req.set_payload(Payload::from(stream));
        } else {
            received.at.set(Some(start));
        }
        let is_read = matches!(*req.method(), Method::GET | Method::HEAD);
        let fut = self.service.call(req);
        if db_timeout.is_zero() {
            return Box::pin(fut);
        }
        Box::pin(async move {
            let mut fut = std::pin::pin!(fut);
            // Until the body is in, the handler may wait for it as long as it is allowed
            // to arrive; the database's time starts after that.
            let due = |received: Option<Instant>| match received {
                Some(t) => t + db_timeout,
                None => start + request_timeout + db_timeout,
            };
            let mut sleep = std::pin::pin!(sleep_until(due(received.at.get())));
            loop {
                tokio::select! {
                    biased;
                    res = &mut fut => return res,
                    // The body is in: the database's time starts now.
                    () = received.notify.notified(), if received.at.get().is_none() => {
                        sleep.as_mut().reset(due(received.at.get()));
                    }
                    () = &mut sleep => {
                        let now_due = due(received.at.get());
                        if Instant::now() >= now_due {
                            tracing::warn!(
                                waited_ms = start.elapsed().as_millis() as u64,
                                "request gave up waiting for the database"
                            );
                            let error = if is_read {
                                ApiError::Unavailable
                            } else {
                                ApiError::WriteTimedOut
                            };
                            // An error, not a response: the request is inside the
                            // dropped handler (cloning it before routing would break
                            // the router); `telemetry::RequestLog` logs it and adds
                            // the request id, actix renders it as our problem.
                            return Err(error.into());
                        }
                        sleep.as_mut().reset(now_due);
                    }
                }
            }
        })
    }
}

/// The request body, ending in an error once its deadline passed.
struct TimedBody {
    inner: Payload,
    deadline: Pin<Box<Sleep>>,
    received: Rc<Received>,
    done: bool,
}

impl Stream for TimedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.done = true;
                self.received.now();
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        BODY_TIMEOUT,
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
