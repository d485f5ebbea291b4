//! Whether the database has every migration this version needs (for `/readyz`).

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DbErr, Statement};

/// The names of this version's migrations the database has not applied, oldest first.
/// Read-only: an unmigrated database has no `seaql_migrations` table (every migration
/// is pending). Migrations the database has and this version does not know (a newer
/// version migrated it, as in a rolling upgrade or a rollback) do not count: they only
/// add.
pub async fn pending_migrations(conn: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    let backend = conn.get_database_backend();
    let exists_sql = match backend {
        sea_orm::DbBackend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'seaql_migrations'"
        }
        _ => "SELECT COUNT(*) AS n FROM information_schema.tables \
              WHERE table_schema = current_schema() AND table_name = 'seaql_migrations'",
    };
    let n: i64 = conn
        .query_one_raw(Statement::from_string(backend, exists_sql))
        .await?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    let applied: Vec<String> = if n == 0 {
        vec![]
    } else {
        conn.query_all_raw(Statement::from_string(
            backend,
            "SELECT version FROM seaql_migrations",
        ))
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<Result<_, _>>()?
    };
    Ok(Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .filter(|name| !applied.contains(name))
        .collect())
}
