//! What the launch service keeps on a visit's row to survive a restart: its Graph subscription,
//! the patient's join URL, and the scheduled reconciliation with the attendance report.

use std::time::Duration;

use visitbridge_store::*;

use crate::{
    fixtures::*,
    visits::{store_with_configuration, visit},
};

fn sub(id: &str) -> GraphSubscriptionId {
    GraphSubscriptionId::new(id).unwrap()
}

fn vid(id: &str) -> VisitId {
    VisitId::new(id).unwrap()
}

async fn subscriptions_are_set_once_renewed_found_listed_when_due_and_cleared(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    for (id, key) in [("v-1", "vb-1"), ("v-2", "vb-2"), ("v-3", "vb-3")] {
        store.upsert_visit(&visit(id, &cfg, key)).await.unwrap();
    }
    let v1 = vid("v-1");
    assert_eq!(store.subscription_of(&v1).await.unwrap(), None);

    assert!(
        store
            .set_subscription(&v1, &sub("s-1"), at(60), None)
            .await
            .unwrap()
    );
    // A second replica that subscribed too loses the compare-and-set (and deletes its own).
    assert!(
        !store
            .set_subscription(&v1, &sub("s-other"), at(60), None)
            .await
            .unwrap()
    );
    // Renewal: the same subscription replaces itself with a later expiry.
    assert!(
        store
            .set_subscription(&v1, &sub("s-1"), at(720), Some(&sub("s-1")))
            .await
            .unwrap()
    );
    assert_eq!(
        store.subscription_of(&v1).await.unwrap(),
        Some(VisitSubscription {
            visit_id: v1.clone(),
            subscription_id: sub("s-1"),
            expires_at: at(720),
        })
    );
    // One subscription leads to one visit.
    assert!(matches!(
        store
            .set_subscription(&vid("v-2"), &sub("s-1"), at(60), None)
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store
            .set_subscription(&vid("v-missing"), &sub("s-9"), at(60), None)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .set_subscription(&vid("v-2"), &sub("s-2"), at(30), None)
            .await
            .unwrap()
    );
    assert!(
        store
            .set_subscription(&vid("v-3"), &sub("s-3"), at(90), None)
            .await
            .unwrap()
    );

    let found = store.visit_by_subscription(&sub("s-2")).await.unwrap();
    assert_eq!(found.map(|v| v.id), Some(vid("v-2")));
    assert_eq!(
        store
            .visit_by_subscription(&sub("s-unknown"))
            .await
            .unwrap(),
        None
    );

    // Due by at(90): v-2 then v-3, soonest first; v-1 (at 720) is not due yet.
    let due: Vec<String> = store
        .subscriptions_due(at(90), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.subscription_id.to_string())
        .collect();
    assert_eq!(due, ["s-2", "s-3"]);
    assert_eq!(store.subscriptions_due(at(90), 1).await.unwrap().len(), 1);

    // Clearing another subscription than the stored one changes nothing.
    assert_eq!(
        store
            .clear_subscription(&vid("v-2"), Some(&sub("s-old")))
            .await
            .unwrap(),
        None
    );
    let cleared = store.clear_subscription(&vid("v-2"), None).await.unwrap();
    assert_eq!(cleared.map(|s| s.subscription_id), Some(sub("s-2")));
    // The second of two call-end handlers gets nothing to delete.
    assert_eq!(
        store.clear_subscription(&vid("v-2"), None).await.unwrap(),
        None
    );
    assert_eq!(
        store.visit_by_subscription(&sub("s-2")).await.unwrap(),
        None
    );
    // A renewal finishing after the removal does not bring the subscription back.
    assert!(
        !store
            .set_subscription(&vid("v-2"), &sub("s-2"), at(800), Some(&sub("s-2")))
            .await
            .unwrap()
    );

    // After a restart, everything is still there.
    drop(store);
    let reopened = db.open().await;
    let found = reopened.visit_by_subscription(&sub("s-1")).await.unwrap();
    assert_eq!(found.map(|v| v.id), Some(v1.clone()));
    let due: Vec<VisitId> = reopened
        .subscriptions_due(at(1000), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.visit_id)
        .collect();
    assert_eq!(due, [vid("v-3"), v1]);
}

async fn the_patient_join_url_is_kept_on_the_visit_across_upserts_and_restarts(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    let v = store
        .upsert_visit(&visit("v-1", &cfg, "vb-1"))
        .await
        .unwrap();
    assert_eq!(store.patient_join_url(&v.id).await.unwrap(), None);
    let url = "https://visit.teams.microsoft.com/webrtc-svc/api/route?tid=t&convId=19:meeting_X@thread.v2";
    store.set_patient_join_url(&v.id, url).await.unwrap();
    assert_eq!(
        store.patient_join_url(&v.id).await.unwrap().as_deref(),
        Some(url)
    );
    // A later launch of the same visit (upsert) keeps it.
    let again = Visit {
        join_web_url: Some("https://teams.microsoft.com/l/meetup-join/x".into()),
        ..visit("v-other", &cfg, "vb-1")
    };
    assert_eq!(store.upsert_visit(&again).await.unwrap().id, v.id);
    assert_eq!(
        store.patient_join_url(&v.id).await.unwrap().as_deref(),
        Some(url)
    );

    assert!(matches!(
        store.set_patient_join_url(&vid("v-missing"), url).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_patient_join_url(&v.id, "").await,
        Err(StoreError::InvalidRecord(_))
    ));
    assert_eq!(
        store.patient_join_url(&vid("v-missing")).await.unwrap(),
        None
    );

    drop(store);
    let reopened = db.open().await;
    assert_eq!(
        reopened.patient_join_url(&v.id).await.unwrap().as_deref(),
        Some(url)
    );
}

async fn reconciliations_are_claimed_when_due_retried_fenced_and_finished(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    for (id, key) in [("v-1", "vb-1"), ("v-2", "vb-2")] {
        store.upsert_visit(&visit(id, &cfg, key)).await.unwrap();
    }
    let v1 = vid("v-1");
    let lease = Duration::from_secs(5 * 60);
    store.schedule_reconciliation(&v1, at(10)).await.unwrap();
    store
        .schedule_reconciliation(&vid("v-2"), at(500))
        .await
        .unwrap();
    assert_eq!(
        store.reconciliation_of(&v1).await.unwrap(),
        Some(Reconciliation {
            due_at: at(10),
            attempts: 0
        })
    );
    assert!(matches!(
        store
            .schedule_reconciliation(&vid("v-missing"), at(1))
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Not due yet.
    assert!(
        store
            .claim_reconciliations(at(9), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claims = store
        .claim_reconciliations(at(10), lease, 10)
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!((claims[0].visit.id.as_str(), claims[0].attempt), ("v-1", 1));
    assert_eq!(claims[0].visit.configuration_id, cfg);
    // Held while claimed.
    assert!(
        store
            .claim_reconciliations(at(12), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A claimant that died: due again when the lease runs out, as attempt 2.
    let claims = store
        .claim_reconciliations(at(15), lease, 10)
        .await
        .unwrap();
    assert_eq!(claims[0].attempt, 2);
    // The first claimant's late answer no longer counts.
    assert!(!store.retry_reconciliation(&v1, 1, at(16)).await.unwrap());
    assert!(!store.finish_reconciliation(&v1, 1).await.unwrap());
    // Not there yet: try again later.
    assert!(store.retry_reconciliation(&v1, 2, at(30)).await.unwrap());
    assert_eq!(
        store.reconciliation_of(&v1).await.unwrap(),
        Some(Reconciliation {
            due_at: at(30),
            attempts: 2
        })
    );

    // Survives a restart.
    drop(store);
    let store = db.open().await;
    let claims = store
        .claim_reconciliations(at(30), lease, 10)
        .await
        .unwrap();
    assert_eq!((claims.len(), claims[0].attempt), (1, 3));
    assert!(store.finish_reconciliation(&v1, 3).await.unwrap());
    assert_eq!(store.reconciliation_of(&v1).await.unwrap(), None);
    // Finished: never claimed again; the other visit comes when it is due.
    let later = store
        .claim_reconciliations(at(600), lease, 10)
        .await
        .unwrap();
    assert_eq!(
        later
            .iter()
            .map(|c| c.visit.id.as_str())
            .collect::<Vec<_>>(),
        ["v-2"]
    );

    // A call that ends again while a reconciliation is claimed starts it over: the old claim
    // cannot end the new schedule.
    store
        .schedule_reconciliation(&vid("v-2"), at(700))
        .await
        .unwrap();
    assert!(
        !store
            .finish_reconciliation(&vid("v-2"), later[0].attempt)
            .await
            .unwrap()
    );
    assert_eq!(
        store.reconciliation_of(&vid("v-2")).await.unwrap(),
        Some(Reconciliation {
            due_at: at(700),
            attempts: 0
        })
    );
}

async fn visits_with_a_meeting_but_no_subscription_are_listed_to_subscribe_again(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    let with_meeting = |id: &str, key: &str, created: i64| Visit {
        join_web_url: Some(format!(
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_{id}%40thread.v2/0"
        )),
        created_at: at(created),
        ..visit(id, &cfg, key)
    };
    // Too old; no meeting yet; ended; subscribed; and two without a subscription.
    store
        .upsert_visit(&Visit {
            ended_at: Some(at(50)),
            ..with_meeting("v-ended", "vb-ended", 40)
        })
        .await
        .unwrap();
    store
        .upsert_visit(&with_meeting("v-old", "vb-old", -100))
        .await
        .unwrap();
    store
        .upsert_visit(&visit("v-none", &cfg, "vb-none"))
        .await
        .unwrap();
    store
        .upsert_visit(&with_meeting("v-sub", "vb-sub", 10))
        .await
        .unwrap();
    store
        .set_subscription(&vid("v-sub"), &sub("s-1"), at(60), None)
        .await
        .unwrap();
    store
        .upsert_visit(&with_meeting("v-a", "vb-a", 20))
        .await
        .unwrap();
    store
        .upsert_visit(&with_meeting("v-b", "vb-b", 30))
        .await
        .unwrap();
    let ids = |visits: Vec<Visit>| -> Vec<String> {
        visits.iter().map(|v| v.id.as_str().to_owned()).collect()
    };
    assert_eq!(
        ids(store.unsubscribed_visits(at(0), 10).await.unwrap()),
        ["v-b", "v-a"]
    );
    assert_eq!(
        ids(store.unsubscribed_visits(at(0), 1).await.unwrap()),
        ["v-b"]
    );
    // Subscribed now (or its subscription removed): off the list (back on it).
    store
        .set_subscription(&vid("v-b"), &sub("s-2"), at(60), None)
        .await
        .unwrap();
    store.clear_subscription(&vid("v-sub"), None).await.unwrap();
    assert_eq!(
        ids(store.unsubscribed_visits(at(0), 10).await.unwrap()),
        ["v-a", "v-sub"]
    );
}

async fn the_schema_has_the_visit_upkeep_migration(db: TestDb) {
    drop(db.store().await);
    // 3: visit upkeep; 4: superseded outbox rows; 5: leases; 6: an outbox index; 7: keyed ids; 8: their indexes; 9: report outcomes.
    assert_eq!(db.schema_version().await, 9);
}

crate::on_both_backends!(
    subscriptions_are_set_once_renewed_found_listed_when_due_and_cleared,
    the_patient_join_url_is_kept_on_the_visit_across_upserts_and_restarts,
    reconciliations_are_claimed_when_due_retried_fenced_and_finished,
    visits_with_a_meeting_but_no_subscription_are_listed_to_subscribe_again,
    the_schema_has_the_visit_upkeep_migration,
);
