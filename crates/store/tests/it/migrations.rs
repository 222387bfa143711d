//! Opening, pragmas and migrations: what both backends share, then what is each one's own.

use std::sync::Arc;

use visitbridge_store::*;

use crate::fixtures::*;

async fn migrations_are_idempotent_and_data_survives_reopening(db: TestDb) {
    let first = db.open().await;
    let version = db.schema_version().await;
    assert_eq!(version, 9);
    let t = with_tenant(&first, "contoso").await;
    drop(first);

    let second = db.open().await;
    assert_eq!(db.schema_version().await, version);
    assert_eq!(
        second.get_tenant(&t).await.unwrap(),
        Some(tenant("contoso"))
    );
    // Two stores open on the same database at once (e.g. two processes) also works.
    let third = db.open().await;
    assert_eq!(third.list_tenants().await.unwrap().len(), 1);
}

crate::on_both_backends!(migrations_are_idempotent_and_data_survives_reopening);

#[tokio::test]
async fn sqlite_file_is_in_wal_mode_with_strict_tables() {
    let db = TestDb::sqlite().await;
    let store = db.store().await;
    with_tenant(&store, "contoso").await;
    let conn = rusqlite::Connection::open(db.url()).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // STRICT: a value of the wrong type is refused rather than stored.
    let err = conn
        .execute(
            "INSERT INTO tenants (id, name, microsoft_tenant_id, created_at) VALUES ('x', 'x', 'y', 'soon')",
            [],
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot store TEXT value in INTEGER column"),
        "{err}"
    );
}

#[tokio::test]
async fn in_memory_store_works_for_unit_tests() {
    let store: AnyStore = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let t = with_tenant(&store, "contoso").await;
    assert!(store.get_tenant(&t).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_starting_together_migrate_once() {
    let db = TestDb::postgres().await;
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url().to_owned();
            tokio::spawn(async move {
                let store =
                    PostgresStore::connect_without_migrating(&url, &PostgresOptions::default())
                        .await
                        .unwrap();
                store.migrate().await
            })
        })
        .collect();
    let mut reports = Vec::new();
    for start in starts {
        reports.push(start.await.unwrap().unwrap());
    }
    // Exactly one start found the empty schema; the others waited and found nothing to do.
    assert_eq!(
        reports.iter().filter(|r| r.from == 0).count(),
        1,
        "{reports:?}"
    );
    assert!(reports.iter().all(|r| r.to == 9), "{reports:?}");
    assert_eq!(db.schema_version().await, 9);
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[tokio::test]
async fn postgres_refuses_a_schema_newer_than_this_release() {
    let db = TestDb::postgres().await;
    drop(db.store().await);
    db.execute_raw(
        "INSERT INTO schema_migrations (version, description, applied_at) VALUES (10, 'future', 0)",
    )
    .await
    .unwrap();
    let err = PostgresStore::connect(db.url(), &PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 10,
                known: 9
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("newer release"), "{err}");
}

#[tokio::test]
async fn postgres_over_tls_verifies_the_server_against_the_named_ca() {
    let server = visitbridge_testpg::shared().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let plain = server.create_database().await.unwrap();
    let database = plain
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .unwrap()
        .to_owned();
    let tls = format!(
        "postgres://{}@localhost:{}/{database}?sslmode=require&sslrootcert={}",
        visitbridge_testpg::SUPERUSER,
        server.port(),
        ca.display()
    );
    let store = PostgresStore::connect(&tls, &PostgresOptions::default())
        .await
        .unwrap();
    let store: AnyStore = Arc::new(store);
    with_tenant(&store, "contoso").await;
    let (client, connection) = tokio_postgres::connect(&plain, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let encrypted: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE s.ssl AND a.application_name = 'visitbridge' AND a.datname = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the store's connection is not encrypted");

    // A CA that did not sign the server's certificate: refused, not silently accepted.
    let other = dir.path().join("other.pem");
    let stranger = visitbridge_testpg::unrelated_ca_pem().unwrap();
    std::fs::write(&other, stranger).unwrap();
    let wrong = tls.replace(&ca.display().to_string(), &other.display().to_string());
    let err = PostgresStore::connect(&wrong, &PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Pool(_) | StoreError::Postgres(_)),
        "{err}"
    );
    // Without naming the CA, the system's roots do not know it: refused as well.
    let downgraded = format!(
        "postgres://{}@localhost:{}/{database}?sslmode=require",
        visitbridge_testpg::SUPERUSER,
        server.port()
    );
    assert!(
        PostgresStore::connect(&downgraded, &PostgresOptions::default())
            .await
            .is_err(),
        "the system roots do not know the test CA: the certificate must be refused"
    );
}
