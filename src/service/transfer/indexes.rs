//! Secondary indexes set aside during a large import: dropped in the import's
//! transaction before the rows go in and created again, from the definitions the
//! database itself holds (SQLite's `sqlite_master.sql`, PostgreSQL's
//! `pg_get_indexdef`, i.e. whatever the migrations made), before the recount and
//! the COMMIT. Building an index once over the finished table is several times faster
//! than keeping eleven B-trees up to date row by row, and as the drop is part of the
//! transaction, a failed, `--strict` or `--dry-run` import rolls it back with the rows:
//! the schema is never left without them.
//!
//! Only non-unique indexes are set aside: unique ones (and primary keys) are what
//! `ON CONFLICT DO NOTHING` and the import's own lookups (a parent, a comment of a
//! flag) rely on.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement};

/// The tables a large export fills, whose secondary indexes may be set aside.
pub const TABLES: [&str; 5] = [
    "comments",
    "ratings",
    "flags",
    "comment_votes",
    "moderation_log",
];

/// Indexes dropped by [`set_aside`]: `(table, name, CREATE statement)`.
#[derive(Debug, Default)]
pub struct SetAside {
    defs: Vec<(&'static str, String, String)>,
}

impl SetAside {
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// Creates the indexes again, in the transaction that dropped them.
    pub async fn restore(self, tx: &DatabaseTransaction) -> Result<(), DbErr> {
        if self.defs.is_empty() {
            return Ok(());
        }
        if tx.get_database_backend() == DbBackend::Postgres {
            // Sorting in memory rather than in temporary files (this transaction only).
            tx.execute_unprepared("SET LOCAL maintenance_work_mem = '256MB'")
                .await?;
        }
        let mut tables = vec![];
        for (table, _, sql) in self.defs {
            tx.execute_unprepared(&sql).await?;
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
        if tx.get_database_backend() == DbBackend::Postgres {
            // The planner's statistics of tables that were empty say "empty": without
            // fresh ones the recount's correlated subqueries are planned as scans.
            for table in tables {
                tx.execute_unprepared(&format!("ANALYZE {}", quoted(table)))
                    .await?;
            }
        }
        Ok(())
    }
}

/// Drops the non-unique indexes of each of [`TABLES`] that holds fewer rows than
/// `expected` (the rows the import is likely to add), remembering their definitions.
/// On PostgreSQL only tables that are empty are touched: `DROP INDEX` locks its table
/// against readers until the COMMIT, which a site importing into a table it already
/// serves from should not suffer.
pub async fn set_aside(tx: &DatabaseTransaction, expected: u64) -> Result<SetAside, DbErr> {
    let backend = tx.get_database_backend();
    let mut out = SetAside::default();
    for table in TABLES {
        let rows = row_count(tx, table, expected).await?;
        let worth_it = match backend {
            DbBackend::Postgres => rows == 0 && expected > 0,
            _ => rows < expected,
        };
        if !worth_it {
            continue;
        }
        for (name, sql) in definitions(tx, table).await? {
            tx.execute_unprepared(&format!("DROP INDEX {}", quoted(&name)))
                .await?;
            out.defs.push((table, name, sql));
        }
    }
    Ok(out)
}

/// The table's rows, counted up to `limit` (enough to compare with it).
async fn row_count(tx: &DatabaseTransaction, table: &str, limit: u64) -> Result<u64, DbErr> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM {} LIMIT {}) t",
        quoted(table),
        limit.max(1)
    );
    let row = tx
        .query_one_raw(Statement::from_string(tx.get_database_backend(), sql))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0)
        .max(0) as u64)
}

/// The table's non-unique indexes as the database holds them: `(name, CREATE …)`.
async fn definitions(
    tx: &DatabaseTransaction,
    table: &str,
) -> Result<Vec<(String, String)>, DbErr> {
    let backend = tx.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            // From the catalog by the table's own oid, not through `pg_indexes`: that
            // view computes the definition of other schemas' indexes too, and one being
            // dropped meanwhile fails the query ("could not open relation").
            "SELECT i.relname::text AS name, pg_get_indexdef(i.oid) AS sql \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             WHERE x.indrelid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1)) \
             AND NOT x.indisunique ORDER BY i.relname"
        }
        // Indexes SQLite makes for constraints itself have no `sql`.
        _ => {
            "SELECT name, sql FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL \
             AND upper(sql) NOT LIKE 'CREATE UNIQUE %' ORDER BY name"
        }
    };
    let rows = tx
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await?;
    rows.into_iter()
        .map(|r| Ok((r.try_get("", "name")?, r.try_get("", "sql")?)))
        .collect()
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
