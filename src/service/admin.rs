//! Administration: the site's moderation policy and article registration.

use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;

use super::{
    articles::{self, ArticleSummary},
    moderation::log::{append_log, LogEntry},
    settings::PolicyCache,
    write::db::Db,
};
use crate::{
    auth::User,
    domain::{ArticleId, ModerationMode, Policy},
    entity::article,
    error::ApiError,
};

/// The stored policy (the defaults until an admin saves one).
pub async fn settings(db: &Db, policies: &PolicyCache) -> Result<Policy, ApiError> {
    Ok(policies.get(&db.conn).await?.policy.clone())
}

/// Replaces the whole policy after checking every field (422 naming each bad one), logs
/// the change, and returns what is now stored.
pub async fn put_settings(
    db: &Db,
    policies: &PolicyCache,
    admin: &User,
    policy: Policy,
) -> Result<Policy, ApiError> {
    policy.validate().map_err(ApiError::Validation)?;
    put_settings_once(db, policies, admin, &policy).await?;
    settings(db, policies).await
}

async fn put_settings_once(
    db: &Db,
    policies: &PolicyCache,
    admin: &User,
    policy: &Policy,
) -> Result<(), ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    policies.put(tx, policy).await?;
    append_log(
        &mut w,
        LogEntry {
            actor_id: &admin.id,
            actor_name: &admin.name,
            action: "settings",
            comment_id: None,
            subject_user_id: None,
            from_status: None,
            to_status: None,
            reason: Some("moderation settings replaced".into()),
        },
    )
    .await?;
    // The policy caches invalidate from this event (see `events`).
    w.record(super::write::events::Event::SettingsChanged {
        actor_id: admin.id.clone(),
    });
    wtx.commit().await?;
    Ok(())
}

/// What an admin says about an article (`PUT /admin/articles/{id}`).
#[derive(Debug, Clone)]
pub struct ArticleSettings {
    pub title: Option<String>,
    pub url: Option<String>,
    pub comments_open: bool,
    /// `None` follows the site's mode.
    pub moderation_mode: Option<ModerationMode>,
}

/// The public summary plus what only admins set.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AdminArticle)]
pub struct AdminArticleView {
    #[serde(flatten)]
    pub summary: ArticleSummary,
    /// `null` follows the site's mode.
    #[schema(required = true)]
    pub moderation_mode: Option<ModerationMode>,
    pub registered: bool,
}

/// Registers or updates an article (created even when automatic creation is off).
/// Returns its view and whether it was created.
pub async fn put_article(
    db: &Db,
    id: &ArticleId,
    s: ArticleSettings,
) -> Result<(AdminArticleView, bool), ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    let created = articles::find(tx, id).await?.is_none();
    articles::for_write(tx, id, true).await?;
    article::Entity::update_many()
        .col_expr(article::Column::Title, Expr::value(s.title))
        .col_expr(article::Column::Url, Expr::value(s.url))
        .col_expr(article::Column::CommentsOpen, Expr::value(s.comments_open))
        .col_expr(
            article::Column::ModerationMode,
            Expr::value(s.moderation_mode.map(ModerationMode::as_str)),
        )
        .col_expr(article::Column::Registered, Expr::value(true))
        .col_expr(article::Column::UpdatedAt, Expr::value(super::now()))
        .filter(article::Column::Id.eq(id.as_str()))
        .exec(tx)
        .await?;
    let summary = articles::summary(tx, id, true).await?;
    w.record(super::write::events::Event::ArticleRegistered {
        article_id: id.to_string(),
    });
    wtx.commit().await?;
    Ok((
        AdminArticleView {
            summary,
            moderation_mode: s.moderation_mode,
            registered: true,
        },
        created,
    ))
}
