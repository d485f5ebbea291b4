//! What every request can reach: [`AppState`], built by `startup`.

use std::sync::Arc;

use actix_web::{web, HttpRequest};

use crate::{
    config::Settings,
    error::ApiError,
    rate_limit::WriteLimiter,
    routes::cached::{CachedAggregate, SharedPage},
    service::{
        aggregate_cache::AggregateCache, page_overlay::Overlay, settings::PolicyCache,
        top::TopCache, write::db::Db,
    },
};

/// What every request can reach. Cloning shares everything in it: each worker gets its
/// own clone (its own `web::Data`), so extracting the state on one core never writes
/// to a reference count that the other cores' requests write too.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub policies: PolicyCache,
    pub settings: Arc<Settings>,
    /// `None` when `write_rate_per_min` is 0.
    pub write_limiter: Option<Arc<WriteLimiter>>,
    /// Rating aggregates ready to send; every rating write invalidates its article's.
    pub aggregates: Arc<AggregateCache<CachedAggregate>>,
    /// Bodies of `GET /api/v1/ratings` batches, keyed by the aggregates' version.
    pub pages: Arc<AggregateCache<web::Bytes>>,
    /// Comment-list pages as anonymous readers get them, keyed by the database's write
    /// epoch (see `Db::write_epoch`), so any committed write retires them all; a
    /// signed-in reader's page is composed from one of them and their overlay.
    pub comment_pages: Arc<AggregateCache<SharedPage>>,
    /// Each signed-in reader's own pending comments (`service::page_overlay`), keyed
    /// by the write epoch like the pages.
    pub overlays: Arc<AggregateCache<Overlay>>,
    /// `GET /api/v1/ratings/top` answers, kept up to a minute.
    pub top: Arc<TopCache>,
    /// The external moderation hook's client (`service::external`).
    pub external: crate::service::external::screen::ExternalHook,
    /// The outbound HTTP client (webhooks, the external hook), address rule built in.
    pub outbound: crate::outbound::Outbound,
}

/// The application state, for a handler that takes only the request.
pub fn app_state(req: &HttpRequest) -> Result<&AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|data| data.get_ref())
        .ok_or_else(|| ApiError::Internal("no application state in this app".into()))
}
