use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, SECRET};

fn sign(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn invalid_tokens_get_401_with_www_authenticate() {
    let app = spawn_app_with(|s| s.jwt.audience = Some("tally".into())).await;
    let good = json!({"sub": "u-1", "exp": now() + 60, "aud": "tally"});
    let cases: Vec<(String, &str)> = vec![
        (
            sign(
                json!({"sub": "u-1", "exp": now() - 3600, "aud": "tally"}),
                SECRET,
            ),
            "expired",
        ),
        (
            sign(json!({"sub": "u-1", "aud": "tally"}), SECRET),
            "no exp",
        ),
        (
            sign(good.clone(), "another-secret-another-secret-another"),
            "bad signature",
        ),
        (
            sign(
                json!({"sub": "u-1", "exp": now() + 60, "aud": "other"}),
                SECRET,
            ),
            "wrong audience",
        ),
        (
            sign(
                json!({"sub": "", "exp": now() + 60, "aud": "tally"}),
                SECRET,
            ),
            "empty sub",
        ),
        ("garbage".into(), "not a JWT"),
    ];
    for (token, why) in cases {
        let res = app
            .put(
                "/api/v1/articles/a/ratings/me",
                Some(&token),
                &json!({"stars": 5}),
            )
            .await;
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{why}"
        );
        assert_problem(res, 401, "unauthorized").await;
    }
    let ok = app
        .put(
            "/api/v1/articles/a/ratings/me",
            Some(&sign(good, SECRET)),
            &json!({"stars": 5}),
        )
        .await;
    assert_eq!(
        ok.status(),
        201,
        "a valid token with the right audience works"
    );
}

#[tokio::test]
async fn a_bad_token_on_a_public_route_is_401_not_a_silent_guest() {
    let app = spawn_app().await;
    let res = app
        .get("/api/v1/articles/a/comments", Some("not-a-token"))
        .await;
    assert_problem(res, 401, "unauthorized").await;
    let res = app
        .request(reqwest::Method::GET, "/api/v1/articles/a/comments", None)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn the_name_claim_is_the_display_name_and_falls_back_to_sub() {
    let app = spawn_app().await;
    let named = sign(
        json!({"sub": "u-1", "name": "Mia", "exp": now() + 60}),
        SECRET,
    );
    let unnamed = sign(json!({"sub": "u-2", "exp": now() + 60}), SECRET);
    let path = "/api/v1/articles/a/comments";
    let a: Value = app
        .post(path, Some(&named), &json!({"body": "hi"}))
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app
        .post(path, Some(&unnamed), &json!({"body": "hello"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["author"], json!({"name": "Mia"}));
    assert_eq!(b["author"], json!({"name": "u-2"}));
}
