//! The OpenAPI description (`GET /openapi.json`) and its browsable page (`GET /docs`):
//! the spec describes exactly the route table, with the limits the code enforces.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};
use tally::routes::{openapi::ARTICLE_ID_PATTERN, ROUTES};

use crate::helpers::{spawn_app, TestApp};

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "PATCH", "DELETE"];

async fn spec(app: &TestApp) -> Value {
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"), "content type {ct}");
    res.json().await.expect("the spec is JSON")
}

/// Follows a local `$ref` (`#/components/...`), or returns the value itself.
fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local ref");
            let target = spec
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling {r}"));
            resolve(spec, target)
        }
        None => v,
    }
}

fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &spec["paths"][path][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {path} is in the spec");
    op
}

fn param<'a>(spec: &'a Value, op: &'a Value, name: &str) -> &'a Value {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| resolve(spec, p))
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("parameter {name} in {op}"))
}

fn schema<'a>(spec: &'a Value, name: &str) -> &'a Value {
    let s = &spec["components"]["schemas"][name];
    assert!(s.is_object(), "schema {name}");
    s
}

/// A request path for a route pattern, with sample values for its parameters.
fn concrete(path: &str) -> String {
    path.replace("{article_id}", "why-back-cracks")
        .replace("{id}", "no-such-comment")
        .replace("{user_id}", "nobody")
}

#[tokio::test]
async fn the_spec_is_openapi_3_1_json() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    assert_eq!(spec["info"]["title"], "tally");
}

#[tokio::test]
async fn the_spec_describes_exactly_the_route_table() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) {
                documented.insert((method, path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(routed.len(), ROUTES.len(), "ROUTES has no duplicates");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the spec: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "spec operations with no route: {unrouted:?}"
    );
}

#[tokio::test]
async fn every_listed_route_is_served_and_other_methods_are_405_with_allow() {
    // ROUTES must be the route table itself: each entry reaches a handler (whatever it
    // answers, it is not the router's 404 or 405), and every other method on its path
    // is 405 naming the methods that are there.
    let app = spawn_app().await;
    let admin = app.admin("admin-1");
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for path in paths {
        let listed: Vec<&str> = ROUTES
            .iter()
            .filter(|(_, p)| *p == path)
            .map(|(m, _)| *m)
            .collect();
        for method in METHODS {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = app.request(m, &concrete(path), Some(&admin));
            if method != "GET" && method != "DELETE" {
                req = req.json(&json!({}));
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let allow = res
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned());
            let streams = res
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            // The live stream never ends: its answer is its head.
            let body = if streams {
                String::new()
            } else {
                res.text().await.unwrap()
            };
            if listed.contains(&method) {
                // The router's own 404 (the default service) says "no such route".
                let unrouted = status == 404
                    && serde_json::from_str::<Value>(&body)
                        .is_ok_and(|b| b["detail"] == "no such route");
                assert!(
                    status != 405 && !unrouted,
                    "{method} {path} is routed: {status} {body}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is not routed: {body}");
                assert_eq!(
                    allow.as_deref(),
                    Some(listed.join(", ").as_str()),
                    "Allow of {path}"
                );
            }
        }
    }
    // Each of those requests was counted under its route's own pattern (which the
    // request-log middleware reads from the resource, not from the route table).
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    for (method, path) in ROUTES {
        let label = format!(r#"tally_http_requests_total{{method="{method}",route="{path}","#);
        assert!(metrics.contains(&label), "no {label} in\n{metrics}");
    }
    assert!(
        !metrics.contains(r#"route="unmatched""#),
        "a routed request was counted as unmatched:\n{metrics}"
    );
}

#[tokio::test]
async fn every_ref_resolves_and_every_error_is_a_problem() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    fn walk(spec: &Value, v: &Value) {
        match v {
            Value::Object(map) => {
                if map.contains_key("$ref") {
                    resolve(spec, v);
                }
                map.values().for_each(|v| walk(spec, v));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(spec, v)),
            _ => {}
        }
    }
    walk(&spec, &spec);

    for (method, path) in ROUTES {
        let op = operation(&spec, method, path);
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.contains_key("500"), "{method} {path} lists 500");
        for (status, response) in responses {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            let response = resolve(&spec, response);
            let content = response["content"].as_object().unwrap();
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                ["application/problem+json"],
                "{method} {path} {status}"
            );
            assert_eq!(
                content["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path} {status}"
            );
        }
    }
}

#[tokio::test]
async fn the_problem_schema_has_every_field_and_code() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let problem = schema(&spec, "Problem");
    for field in ["type", "title", "status", "code", "detail", "errors"] {
        assert!(problem["properties"][field].is_object(), "Problem.{field}");
    }
    let codes: BTreeSet<&str> = problem["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = [
        // API.md, Errors.
        "bad_request",
        "unauthorized",
        "forbidden",
        "banned",
        "comments_closed",
        "edit_window_expired",
        "own_comment",
        "not_found",
        "version_conflict",
        "idempotency_conflict",
        "payload_too_large",
        "validation_failed",
        "rate_limited",
        "unavailable",
        // The code's own.
        "method_not_allowed",
        "internal_error",
        // Issue 16: a request not received in time, a head too large to read.
        "request_timeout",
        "headers_too_large",
        // Issue 21: an item another moderator has claimed.
        "claimed",
    ]
    .into_iter()
    .collect();
    assert_eq!(codes, expected);
    let field = schema(&spec, "ProblemField");
    assert!(field["properties"]["field"].is_object());
    assert!(field["properties"]["message"].is_object());

    let unauthorized = &spec["components"]["responses"]["Unauthorized"];
    assert!(unauthorized["headers"]["WWW-Authenticate"].is_object());
    for name in ["RateLimited", "Unavailable"] {
        let retry = &spec["components"]["responses"][name]["headers"]["Retry-After"];
        assert_eq!(retry["schema"]["type"], "integer", "{name}");
    }
}

#[tokio::test]
async fn the_spec_states_the_limits_the_code_enforces() {
    let app = spawn_app().await;
    let spec = spec(&app).await;

    let stars = &schema(&spec, "RatingInput")["properties"]["stars"];
    assert_eq!(stars["type"], "integer");
    assert_eq!(
        (stars["minimum"].as_f64(), stars["maximum"].as_f64()),
        (Some(1.0), Some(5.0))
    );

    for name in ["NewComment", "CommentEdit"] {
        let body = &schema(&spec, name)["properties"]["body"];
        assert_eq!(body["minLength"], 1, "{name}");
        assert_eq!(body["maxLength"], 5000, "{name}");
    }
    assert_eq!(
        schema(&spec, "NewFlag")["properties"]["note"]["maxLength"],
        500
    );
    assert_eq!(
        schema(&spec, "NewFlag")["properties"]["reason"]["$ref"],
        "#/components/schemas/FlagReason"
    );
    assert_eq!(
        schema(&spec, "FlagReason")["enum"],
        json!(["spam", "abuse", "off_topic", "other"])
    );
    assert_eq!(
        schema(&spec, "Decision")["properties"]["reason"]["maxLength"],
        500
    );
    assert_eq!(
        schema(&spec, "Verdict")["enum"],
        json!(["approve", "reject", "spam"])
    );
    let items = &schema(&spec, "BulkDecisions")["properties"]["items"];
    assert_eq!(
        (items["minItems"].as_u64(), items["maxItems"].as_u64()),
        (Some(1), Some(100))
    );

    // Policy::validate.
    let policy = &schema(&spec, "Policy")["properties"];
    for (field, min, max) in [
        ("max_links", 0.0, 1000.0),
        ("flag_threshold", 1.0, 1000.0),
        ("edit_window_secs", 0.0, 2_592_000.0),
        ("trusted_after_approved", 0.0, 1_000_000.0),
    ] {
        let f = &policy[field];
        assert_eq!(
            (f["minimum"].as_f64(), f["maximum"].as_f64()),
            (Some(min), Some(max)),
            "{field}"
        );
    }
    for field in ["banned_words", "suspect_words"] {
        assert_eq!(policy[field]["maxItems"], 10_000, "{field}");
        assert_eq!(policy[field]["items"]["maxLength"], 100, "{field}");
    }
    assert_eq!(schema(&spec, "Policy")["additionalProperties"], false);

    // Paths and queries.
    for (method, path) in ROUTES.iter().filter(|(_, p)| p.contains("{article_id}")) {
        let id = param(&spec, operation(&spec, method, path), "article_id");
        assert_eq!(id["in"], "path");
        assert_eq!(
            id["schema"]["pattern"], ARTICLE_ID_PATTERN,
            "{method} {path}"
        );
    }
    for (method, path) in [
        ("GET", "/api/v1/articles/{article_id}/comments"),
        ("GET", "/api/v1/comments/{id}/replies"),
        ("GET", "/api/v1/moderation/queue"),
        ("GET", "/api/v1/moderation/log"),
        ("GET", "/api/v1/moderation/bans"),
    ] {
        let limit = &param(&spec, operation(&spec, method, path), "limit")["schema"];
        assert_eq!(
            (limit["minimum"].as_f64(), limit["maximum"].as_f64()),
            (Some(1.0), Some(100.0)),
            "{path}"
        );
        assert_eq!(limit["default"], 20, "{path}");
    }
    let queue = param(
        &spec,
        operation(&spec, "GET", "/api/v1/moderation/queue"),
        "queue",
    );
    assert_eq!(
        resolve(&spec, &queue["schema"])["enum"],
        json!(["pending", "flagged", "rejected", "spam", "approved"])
    );
    assert_eq!(schema(&spec, "Sort")["enum"], json!(["newest", "oldest"]));
    let ids = &param(
        &spec,
        operation(&spec, "GET", "/api/v1/ratings"),
        "article_id",
    )["schema"];
    assert_eq!(
        (ids["minItems"].as_u64(), ids["maxItems"].as_u64()),
        (Some(1), Some(100))
    );
    assert_eq!(resolve(&spec, &ids["items"])["pattern"], ARTICLE_ID_PATTERN);
}

#[tokio::test]
async fn the_spec_describes_caching_json_ld_idempotency_and_security() {
    let app = spawn_app().await;
    let spec = spec(&app).await;

    let aggregate = operation(&spec, "GET", "/api/v1/articles/{article_id}/rating");
    let ok = &aggregate["responses"]["200"];
    assert!(ok["content"]["application/json"].is_object());
    assert!(ok["content"]["application/ld+json"].is_object());
    assert!(ok["headers"]["ETag"].is_object());
    assert!(aggregate["responses"]["304"]["headers"]["ETag"].is_object());
    assert!(
        aggregate["responses"]["304"]["content"].is_null(),
        "304 has no body"
    );
    assert_eq!(param(&spec, aggregate, "If-None-Match")["in"], "header");

    for (method, path, created) in [
        ("POST", "/api/v1/articles/{article_id}/comments", "201"),
        ("PUT", "/api/v1/articles/{article_id}/ratings/me", "201"),
    ] {
        let op = operation(&spec, method, path);
        let key = param(&spec, op, "Idempotency-Key");
        assert_eq!(key["in"], "header");
        assert_eq!(key["schema"]["maxLength"], 255);
        assert!(op["responses"][created]["headers"]["Idempotent-Replayed"].is_object());
        assert!(op["responses"]["409"].is_object(), "{path} 409");
        assert!(op["responses"]["429"].is_object(), "{path} 429");
    }

    let scheme = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    let bearer = json!([{"bearer": []}]);
    assert_eq!(
        operation(&spec, "PUT", "/api/v1/admin/settings")["security"],
        bearer
    );
    assert_eq!(
        operation(&spec, "GET", "/api/v1/moderation/queue")["security"],
        bearer
    );
    assert_eq!(
        operation(&spec, "POST", "/api/v1/articles/{article_id}/comments")["security"],
        json!([{}, {"bearer": []}]),
        "a token is optional for guests"
    );
    assert!(
        operation(&spec, "GET", "/api/v1/articles/{article_id}/rating")["security"].is_null(),
        "public"
    );
    assert!(spec["security"].is_null(), "no global requirement");
}

#[tokio::test]
async fn docs_is_an_html_page_that_needs_no_internet() {
    let app = spawn_app().await;
    let res = app.get("/docs", None).await;
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/html"), "content type {ct}");
    let page = res.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing is loaded from elsewhere: {page}"
    );

    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let res = app.get(asset, None).await;
        assert_eq!(res.status(), 200, "{asset}");
        assert!(res.bytes().await.unwrap().len() > 1000, "{asset}");
    }
    let init = app.get("/docs/swagger-initializer.js", None).await;
    assert_eq!(init.status(), 200);
    assert!(init.text().await.unwrap().contains("\"/openapi.json\""));
}
