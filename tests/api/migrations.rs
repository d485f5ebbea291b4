//! Several instances starting at once on one fresh database (a deployment's replicas,
//! a restart overlapping the old process): one applies the migrations, the others wait
//! for it and find nothing pending.

use futures_util::future::join_all;
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, Statement};
use tally::service::write::db::Db;

use crate::helpers::{test_settings, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_migrating_one_fresh_database_at_once_all_succeed() {
    let database = TestDb::fresh().await;
    let mut settings = test_settings();
    settings.database_url = database.url.clone();
    // Separate pools, as separate processes would have.
    let mut dbs = vec![];
    for _ in 0..4 {
        dbs.push(Db::connect(&settings).await.unwrap());
    }
    let results = join_all(dbs.iter().map(|db| async move {
        let started = tokio::task::spawn({
            let db = db.clone();
            async move { db.migrate().await }
        });
        started.await.unwrap()
    }))
    .await;
    for r in &results {
        assert!(r.is_ok(), "a concurrent migration failed: {r:?}");
    }
    let backend = dbs[0].backend();
    let applied = dbs[0]
        .conn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(
        applied,
        migration::Migrator::migrations().len() as i64,
        "each migration recorded once"
    );
    // And the schema works: a later start finds nothing to do.
    dbs[0].migrate().await.unwrap();
}
