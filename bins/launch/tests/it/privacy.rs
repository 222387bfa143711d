//! No PHI at rest or in logs: after launches, notifications and write-back, neither the SQLite
//! files nor anything logged contains the fixture patient's data or a participant's name.

use visitbridge_testkit::{
    entra::EntraUser,
    fixtures::PHI_PROBES,
    graph::{acs_participant, plain_notification, roster_update, user_participant},
};

use crate::{
    harness::{CLIENT_STATE, Env, logs},
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
