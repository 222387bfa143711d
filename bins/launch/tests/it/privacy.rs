//! No PHI at rest or in logs: after launches, notifications and write-back, neither the SQLite
//! files nor anything logged contains the fixture patient's data or a participant's name.

use visitbridge_testkit::{
    entra::EntraUser,
    fixtures::PHI_PROBES,
    graph::{acs_participant, call_event, plain_notification, roster_update, user_participant},
};

use crate::{
    harness::{Backend, CLIENT_STATE, Env, Options, logs},
    provider::provider_launch,
};

fn assert_clean(what: &str, text: &str) {
    for probe in PHI_PROBES {
        assert!(!text.contains(probe), "{what} contains {probe:?}");
    }
}

#[tokio::test]
async fn neither_the_database_nor_the_logs_hold_phi() {
    let env = Env::start().await;
    let clinician = env.browser();
    let page = provider_launch(&env, &clinician).await;
    assert_clean("the visit page", &page.body);
    let visit = env.visit(&page.visit_id()).await;
    let patient = env
        .browser()
        .navigate(&env.launch_url("patient", &Env::visit_context()))
        .await;
    assert!(patient.teams.is_some());
    let waiting = env
        .browser()
        .navigate(&env.launch_url(
            "patient",
            &[("sessionId", "31000001"), ("environment", "test")],
        ))
        .await;
    assert_clean("a patient page", &waiting.body);
    let device = env
        .browser()
        .navigate(&env.launch_url("device-test", &[("environment", "test")]))
        .await;
    assert_clean("the device test page", &device.body);

    // Participants with names, as Graph sends them.
    let roster = roster_update(
        "2026-03-05T18:02:11.512Z",
        vec![
            user_participant("leg-doc", &EntraUser::default().oid, "Dr. Ross"),
            acs_participant("leg-guest", "8:acs:guest-1", "Camila Lopez"),
        ],
        vec![],
    );
    let body = plain_notification(
        "sub",
        CLIENT_STATE,
        visit.join_web_url.as_deref().unwrap(),
        roster,
    );
    let answer = reqwest::Client::new()
        .post(format!("{}/graph/notifications", env.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let events = clinician.get(&format!("{}/events", page.url)).await;
    assert_eq!(events.status(), 200);
    drop(events);
    env.eventually("write-back done", async || {
        env.store.outbox_depth().await.unwrap().pending == 0
    })
    .await;
    // Errors too: an unapproved EHR, a tampered callback.
    env.browser()
        .navigate(&format!(
            "{}/launch/provider?iss=https://ehr.invalid/fhir&launch=x",
            env.base
        ))
        .await;

    let mut stored = String::new();
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("visitbridge.sqlite")
        {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            assert_clean(&path.display().to_string(), &text);
            stored.push_str(&text);
        }
    }
    // The scan sees the visit rows, events and outbox (it would see names if they were there).
    assert!(
        stored.contains("10000001234"),
        "the visit's CSN is stored as its conference id"
    );
    assert!(
        stored.contains("8:acs:guest-1"),
        "the guest's opaque id is stored"
    );
    let logs = logs();
    assert!(
        logs.contains("route=/launch/callback"),
        "the logs were captured"
    );
    assert!(
        logs.contains("visit event recorded"),
        "debug logs were captured"
    );
    assert_clean("the logs", &logs);
    // No bearer token or code in the logs either.
    for token in env.entra.issued_tokens() {
        assert!(!logs.contains(&token), "an app token was logged");
    }
}

/// Everything the service's database holds, as text: on SQLite the bytes of the file and its
/// write-ahead log (free space included), on PostgreSQL every row of every table.
async fn database_text(env: &Env, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => {
            let mut bytes = Vec::new();
            for name in ["visitbridge.sqlite", "visitbridge.sqlite-wal"] {
                if let Ok(file) = std::fs::read(env.dir.path().join(name)) {
                    bytes.extend(file);
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Backend::Postgres => {
            let (client, connection) =
                tokio_postgres::connect(&env.database, tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let tables = client
                .query(
                    "SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                    &[],
                )
                .await
                .unwrap();
            let mut text = String::new();
            for table in tables {
                let name: String = table.get(0);
                let rows = client
                    .query(&format!("SELECT t::text FROM \"{name}\" t"), &[])
                    .await
                    .unwrap();
                for row in rows {
                    text.push_str(row.get::<_, &str>(0));
                    text.push('\n');
                }
            }
            text
        }
    }
}

#[tokio::test]
async fn past_retention_the_sqlite_file_holds_no_clear_patient_appointment_encounter_or_csn() {
    past_retention_the_database_holds_no_clear_ids(Backend::Sqlite).await;
}

#[tokio::test]
async fn past_retention_postgresql_holds_no_clear_patient_appointment_encounter_or_csn() {
    past_retention_the_database_holds_no_clear_ids(Backend::Postgres).await;
}

async fn past_retention_the_database_holds_no_clear_ids(backend: Backend) {
    use visitbridge_testkit::fhir::{APPOINTMENT_ID, ENCOUNTER_ID, PATIENT_ID};
    const CSN: &str = "10000001234";
    let mut env = Env::start_with(Options {
        backend,
        ..Options::default()
    })
    .await;
    let clinician = env.browser();
    let page = provider_launch(&env, &clinician).await;
    let visit = env.visit(&page.visit_id()).await;
    assert_eq!(visit.patient_fhir_id.as_deref(), Some(PATIENT_ID));
    assert!(
        visit
            .patient_key
            .as_deref()
            .is_some_and(|k| k.starts_with("rk1-"))
    );
    let patient = env
        .browser()
        .navigate(&env.launch_url("patient", &Env::visit_context()))
        .await;
    assert!(patient.teams.is_some());

    let about = |payload| {
        plain_notification(
            "sub",
            CLIENT_STATE,
            visit.join_web_url.as_deref().unwrap(),
            payload,
        )
    };
    for payload in [
        call_event("CallStarted", "2026-03-05T18:00:00Z"),
        roster_update(
            "2026-03-05T18:02:11.512Z",
            vec![
                user_participant("leg-doc", &EntraUser::default().oid, "Dr. Ross"),
                acs_participant("leg-guest", "8:acs:guest-1", "Camila Lopez"),
            ],
            vec![],
        ),
        call_event("CallEnded", "2026-03-05T18:30:00Z"),
    ] {
        assert_eq!(env.post_notification(&about(payload)).await, 202);
    }
    env.wait_nothing_pending("write-back done").await;
    // The EHR got AuditEvents that name the patient: the ids were there while needed.
    let patient_reference = format!("Patient/{PATIENT_ID}");
    assert!(
        env.fhir
            .audit_events()
            .iter()
            .any(|e| e.to_string().contains(&patient_reference)),
        "no AuditEvent named the patient"
    );
    // Within the retention (30 days by default, and the meeting still watched) every id is kept,
    // and the scan sees them.
    let text = database_text(&env, backend).await;
    for id in [
        PATIENT_ID,
        APPOINTMENT_ID,
        ENCOUNTER_ID,
        CSN,
        "8:acs:guest-1",
    ] {
        assert!(
            text.contains(id),
            "{id} was not stored: the scan would prove nothing"
        );
    }

    // Time passes, as far as the service can tell: no retention, meetings watched for no time,
    // housekeeping every second. (The call's reconciliation gives up after its attempts.)
    env.restart_with_config(|config| {
        format!(
            "audit_retention_days = 0\nhousekeeping_seconds = 1\n{}",
            config.replace("[upkeep]", "[upkeep]\nsubscription_max_age_hours = 0")
        )
    })
    .await;
    // (The stopped process's retention lease runs out first: up to ten seconds.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let text = database_text(&env, backend).await;
        let left: Vec<&str> = [PATIENT_ID, APPOINTMENT_ID, ENCOUNTER_ID, CSN]
            .into_iter()
            .filter(|id| text.contains(id))
            .collect();
        if left.is_empty() {
            assert!(text.contains("8:acs:guest-1"), "the events stay");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still in the database past retention: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let visit = env.visit(&page.visit_id()).await;
    assert_eq!(visit.patient_fhir_id, None);
    assert!(visit.patient_key.is_some(), "the keyed hash stays");
    let events = env.store.events_for_visit(&visit.id).await.unwrap();
    assert!(
        events.len() >= 4,
        "the events stay, for reports: {events:?}"
    );
    assert!(events.iter().all(|e| e.audit_event.is_null()));
    assert!(logs().contains("patient references past retention purged"));
}
