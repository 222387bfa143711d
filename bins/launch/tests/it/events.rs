//! Graph's roster notifications → the live panel (server-sent events) → AuditEvents → the EHR's
//! sinks; a sink that is down, then up; a sink that stays down.

use std::time::Duration;

use serde_json::{Value, json};
use visitbridge_store::Visit;
use visitbridge_testkit::{
    entra::EntraUser,
    graph::{acs_participant, call_event, plain_notification, roster_update, user_participant},
    smart::PRACTITIONER_ID,
};

use crate::{
    harness::{Browser, CLIENT_STATE, Env, Options},
    provider::provider_launch,
};

/// The panel stream of a visit page.
pub(crate) struct Panel {
    response: reqwest::Response,
    buffer: String,
}

impl Panel {
    pub(crate) async fn open(browser: &Browser, page_url: &str) -> Self {
        let response = browser.get(&format!("{page_url}/events")).await;
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next `panel` event's data.
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if block.lines().any(|l| l == "event: panel") {
                    let data = block
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .expect("data line");
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("a panel event in time")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads panels until `check` holds for one.
    pub(crate) async fn until(&mut self, check: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..20 {
            let panel = self.next().await;
            if check(&panel) {
                return panel;
            }
        }
        panic!("the panel never reached the expected state");
    }
}

pub(crate) fn labels(panel: &Value) -> Vec<(String, String)> {
    panel["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["label"].as_str().unwrap().to_owned(),
                p["presence"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn notify(env: &Env, visit: &Visit, payload: Value) -> u16 {
    let body = plain_notification(
        "sub-test",
        CLIENT_STATE,
        visit.join_web_url.as_deref().unwrap(),
        payload,
    );
    reqwest::Client::new()
        .post(format!("{}/graph/notifications", env.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub(crate) fn guest(in_lobby: bool) -> Value {
    let mut g = acs_participant("leg-guest", "8:acs:guest-1", "Camila Lopez");
    g["isInLobby"] = json!(in_lobby);
    g
}

pub(crate) fn clinician() -> Value {
    user_participant("leg-doc", &EntraUser::default().oid, "Dr. Ross")
}

/// Sends a visit's call: start, clinician in, patient in the lobby, admitted.
async fn call_with_patient(env: &Env, visit: &Visit) {
    assert_eq!(
        notify(
            env,
            visit,
            call_event("CallStarted", "2026-03-05T18:00:00Z")
        )
        .await,
        202
    );
    let joined = roster_update("2026-03-05T18:00:01Z", vec![clinician()], vec![]);
    assert_eq!(notify(env, visit, joined).await, 202);
    let lobby = roster_update("2026-03-05T18:01:00Z", vec![guest(true)], vec![]);
    assert_eq!(notify(env, visit, lobby).await, 202);
    let admitted = roster_update("2026-03-05T18:02:11.512Z", vec![guest(false)], vec![]);
    assert_eq!(notify(env, visit, admitted).await, 202);
}

#[tokio::test]
async fn roster_notifications_reach_the_panel_the_audit_trail_and_the_ehr() {
    let env = Env::start().await;
    let browser = env.browser();
    let page = provider_launch(&env, &browser).await;
    let visit = env.visit(&page.visit_id()).await;
    let mut panel = Panel::open(&browser, &page.url).await;
    let first = panel.next().await;
    assert_eq!(first["patient_connected"], false);
    assert!(labels(&first).is_empty());

    let joined = roster_update("2026-03-05T18:00:01Z", vec![clinician()], vec![]);
    assert_eq!(notify(&env, &visit, joined).await, 202);
    let state = panel.until(|p| !labels(p).is_empty()).await;
    assert_eq!(
        labels(&state),
        vec![("Clinician (you)".to_owned(), "connected".to_owned())]
    );

    let lobby = roster_update("2026-03-05T18:01:00Z", vec![guest(true)], vec![]);
    assert_eq!(notify(&env, &visit, lobby).await, 202);
    let state = panel.until(|p| p["patient_waiting"] == true).await;
    assert_eq!(state["patient_connected"], false);
    assert_eq!(
        labels(&state)[1],
        ("Patient / guest 1".into(), "lobby".into())
    );

    let admitted = roster_update("2026-03-05T18:02:11.512Z", vec![guest(false)], vec![]);
    assert_eq!(notify(&env, &visit, admitted).await, 202);
    let state = panel.until(|p| p["patient_connected"] == true).await;
    assert_eq!(
        labels(&state)[1],
        ("Patient / guest 1".into(), "connected".into())
    );
    // The page a clinician reloads shows it too, with the banner.
    let reloaded = browser.get(&page.url).await.text().await.unwrap();
    assert!(
        reloaded.contains("class=\"banner connected\""),
        "{reloaded}"
    );

    // Stored as events, written back: AuditEvents at the FHIR server, statuses at Epic.
    let stored = env.store.events_for_visit(&visit.id).await.unwrap();
    assert_eq!(stored.len(), 3);
    env.eventually("deliveries", async || {
        env.store.outbox_depth().await.unwrap().pending == 0
    })
    .await;
    let audits = env.fhir.audit_events();
    assert_eq!(audits.len(), 3);
    assert!(
        audits.iter().any(|a| a["agent"][0]["who"]["reference"]
            == format!("Practitioner/{PRACTITIONER_ID}")),
        "the linked clinician is referenced as the practitioner: {audits:?}"
    );
    let statuses: Vec<(String, String)> = env
        .epic
        .accepted()
        .iter()
        .map(|c| {
            assert_eq!(c.conference_id.as_deref(), Some("10000001234"));
            (
                c.external_id.clone().unwrap(),
                c.connection_status.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (EntraUser::default().oid, "TEST-CONNECTED".to_owned()),
            ("8:acs:guest-1".to_owned(), "TEST-CONNECTED".to_owned()),
        ]
    );

    // Graph delivers the same notification again: nothing new is stored or sent.
    let again = roster_update("2026-03-05T18:02:11.512Z", vec![guest(false)], vec![]);
    assert_eq!(notify(&env, &visit, again).await, 202);
    assert_eq!(
        env.store.events_for_visit(&visit.id).await.unwrap().len(),
        3
    );

    // The call ends: everyone is disconnected; the subscription stays (another call may follow
    // in the same meeting).
    env.eventually("a subscription", async || {
        !env.graph.subscription_requests().is_empty()
    })
    .await;
    assert_eq!(
        notify(
            &env,
            &visit,
            call_event("CallEnded", "2026-03-05T18:30:00Z")
        )
        .await,
        202
    );
    let state = panel
        .until(|p| p["call_active"] == false && p["patient_connected"] == false)
        .await;
    assert!(
        labels(&state)
            .iter()
            .all(|(_, presence)| presence == "disconnected")
    );
    env.eventually("all delivered", async || {
        env.store.outbox_depth().await.unwrap().pending == 0
    })
    .await;
    assert!(env.graph.deleted().is_empty(), "{:?}", env.graph.deleted());
    assert_eq!(env.fhir.audit_events().len(), 4);
    assert_eq!(env.epic.accepted().len(), 2);
}

#[tokio::test]
async fn a_sink_that_is_down_then_up_gets_each_event_once() {
    let env = Env::start().await;
    let page = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&page.visit_id()).await;
    env.epic.always_fail(503);
    call_with_patient(&env, &visit).await;
    env.eventually("failed attempts", async || env.epic.calls().len() >= 2)
        .await;
    assert!(env.epic.accepted().is_empty());
    env.epic.recover();
    env.eventually("delivered after recovery", async || {
        env.epic.accepted().len() >= 2 && env.store.outbox_depth().await.unwrap().pending == 0
    })
    .await;
    let mut accepted: Vec<(String, String)> = env
        .epic
        .accepted()
        .iter()
        .map(|c| {
            (
                c.external_id.clone().unwrap(),
                c.connection_status.clone().unwrap(),
            )
        })
        .collect();
    accepted.sort();
    assert_eq!(
        accepted,
        vec![
            (EntraUser::default().oid, "TEST-CONNECTED".to_owned()),
            ("8:acs:guest-1".to_owned(), "TEST-CONNECTED".to_owned()),
        ],
        "each event once"
    );
    assert_eq!(env.store.outbox_depth().await.unwrap().dead, 0);
    // The FHIR sink was never held back by the other one.
    assert_eq!(env.fhir.audit_events().len(), 4);
}

#[tokio::test]
async fn a_sink_that_stays_down_ends_in_dead_letters_shown_in_metrics() {
    let env = Env::start_with(Options {
        max_attempts: 2,
        ..Options::default()
    })
    .await;
    let page = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&page.visit_id()).await;
    env.epic.always_fail(503);
    call_with_patient(&env, &visit).await;
    env.eventually("dead letters", async || {
        env.store.outbox_depth().await.unwrap().dead >= 1
    })
    .await;
    let dead = env.store.list_dead(10).await.unwrap();
    assert!(
        dead.iter()
            .all(|d| d.sink.as_str() == "epic-connection-status")
    );
    assert!(dead.iter().all(|d| d.attempts == 2), "{dead:?}");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("503")),
        "{dead:?}"
    );
    let metrics = env.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("visitbridge_outbox_dead ") && l != "visitbridge_outbox_dead 0"),
        "{metrics}"
    );
    assert!(metrics.contains("visitbridge_notifications_total{result=\"recorded\"}"));
}
