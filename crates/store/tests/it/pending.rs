//! Single-use pending items.

use serde_json::json;
use visitbridge_store::*;

use crate::fixtures::*;

async fn take_is_single_use(db: TestDb) {
    let store = db.store().await;
    let payload = json!({ "iss": URL, "code_verifier_ref": "v1" });
    store
        .put_pending("k1", "launch", &payload, at(10))
        .await
        .unwrap();
    assert_eq!(
        store.take_pending("k1", "launch", at(1)).await.unwrap(),
        Some(payload)
    );
    assert_eq!(
        store.take_pending("k1", "launch", at(1)).await.unwrap(),
        None
    );
}

async fn expired_items_are_refused_and_removed(db: TestDb) {
    let store = db.store().await;
    store
        .put_pending("k1", "launch", &json!(1), at(10))
        .await
        .unwrap();
    assert_eq!(
        store.take_pending("k1", "launch", at(10)).await.unwrap(),
        None
    );
    // Refused and gone: a later clock skew cannot revive it.
    assert_eq!(
        store.take_pending("k1", "launch", at(0)).await.unwrap(),
        None
    );
}

async fn kind_must_match(db: TestDb) {
    let store = db.store().await;
    store
        .put_pending("k1", "portal-signin", &json!(1), at(10))
        .await
        .unwrap();
    assert_eq!(
        store.take_pending("k1", "launch", at(0)).await.unwrap(),
        None
    );
    // A wrong-kind take does not consume the item.
    assert_eq!(
        store
            .take_pending("k1", "portal-signin", at(0))
            .await
            .unwrap(),
        Some(json!(1))
    );
}

async fn duplicate_keys_are_refused(db: TestDb) {
    let store = db.store().await;
    store
        .put_pending("k1", "launch", &json!(1), at(10))
        .await
        .unwrap();
    let err = store
        .put_pending("k1", "launch", &json!(2), at(10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert!(matches!(
        store.put_pending("", "launch", &json!(1), at(10)).await,
        Err(StoreError::InvalidRecord(_))
    ));
}

async fn purge_removes_only_expired_items(db: TestDb) {
    let store = db.store().await;
    store
        .put_pending("old", "launch", &json!(1), at(5))
        .await
        .unwrap();
    store
        .put_pending("new", "launch", &json!(2), at(15))
        .await
        .unwrap();
    assert_eq!(store.purge_expired_pending(at(10)).await.unwrap(), 1);
    assert_eq!(
        store.take_pending("new", "launch", at(10)).await.unwrap(),
        Some(json!(2))
    );
}

async fn concurrent_takes_yield_the_item_once(db: TestDb) {
    let store = db.store().await;
    store
        .put_pending("k", "launch", &json!("x"), at(10))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_pending("k", "launch", at(0)).await.unwrap() })
        })
        .collect();
    let mut got = 0;
    for task in tasks {
        if task.await.unwrap().is_some() {
            got += 1;
        }
    }
    assert_eq!(got, 1);
}

async fn has_pending_looks_without_taking(db: TestDb) {
    let store = db.store().await;
    store
        .put_pending("k1", "used", &json!({}), at(10))
        .await
        .unwrap();
    assert!(store.has_pending("k1", "used", at(1)).await.unwrap());
    assert!(
        store.has_pending("k1", "used", at(1)).await.unwrap(),
        "still there"
    );
    assert!(!store.has_pending("k1", "other", at(1)).await.unwrap());
    assert!(!store.has_pending("k2", "used", at(1)).await.unwrap());
    assert!(
        !store.has_pending("k1", "used", at(10)).await.unwrap(),
        "expired"
    );
}

crate::on_both_backends!(
    take_is_single_use,
    expired_items_are_refused_and_removed,
    kind_must_match,
    duplicate_keys_are_refused,
    purge_removes_only_expired_items,
    concurrent_takes_yield_the_item_once,
    has_pending_looks_without_taking,
);
