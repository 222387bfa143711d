//! EHR user ↔ Microsoft user links.

use visitbridge_approval::EhrUserId;
use visitbridge_store::*;

use crate::fixtures::*;

fn link(object: &str, minutes: i64) -> UserLink {
    UserLink {
        ehr_issuer: url(URL),
        ehr_user_id: EhrUserId::new("Practitioner/abc").unwrap(),
        microsoft_tenant_id: MicrosoftTenantId::new("tid-1").unwrap(),
        microsoft_object_id: MicrosoftObjectId::new(object).unwrap(),
        linked_at: at(minutes),
    }
}

async fn upsert_get_and_delete(db: TestDb) {
    let store = db.store().await;
    let first = link("oid-1", 0);
    let user = first.ehr_user_id.clone();
    assert_eq!(store.get_user_link(&url(URL), &user).await.unwrap(), None);
    store.upsert_user_link(&first).await.unwrap();
    assert_eq!(
        store.get_user_link(&url(URL), &user).await.unwrap(),
        Some(first)
    );

    // Re-linking replaces the Microsoft user.
    let second = link("oid-2", 5);
    store.upsert_user_link(&second).await.unwrap();
    assert_eq!(
        store.get_user_link(&url(URL), &user).await.unwrap(),
        Some(second)
    );

    // The same EHR user id at another EHR is another person.
    assert_eq!(
        store.get_user_link(&url(TEST_URL), &user).await.unwrap(),
        None
    );

    assert!(store.delete_user_link(&url(URL), &user).await.unwrap());
    assert!(!store.delete_user_link(&url(URL), &user).await.unwrap());
    assert_eq!(store.get_user_link(&url(URL), &user).await.unwrap(), None);
}

crate::on_both_backends!(upsert_get_and_delete,);
