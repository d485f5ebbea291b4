//! The moderation policy, stored in the database so every instance sees the same one.
//! Each instance keeps the compiled form (word automata) and rebuilds it only when the
//! stored document changes.

use std::sync::{Arc, RwLock};

use sea_orm::{sea_query::OnConflict, ActiveValue::Set, ConnectionTrait, EntityTrait};

use crate::{
    domain::{CompiledPolicy, Policy},
    entity::setting,
    error::ApiError,
};

const KEY: &str = "moderation";

/// The stored document and its compiled form.
type Cached = Option<(String, Arc<CompiledPolicy>)>;

/// Cloning is cheap and shares the cache (group-committed writes own a clone).
#[derive(Default, Clone)]
pub struct PolicyCache {
    compiled: Arc<RwLock<Cached>>,
}

impl PolicyCache {
    /// The current policy (defaults when none was ever stored).
    pub async fn get(&self, conn: &impl ConnectionTrait) -> Result<Arc<CompiledPolicy>, ApiError> {
        let raw = setting::Entity::find_by_id(KEY)
            .one(conn)
            .await?
            .map(|m| m.value)
            .unwrap_or_default();
        if let Some((cached_raw, compiled)) =
            &*self.compiled.read().unwrap_or_else(|e| e.into_inner())
        {
            if *cached_raw == raw {
                return Ok(compiled.clone());
            }
        }
        let policy = if raw.is_empty() {
            Policy::default()
        } else {
            serde_json::from_str(&raw)
                .map_err(|e| ApiError::Internal(format!("stored settings unreadable: {e}")))?
        };
        let compiled = Arc::new(CompiledPolicy::new(policy));
        *self.compiled.write().unwrap_or_else(|e| e.into_inner()) = Some((raw, compiled.clone()));
        Ok(compiled)
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
