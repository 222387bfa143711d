//! Opening, pragmas and migrations.

use visitbridge_store::*;

use crate::fixtures::*;

#[tokio::test]
async fn migrations_are_idempotent_and_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vb.sqlite");
    let first = SqliteStore::open(&path).await.unwrap();
    let version = first.schema_version().await.unwrap();
    assert!(version >= 1);
    let t = with_tenant(&first, "contoso").await;
    drop(first);

    let second = SqliteStore::open(&path).await.unwrap();
    assert_eq!(second.schema_version().await.unwrap(), version);
    assert_eq!(
        second.get_tenant(&t).await.unwrap(),
        Some(tenant("contoso"))
    );
    // Two stores open on the same file at once (e.g. two processes) also works.
    let third = SqliteStore::open(&path).await.unwrap();
    assert_eq!(third.list_tenants().await.unwrap().len(), 1);
}

#[tokio::test]
async fn file_is_in_wal_mode_with_strict_tables() {
    let (store, dir) = store().await;
    with_tenant(&store, "contoso").await;
    let conn = rusqlite::Connection::open(dir.path().join("vb.sqlite")).unwrap();
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
    let store = SqliteStore::open_in_memory().await.unwrap();
    let t = with_tenant(&store, "contoso").await;
    assert!(store.get_tenant(&t).await.unwrap().is_some());
}
