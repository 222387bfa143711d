//! No participant name reaches the database, an AuditEvent or any sink.

use visitbridge_graph::parse_notifications;
use visitbridge_store::AuditRepo;
use visitbridge_testkit::{
    fixtures::PHI_PROBES,
    graph::{acs_participant, plain_notification, roster_update, user_participant},
};

use crate::*;

fn assert_no_names(what: &str, haystack: &[u8]) {
    for probe in PHI_PROBES.iter().chain(&["Guest", "Camila Lopez"]) {
        let found = haystack.windows(probe.len()).any(|w| w == probe.as_bytes());
        assert!(!found, "{probe:?} found in {what}");
    }
}

#[tokio::test]
async fn display_names_are_in_no_audit_event_no_sink_call_and_not_in_the_database_file() {
    let env = Env::new(Sinks::All).await;
    // The fixture ("Guest" joins, "Dr. Ross" leaves) and a roster with a patient's name.
    let with_names = plain_notification(
        "4d0a1e5c-8a1e-4a3e-9d8c-2b0f3c6e7a11",
        CLIENT_STATE,
        JOIN_URL,
        roster_update(
            "2026-03-05T18:03:00Z",
            vec![
                acs_participant("leg-7", "8:acs:camila", "Camila Lopez"),
                user_participant("leg-8", ORGANIZER, "Dr. Ross"),
            ],
            vec![],
        ),
    );
    let mut notifications = fixture_notifications();
    notifications.extend(
        parse_notifications(
            with_names.to_string().as_bytes(),
            &ClientStateSecret::new(Secret::new(CLIENT_STATE)),
            None,
        )
        .unwrap(),
    );
    let summary = env
        .recorder()
        .accept_notifications(&notifications)
        .await
        .unwrap();
    assert_eq!(summary.recorded, 4);
    assert_eq!(drain(&env.worker()).await.delivered, 12);

    let events = env.store.events_for_visit(&env.visit.id).await.unwrap();
    for event in &events {
        assert_no_names(
            "a stored AuditEvent",
            event.audit_event.to_string().as_bytes(),
        );
    }
    for body in env
        .fhir
        .audit_events()
        .iter()
        .chain(&env.fhir.communications())
    {
        assert_no_names("a FHIR write", body.to_string().as_bytes());
    }
    assert_no_names(
        "the Epic calls",
        format!("{:?}", env.epic.calls()).as_bytes(),
    );

    // The database file (and its write-ahead log, if any) after the store is closed.
    let Env { dir, store, .. } = env;
    drop(store);
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(content) = std::fs::read(dir.path().join(format!("vb.sqlite{suffix}"))) {
            bytes.extend(content);
        }
    }
    // The scan reads real data: the participants' ids are there.
    for id in [GUEST, "8:acs:camila", ORGANIZER] {
        assert!(
            bytes.windows(id.len()).any(|w| w == id.as_bytes()),
            "{id} not in the file: the scan would prove nothing"
        );
    }
    assert_no_names("the database file", &bytes);
}
