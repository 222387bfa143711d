//! The clinician's launch: first time with the Microsoft link, then straight to the meeting; one
//! meeting per visit however many launches.

use visitbridge_approval::{EhrUserId, FhirBaseUrl, UrlPolicy};
use visitbridge_testkit::{entra, fhir::APPOINTMENT_ID, smart::PRACTITIONER_ID};

use crate::harness::{Browser, Env, is_teams};

/// Launches as the clinician in `browser` and returns the visit page.
pub(crate) async fn provider_launch(env: &Env, browser: &Browser) -> crate::harness::Page {
    let page = browser
        .navigate(&env.launch_url("provider", &Env::visit_context()))
        .await;
    assert_eq!(page.status, 200, "{} {}", page.url, page.body);
    page
}

#[tokio::test]
async fn first_launch_links_the_microsoft_account_then_opens_the_visit_page() {
    let env = Env::start().await;
    let browser = env.browser();
    let page = provider_launch(&env, &browser).await;

    // The trail went EHR sign-in -> our callback -> Microsoft sign-in -> our callback -> page.
    assert!(
        page.trail
            .iter()
            .any(|u| u.contains("/oauth2/v2.0/authorize")),
        "{:?}",
        page.trail
    );
    assert!(page.url.contains("/visits/"), "{}", page.url);
    assert!(page.body.contains("Join the meeting"), "{}", page.body);
    assert!(
        page.body
            .contains("https://teams.microsoft.com/l/meetup-join/")
    );
    assert!(page.body.contains("msteams:/l/meetup-join/"));

    // The EHR user is linked to the Microsoft user who signed in.
    let link = env
        .store
        .get_user_link(
            &FhirBaseUrl::parse(&env.smart.fhir_base(), UrlPolicy::DEVELOPMENT).unwrap(),
            &EhrUserId::new(format!("Practitioner/{PRACTITIONER_ID}")).unwrap(),
        )
        .await
        .unwrap()
        .expect("linked");
    assert_eq!(
        link.microsoft_object_id.as_str(),
        entra::EntraUser::default().oid
    );

    // One meeting, organised by that user, with the safe policy applied before anyone joined.
    assert_eq!(env.graph.meeting_count(), 1);
    let visit = env.visit(&page.visit_id()).await;
    assert_eq!(
        visit.organizer_object_id.as_ref().map(|o| o.as_str()),
        Some(entra::EntraUser::default().oid.as_str())
    );
    assert_eq!(visit.appointment_fhir_id.as_deref(), Some(APPOINTMENT_ID));
    assert_eq!(visit.conference_id.as_deref(), Some("10000001234"));
    // The department reports filter on: the Appointment's Location, by its name in the EHR
    // (rather than the launch URL's unsigned departmentId).
    assert_eq!(visit.department.as_deref(), Some("EMC FAMILY MEDICINE"));
    let meeting = env
        .graph
        .meeting(visit.graph_meeting_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(meeting["lobbyBypassSettings"]["scope"], "organization");
    assert_eq!(meeting["allowMeetingChat"], "limited");
    // The subject carries nothing about the patient.
    assert_eq!(meeting["subject"], "Virtual visit");
    // The CSN never reaches Microsoft: the externalId is a keyed hash.
    let external = meeting["externalId"].as_str().unwrap();
    assert!(external.starts_with("vb-") && !external.contains("10000001234"));

    // A subscription to the meeting's call events is created in the background.
    env.eventually("a subscription", async || {
        !env.graph.subscription_requests().is_empty()
    })
    .await;
    let request = &env.graph.subscription_requests()[0];
    assert_eq!(request["clientState"], crate::harness::CLIENT_STATE);
    assert_eq!(
        request["notificationUrl"],
        "https://visits.example.test/graph/notifications"
    );
    assert!(
        request["resource"]
            .as_str()
            .unwrap()
            .contains(visit.join_web_url.as_deref().unwrap())
    );
}

#[tokio::test]
async fn a_repeat_launch_goes_straight_to_the_meeting_without_signing_in_again() {
    let env = Env::start().await;
    let first = provider_launch(&env, &env.browser()).await;
    let sign_ins = |page: &crate::harness::Page| {
        page.trail
            .iter()
            .filter(|u| u.contains("/oauth2/v2.0/authorize"))
            .count()
    };
    assert_eq!(sign_ins(&first), 1);

    // Another day, another browser: no Microsoft sign-in, same visit, same meeting.
    let second = provider_launch(&env, &env.browser()).await;
    assert_eq!(sign_ins(&second), 0, "{:?}", second.trail);
    assert_eq!(second.visit_id(), first.visit_id());
    assert_eq!(env.graph.meeting_count(), 1);
    // The existing meeting already had the policy: no second policy PATCH (the second sets the
    // appointment's times, which the launch continuing the Microsoft sign-in did not keep).
    let patches = env.graph.patch_bodies();
    assert_eq!(patches.len(), 2);
    assert!(
        patches[1].get("lobbyBypassSettings").is_none(),
        "{patches:?}"
    );
}

#[tokio::test]
async fn concurrent_launches_of_one_visit_make_one_meeting() {
    let env = Env::start().await;
    // Link first, so that the concurrent launches all take the fast path.
    provider_launch(&env, &env.browser()).await;
    // A second visit (another appointment, with its own CSN), launched five times at once.
    env.another_visit("eSecondVisit00000000000001", "77000001")
        .await;
    let context = vec![("sessionId", "77000001"), ("environment", "test")];
    let launches = (0..5).map(|_| {
        let browser = env.browser();
        let url = env.launch_url("provider", &context);
        async move { browser.navigate(&url).await }
    });
    let pages = futures_util::future::join_all(launches).await;
    let ids: std::collections::BTreeSet<String> = pages
        .iter()
        .map(|p| {
            assert_eq!(p.status, 200, "{}", p.body);
            p.visit_id()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one visit row for one visit: {ids:?}");
    assert_eq!(env.graph.meeting_count(), 2, "one meeting per visit");
    let visit = env.visit(ids.iter().next().unwrap()).await;
    assert_eq!(visit.conference_id.as_deref(), Some("77000001"));
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let visits = env
        .store
        .visits_since(&visit.configuration_id, since, 10)
        .await
        .unwrap();
    assert_eq!(visits.len(), 2);
}

#[tokio::test]
async fn a_clinician_without_an_access_policy_is_told_what_the_administrator_must_run() {
    let env = Env::start().await;
    env.graph
        .deny_access_policy(&entra::EntraUser::default().oid);
    let page = env
        .browser()
        .navigate(&env.launch_url("provider", &Env::visit_context()))
        .await;
    assert_eq!(page.status, 502);
    assert!(
        page.body.contains("application access policy"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Grant-CsApplicationAccessPolicy"),
        "{}",
        page.body
    );
    assert!(page.teams.is_none());
}

#[tokio::test]
async fn the_visit_page_needs_the_launch_session() {
    let env = Env::start().await;
    let browser = env.browser();
    let page = provider_launch(&env, &browser).await;
    // Without the session cookie: no page, no events.
    let stranger = Browser::new(&env.base);
    let response = stranger.get(&page.url).await;
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    assert!(body.contains("Open this visit from the EHR"), "{body}");
    let events = stranger.get(&format!("{}/events", page.url)).await;
    assert_eq!(events.status(), 401);
    // With it, but for another visit: refused as well.
    let other = browser
        .get(&format!("{}/visits/not-this-visit", env.base))
        .await;
    assert_eq!(other.status(), 401);
    assert!(!is_teams(&page.url));
}
