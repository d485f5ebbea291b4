//! Administration: the moderation policy and article registration.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use validator::{Validate, ValidationErrors};

use super::json::ApiJson;
use super::moderation::created_or_ok;
use super::paths::ArticleIdPath;
use super::spec::{
    ArticlePath, BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    ValidationFailed,
};
use crate::{
    auth::Admin,
    domain::{ModerationMode, Policy},
    error::ApiError,
    service::admin::{self, AdminArticleView, ArticleSettings},
    state::AppState,
};

/// The settings document. Unknown and missing fields are refused by serde (422 naming
/// them); value rules are `Policy::validate`, applied by the service so that list
/// entries are named with their index (`banned_words[3]`).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct SettingsBody(pub Policy);

impl Validate for SettingsBody {
    fn validate(&self) -> Result<(), ValidationErrors> {
        Ok(())
    }
}

/// `GET /api/v1/admin/settings`: the moderation policy.
#[utoipa::path(
    get,
    path = "/api/v1/admin/settings",
    tag = "admin",
    operation_id = "get_settings",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The policy in force.", body = Policy),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn get_settings(state: web::Data<AppState>, _: Admin) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(admin::settings(&state.db, &state.policies).await?))
}

/// `PUT /api/v1/admin/settings`: replaces the whole policy; 200 with what is stored.
///
/// Every field is required; unknown or missing fields and out-of-range values are 422
/// naming the field (list entries by index, `banned_words[3]`). The change is logged.
#[utoipa::path(
    put,
    path = "/api/v1/admin/settings",
    tag = "admin",
    operation_id = "put_settings",
    request_body = Policy,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The policy as now stored.", body = Policy),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn put_settings(
    state: web::Data<AppState>,
    Admin(user): Admin,
    ApiJson(SettingsBody(policy)): ApiJson<SettingsBody>,
) -> Result<HttpResponse, ApiError> {
    // The external hook's address is resolved and checked here, with the other rules'
    // findings, so one 422 names every field at fault.
    let mut errors = policy.validate().err().unwrap_or_default();
    if let Some(url) = &policy.external_moderation_url {
        let allow_private = state.settings.webhook_allow_private;
        if let Err(e) =
            crate::outbound::check_url("external_moderation_url", url, allow_private).await
        {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let stored = admin::put_settings(&state.db, &state.policies, &user, policy).await?;
    Ok(HttpResponse::Ok().json(stored))
}

/// What an admin says about an article.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(as = ArticleSettings, example = json!({"title": "Why your back cracks",
    "url": "https://example.com/why-back-cracks", "comments_open": true, "moderation_mode": null}))]
pub struct ArticleBody {
    #[validate(length(min = 1, max = 300, message = "must be 1–300 characters"))]
    #[schema(min_length = 1, max_length = 300)]
    pub title: Option<String>,
    /// An `http://` or `https://` URL without whitespace.
    #[validate(
        length(max = 2000, message = "must be at most 2000 characters"),
        custom(function = "web_url")
    )]
    #[schema(max_length = 2000, pattern = r"^https?://\S*$")]
    pub url: Option<String>,
    /// Absent means open.
    #[serde(default = "open")]
    #[schema(default = true)]
    pub comments_open: bool,
    /// `null` (or absent) follows the site setting.
    pub moderation_mode: Option<ModerationMode>,
}

fn open() -> bool {
    true
}

fn web_url(url: &str) -> Result<(), validator::ValidationError> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(validator::ValidationError::new("url")
            .with_message("must be an http:// or https:// URL".into()))
    }
}

/// `PUT /api/v1/admin/articles/{article_id}`: registers (201) or updates (200) an article.
///
/// Works also when automatic article creation is off.
#[utoipa::path(
    put,
    path = "/api/v1/admin/articles/{article_id}",
    tag = "admin",
    operation_id = "put_article",
    params(ArticlePath),
    request_body = ArticleBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The article, updated.", body = AdminArticleView),
        (status = 201, description = "The article, registered.", body = AdminArticleView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn put_article(
    state: web::Data<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<ArticleBody>,
    ArticleIdPath(id): ArticleIdPath,
) -> Result<HttpResponse, ApiError> {
    let settings = ArticleSettings {
        title: body.title.map(|t| t.trim().to_owned()),
        url: body.url,
        comments_open: body.comments_open,
        moderation_mode: body.moderation_mode,
    };
    let (view, created) = admin::put_article(&state.db, &id, settings).await?;
    Ok(created_or_ok(created).json(view))
}
