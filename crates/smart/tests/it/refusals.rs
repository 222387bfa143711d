//! Every refusal of the spec: unknown issuer, state problems, missing S256, token errors, bad
//! id_tokens, throttling, timeouts and malformed answers.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use url::Url;
use visitbridge_http::Secret;
use visitbridge_smart::{
    ApprovedIssuer, InMemoryPendingLaunches, PendingLaunch, PendingLaunchStore, SmartClient,
    SmartClientConfig, SmartError, StaticIssuers, StoreError,
};
use visitbridge_testkit::smart::IdTokenFault;

use crate::common::*;

#[tokio::test]
async fn unknown_issuer_fails_before_any_request_to_it() {
    let ehr = Ehr::with_secret_basic().await;
    // The client approves only another EHR.
    let config = SmartClientConfig::new(
        CLIENT_ID,
        Url::parse(REDIRECT_URI).expect("url"),
        secret_basic(),
    );
    let other = ApprovedIssuer::new(
        Url::parse("https://ehr.example.org/fhir/R4").expect("url"),
        "other",
    );
    let client = SmartClient::new(
        config,
        http(),
        Arc::new(StaticIssuers::new([other])),
        Arc::new(InMemoryPendingLaunches::new()),
    );
    let base = ehr.fake.fhir_base();
    for iss in [
        base.clone(),
        format!("{base}/"),
        "https://ehr.example.org/fhir/R4-evil".to_owned(),
        "https://ehr.example.org/fhir/R4/extra".to_owned(),
        "https://ehr.example.org.evil.test/fhir/R4".to_owned(),
        "https://ehr.example.org/fhir/R4?x=1".to_owned(),
        "not a url".to_owned(),
    ] {
        let err = client
            .begin_ehr_launch(&iss, "launch-token", session())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, SmartError::IssuerNotApproved { .. }),
            "{iss}: {err}"
        );
        let err = client
            .begin_standalone_launch(&iss, Default::default())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, SmartError::IssuerNotApproved { .. }),
            "{iss}: {err}"
        );
    }
    let requests = ehr.server.received_requests().await.expect("recording");
    assert!(
        requests.is_empty(),
        "no request reached the unapproved issuer: {requests:?}"
    );
}

#[tokio::test]
async fn callback_with_another_state_is_refused_without_a_token_request() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client(secret_basic());
    let request = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    let callback = ehr.fake.browser_get(request.url().as_str()).await;
    let code = query_map(&callback)["code"].clone();
    let err = client
        .complete(&Secret::new(code.clone()), "a-state-we-never-issued")
        .await
        .expect_err("refused");
    assert!(matches!(err, SmartError::StateUnknownOrUsed), "{err}");
    assert!(ehr.fake.token_requests().is_empty());
    // The real state still works: a forged callback does not burn the launch.
    client
        .complete(&Secret::new(code), request.state().expose())
        .await
        .expect("the genuine callback completes");
}

#[tokio::test]
async fn callback_with_a_repeated_state_is_refused_without_a_token_request() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client(secret_basic());
    let victim = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    let attacker = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    let callback = ehr.fake.browser_get(attacker.url().as_str()).await;
    let code = query_map(&callback)["code"].clone();
    let victim_state = victim.state().expose();
    let attacker_state = attacker.state().expose();
    for query in [
        format!("state={victim_state}&code={code}&state={attacker_state}"),
        format!("code={code}&state={attacker_state}&code={code}"),
        format!("code={code}&state={attacker_state}&error=x&error=y"),
    ] {
        let err = client.complete_callback(&query).await.expect_err(&query);
        assert!(
            matches!(err, SmartError::MalformedCallback { .. }),
            "{query}: {err}"
        );
        assert!(!err.to_string().contains(&code), "{err}");
    }
    assert!(ehr.fake.token_requests().is_empty());
    // Neither launch was burnt by the forged callbacks: the genuine one completes.
    client
        .complete_callback(&format!("code={code}&state={attacker_state}"))
        .await
        .expect("the genuine callback completes");
}

#[tokio::test]
async fn replayed_callback_is_refused() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client(secret_basic());
    let request = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    let callback = ehr.fake.browser_get(request.url().as_str()).await;
    let query = callback.query().expect("query");
    client
        .complete_callback(query)
        .await
        .expect("first callback");
    let err = client.complete_callback(query).await.expect_err("replay");
    assert!(matches!(err, SmartError::StateUnknownOrUsed), "{err}");
    assert_eq!(
        ehr.fake.token_requests().len(),
        1,
        "the replay never reached the token endpoint"
    );
}

/// A store whose launches come back eleven minutes old.
struct AgingStore(InMemoryPendingLaunches);

#[async_trait::async_trait]
impl PendingLaunchStore for AgingStore {
    async fn put(&self, state: &str, launch: PendingLaunch) -> Result<(), StoreError> {
        self.0.put(state, launch).await
    }
    async fn take(&self, state: &str) -> Result<Option<PendingLaunch>, StoreError> {
        Ok(self.0.take(state).await?.map(|mut l| {
            l.created_at -= chrono::Duration::minutes(11);
            l
        }))
    }
}

#[tokio::test]
async fn launch_older_than_ten_minutes_is_refused() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client_with(
        secret_basic(),
        http(),
        Arc::new(AgingStore(InMemoryPendingLaunches::new())),
    );
    let err = ehr.launch(&client).await.expect_err("expired");
    assert!(matches!(err, SmartError::LaunchExpired), "{err}");
    assert!(ehr.fake.token_requests().is_empty());
}

#[tokio::test]
async fn server_without_s256_is_refused() {
    for methods in [&["plain"][..], &[][..]] {
        let ehr = Ehr::with_secret_basic().await;
        ehr.fake.set_code_challenge_methods(methods);
        let client = ehr.client(secret_basic());
        let err = client
            .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, SmartError::S256NotSupported { .. }),
            "{methods:?}: {err}"
        );
        assert!(ehr.fake.authorize_requests().is_empty());
    }
}

#[tokio::test]
async fn token_error_json_is_reported_without_secrets() {
    let ehr = Ehr::with_secret_basic().await;
    ehr.fake.set_token_error(Some((
        400,
        "invalid_grant",
        "The authorization code has expired.",
    )));
    let client = ehr.client(secret_basic());
    let request = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    let callback = ehr.fake.browser_get(request.url().as_str()).await;
    let err = client
        .complete_callback(callback.query().expect("query"))
        .await
        .expect_err("token error");
    match &err {
        SmartError::TokenEndpoint { error, description } => {
            assert_eq!(error, "invalid_grant");
            assert_eq!(
                description.as_deref(),
                Some("The authorization code has expired.")
            );
        }
        other => panic!("unexpected {other}"),
    }
    let shown = format!("{err} {err:?}");
    let form = &ehr.fake.token_requests()[0].form;
    for secret in [
        &form["code"],
        &form["code_verifier"],
        &CLIENT_SECRET.to_owned(),
    ] {
        assert!(!shown.contains(secret.as_str()), "{shown}");
    }
}

#[tokio::test]
async fn invalid_client_credentials_are_a_token_endpoint_error() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client(visitbridge_smart::ClientAuth::SecretBasic(Secret::new(
        "wrong",
    )));
    let err = ehr.launch(&client).await.expect_err("refused");
    assert!(
        matches!(&err, SmartError::TokenEndpoint { error, .. } if error == "invalid_client"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_id_tokens_are_rejected() {
    let cases = [
        (IdTokenFault::SignedByAttacker, "signature"),
        (IdTokenFault::WrongAudience, "aud"),
        (IdTokenFault::Expired, "expired"),
        (IdTokenFault::WrongNonce, "nonce"),
        (IdTokenFault::WrongIssuer, "iss"),
        (IdTokenFault::UnknownKid, "kid"),
        (IdTokenFault::Missing, "none"),
    ];
    for (fault, word) in cases {
        let ehr = Ehr::with_secret_basic().await;
        ehr.fake.set_id_token_fault(Some(fault));
        let client = ehr.client(secret_basic());
        let err = ehr.launch(&client).await.expect_err("rejected");
        match &err {
            SmartError::IdToken(reason) => assert!(reason.contains(word), "{fault:?}: {reason}"),
            other => panic!("{fault:?}: unexpected {other}"),
        }
    }
}

#[tokio::test]
async fn token_429_with_retry_after_is_waited_for_then_succeeds() {
    let ehr = Ehr::with_secret_basic().await;
    ehr.fake.throttle_token_once(1);
    let client = ehr.client(secret_basic());
    let request = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    let callback = ehr.fake.browser_get(request.url().as_str()).await;
    let started = Instant::now();
    client
        .complete_callback(callback.query().expect("query"))
        .await
        .expect("completes after the wait");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    let requests = ehr.fake.token_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].form["code"], requests[1].form["code"]);
}

#[tokio::test]
async fn discovery_429_with_retry_after_is_waited_for_then_succeeds() {
    let ehr = Ehr::with_secret_basic().await;
    ehr.fake.throttle_discovery_once(1);
    let client = ehr.client(secret_basic());
    let started = Instant::now();
    client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begins after the wait");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(ehr.fake.discovery_requests(), 2);
}

#[tokio::test]
async fn slow_token_endpoint_is_a_timeout_and_not_retried() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client_with(
        secret_basic(),
        http_with_timeout(Duration::from_millis(300)),
        Arc::new(InMemoryPendingLaunches::new()),
    );
    let request = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    let callback = ehr.fake.browser_get(request.url().as_str()).await;
    ehr.fake.set_token_delay(Some(Duration::from_secs(3)));
    let err = client
        .complete_callback(callback.query().expect("query"))
        .await
        .expect_err("timeout");
    assert!(matches!(err, SmartError::Timeout { .. }), "{err}");
    assert_eq!(
        ehr.fake.token_requests().len(),
        1,
        "a code exchange is not retried after a timeout"
    );
}

#[tokio::test]
async fn slow_discovery_is_a_timeout() {
    let ehr = Ehr::with_secret_basic().await;
    ehr.fake.set_discovery_delay(Some(Duration::from_secs(3)));
    let config = SmartClientConfig::new(
        CLIENT_ID,
        Url::parse(REDIRECT_URI).expect("url"),
        secret_basic(),
    );
    let http = http_with_timeout(Duration::from_millis(300));
    let client = SmartClient::new(
        config,
        http.clone(),
        Arc::new(StaticIssuers::new([ehr.approved()])),
        Arc::new(InMemoryPendingLaunches::new()),
    )
    .with_discovery(
        visitbridge_smart::SmartDiscovery::new(http, Default::default())
            .with_retry_policy(visitbridge_http::RetryPolicy::none()),
    );
    let err = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect_err("timeout");
    assert!(matches!(err, SmartError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn malformed_token_json_is_reported() {
    let ehr = Ehr::with_secret_basic().await;
    ehr.fake.set_token_malformed(true);
    let client = ehr.client(secret_basic());
    let err = ehr.launch(&client).await.expect_err("malformed");
    assert!(matches!(err, SmartError::MalformedResponse { .. }), "{err}");
}

#[tokio::test]
async fn authorization_error_callback_is_reported_and_discards_the_launch() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client(secret_basic());
    let request = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    let state = request.state().expose().to_owned();
    let err = client
        .complete_callback(&format!(
            "error=access_denied&error_description=User+cancelled&state={state}"
        ))
        .await
        .expect_err("denied");
    assert!(
        matches!(&err, SmartError::AuthorizationDenied { error, .. } if error == "access_denied"),
        "{err}"
    );
    let err = client
        .complete(&Secret::new("some-code"), &state)
        .await
        .expect_err("discarded");
    assert!(matches!(err, SmartError::StateUnknownOrUsed), "{err}");
}

/// A policy whose approval can be withdrawn.
struct Revocable(std::sync::Mutex<Option<ApprovedIssuer>>);

#[async_trait::async_trait]
impl visitbridge_smart::IssuerPolicy for Revocable {
    async fn is_approved(
        &self,
        iss: &visitbridge_smart::NormalizedIssuer,
    ) -> Option<ApprovedIssuer> {
        let approved = self.0.lock().expect("lock").clone()?;
        (approved.normalized().as_ref() == Some(iss)).then_some(approved)
    }
}

#[tokio::test]
async fn approval_withdrawn_during_the_launch_stops_the_callback() {
    let ehr = Ehr::with_secret_basic().await;
    let policy = Arc::new(Revocable(std::sync::Mutex::new(Some(ehr.approved()))));
    let config = SmartClientConfig::new(
        CLIENT_ID,
        Url::parse(REDIRECT_URI).expect("url"),
        secret_basic(),
    );
    let client = SmartClient::new(
        config,
        http(),
        policy.clone(),
        Arc::new(InMemoryPendingLaunches::new()),
    );
    let request = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token", session())
        .await
        .expect("begin");
    let callback = ehr.fake.browser_get(request.url().as_str()).await;
    *policy.0.lock().expect("lock") = None;
    let err = client
        .complete_callback(callback.query().expect("query"))
        .await
        .expect_err("refused");
    assert!(matches!(err, SmartError::IssuerNotApproved { .. }), "{err}");
    assert!(ehr.fake.token_requests().is_empty());
}
