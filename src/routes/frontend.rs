//! The front ends tally serves itself: the embeddable widget (`/widget/tally.js`) and the
//! moderation console (`/console/`). Their sources are in `web/`; the built files are
//! committed under `web/dist/` and compiled into the binary, so no Node.js is needed to
//! build or run tally.

use std::sync::OnceLock;

use actix_web::{
    http::header::{self, HeaderValue},
    HttpRequest, HttpResponse,
};
use sha2::{Digest, Sha256};

/// The widget: an ES module defining `<tally-rating>`, and `<tally-comments>` by loading
/// [`THREAD_JS`] when a page has one.
pub const WIDGET_JS: &[u8] = include_bytes!("../../web/dist/tally.js");
/// The thread's element (`<tally-comments>`), imported by the widget on demand.
pub const THREAD_JS: &[u8] = include_bytes!("../../web/dist/tally-comments.js");
/// The console: one self-contained HTML page (its script and style inlined).
pub const CONSOLE_HTML: &[u8] = include_bytes!("../../web/dist/console.html");

/// A strong validator for an embedded file: the start of its SHA-256, in quotes.
fn etag_of(bytes: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"w\""))
}

/// Whether `If-None-Match` names the current tag (or `*`).
fn not_modified(req: &HttpRequest, tag: &HeaderValue) -> bool {
    let tag = tag.as_bytes();
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/").as_bytes())
        .any(|t| t == tag || t == b"*")
}

#[utoipa::path(
    get,
    path = "/widget/tally.js",
    tag = "front ends",
    params(
        ("If-None-Match" = Option<String>, Header, description = "A tag from an earlier answer: 304 when it is still current."),
    ),
    responses(
        (status = 200, description = "The widget, an ES module defining `<tally-rating>` and `<tally-comments>`.",
            content_type = "text/javascript; charset=utf-8", body = String,
            headers(
                ("ETag" = String, description = "Strong validator of the script."),
                ("Cache-Control" = String, description = "`public, max-age=300`."),
            )),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current.",
            headers(
                ("ETag" = String, description = "Strong validator of the script."),
                ("Cache-Control" = String, description = "`public, max-age=300`."),
            )),
    ),
)]
/// `GET /widget/tally.js`: the embeddable widget, an ES module.
pub async fn widget(req: HttpRequest) -> HttpResponse {
    static TAG: OnceLock<HeaderValue> = OnceLock::new();
    script(&req, WIDGET_JS, TAG.get_or_init(|| etag_of(WIDGET_JS)))
}

#[utoipa::path(
    get,
    path = "/widget/tally-comments.js",
    tag = "front ends",
    params(
        ("If-None-Match" = Option<String>, Header, description = "A tag from an earlier answer: 304 when it is still current."),
    ),
    responses(
        (status = 200, description = "The thread's element `<tally-comments>`, an ES module that `/widget/tally.js` imports when a page has one.",
            content_type = "text/javascript; charset=utf-8", body = String,
            headers(
                ("ETag" = String, description = "Strong validator of the script."),
                ("Cache-Control" = String, description = "`public, max-age=300`."),
            )),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current.",
            headers(
                ("ETag" = String, description = "Strong validator of the script."),
                ("Cache-Control" = String, description = "`public, max-age=300`."),
            )),
    ),
)]
/// `GET /widget/tally-comments.js`: the thread's element, loaded by the widget on demand.
pub async fn widget_thread(req: HttpRequest) -> HttpResponse {
    static TAG: OnceLock<HeaderValue> = OnceLock::new();
    script(&req, THREAD_JS, TAG.get_or_init(|| etag_of(THREAD_JS)))
}

/// A script with its tag and five minutes of caching; 304 when the caller has it.
fn script(req: &HttpRequest, body: &'static [u8], tag: &HeaderValue) -> HttpResponse {
    let fresh = not_modified(req, tag);
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, tag.clone()))
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        return res.finish();
    }
    res.insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .body(body)
}

#[utoipa::path(
    get,
    path = "/console/",
    tag = "front ends",
    responses(
        (status = 200, description = "The moderation console, an HTML page. It asks for a moderator token \
            (or takes one from the URL fragment `#token=…`) and keeps it in `sessionStorage` only.",
            content_type = "text/html", body = String),
    ),
)]
/// `GET /console/`: the moderation console.
pub async fn console() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(CONSOLE_HTML)
}
