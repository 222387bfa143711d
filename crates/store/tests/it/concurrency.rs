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

/// 64 launches of one known visit at once (one clinician, a busy moment): each reads the visit,
/// none fails, none writes — a launch that has nothing to fill in leaves the row alone, so on
/// PostgreSQL their serializable transactions do not conflict (they did while each one updated
/// the row: under 64 launches at once the retries ran out and the callback failed).
async fn concurrent_upserts_of_a_known_visit_read_it_and_write_nothing(db: TestDb) {
    let (store, cfg) = crate::visits::store_with_configuration(&db).await;
    let known = Visit {
        graph_meeting_id: Some("meeting-1".into()),
        conference_id: Some("1234567".into()),
        ..crate::visits::visit("v-1", &cfg, "vb-known")
    };
    let stored = store.upsert_visit(&known).await.unwrap();
    // From now on any update of a visit row fails: the launches must only read it.
    match db.backend {
        crate::fixtures::Backend::Sqlite => {
            db.execute_raw(
                "CREATE TRIGGER visits_read_only BEFORE UPDATE ON visits
                 BEGIN SELECT RAISE(ABORT, 'a known visit was written'); END",
            )
            .await
            .unwrap();
        }
        crate::fixtures::Backend::Postgres => {
            db.execute_raw(
                "CREATE FUNCTION visits_read_only() RETURNS trigger AS $$
                 BEGIN RAISE EXCEPTION 'a known visit was written'; END $$ LANGUAGE plpgsql",
            )
            .await
            .unwrap();
            db.execute_raw(
                "CREATE TRIGGER visits_read_only BEFORE UPDATE ON visits
                 FOR EACH ROW EXECUTE FUNCTION visits_read_only()",
            )
            .await
            .unwrap();
        }
    }
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            // Each launch proposes its own id; the stored visit is what they all get.
            let mut again = known.clone();
            again.id = VisitId::new(format!("v-launch-{n}")).unwrap();
            tokio::spawn(async move { store.upsert_visit(&again).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), stored);
    }
}

crate::on_both_backends!(
    concurrent_writes_do_not_fail_with_busy,
    concurrent_upserts_of_a_known_visit_read_it_and_write_nothing,
);
