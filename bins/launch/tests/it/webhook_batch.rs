//! A Graph notification batch with one unreadable item: the readable ones are stored and Graph
//! gets its `202` (it never delivers a `4xx`-answered batch again); the bad one is counted and
//! logged without its content. A forged item still refuses its batch.

use serde_json::{Value, json};
use visitbridge_testkit::graph::{acs_participant, plain_notification, roster_update};

use crate::harness::{CLIENT_STATE, Env, logs};

fn item(join_url: &str, at: &str, client_state: &str) -> Value {
    let payload = roster_update(
        at,
        vec![acs_participant(
            "leg-guest",
            "8:acs:guest-1",
            "Camila Lopez",
        )],
        vec![],
    );
    plain_notification("sub-batch", client_state, join_url, payload)["value"][0].clone()
}

#[tokio::test]
async fn one_item_without_event_time_does_not_lose_its_batch() {
    let env = Env::start().await;
    let (visit, _) = env.subscribed_visit().await;
    let join = visit.join_web_url.clone().unwrap();
    let mut no_time = item(&join, "2026-03-05T18:03:00Z", CLIENT_STATE);
    no_time["resourceData"]
        .as_object_mut()
        .unwrap()
        .remove("eventDateTime");
    let batch = json!({"value": [
        item(&join, "2026-03-05T18:02:00Z", CLIENT_STATE),
        no_time,
        item(&join, "2026-03-05T18:04:00Z", CLIENT_STATE),
    ]});

    assert_eq!(env.post_notification(&batch).await, 202);

    let stored = env.store.events_for_visit(&visit.id).await.unwrap();
    let times: Vec<String> = stored.iter().map(|e| e.occurred_at.to_rfc3339()).collect();
    assert_eq!(
        times,
        ["2026-03-05T18:02:00+00:00", "2026-03-05T18:04:00+00:00"],
        "the two readable events are stored"
    );
    let metrics = env.metrics().await;
    assert!(
        metrics.contains("visitbridge_notifications_total{result=\"unreadable\"} 1"),
        "{metrics}"
    );
    let logs = logs();
    assert!(
        logs.contains("dropped an unreadable notification"),
        "the bad item is logged"
    );
    assert!(!logs.contains("Camila"), "no display name in the logs");
}

#[tokio::test]
async fn a_forged_item_still_refuses_its_batch() {
    let env = Env::start().await;
    let (visit, _) = env.subscribed_visit().await;
    let join = visit.join_web_url.clone().unwrap();
    let batch = json!({"value": [
        item(&join, "2026-03-05T18:02:00Z", CLIENT_STATE),
        item(&join, "2026-03-05T18:04:00Z", "a-guessed-client-state"),
    ]});
    assert_eq!(env.post_notification(&batch).await, 403);
    assert!(
        env.store
            .events_for_visit(&visit.id)
            .await
            .unwrap()
            .is_empty(),
        "nothing of a batch with a forged item is stored"
    );
}
