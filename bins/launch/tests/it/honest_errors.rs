//! Errors people can act on: the EHR's error code when it sends no `state`, no internal address
//! on any page, an outage said as one, and every launch step ended by the launch deadline
//! whatever upstream hangs.

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path_regex},
};

use crate::harness::{Env, Options, Page};

/// What no error page may show: an upstream's address, or the word a stack trace would.
fn assert_no_internals(env: &Env, page: &Page) {
    for needle in [
        env.ehr.uri(),
        env.ms.uri(),
        "/oauth2/token".to_owned(),
        "/api/FHIR".to_owned(),
        "internal".to_owned(),
        "did not answer in time".to_owned(),
    ] {
        assert!(
            !page.body.contains(&needle),
            "{needle} on the page: {}",
            page.body
        );
    }
}

/// The outage page: try again, and nothing internal.
fn assert_ehr_trouble(env: &Env, page: &Page) {
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(
        page.body.contains("The EHR is having trouble right now"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Try again"), "{}", page.body);
    assert_no_internals(env, page);
}

#[tokio::test]
async fn an_ehr_error_without_state_names_the_ehrs_error_code_and_what_to_check() {
    let env = Env::start().await;
    // Some EHRs drop `state` on a POSTed authorize request that they refuse.
    let page = env
        .browser()
        .navigate(&format!(
            "{}/launch/callback?error=invalid_client&error_description=Client+eXYZ+unknown+to+\
             Camila",
            env.base
        ))
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("(invalid_client)"), "{}", page.body);
    assert!(page.body.contains("client id"), "{}", page.body);
    assert!(
        !page.body.contains("already been used"),
        "the EHR's refusal is not an expired link: {}",
        page.body
    );
    // The EHR's free text is never shown.
    assert!(!page.body.contains("Camila"), "{}", page.body);
    assert!(!page.body.contains("eXYZ"), "{}", page.body);

    // A code outside OAuth's registry is not echoed.
    let page = env
        .browser()
        .navigate(&format!(
            "{}/launch/callback?error=%3Cb%3ECamila%3C%2Fb%3E",
            env.base
        ))
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("unrecognised"), "{}", page.body);
    assert!(!page.body.contains("Camila"), "{}", page.body);

    // `server_error` is an outage, not a refusal.
    let page = env
        .browser()
        .navigate(&format!("{}/launch/callback?error=server_error", env.base))
        .await;
    assert!(
        page.body.contains("The EHR is having trouble right now"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn an_ehr_outage_says_try_again_and_shows_no_internal_address() {
    let env = Env::start_with(Options {
        extra_config: "http = { connect_timeout_secs = 1, total_timeout_secs = 1 }".into(),
        ..Options::default()
    })
    .await;
    let launch = env.launch_url("provider", &Env::visit_context());

    // The token endpoint answers 500 with OAuth's server_error.
    env.smart
        .set_token_error(Some((500, "server_error", "internal error at db-7.corp")));
    let page = env.browser().navigate(&launch).await;
    assert_ehr_trouble(&env, &page);
    assert!(!page.body.contains("Sign-in refused"), "{}", page.body);
    assert!(!page.body.contains("db-7.corp"), "{}", page.body);

    // The token endpoint does not answer in time (a per-call timeout inside the deadline).
    env.smart.set_token_error(None);
    env.smart.set_token_delay(Some(Duration::from_secs(3)));
    let page = env.browser().navigate(&launch).await;
    assert_ehr_trouble(&env, &page);
    env.smart.set_token_delay(None);

    // The FHIR server answers 503 to the visit's reads.
    Mock::given(method("GET"))
        .and(path_regex(r"/Appointment"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "0"))
        .with_priority(1)
        .mount(&env.ehr)
        .await;
    let page = env.browser().navigate(&launch).await;
    assert_ehr_trouble(&env, &page);
}

/// A service whose launch deadline is `seconds`.
async fn with_deadline(seconds: u64) -> Env {
    Env::start_with(Options {
        extra_config: format!("launch_deadline_seconds = {seconds}"),
        ..Options::default()
    })
    .await
}

fn assert_deadline_page(env: &Env, page: &Page, took: Duration) {
    assert_eq!(page.status, 504, "{}", page.body);
    assert!(page.body.contains("took too long"), "{}", page.body);
    assert!(page.body.contains("Try again"), "{}", page.body);
    assert_no_internals(env, page);
    // A bound, not a speed measurement: the upstream hangs for 30 s, the page comes by the
    // deadline (2 s) plus slack for a loaded machine.
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[tokio::test]
async fn a_hanging_discovery_or_token_endpoint_ends_the_launch_by_the_deadline() {
    let env = with_deadline(2).await;
    let launch = env.launch_url("provider", &Env::visit_context());

    env.smart.set_discovery_delay(Some(Duration::from_secs(30)));
    let started = Instant::now();
    let page = env.browser().navigate(&launch).await;
    assert_deadline_page(&env, &page, started.elapsed());
    env.smart.set_discovery_delay(None);

    env.smart.set_token_delay(Some(Duration::from_secs(30)));
    let started = Instant::now();
    let page = env.browser().navigate(&launch).await;
    assert_deadline_page(&env, &page, started.elapsed());
    env.smart.set_token_delay(None);

    // Once the EHR answers again, the same launch works.
    let page = env.browser().navigate(&launch).await;
    assert_eq!(page.status, 200, "{}", page.body);
}

#[tokio::test]
async fn hanging_fhir_reads_or_teams_end_the_launch_by_the_deadline() {
    let env = with_deadline(2).await;
    let launch = env.launch_url("provider", &Env::visit_context());
    // Linked first, so the next launches reach Graph.
    let first = env.browser().navigate(&launch).await;
    assert_eq!(first.status, 200, "{}", first.body);

    let fhir = Mock::given(method("GET"))
        .and(path_regex(r"/Appointment"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({}))
                .set_delay(Duration::from_secs(30)),
        )
        .with_priority(1)
        .mount_as_scoped(&env.ehr)
        .await;
    let started = Instant::now();
    let page = env.browser().navigate(&launch).await;
    assert_deadline_page(&env, &page, started.elapsed());
    drop(fhir);

    let graph = Mock::given(method("POST"))
        .and(path_regex(r"/onlineMeetings/createOrGet$"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .with_priority(1)
        .mount_as_scoped(&env.ms)
        .await;
    let started = Instant::now();
    let page = env.browser().navigate(&launch).await;
    assert_deadline_page(&env, &page, started.elapsed());
    drop(graph);
}
