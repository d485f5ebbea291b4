use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}

#[tokio::test]
async fn unknown_routes_are_problem_404() {
    let app = spawn_app().await;
    assert_problem(app.get("/nope", None).await, 404, "not_found").await;
    assert_problem(
        app.get("/api/v1/nothing/here", None).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn wrong_methods_are_problem_405() {
    let app = spawn_app().await;
    for (method, path) in [
        (reqwest::Method::POST, "/healthz"),
        (reqwest::Method::POST, "/api/v1/articles/a/rating"),
        (reqwest::Method::PUT, "/api/v1/comments/x/replies"),
    ] {
        let res = app
            .request(method.clone(), path, None)
            .send()
            .await
            .unwrap();
        assert_problem(res, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn every_response_says_nosniff_and_carries_a_request_id() {
    let app = spawn_app().await;
    for path in ["/healthz", "/nope", "/api/v1/articles/a/rating"] {
        let res = app.get(path, None).await;
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
        assert!(res.headers().contains_key("x-request-id"), "{path}");
    }
    let res = app
        .request(reqwest::Method::GET, "/healthz", None)
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_show_queue_sizes() {
    let app = crate::helpers::spawn_app().await;
    app.get("/healthz", None).await;
    app.get("/healthz", None).await;
    app.get("/api/v1/comments/nope", None).await;
    app.comment("a", "u-1", "hello", None).await;
    // Methods outside the standard ones are counted together, so made-up methods
    // cannot grow the metrics without bound.
    for method in ["BREW", "WHEN"] {
        let res = app
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                app.url("/healthz"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method}");
    }

    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let has = |needle: &str| assert!(text.contains(needle), "missing {needle} in\n{text}");
    has(r#"tally_http_requests_total{method="GET",route="/healthz",status="200"} 2"#);
    has(r#"tally_http_requests_total{method="GET",route="/api/v1/comments/{id}",status="404"} 1"#);
    has(
        r#"tally_http_request_duration_seconds_count{method="POST",route="/api/v1/articles/{article_id}/comments",status="201"} 1"#,
    );
    has(r#"tally_http_requests_total{method="other",route="/healthz",status="405"} 2"#);
    assert!(!text.contains("BREW"), "no label per made-up method");
    has(r#"tally_moderation_queue_size{queue="approved"} 1"#);
    has(r#"tally_moderation_queue_size{queue="pending"} 0"#);
    assert!(
        !text.contains("/api/v1/comments/nope"),
        "raw paths never become labels"
    );
}
