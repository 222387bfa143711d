//! Sessions.

use serde_json::json;
use visitbridge_store::*;

use crate::fixtures::*;

async fn put_get_replace_delete(db: TestDb) {
    let store = db.store().await;
    assert_eq!(store.get_session("s1", at(0)).await.unwrap(), None);
    store
        .put_session("s1", &json!({"user": "oid-1"}), at(30))
        .await
        .unwrap();
    assert_eq!(
        store.get_session("s1", at(0)).await.unwrap(),
        Some(StoredSession {
            data: json!({"user": "oid-1"}),
            expires_at: at(30)
        })
    );
    store
        .put_session("s1", &json!({"user": "oid-2"}), at(60))
        .await
        .unwrap();
    let s = store.get_session("s1", at(40)).await.unwrap().unwrap();
    assert_eq!(s.data, json!({"user": "oid-2"}));
    assert!(store.delete_session("s1").await.unwrap());
    assert!(!store.delete_session("s1").await.unwrap());
    assert_eq!(store.get_session("s1", at(0)).await.unwrap(), None);
}

async fn expired_sessions_are_not_returned_and_are_purged(db: TestDb) {
    let store = db.store().await;
    store.put_session("old", &json!(1), at(10)).await.unwrap();
    store.put_session("new", &json!(2), at(20)).await.unwrap();
    assert_eq!(store.get_session("old", at(10)).await.unwrap(), None);
    assert!(store.get_session("new", at(10)).await.unwrap().is_some());
    assert_eq!(store.purge_expired_sessions(at(10)).await.unwrap(), 1);
    assert_eq!(store.purge_expired_sessions(at(10)).await.unwrap(), 0);
    assert!(store.get_session("new", at(10)).await.unwrap().is_some());
}

crate::on_both_backends!(
    put_get_replace_delete,
    expired_sessions_are_not_returned_and_are_purged,
);
