//! The Teams meeting is planned at the appointment's times (the slot the clinician and patient see
//! in Teams), and follows the appointment when the EHR moves it.

use chrono::{DateTime, Utc};
use serde_json::Value;
use visitbridge_testkit::{
    fhir::{APPOINTMENT_ID, fhir_json},
    fixtures,
};
use wiremock::{
    Mock,
    matchers::{method, path},
};

use crate::{
    harness::{Env, Page},
    patient::{FIXTURE_CSN, patient_context},
    provider::provider_launch,
};

fn instant(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a date-time"))
        .expect("rfc 3339")
        .with_timezone(&Utc)
}

fn at(text: &str) -> DateTime<Utc> {
    instant(&Value::String(text.to_owned()))
}

/// The visit's meeting's times as Graph holds them (what Teams shows).
async fn meeting_times(env: &Env, page: &Page) -> (DateTime<Utc>, DateTime<Utc>) {
    assert_eq!(env.graph.meeting_count(), 1, "one meeting per visit");
    let visit = env.visit(&page.visit_id()).await;
    let id = visit.graph_meeting_id.expect("the visit's meeting");
    let stored = env.graph.meeting(&id).expect("the meeting");
    (
        instant(&stored["startDateTime"]),
        instant(&stored["endDateTime"]),
    )
}

/// The times sent to Graph by PATCH, in order (createOrGet's are in `create_or_get_bodies`).
fn patched_times(env: &Env) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    env.graph
        .patch_bodies()
        .iter()
        .filter(|b| b.get("startDateTime").is_some() || b.get("endDateTime").is_some())
        .map(|b| (instant(&b["startDateTime"]), instant(&b["endDateTime"])))
        .collect()
}

async fn move_appointment(env: &Env, start: &str, minutes: u32) {
    let mut appointment: Value = serde_json::from_str(fixtures::EPIC_APPOINTMENT).unwrap();
    appointment["start"] = Value::String(start.to_owned());
    appointment.as_object_mut().unwrap().remove("end");
    appointment["minutesDuration"] = minutes.into();
    Mock::given(method("GET"))
        .and(path(
            env.fhir.path(&format!("Appointment/{APPOINTMENT_ID}")),
        ))
        .respond_with(fhir_json(200, appointment.to_string()))
        .with_priority(1)
        .mount(&env.ehr)
        .await;
}

#[tokio::test]
async fn the_meeting_takes_the_appointment_times_and_follows_a_move() {
    let env = Env::start().await;
    let browser = env.browser();

    // The first launch goes through the one-time Microsoft sign-in, which keeps no appointment
    // times: the meeting gets Graph's default slot, and no times are patched.
    let before = Utc::now();
    let page = provider_launch(&env, &browser).await;
    assert!(
        patched_times(&env).is_empty(),
        "{:?}",
        env.graph.patch_bodies()
    );
    for body in env.graph.create_or_get_bodies() {
        assert!(body.get("startDateTime").is_none(), "{body}");
        assert!(body.get("endDateTime").is_none(), "{body}");
    }
    let (start, end) = meeting_times(&env, &page).await;
    assert!(start >= before - chrono::Duration::seconds(1), "{start}");
    assert_eq!(end - start, chrono::Duration::hours(1));

    // The next launch reads the Appointment (18:00–18:30) and puts the meeting at its times.
    let page = provider_launch(&env, &browser).await;
    assert_eq!(
        patched_times(&env),
        vec![(at("2026-03-05T18:00:00Z"), at("2026-03-05T18:30:00Z"))]
    );
    assert_eq!(
        meeting_times(&env, &page).await,
        (at("2026-03-05T18:00:00Z"), at("2026-03-05T18:30:00Z"))
    );

    // Unchanged times: nothing to patch.
    let patches = env.graph.patch_bodies().len();
    provider_launch(&env, &browser).await;
    assert_eq!(env.graph.patch_bodies().len(), patches);

    // The EHR moves the visit to 19:15 for 45 minutes (start + minutesDuration, no end).
    move_appointment(&env, "2026-03-05T14:15:00-05:00", 45).await;
    let page = provider_launch(&env, &browser).await;
    assert_eq!(
        patched_times(&env).last().copied(),
        Some((at("2026-03-05T19:15:00Z"), at("2026-03-05T20:00:00Z")))
    );
    assert_eq!(
        meeting_times(&env, &page).await,
        (at("2026-03-05T19:15:00Z"), at("2026-03-05T20:00:00Z"))
    );
    assert_eq!(env.graph.meeting_count(), 1, "the same meeting, moved");
}

#[tokio::test]
async fn a_meeting_made_at_the_patients_launch_is_created_at_the_appointment_times() {
    let env = Env::start().await;
    // The practitioner linked their Microsoft account at an earlier visit.
    env.another_visit("eEarlierVisit0000000000001", "77000002")
        .await;
    let linked = env
        .browser()
        .navigate(&env.launch_url("provider", &patient_context("77000002")))
        .await;
    assert_eq!(linked.status, 200, "{}", linked.body);
    env.attest_appointment(APPOINTMENT_ID);
    let earlier = env.graph.create_or_get_bodies().len();

    // Today's visit, the patient first: the Appointment is read before the meeting is made.
    let page = env
        .browser()
        .navigate(&env.launch_url("patient", &patient_context(FIXTURE_CSN)))
        .await;
    assert!(page.teams.is_some(), "{}", page.body);
    let created = &env.graph.create_or_get_bodies()[earlier];
    assert_eq!(
        (
            instant(&created["startDateTime"]),
            instant(&created["endDateTime"])
        ),
        (at("2026-03-05T18:00:00Z"), at("2026-03-05T18:30:00Z")),
        "{created}"
    );
    // Created at the right times: the one PATCH is the lobby policy, without times.
    let last = env.graph.patch_bodies().last().cloned().unwrap();
    assert!(last.get("startDateTime").is_none(), "{last}");
    assert_eq!(last["lobbyBypassSettings"]["scope"], "organization");
}
