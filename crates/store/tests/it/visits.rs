//! The visit registry: one row per visit, lookups by key, meeting id and join URL.

use std::sync::Arc;

use visitbridge_approval::{ConfigurationId, Environment};
use visitbridge_store::*;

use crate::fixtures::*;

pub(crate) const JOIN_URL: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NTg0NjhhNTUt%40thread.v2/0?context=%7b%7d";

/// A store with tenant `contoso` and configuration `cfg-1`.
pub(crate) async fn store_with_configuration(db: &TestDb) -> (AnyStore, ConfigurationId) {
    let store = db.store().await;
    let t = with_tenant(&store, "contoso").await;
    let config = create(&store, &t, "cfg-1", URL, Environment::Production).await;
    (store, config.id().clone())
}

pub(crate) fn visit(id: &str, configuration: &ConfigurationId, key: &str) -> Visit {
    Visit {
        id: VisitId::new(id).unwrap(),
        configuration_id: configuration.clone(),
        external_meeting_id: key.to_owned(),
        graph_meeting_id: None,
        join_web_url: None,
        organizer_object_id: None,
        practitioner_fhir_id: None,
        appointment_fhir_id: None,
        encounter_fhir_id: None,
        patient_fhir_id: None,
        conference_id: None,
        created_at: at(0),
        ended_at: None,
        patient_key: None,
        appointment_key: None,
        department: None,
    }
}

async fn upsert_keeps_the_first_row_and_fills_in_missing_fields(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    let first = Visit {
        graph_meeting_id: Some("meeting-1".into()),
        conference_id: Some("1234567".into()),
        ..visit("v-1", &cfg, "vb-abc")
    };
    assert_eq!(store.upsert_visit(&first).await.unwrap(), first);

    // A second launch of the same visit, with another id and more details: the first row wins,
    // its empty fields are filled in, its set ones are kept.
    let second = Visit {
        graph_meeting_id: Some("meeting-other".into()),
        join_web_url: Some(JOIN_URL.into()),
        encounter_fhir_id: Some("enc-1".into()),
        created_at: at(5),
        ..visit("v-2", &cfg, "vb-abc")
    };
    let stored = store.upsert_visit(&second).await.unwrap();
    assert_eq!(stored.id.as_str(), "v-1");
    assert_eq!(stored.graph_meeting_id.as_deref(), Some("meeting-1"));
    assert_eq!(stored.conference_id.as_deref(), Some("1234567"));
    assert_eq!(stored.join_web_url.as_deref(), Some(JOIN_URL));
    assert_eq!(stored.encounter_fhir_id.as_deref(), Some("enc-1"));
    assert_eq!(stored.created_at, at(0));
    assert!(
        store
            .get_visit(&VisitId::new("v-2").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn concurrent_launches_of_one_visit_give_one_row(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (store, cfg) = (Arc::clone(&store), cfg.clone());
        tasks.push(tokio::spawn(async move {
            store
                .upsert_visit(&visit(&format!("v-{n}"), &cfg, "vb-same"))
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        store.visits_since(&cfg, at(-1), 100).await.unwrap().len(),
        1
    );
}

async fn visits_are_found_by_key_meeting_and_join_url_as_graph_echoes_it(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    let v = Visit {
        graph_meeting_id: Some("MSo1N2Y5ZGFjYy03MWJmLTQ3NDMtYjQxMy01M2EdFGkdRWHJlQ".into()),
        join_web_url: Some(JOIN_URL.into()),
        ..visit("v-1", &cfg, "vb-abc")
    };
    store.upsert_visit(&v).await.unwrap();

    assert_eq!(
        store.visit_by_key(&cfg, "vb-abc").await.unwrap(),
        Some(v.clone())
    );
    assert_eq!(store.visit_by_key(&cfg, "vb-other").await.unwrap(), None);
    assert_eq!(
        store
            .visit_by_meeting("MSo1N2Y5ZGFjYy03MWJmLTQ3NDMtYjQxMy01M2EdFGkdRWHJlQ")
            .await
            .unwrap(),
        Some(v.clone())
    );
    // Graph's notifications name the meeting by its join URL, upper-case escapes, no query.
    let echoed =
        "https://teams.microsoft.com/l/meetup-join/19%3Ameeting_NTg0NjhhNTUt%40thread.v2/0";
    assert_eq!(store.visit_by_join_url(echoed).await.unwrap(), Some(v));
    assert_eq!(
        store
            .visit_by_join_url(
                "https://teams.microsoft.com/l/meetup-join/19%3Ameeting_other%40thread.v2/0"
            )
            .await
            .unwrap(),
        None
    );
}

async fn a_visit_needs_an_existing_configuration_and_a_free_id(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    let unknown = ConfigurationId::new("nope").unwrap();
    assert!(matches!(
        store.upsert_visit(&visit("v-1", &unknown, "vb-1")).await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .upsert_visit(&visit("v-1", &cfg, "vb-1"))
        .await
        .unwrap();
    assert!(matches!(
        store.upsert_visit(&visit("v-1", &cfg, "vb-2")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let bad = Visit {
        encounter_fhir_id: Some("has space".into()),
        ..visit("v-3", &cfg, "vb-3")
    };
    assert!(matches!(
        store.upsert_visit(&bad).await,
        Err(StoreError::InvalidRecord(_))
    ));
}

async fn visits_since_lists_a_configurations_recent_visits_newest_first(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    for (n, minutes) in [(1, 0), (2, 10), (3, 20)] {
        let v = Visit {
            created_at: at(minutes),
            ..visit(&format!("v-{n}"), &cfg, &format!("vb-{n}"))
        };
        store.upsert_visit(&v).await.unwrap();
    }
    let recent: Vec<String> = store
        .visits_since(&cfg, at(5), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.id.to_string())
        .collect();
    assert_eq!(recent, ["v-3", "v-2"]);
    assert_eq!(store.visits_since(&cfg, at(0), 1).await.unwrap().len(), 1);
}

async fn visits_since_in_lists_the_recent_visits_of_several_configurations_in_one_read(db: TestDb) {
    let (store, cfg) = store_with_configuration(&db).await;
    let t = tenant_id("contoso");
    let other = create(&store, &t, "cfg-2", TEST_URL, Environment::Test)
        .await
        .id()
        .clone();
    for (n, minutes, c) in [
        (1, 0, &cfg),
        (2, 10, &other),
        (3, 20, &cfg),
        (4, 20, &other),
    ] {
        let v = Visit {
            created_at: at(minutes),
            ..visit(&format!("v-{n}"), c, &format!("vb-{n}"))
        };
        store.upsert_visit(&v).await.unwrap();
    }
    let ids = |visits: Vec<Visit>| -> Vec<String> {
        visits.into_iter().map(|v| v.id.to_string()).collect()
    };
    let both = [cfg.clone(), other.clone()];
    assert_eq!(
        ids(store.visits_since_in(&both, at(5), 10).await.unwrap()),
        ["v-3", "v-4", "v-2"]
    );
    assert_eq!(
        ids(store.visits_since_in(&both, at(0), 2).await.unwrap()),
        ["v-3", "v-4"]
    );
    assert_eq!(
        ids(store
            .visits_since_in(std::slice::from_ref(&cfg), at(0), 10)
            .await
            .unwrap()),
        ids(store.visits_since(&cfg, at(0), 10).await.unwrap())
    );
    assert!(
        store
            .visits_since_in(&[], at(0), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

crate::on_both_backends!(
    upsert_keeps_the_first_row_and_fills_in_missing_fields,
    concurrent_launches_of_one_visit_give_one_row,
    visits_are_found_by_key_meeting_and_join_url_as_graph_echoes_it,
    a_visit_needs_an_existing_configuration_and_a_free_id,
    visits_since_lists_a_configurations_recent_visits_newest_first,
    visits_since_in_lists_the_recent_visits_of_several_configurations_in_one_read,
);
