//! Successful launches: EHR (GET and POST forms), standalone, each client authentication.

use chrono::Utc;
use visitbridge_fhir::TokenSource;
use visitbridge_smart::{ClientAuth, LaunchKind};
use visitbridge_testkit::smart::{ExpectedClientAuth, PRACTITIONER_ID};

use crate::common::*;

#[tokio::test]
async fn ehr_launch_sends_a_complete_authorization_request_and_yields_context_and_user() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client(secret_basic());
    let iss = ehr.fake.fhir_base();

    let request = client
        .begin_ehr_launch(&iss, "launch-token-123", session())
        .await
        .expect("begin");

    let url = request.url();
    assert_eq!(
        url.as_str().split('?').next(),
        Some(ehr.fake.authorize_url().as_str())
    );
    let q = query_map(&url);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], REDIRECT_URI);
    assert_eq!(q["launch"], "launch-token-123");
    assert_eq!(q["scope"], EHR_SCOPE);
    assert_eq!(q["aud"], iss);
    assert_eq!(q["code_challenge_method"], "S256");
    let state = &q["state"];
    assert!(
        state.len() >= 22,
        "state carries at least 128 bits: {state}"
    );
    assert!(
        state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "state is base64url: {state}"
    );
    assert_eq!(state, request.state().expose());
    assert!(q.contains_key("nonce"), "openid scope sends a nonce");
    // The form carries exactly the same parameters.
    let form: std::collections::BTreeMap<String, String> =
        request.form_fields().iter().cloned().collect();
    assert_eq!(form, q);
    assert!(request.prefers_post(), "the fixture lists authorize-post");

    let callback = ehr.fake.browser_get(url.as_str()).await;
    assert!(callback.as_str().starts_with(REDIRECT_URI));
    let done = client
        .complete_callback(callback.query().expect("query"))
        .await
        .expect("complete");

    // The verifier sent at the token endpoint is the one whose S256 we sent to authorize.
    let token_requests = ehr.fake.token_requests();
    assert_eq!(token_requests.len(), 1);
    let form = &token_requests[0].form;
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["redirect_uri"], REDIRECT_URI);
    assert_eq!(s256(&form["code_verifier"]), q["code_challenge"]);
    assert!(
        token_requests[0]
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
    );

    // Launch context: Epic's fields and the unknown ones.
    let c = &done.context;
    assert_eq!(c.patient.as_deref(), Some("erXuFYUfucBZaryVksYEcMg3"));
    assert_eq!(c.encounter.as_deref(), Some("eySnzekbpf6uGZz87ndPuRQ3"));
    assert_eq!(
        c.appointment.as_deref(),
        Some("eVa-Ad1SCIenVq8CYQVxfKwGtP-DfG3nIy9-5oPwTg2g3")
    );
    assert_eq!(
        c.location.as_deref(),
        Some("e4W4rmGe9QzuGm2Dy4NBqVc0KDe6yGxNaypmj3qA0ZuU3")
    );
    assert_eq!(
        c.login_department.as_deref(),
        Some("e4W4rmGe9QzuGm2Dy4NBqVc0KDe6yGxNaypmj3qA0ZuU3")
    );
    assert_eq!(c.need_patient_banner, Some(false));
    assert!(
        c.smart_style_url
            .as_deref()
            .is_some_and(|u| u.ends_with("style.json"))
    );
    assert_eq!(
        c.other.get("__epic.dstu2.patient").and_then(|v| v.as_str()),
        Some("T1wI5bk8n1YVgvWk9D05BmRV0Pi3ECImNSK8DKyKltsMB")
    );
    assert!(!c.other.contains_key("id_token") && !c.other.contains_key("access_token"));

    // The user comes from the validated id_token.
    let user = done.ehr_user.as_ref().expect("ehr user");
    assert_eq!(
        user.fhir_user.as_deref(),
        Some(ehr.fake.fhir_user().as_str())
    );
    assert_eq!(user.id(), ehr.fake.fhir_user());
    assert_eq!(
        user.fhir_user_reference(),
        Some(("Practitioner", PRACTITIONER_ID))
    );
    assert_eq!(user.subject, PRACTITIONER_ID);
    assert_eq!(user.issuer, ehr.fake.issuer());

    // Token, scope, the pending record's context.
    assert!(!done.access_token.expose().is_empty());
    assert!(!format!("{done:?}").contains(done.access_token.expose()));
    assert!(done.scope.iter().any(|s| s == "user/Appointment.read"));
    let life = done
        .expires_at
        .signed_duration_since(Utc::now())
        .num_seconds();
    assert!((3500..=3600).contains(&life), "expires_in 3600: {life}");
    assert_eq!(done.pending.kind, LaunchKind::Ehr);
    assert_eq!(done.pending.record_context, session());
    assert_eq!(done.issuer, ehr.approved());
    assert_eq!(
        done.token_source()
            .access_token()
            .await
            .expect("token")
            .expose(),
        done.access_token.expose()
    );
}

#[tokio::test]
async fn ehr_launch_through_the_post_form_with_client_secret_post() {
    let ehr = Ehr::start(ExpectedClientAuth::SecretPost {
        client_id: CLIENT_ID.into(),
        secret: CLIENT_SECRET.into(),
    })
    .await;
    let client = ehr.client(ClientAuth::SecretPost(CLIENT_SECRET.into()));
    let request = client
        .begin_ehr_launch(&ehr.fake.fhir_base(), "launch-token-123", session())
        .await
        .expect("begin");
    assert_eq!(request.form_action().as_str(), ehr.fake.authorize_url());
    let callback = ehr
        .fake
        .browser_post(request.form_action().as_str(), request.form_fields())
        .await;
    let authorize = ehr.fake.authorize_requests();
    assert_eq!(authorize.len(), 1);
    assert_eq!(authorize[0]["launch"], "launch-token-123");
    let done = client
        .complete_callback(callback.query().expect("query"))
        .await
        .expect("complete");
    assert!(done.ehr_user.is_some());
    let form = &ehr.fake.token_requests()[0].form;
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
}

#[tokio::test]
async fn public_clients_send_only_their_client_id_and_rely_on_pkce() {
    let ehr = Ehr::start(ExpectedClientAuth::Any).await;
    let client = ehr.client(ClientAuth::Public);
    let done = ehr.launch(&client).await.expect("public launch");
    assert!(done.ehr_user.is_some());
    let request = &ehr.fake.token_requests()[0];
    assert_eq!(request.form["client_id"], CLIENT_ID);
    assert!(request.form.contains_key("code_verifier"));
    assert!(!request.form.contains_key("client_secret"));
    assert!(!request.form.contains_key("client_assertion"));
    assert_eq!(request.authorization, None);
}

#[tokio::test]
async fn standalone_launch_with_private_key_jwt_rs384() {
    let ehr = Ehr::start(expect_rsa_jwt()).await;
    let client = ehr.client(ClientAuth::PrivateKeyJwt(rsa_key()));
    let request = client
        .begin_standalone_launch(&ehr.fake.fhir_base(), Default::default())
        .await
        .expect("begin");
    let q = query_map(&request.url());
    assert!(
        !q.contains_key("launch"),
        "a standalone launch has no launch parameter"
    );
    assert_eq!(q["scope"], STANDALONE_SCOPE);
    assert_eq!(q["aud"], ehr.fake.fhir_base());

    let callback = ehr.fake.browser_get(request.url().as_str()).await;
    let done = client
        .complete_callback(callback.query().expect("query"))
        .await
        .expect("complete");
    assert_eq!(done.pending.kind, LaunchKind::Standalone);
    assert_eq!(
        done.context.patient.as_deref(),
        Some("erXuFYUfucBZaryVksYEcMg3")
    );

    // The fake verified the assertion against CLIENT_RSA_PUB; check its shape too.
    let form = &ehr.fake.token_requests()[0].form;
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let (header, claims) = jwt_parts(&form["client_assertion"]);
    assert_eq!(header["alg"], "RS384");
    assert_eq!(header["kid"], CLIENT_KID);
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["aud"], ehr.fake.token_url());
    let exp = claims["exp"].as_i64().expect("exp");
    assert!(
        exp - Utc::now().timestamp() <= 300,
        "assertion lives at most five minutes"
    );
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert!(!form.contains_key("client_secret"));
}

#[tokio::test]
async fn private_key_jwt_es384_is_accepted() {
    let ehr = Ehr::start(
        visitbridge_testkit::smart::ExpectedClientAuth::PrivateKeyJwt {
            client_id: CLIENT_ID.into(),
            public_key_pem: visitbridge_testkit::fixtures::keys::CLIENT_EC384_PUB.into(),
            algorithm: jsonwebtoken::Algorithm::ES384,
            kid: "visitbridge-ec-1".into(),
        },
    )
    .await;
    let client = ehr.client(ClientAuth::PrivateKeyJwt(ec_key()));
    let done = ehr.launch(&client).await.expect("launch");
    assert!(done.ehr_user.is_some());
}

#[tokio::test]
async fn launch_context_keeps_fhir_context_and_unknown_fields() {
    let ehr = Ehr::with_secret_basic().await;
    ehr.fake.set_launch_context(serde_json::json!({
        "patient": "p-1",
        "fhirContext": [{"reference": "Appointment/appt-9"}, {"reference": "Encounter/enc-3", "role": "launch"}],
        "tenant": "tenant-a",
        "need_patient_banner": true,
        "epicUserSettings": {"theme": "dark"},
        "dept_id": 1234
    }));
    let client = ehr.client(secret_basic());
    let done = ehr.launch(&client).await.expect("launch");
    let c = &done.context;
    assert_eq!(c.patient.as_deref(), Some("p-1"));
    assert_eq!(c.context_ids("Appointment"), vec!["appt-9"]);
    assert_eq!(c.fhir_context[1].role.as_deref(), Some("launch"));
    assert_eq!(c.tenant.as_deref(), Some("tenant-a"));
    assert_eq!(c.need_patient_banner, Some(true));
    assert_eq!(c.appointment, None);
    assert_eq!(c.other["epicUserSettings"]["theme"], "dark");
    assert_eq!(c.other["dept_id"], 1234);
    // And the context survives a JSON round trip (the launch service stores it).
    let json = serde_json::to_value(c).expect("json");
    assert_eq!(json["dept_id"], 1234);
    assert_eq!(json["fhirContext"][0]["reference"], "Appointment/appt-9");
}

#[tokio::test]
async fn discovery_is_cached_between_launches_and_sends_epic_client_id() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client(secret_basic());
    ehr.launch(&client).await.expect("first launch");
    ehr.launch(&client).await.expect("second launch");
    assert_eq!(
        ehr.fake.discovery_requests(),
        1,
        "one discovery for two launches"
    );
    let requests = ehr.server.received_requests().await.expect("recording");
    let discovery = requests
        .iter()
        .find(|r| r.url.path().ends_with("/.well-known/smart-configuration"))
        .expect("discovery request");
    assert_eq!(
        discovery
            .headers
            .get("epic-client-id")
            .and_then(|v| v.to_str().ok()),
        Some(CLIENT_ID)
    );
    let token = requests
        .iter()
        .find(|r| r.url.path().ends_with("/oauth2/token"))
        .expect("token request");
    assert_eq!(
        token
            .headers
            .get("epic-client-id")
            .and_then(|v| v.to_str().ok()),
        Some(CLIENT_ID)
    );
}

#[tokio::test]
async fn rotated_signing_key_is_fetched_again() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr
        .client(secret_basic())
        .with_jwks_refetch_interval(std::time::Duration::ZERO);
    ehr.launch(&client).await.expect("first launch");
    assert_eq!(ehr.fake.jwks_requests(), 1);
    ehr.launch(&client).await.expect("second launch");
    assert_eq!(ehr.fake.jwks_requests(), 1, "keys are cached");
    ehr.fake.set_signing_kid("ehr-signing-2027");
    ehr.launch(&client).await.expect("launch after rotation");
    assert_eq!(ehr.fake.jwks_requests(), 2, "an unknown kid refetches once");
}

#[tokio::test]
async fn unknown_kids_do_not_refetch_the_jwks_more_than_the_rate_limit_allows() {
    let ehr = Ehr::with_secret_basic().await;
    let client = ehr.client(secret_basic());
    ehr.launch(&client).await.expect("first launch");
    assert_eq!(ehr.fake.jwks_requests(), 1);
    ehr.fake
        .set_id_token_fault(Some(visitbridge_testkit::smart::IdTokenFault::UnknownKid));
    for _ in 0..3 {
        let err = ehr.launch(&client).await.expect_err("unknown kid");
        assert!(
            matches!(err, visitbridge_smart::SmartError::IdToken(_)),
            "{err}"
        );
    }
    assert_eq!(
        ehr.fake.jwks_requests(),
        1,
        "forged kids within a minute refetch nothing"
    );
}

#[tokio::test]
async fn a_prepared_launch_is_kept_by_the_caller_and_completed_from_it() {
    let ehr = Ehr::with_secret_basic().await;
    let store = std::sync::Arc::new(visitbridge_smart::InMemoryPendingLaunches::new());
    let client = ehr.client_with(secret_basic(), http(), store.clone());
    let (request, pending) = client
        .prepare_ehr_launch(&ehr.fake.fhir_base(), "launch-token-123", session())
        .await
        .expect("prepare");
    assert!(store.is_empty(), "a prepared launch is not stored");
    assert_eq!(pending.kind, LaunchKind::Ehr);
    assert_eq!(pending.client_id, CLIENT_ID);
    // The JSON a caller keeps (e.g. sealed) round-trips.
    let kept: visitbridge_smart::PendingLaunch =
        serde_json::from_str(&serde_json::to_string(&pending).unwrap()).unwrap();

    let callback = ehr.fake.browser_get(request.url().as_str()).await;
    let query = visitbridge_smart::Callback::from_query(callback.query().unwrap()).unwrap();
    assert_eq!(query.state, request.state().expose());
    let done = client
        .complete_pending(kept.clone(), &query.code)
        .await
        .expect("complete");
    assert!(done.ehr_user.is_some(), "the id_token's nonce matched");
    assert_eq!(done.pending.record_context, session());

    // Expiry is still checked from the launch's start.
    let mut old = kept;
    old.created_at = Utc::now() - chrono::Duration::minutes(11);
    let err = client
        .complete_pending(old, &query.code)
        .await
        .expect_err("expired");
    assert!(
        matches!(err, visitbridge_smart::SmartError::LaunchExpired),
        "{err:?}"
    );
}
