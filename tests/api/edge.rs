//! Answers actix-http's dispatcher makes by itself, before any handler (issue 16): an
//! oversized request head (431) and a head that never finishes arriving (408) are
//! problem documents like every other error, checked over raw TCP.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{assert_problem, error_fields, spawn_app, spawn_app_with, TestApp};

/// Sends `bytes` (not necessarily a whole request) and returns everything the server
/// answers until it closes.
async fn raw_exchange(app: &TestApp, bytes: &[u8]) -> String {
    let addr = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer));
    assert!(read.await.is_ok(), "the server never closed the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

fn assert_problem_answer(answer: &str, status: &str, code: &str) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let head = head.to_ascii_lowercase();
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "answer was {answer:?}"
    );
    assert!(
        head.contains("\r\ncontent-type: application/problem+json"),
        "answer was {answer:?}"
    );
    assert!(head.contains("\r\nx-request-id: "), "answer was {answer:?}");
    let problem: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"].to_string(), status, "{problem}");
}

/// A request line for the batch of aggregates naming ids until it is longer than the
/// server reads (128 KiB), cut there: 431 comes before the line ends.
fn oversized_batch_line() -> Vec<u8> {
    let mut line = String::from("GET /api/v1/ratings?article_id=a-0");
    let mut i = 1;
    while line.len() < 131_100 {
        line.push_str(&format!("&article_id=a-{i}"));
        i += 1;
    }
    line.truncate(131_100);
    line.into_bytes()
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_as_a_problem() {
    let app = spawn_app().await;
    let answer = raw_exchange(&app, &oversized_batch_line()).await;
    assert_problem_answer(&answer, "431", "headers_too_large");

    let mut long_header =
        b"GET /api/v1/articles/a-1/rating HTTP/1.1\r\nHost: x\r\nX-Filler: ".to_vec();
    long_header.resize(131_100, b'x');
    let answer = raw_exchange(&app, &long_header).await;
    assert_problem_answer(&answer, "431", "headers_too_large");
}

#[tokio::test]
async fn a_request_head_that_never_finishes_gets_408_as_a_problem() {
    let app = spawn_app_with(|s| s.request_timeout_ms = 300).await;
    let answer = raw_exchange(
        &app,
        b"GET /api/v1/articles/a-1/rating HTTP/1.1\r\nHost: x\r\n",
    )
    .await;
    assert_problem_answer(&answer, "408", "request_timeout");
}

#[tokio::test]
async fn a_malformed_request_head_gets_400_as_a_problem() {
    let app = spawn_app().await;
    let answer = raw_exchange(
        &app,
        b"GET /api/v1/articles/a-1/rating HTTP/1.1\r\nBad Header\r\n\r\n",
    )
    .await;
    assert_problem_answer(&answer, "400", "bad_request");
}

#[tokio::test]
async fn the_batch_of_aggregates_says_how_many_ids_it_takes() {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..101).map(|i| format!("article_id=a-{i}")).collect();
    let res = app
        .get(&format!("/api/v1/ratings?{}", ids.join("&")), None)
        .await;
    let problem = assert_problem(res, 400, "bad_request").await;
    assert_eq!(error_fields(&problem), vec!["article_id"]);
    assert!(
        problem["detail"].as_str().unwrap().contains("1 to 100"),
        "{problem}"
    );
}
