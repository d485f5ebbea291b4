//! CORS (API.md "Browsers and embedding"): preflights on every API route, the headers on
//! actual answers (errors included), refused origins, and `Vary: Origin` with a list.

use std::collections::BTreeSet;

use reqwest::{Method, Response};
use serde_json::json;
use tally::{config::CorsOrigins, routes::ROUTES};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const PAGE: &str = "https://news.example";
const OTHER: &str = "https://evil.example";

fn concrete(path: &str) -> String {
    path.replace("{article_id}", "why-back-cracks")
        .replace("{id}", "no-such-comment")
        .replace("{user_id}", "nobody")
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn cors_headers(res: &Response) -> Vec<String> {
    res.headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

/// The paths under CORS rules (the API and the widget), each with its methods.
fn cors_routes() -> Vec<(String, Vec<&'static str>)> {
    let paths: BTreeSet<&str> = ROUTES
        .iter()
        .map(|(_, p)| *p)
        .filter(|p| p.starts_with("/api/v1/") || p.starts_with("/widget/"))
        .collect();
    paths
        .into_iter()
        .map(|p| {
            let methods = ROUTES
                .iter()
                .filter(|(_, q)| *q == p)
                .map(|(m, _)| *m)
                .collect();
            (p.to_owned(), methods)
        })
        .collect()
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_preflight_on_every_route_answers_204_with_exactly_its_methods() {
    let app = spawn_app().await;
    let routes = cors_routes();
    assert!(routes.len() > 15, "the API routes are all there");
    for (pattern, methods) in routes {
        let res = preflight(&app, &concrete(&pattern), PAGE, methods[0]).await;
        assert_eq!(res.status(), 204, "preflight on {pattern}");
        assert_eq!(
            header(&res, "access-control-allow-origin").as_deref(),
            Some("*")
        );
        assert_eq!(
            header(&res, "access-control-allow-methods").unwrap(),
            methods.join(", "),
            "{pattern}"
        );
        let allowed = header(&res, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        for h in [
            "authorization",
            "content-type",
            "idempotency-key",
            "if-none-match",
            "last-event-id",
        ] {
            assert!(allowed.contains(h), "{h} allowed on {pattern}: {allowed}");
        }
        assert_eq!(
            header(&res, "access-control-max-age").as_deref(),
            Some("86400")
        );
        assert_eq!(header(&res, "access-control-allow-credentials"), None);
    }
}

#[tokio::test]
async fn answers_and_errors_carry_the_origin_and_the_exposed_headers() {
    let app = spawn_app().await;
    let token = app.reader("reader-1");
    let cases = [
        (Method::GET, "/api/v1/articles/a-1/rating", None, 200),
        (Method::GET, "/api/v1/comments/nope", None, 404),
        (Method::GET, "/api/v1/no/such/route", None, 404),
        (Method::POST, "/api/v1/articles/a-1/comments", None, 401),
        (
            Method::PUT,
            "/api/v1/articles/a-1/ratings/me",
            Some(&token),
            422,
        ),
        (Method::DELETE, "/api/v1/articles/a-1/rating", None, 405),
        (Method::GET, "/widget/tally.js", None, 200),
        (Method::GET, "/widget/tally-comments.js", None, 200),
    ];
    for (method, path, token, status) in cases {
        let mut req = app.request(method.clone(), path, token.map(|t| t.as_str()));
        req = req.header("Origin", PAGE);
        if method == Method::PUT || method == Method::POST {
            req = req.json(&json!({"stars": 9, "body": "x"}));
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), status, "{method} {path}");
        assert_eq!(
            header(&res, "access-control-allow-origin").as_deref(),
            Some("*"),
            "{method} {path}"
        );
        let exposed = header(&res, "access-control-expose-headers").unwrap();
        for h in ["ETag", "Retry-After", "X-Request-Id", "Idempotent-Replayed"] {
            assert!(exposed.contains(h), "{h} exposed on {method} {path}");
        }
        assert_eq!(header(&res, "access-control-allow-credentials"), None);
    }
}

#[tokio::test]
async fn requests_without_an_origin_and_other_paths_get_no_cors_headers() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/articles/a-1/rating", None).await;
    assert_eq!(res.status(), 200);
    assert!(cors_headers(&res).is_empty(), "{:?}", cors_headers(&res));
    let res = app
        .request(Method::GET, "/healthz", None)
        .header("Origin", PAGE)
        .send()
        .await
        .unwrap();
    assert!(cors_headers(&res).is_empty(), "{:?}", cors_headers(&res));
}

#[tokio::test]
async fn with_a_list_only_listed_origins_are_answered_and_every_response_varies_by_origin() {
    let app = spawn_app_with(|s| {
        s.cors_origins = CorsOrigins::parse(&format!("{PAGE}, http://127.0.0.1:9")).unwrap();
    })
    .await;
    // An allowed origin: echoed back, never `*`.
    let res = app
        .request(Method::GET, "/api/v1/articles/a-1/rating", None)
        .header("Origin", PAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    assert!(header(&res, "vary").unwrap().contains("Origin"));
    let res = preflight(&app, "/api/v1/comments/c-1", PAGE, "PATCH").await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    assert_eq!(
        header(&res, "access-control-allow-methods").as_deref(),
        Some("GET, PATCH, DELETE")
    );
    assert!(header(&res, "vary").unwrap().contains("Origin"));

    // A refused origin: no Access-Control-* header at all, the answer otherwise unchanged.
    let refused = app
        .request(Method::GET, "/api/v1/articles/a-1/rating", None)
        .header("Origin", OTHER)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 200);
    assert!(
        cors_headers(&refused).is_empty(),
        "{:?}",
        cors_headers(&refused)
    );
    assert!(header(&refused, "vary").unwrap().contains("Origin"));
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap()["count"],
        0
    );
    let res = preflight(&app, "/api/v1/comments/c-1", OTHER, "PATCH").await;
    assert_ne!(res.status(), 204);
    assert!(cors_headers(&res).is_empty(), "{:?}", cors_headers(&res));
    let res = app
        .request(Method::GET, "/api/v1/comments/nope", None)
        .header("Origin", OTHER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(cors_headers(&res).is_empty());

    // No Origin at all (a server, a cache filling itself): Vary still says it matters.
    let res = app.get("/api/v1/no/such/route", None).await;
    assert_eq!(res.status(), 404);
    assert!(header(&res, "vary").unwrap().contains("Origin"));
    let res = app.get("/widget/tally.js", None).await;
    assert!(header(&res, "vary").unwrap().contains("Origin"));
}
