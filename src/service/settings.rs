//! The moderation policy, stored in the database so every instance sees the same one.
//! Each instance keeps it for [`POLICY_FRESH_FOR`] (a write reads it at every comment
//! otherwise) with its compiled form (word automata), rebuilt only when the stored
//! document changes.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    time::{Duration, Instant},
};

use sea_orm::{sea_query::OnConflict, ActiveValue::Set, ConnectionTrait, EntityTrait};

use crate::{
    domain::{CompiledPolicy, Policy},
    entity::setting,
    error::ApiError,
};

const KEY: &str = "moderation";

/// How long a policy read from the database is used without reading it again. A change
/// made through any instance applies at once: its `SettingsChanged` event invalidates
/// the copy (`service::write::events`); this bound only covers a row changed behind tally's
/// back.
pub const POLICY_FRESH_FOR: Duration = Duration::from_secs(60);

/// Cloning is cheap and shares the cache (group-committed writes own a clone).
#[derive(Default, Clone)]
pub struct PolicyCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cached: RwLock<Option<Cached>>,
    /// Bumped by `invalidate`; a read that began before cannot store what it read.
    generation: AtomicU64,
    /// The learned spam model, scored in the same pipeline (`service::spam`).
    spam: super::spam::SpamCache,
}

/// The stored document, its compiled form, and when the read that found it began
/// (`None` once invalidated: the compiled form is kept only for reuse).
struct Cached {
    raw: String,
    compiled: Arc<CompiledPolicy>,
    read_at: Option<Instant>,
}

impl PolicyCache {
    /// This instance's copy of the learned spam model.
    pub fn spam(&self) -> &super::spam::SpamCache {
        &self.inner.spam
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<Cached>> {
        self.inner.cached.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Cached>> {
        self.inner.cached.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The current policy (defaults when none was ever stored): the cached one while
    /// fresh (see [`POLICY_FRESH_FOR`]), else read from the database. The compiled form
    /// (word automata) is rebuilt only when the stored document changed.
    pub async fn get(&self, conn: &impl ConnectionTrait) -> Result<Arc<CompiledPolicy>, ApiError> {
        if let Some(c) = &*self.read() {
            if c.read_at.is_some_and(|t| t.elapsed() < POLICY_FRESH_FOR) {
                return Ok(c.compiled.clone());
            }
        }
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let read_at = Instant::now();
        let raw = setting::Entity::find_by_id(KEY)
            .one(conn)
            .await?
            .map(|m| m.value)
            .unwrap_or_default();
        let known = match &*self.read() {
            Some(c) if c.raw == raw => Some(c.compiled.clone()),
            _ => None,
        };
        let compiled = match known {
            Some(compiled) => compiled,
            None => {
                let policy = if raw.is_empty() {
                    Policy::default()
                } else {
                    serde_json::from_str(&raw).map_err(|e| {
                        ApiError::Internal(format!("stored settings unreadable: {e}"))
                    })?
                };
                Arc::new(CompiledPolicy::new(policy))
            }
        };
        let mut cached = self.write();
        if self.inner.generation.load(Ordering::SeqCst) == generation {
            *cached = Some(Cached {
                raw,
                compiled: compiled.clone(),
                read_at: Some(read_at),
            });
        }
        Ok(compiled)
    }

    /// Call after committing a change of the stored policy: the next `get` reads it.
    pub fn invalidate(&self) {
        let mut cached = self.write();
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(c) = cached.as_mut() {
            c.read_at = None;
        }
    }

    /// Replaces the stored policy (already validated).
    pub async fn put(&self, conn: &impl ConnectionTrait, policy: &Policy) -> Result<(), ApiError> {
        let value = serde_json::to_string(policy).map_err(|e| ApiError::Internal(e.to_string()))?;
        let row = setting::ActiveModel {
            key: Set(KEY.into()),
            value: Set(value),
            updated_at: Set(super::now()),
        };
        setting::Entity::insert(row)
            .on_conflict(
                OnConflict::column(setting::Column::Key)
                    .update_columns([setting::Column::Value, setting::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }
}
