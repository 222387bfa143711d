//! Refusals: unapproved issuers (without a single outbound call), test/production mix-ups,
//! tampered and replayed callbacks, another browser, forged webhooks, open redirects.

use visitbridge_approval::Environment;
use visitbridge_testkit::graph::{plain_notification, roster_update, user_participant};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};

use crate::{
    harness::{Browser, Env, Options},
    provider::provider_launch,
};

/// The launch up to the EHR's redirect back: the callback URL, not yet opened.
pub(crate) async fn callback_url(env: &Env, browser: &Browser) -> String {
    callback_url_of(env, browser, "provider", &Env::visit_context()).await
}

/// [`callback_url`] of a launch of `record` with `context`.
pub(crate) async fn callback_url_of(
    env: &Env,
    browser: &Browser,
    record: &str,
    context: &[(&str, &str)],
) -> String {
    let response = browser.get(&env.launch_url(record, context)).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    // Epic advertises authorize-post: the page is the auto-posting form.
    let action_at = body.find("action=\"").unwrap() + 8;
    let action = body[action_at..action_at + body[action_at..].find('"').unwrap()].to_owned();
    assert_eq!(action, env.smart.authorize_url(), "posts only to the EHR");
    let fields: Vec<(String, String)> = body
        .split("<input ")
        .skip(1)
        .map(|tag| {
            let attr = |name: &str| {
                let s = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                tag[s..s + tag[s..].find('"').unwrap()]
                    .replace("&#x2F;", "/")
                    .replace("&amp;", "&")
            };
            (attr("name"), attr("value"))
        })
        .collect();
    env.smart.browser_post(&action, &fields).await.to_string()
}

#[tokio::test]
async fn an_unapproved_issuer_is_refused_without_any_outbound_call() {
    let env = Env::start().await;
    let rogue = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&rogue)
        .await;
    let url = format!(
        "{}/launch/provider?iss={}/api/FHIR/R4&launch=x&sessionId=1&environment=test",
        env.base,
        rogue.uri()
    );
    let page = env.browser().navigate(&url).await;
    assert_eq!(page.status, 403);
    assert!(
        page.body.contains("is not approved for virtual visits"),
        "{}",
        page.body
    );
    assert!(page.body.contains("approve it in the VisitBridge portal"));
    assert!(
        page.body.contains("127.0.0.1"),
        "names the EHR host: {}",
        page.body
    );
    assert_eq!(
        page.trail.len(),
        1,
        "no redirect anywhere: {:?}",
        page.trail
    );
    assert!(rogue.received_requests().await.unwrap().is_empty());
    // The approved EHR may see background upkeep (discovery refresh, write-back set-up), but
    // nothing of this launch: no authorization request and no code exchange.
    assert!(env.smart.authorize_requests().is_empty());
    assert!(
        env.smart
            .token_requests()
            .iter()
            .all(|r| r.form.get("grant_type").map(String::as_str) != Some("authorization_code")),
        "a code was exchanged"
    );
    // Microsoft may see background warm-up (OpenID discovery, an app token), but no meeting.
    let meeting_calls = env
        .ms
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().contains("onlineMeetings"))
        .count();
    assert_eq!(
        meeting_calls, 0,
        "a meeting was touched for an unapproved issuer"
    );

    // A prefix of the approved URL is not the approved URL either.
    let prefix = format!(
        "{}/launch/provider?iss={}-evil&launch=x",
        env.base,
        env.smart.fhir_base()
    );
    assert_eq!(env.browser().navigate(&prefix).await.status, 403);
    assert!(env.smart.authorize_requests().is_empty());
}

#[tokio::test]
async fn a_production_record_against_a_test_approval_is_explained() {
    let env = Env::start_with(Options {
        environment: Environment::Test,
        ..Options::default()
    })
    .await;
    let page = env
        .browser()
        .navigate(&env.launch_url(
            "provider",
            &[("sessionId", "1"), ("environment", "production")],
        ))
        .await;
    assert_eq!(page.status, 403);
    assert!(
        page.body.contains("came from a production record"),
        "{}",
        page.body
    );
    assert!(page.body.contains("approved only as test"), "{}", page.body);
    assert_eq!(env.smart.discovery_requests(), 0);
}

#[tokio::test]
async fn broken_records_are_explained() {
    let env = Env::start().await;
    let page = env
        .browser()
        .navigate(&format!("{}/launch/provider?launch=x", env.base))
        .await;
    assert_eq!(page.status, 400);
    assert!(
        page.body.contains("missing its iss or launch"),
        "{}",
        page.body
    );
    let page = env
        .browser()
        .navigate(&env.launch_url("provider", &[("sessionId", "%CSN%")]))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("%CSN%"), "{}", page.body);
    assert!(page.body.contains("copy the record again"));
}

#[tokio::test]
async fn a_tampered_state_is_refused() {
    let env = Env::start().await;
    let browser = env.browser();
    let callback = callback_url(&env, &browser).await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let page = browser.navigate(url.as_str()).await;
    assert_eq!(page.status, 400);
    assert!(
        page.body.contains("already been used or has expired"),
        "{}",
        page.body
    );
    assert!(env.smart.token_requests().is_empty(), "no code exchange");
}

#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let env = Env::start().await;
    let browser = env.browser();
    let callback = callback_url(&env, &browser).await;
    let first = browser.navigate(&callback).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let token_requests = env.smart.token_requests().len();
    let again = browser.navigate(&callback).await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("already been used"), "{}", again.body);
    assert_eq!(env.smart.token_requests().len(), token_requests);
}

#[tokio::test]
async fn a_callback_in_another_browser_is_refused() {
    let env = Env::start().await;
    let callback = callback_url(&env, &env.browser()).await;
    let page = env.browser().navigate(&callback).await;
    assert_eq!(page.status, 403);
    assert!(
        page.body.contains("started in another browser"),
        "{}",
        page.body
    );
    assert!(env.smart.token_requests().is_empty());
}

#[tokio::test]
async fn redirects_go_only_to_the_ehr_microsoft_and_teams() {
    let env = Env::start().await;
    let browser = env.browser();
    provider_launch(&env, &browser).await;
    let patient = env
        .browser()
        .navigate(&env.launch_url("patient", &Env::visit_context()))
        .await;
    let allowed = [env.base.clone(), env.ehr.uri(), env.ms.uri()];
    for url in patient.trail.iter() {
        assert!(
            allowed.iter().any(|a| url.starts_with(a.as_str())),
            "unexpected hop {url}"
        );
    }
    assert!(patient.teams.is_some());
    // The sign-in callbacks take no redirect target from the request.
    let odd = browser
        .navigate(&format!(
            "{}/launch/callback?code=x&state=y&redirect_uri=https://evil.example/",
            env.base
        ))
        .await;
    assert_eq!(odd.status, 400);
    assert_eq!(odd.trail.len(), 1);
}

#[tokio::test]
async fn a_forged_notification_is_refused_and_nothing_is_stored() {
    let env = Env::start().await;
    let page = provider_launch(&env, &env.browser()).await;
    let visit = env.visit(&page.visit_id()).await;
    let join = visit.join_web_url.clone().unwrap();
    let payload = roster_update(
        "2026-03-05T18:02:11.512Z",
        vec![user_participant("leg-1", "attacker-oid", "Mallory")],
        vec![],
    );
    let forged = plain_notification("sub-1", "not-the-client-state", &join, payload);
    let response = reqwest::Client::new()
        .post(format!("{}/graph/notifications", env.base))
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        env.store
            .events_for_visit(&visit.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(env.store.outbox_depth().await.unwrap().pending, 0);

    // Graph's validation handshake is answered as Graph expects.
    let handshake = reqwest::Client::new()
        .post(format!(
            "{}/graph/notifications?validationToken=Validation%3A%20ok",
            env.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(handshake.status(), 200);
    assert_eq!(handshake.text().await.unwrap(), "Validation: ok");
}
