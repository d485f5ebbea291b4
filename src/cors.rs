//! CORS for the API and the widget's scripts (API.md "Browsers and embedding").
//!
//! Our own small middleware rather than `actix-cors`, because the contract differs from
//! what that crate does in three places: a preflight answers 204 (actix-cors: 200); an
//! origin that is not allowed gets no `Access-Control-*` header at all (actix-cors still
//! sends `Access-Control-Expose-Headers`); and a preflight's `Access-Control-Allow-Methods`
//! is exactly the methods of the route asked about (here read from `routes::ROUTES`, so a
//! route added there is covered with no other change). It also costs nothing on requests
//! that carry no `Origin` (servers, benchmarks): their future is passed through unboxed.
//!
//! Wrapped outside `telemetry::RequestLog`, so the problem responses built there for
//! actix's own errors (404, 405, 413) carry the headers too. Credentials are never
//! allowed: tokens travel in `Authorization`, never in cookies.

use std::{
    future::{ready, Future, Ready},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix_web::{
    body::{BoxBody, EitherBody, MessageBody},
    dev::{forward_ready, ResourceDef, Service, ServiceRequest, ServiceResponse, Transform},
    http::{
        header::{self, HeaderMap, HeaderValue},
        Method,
    },
    Error, HttpResponse,
};
use futures_util::future::Either;

use crate::{config::CorsOrigins, routes::ROUTES};

/// The request headers a page may send (`Access-Control-Allow-Headers`).
pub const ALLOW_HEADERS: &str =
    "Authorization, Content-Type, Idempotency-Key, If-None-Match, Last-Event-ID, X-Request-Id";
/// The response headers a page may read (`Access-Control-Expose-Headers`).
pub const EXPOSE_HEADERS: &str = "ETag, Retry-After, X-Request-Id, Idempotent-Replayed";
/// Browsers may cache a preflight for a day.
pub const MAX_AGE: &str = "86400";
/// The widget's scripts follow the same rules (a module loaded from another origin
/// needs them).
const WIDGET_DIR: &str = "/widget/";

fn is_cors_path(path: &str) -> bool {
    path.starts_with("/api/v1/") || path == "/api/v1" || path.starts_with(WIDGET_DIR)
}

/// The middleware: `App::wrap(Cors::new(origins))`.
#[derive(Clone)]
pub struct Cors {
    origins: CorsOrigins,
}

impl Cors {
    pub fn new(origins: CorsOrigins) -> Self {
        Cors { origins }
    }
}

struct Policy {
    /// `None`: any origin.
    allowed: Option<Vec<HeaderValue>>,
    /// Each route pattern of `ROUTES` with its methods (`GET, PUT, DELETE`), for preflights.
    routes: Vec<(ResourceDef, HeaderValue)>,
}

impl Policy {
    fn new(origins: &CorsOrigins) -> Self {
        let allowed = match origins {
            CorsOrigins::Any => None,
            CorsOrigins::List(list) => Some(
                list.iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect(),
            ),
        };
        let mut routes: Vec<(ResourceDef, HeaderValue)> = Vec::new();
        for (_, pattern) in ROUTES {
            if !is_cors_path(pattern)
                || routes.iter().any(|(def, _)| def.pattern() == Some(pattern))
            {
                continue;
            }
            if let Some(methods) =
                crate::routes::allowed_methods(pattern).and_then(|m| HeaderValue::from_str(&m).ok())
            {
                routes.push((ResourceDef::new(*pattern), methods));
            }
        }
        Policy { allowed, routes }
    }

    /// The `Access-Control-Allow-Origin` for a request's `Origin`, or `None` when refused.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.allowed {
            None => Some(HeaderValue::from_static("*")),
            Some(list) => list
                .iter()
                .find(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
                .cloned(),
        }
    }

    fn varies(&self) -> bool {
        self.allowed.is_some()
    }

    fn methods_of(&self, path: &str) -> Option<&HeaderValue> {
        self.routes
            .iter()
            .find(|(def, _)| def.is_match(path))
            .map(|(_, m)| m)
    }
}

impl<S, B> Transform<S, ServiceRequest> for Cors
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = CorsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CorsService {
            service,
            policy: Rc::new(Policy::new(&self.origins)),
        }))
    }
}

pub struct CorsService<S> {
    service: S,
    policy: Rc<Policy>,
}

/// What an actual response gets once the handler has answered.
struct Decoration {
    allow_origin: Option<HeaderValue>,
    vary: bool,
}

impl Decoration {
    fn apply(self, headers: &mut HeaderMap) {
        if let Some(origin) = self.allow_origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
        if self.vary {
            add_vary_origin(headers);
        }
    }
}

fn add_vary_origin(headers: &mut HeaderMap) {
    let mut values = headers
        .get_all(header::VARY)
        .filter_map(|v| v.to_str().ok());
    let merged = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(one), None) => {
            if one.split(',').any(|p| {
                let p = p.trim();
                p == "*" || p.eq_ignore_ascii_case("origin")
            }) {
                return;
            }
            HeaderValue::from_str(&format!("{one}, Origin")).ok()
        }
        // Several lines already: one more says the same.
        (Some(_), Some(_)) => {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
            return;
        }
    };
    headers.insert(
        header::VARY,
        merged.unwrap_or(HeaderValue::from_static("Origin")),
    );
}

pin_project_lite::pin_project! {
    /// The inner response future, decorated when it completes.
    pub struct Decorated<F> {
        #[pin]
        fut: F,
        decoration: Option<Decoration>,
    }
}

impl<F, B> Future for Decorated<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.fut.poll(cx));
        Poll::Ready(res.map(|mut res| {
            if let Some(d) = this.decoration.take() {
                d.apply(res.headers_mut());
            }
            res.map_into_left_body()
        }))
    }
}

type Preflight<B> = Ready<Result<ServiceResponse<EitherBody<B>>, Error>>;

impl<S, B> Service<ServiceRequest> for CorsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Either<Decorated<S::Future>, Preflight<B>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let policy = &self.policy;
        if !is_cors_path(req.path()) {
            return Either::Left(Decorated {
                fut: self.service.call(req),
                decoration: None,
            });
        }
        let allow_origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| policy.allow_origin(o));
        if let Some(origin) = &allow_origin {
            if req.method() == Method::OPTIONS
                && req
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
            {
                if let Some(methods) = policy.methods_of(req.path()) {
                    let mut res = HttpResponse::NoContent();
                    res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
                        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods.clone()))
                        .insert_header((
                            header::ACCESS_CONTROL_ALLOW_HEADERS,
                            HeaderValue::from_static(ALLOW_HEADERS),
                        ))
                        .insert_header((
                            header::ACCESS_CONTROL_MAX_AGE,
                            HeaderValue::from_static(MAX_AGE),
                        ));
                    let mut res: HttpResponse<BoxBody> = res.finish();
                    if policy.varies() {
                        add_vary_origin(res.headers_mut());
                    }
                    return Either::Right(ready(Ok(req.into_response(res).map_into_right_body())));
                }
            }
        }
        let decoration = (allow_origin.is_some() || policy.varies()).then_some(Decoration {
            allow_origin,
            vary: policy.varies(),
        });
        Either::Left(Decorated {
            fut: self.service.call(req),
            decoration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_as_any_or_an_exact_list() {
        assert_eq!(CorsOrigins::parse("*").unwrap(), CorsOrigins::Any);
        assert_eq!(CorsOrigins::parse(" ").unwrap(), CorsOrigins::Any);
        assert_eq!(
            CorsOrigins::parse("https://a.example, http://127.0.0.1:8081").unwrap(),
            CorsOrigins::List(vec![
                "https://a.example".into(),
                "http://127.0.0.1:8081".into()
            ])
        );
        for bad in [
            "a.example",
            "https://a.example/path",
            "ftp://a.example",
            "https://",
        ] {
            assert!(CorsOrigins::parse(bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn preflights_know_each_routes_methods() {
        let policy = Policy::new(&CorsOrigins::Any);
        let methods = |p: &str| policy.methods_of(p).map(|m| m.to_str().unwrap().to_owned());
        assert_eq!(
            methods("/api/v1/articles/a-1/ratings/me").as_deref(),
            Some("GET, PUT, DELETE")
        );
        assert_eq!(
            methods("/api/v1/articles/a-1/rating").as_deref(),
            Some("GET")
        );
        assert_eq!(methods("/api/v1/no/such/route"), None);
        assert_eq!(methods("/healthz"), None);
    }
}
