//! Concurrent writers: many tasks, and two stores on one file (as two processes would be).

use serde_json::json;
use visitbridge_approval::{EhrUserId, Environment};
use visitbridge_store::*;

use crate::fixtures::*;

async fn concurrent_writes_do_not_fail_with_busy(db: TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    let t = with_tenant(&a, "contoso").await;

    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let key = format!("k-{task}-{i}");
                store.put_pending(&key, "launch", &json!(i), at(60)).await?;
                store.put_session(&key, &json!({ "i": i }), at(60)).await?;
                let link = UserLink {
                    ehr_issuer: url(URL),
                    ehr_user_id: EhrUserId::new(format!("Practitioner/{task}")).unwrap(),
                    microsoft_tenant_id: MicrosoftTenantId::new("tid").unwrap(),
                    microsoft_object_id: MicrosoftObjectId::new(format!("oid-{i}")).unwrap(),
                    linked_at: at(i),
                };
                store.upsert_user_link(&link).await?;
                // Reads interleave with writes.
                store.get_session(&key, at(0)).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    // Configuration transitions at the same time.
    let configs = {
        let store = b.clone();
        tokio::spawn(async move {
            for n in 0..5 {
                let fhir = format!("https://ehr{n}.example.org/api/FHIR/R4");
                let config = create(
                    &store,
                    &t,
                    &format!("cfg-{n}"),
                    &fhir,
                    Environment::Production,
                )
                .await;
                approve(&store, config).await;
            }
            store.list_configurations(&t).await
        })
    };
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let configs = configs.await.unwrap().unwrap();
    assert_eq!(configs.len(), 5);
    assert!(configs.iter().all(|c| c.approved().is_some()));
    assert_eq!(a.purge_expired_pending(at(61)).await.unwrap(), 200);
    assert_eq!(b.purge_expired_sessions(at(61)).await.unwrap(), 200);
}

crate::on_both_backends!(concurrent_writes_do_not_fail_with_busy,);
