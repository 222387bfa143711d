//! Named leases: one holder at a time, renewed by it, taken over once expired, released cleanly.

use std::time::Duration;

use visitbridge_store::*;

use crate::fixtures::*;

const TTL: Duration = Duration::from_secs(60);

async fn one_holder_at_a_time_until_the_lease_runs_out(db: TestDb) {
    let store = db.store().await;
    assert!(
        store
            .try_lease("renewals", "replica-a", at(0), TTL)
            .await
            .unwrap()
    );
    // Held: another holder is refused; the holder renews.
    assert!(
        !store
            .try_lease("renewals", "replica-b", at(0), TTL)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("renewals", "replica-a", at(1), TTL)
            .await
            .unwrap()
    );
    // Renewed at minute 1: still held at minute 1 + 59 s.
    let almost = at(1) + chrono::Duration::seconds(59);
    assert!(
        !store
            .try_lease("renewals", "replica-b", almost, TTL)
            .await
            .unwrap()
    );
    // Other names are other leases.
    assert!(
        store
            .try_lease("other", "replica-b", at(0), TTL)
            .await
            .unwrap()
    );
    // Replica A stopped renewing (it died): B takes over once the lease ran out, and A cannot
    // take it back while B holds it.
    assert!(
        store
            .try_lease("renewals", "replica-b", at(2), TTL)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease("renewals", "replica-a", at(2), TTL)
            .await
            .unwrap()
    );
    // A clean stop releases it for anyone at once; releasing what one does not hold does nothing.
    assert!(!store.release_lease("renewals", "replica-a").await.unwrap());
    assert!(store.release_lease("renewals", "replica-b").await.unwrap());
    assert!(
        store
            .try_lease("renewals", "replica-a", at(2), TTL)
            .await
            .unwrap()
    );
    assert!(matches!(
        store.try_lease("", "replica-a", at(0), TTL).await,
        Err(StoreError::InvalidRecord(_))
    ));
}

async fn many_contenders_at_once_get_one_holder(db: TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .try_lease("renewals", &format!("replica-{n}"), at(0), TTL)
                .await
        }));
    }
    let mut holders = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            holders += 1;
        }
    }
    assert_eq!(holders, 1);
}

crate::on_both_backends!(
    one_holder_at_a_time_until_the_lease_runs_out,
    many_contenders_at_once_get_one_holder,
);
