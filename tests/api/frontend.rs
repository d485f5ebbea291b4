//! The front ends tally serves: the widget script and the moderation console.

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_widget_is_a_cacheable_module_with_a_strong_etag() {
    let app = spawn_app().await;
    for (path, defines) in [
        ("/widget/tally.js", "tally-rating"),
        ("/widget/tally-comments.js", "tally-comments"),
    ] {
        a_cacheable_module(&app, path, defines).await;
    }
}

async fn a_cacheable_module(app: &crate::helpers::TestApp, path: &str, defines: &str) {
    let res = app.get(path, None).await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(h["cache-control"], "public, max-age=300");
    let tag = h["etag"].to_str().unwrap().to_owned();
    assert!(tag.starts_with('"') && tag.ends_with('"'), "strong: {tag}");
    let body = res.text().await.unwrap();
    assert!(body.contains(defines), "{path} defines {defines}");

    let again = app
        .request(reqwest::Method::GET, path, None)
        .header("If-None-Match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), tag);
    assert!(again.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_console_is_an_html_page() {
    let app = spawn_app().await;
    let res = app.get("/console/", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(res.text().await.unwrap().contains("tally moderation"));
}
