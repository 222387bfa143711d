//! Tenants.

use visitbridge_store::*;

use crate::fixtures::*;

async fn tenant_round_trip_and_lookup_by_microsoft_tenant(db: TestDb) {
    let store = db.store().await;
    with_tenant(&store, "contoso").await;
    with_tenant(&store, "fabrikam").await;
    let mid = MicrosoftTenantId::new("fabrikam-entra-tid").unwrap();
    assert_eq!(
        store.tenant_by_microsoft_id(&mid).await.unwrap(),
        Some(tenant("fabrikam"))
    );
    let unknown = MicrosoftTenantId::new("nobody").unwrap();
    assert_eq!(store.tenant_by_microsoft_id(&unknown).await.unwrap(), None);
    let names: Vec<_> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.as_str().to_owned())
        .collect();
    assert_eq!(names, ["contoso", "fabrikam"]);
}

async fn duplicate_tenants_are_refused(db: TestDb) {
    let store = db.store().await;
    with_tenant(&store, "contoso").await;
    let err = store.insert_tenant(&tenant("contoso")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    let mut same_entra = tenant("other");
    same_entra.microsoft_tenant_id = tenant("contoso").microsoft_tenant_id;
    let err = store.insert_tenant(&same_entra).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "a tenant with this id or Microsoft tenant id already exists"
    );
}

crate::on_both_backends!(
    tenant_round_trip_and_lookup_by_microsoft_tenant,
    duplicate_tenants_are_refused,
);
