//! SMART launches against the sandbox EHR with `visitbridge_smart::SmartClient`, from the
//! schedule's buttons to validated users and Epic-style context; and the protocol refusals.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::Value;
use url::Url;
use visitbridge_fhir::{
    Appointment, AppointmentId, DatePrefix, Encounter, FhirBaseUrl, FhirClient, FhirClientConfig,
    FhirError, PatientId, PractitionerId, SearchQuery,
};
use visitbridge_http::Secret;
use visitbridge_sandbox::LaunchRole;
use visitbridge_smart::{
    ApprovedIssuer, ClientAuth, CompletedLaunch, InMemoryPendingLaunches, SmartClient,
    SmartClientConfig, StaticIssuers,
};

use crate::common::{
    self, CLIENT_ID, CLIENT_SECRET, LAUNCH_SERVICE, REDIRECT_URI, forms, get_html, http, location,
    query_map, submit, url,
};

const PROVIDER_SCOPE: &str =
    "launch openid fhirUser user/Appointment.read user/Encounter.read user/Patient.read";
const PATIENT_SCOPE: &str = "launch openid fhirUser patient/Appointment.read patient/Patient.read";
const STANDALONE_SCOPE: &str = "launch/patient openid fhirUser patient/Appointment.read";

fn smart_client(fhir_base: &Url, ehr_scope: &str) -> SmartClient {
    let config = SmartClientConfig::new(
        CLIENT_ID,
        url(REDIRECT_URI),
        ClientAuth::SecretBasic(Secret::new(CLIENT_SECRET)),
    )
    .with_scopes(ehr_scope, STANDALONE_SCOPE)
    .with_epic_client_id_header()
    .expect("client id header");
    SmartClient::new(
        config,
        http(),
        Arc::new(StaticIssuers::new([ApprovedIssuer::new(
            fhir_base.clone(),
            "sandbox",
        )])),
        Arc::new(InMemoryPendingLaunches::new()),
    )
}

fn fhir_client(launch: &CompletedLaunch) -> FhirClient {
    let base = FhirBaseUrl::parse(launch.issuer.iss.as_str()).expect("fhir base");
    FhirClient::new(
        FhirClientConfig::new(base),
        http(),
        Arc::new(launch.token_source()),
    )
}

/// The schedule button for `appointment` and `role` (`clinician` / `patient`), pressed: the URL
/// the EHR opens.
async fn press_schedule_button(schedule: &Url, appointment: &str, role: &str) -> Url {
    let http = http();
    let page = get_html(&http, schedule).await;
    let form = forms(&page)
        .into_iter()
        .find(|f| {
            f.fields.get("appointment").map(String::as_str) == Some(appointment)
                && f.fields.get("role").map(String::as_str) == Some(role)
        })
        .expect("a button for the visit and role");
    let response = submit(&http, schedule, &form).await;
    assert_eq!(response.status(), 303);
    location(&response)
}

/// Plays the browser from the launch URL to the callback: authorize (POST, as Epic prefers),
/// the sandbox's "Continue", and the redirect back.
async fn launch_through_the_browser(client: &SmartClient, launch_url: &Url) -> CompletedLaunch {
    let params = query_map(launch_url);
    let context = BTreeMap::from([("sessionId".to_owned(), params["sessionId"].clone())]);
    let request = client
        .begin_ehr_launch(&params["iss"], &params["launch"], context)
        .await
        .expect("launch begins");
    assert!(
        request.prefers_post(),
        "the sandbox advertises authorize-post"
    );
    let http = http();
    let page = http
        .post(request.form_action().clone())
        .form(request.form_fields())
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), 200);
    let page_url = page.url().clone();
    let html = page.text().await.expect("html");
    let continue_form = forms(&html)
        .into_iter()
        .find(|f| f.button == "Continue")
        .expect("a continue button");
    let back = submit(&http, &page_url, &continue_form).await;
    assert_eq!(back.status(), 302);
    let callback = location(&back);
    assert!(callback.as_str().starts_with(REDIRECT_URI), "{callback}");
    client
        .complete_callback(callback.query().unwrap_or_default())
        .await
        .expect("launch completes")
}

#[tokio::test]
async fn a_clinician_launch_from_the_schedule_gives_epic_context_and_a_validated_user() {
    let env = common::start().await;
    let sandbox = &env.sandbox;
    let seed = sandbox.ehr.seed().clone();
    let visit = &seed.visits[0];
    let clinician = seed.clinician(&visit.practitioner_id).expect("clinician");

    let schedule = get_html(&http(), &sandbox.schedule_url).await;
    for v in &seed.visits {
        assert!(schedule.contains(&seed.patient(&v.patient_id).expect("patient").display()));
    }
    let buttons = forms(&schedule);
    assert_eq!(buttons.len(), 2 * seed.visits.len());
    assert!(
        buttons
            .iter()
            .any(|f| f.button.contains("clinician — Hyperspace"))
    );
    assert!(
        buttons
            .iter()
            .any(|f| f.button.contains("patient — MyChart"))
    );

    let launch_url =
        press_schedule_button(&sandbox.schedule_url, &visit.appointment_id, "clinician").await;
    assert!(
        launch_url
            .as_str()
            .starts_with(&format!("{LAUNCH_SERVICE}launch/provider?")),
        "{launch_url}"
    );
    let params = query_map(&launch_url);
    assert_eq!(params["iss"], sandbox.fhir_base_url.as_str());
    assert_eq!(params["sessionId"], visit.csn);
    assert_eq!(params["departmentId"], seed.department.department_id);
    assert_eq!(params["environment"], "test");
    assert!(params["launch"].len() >= 32);

    let client = smart_client(&sandbox.fhir_base_url, PROVIDER_SCOPE);
    let done = launch_through_the_browser(&client, &launch_url).await;
    let user = done.ehr_user.as_ref().expect("validated user");
    assert_eq!(
        user.fhir_user.as_deref(),
        Some(
            format!(
                "{}/Practitioner/{}",
                sandbox.fhir_base_url, clinician.practitioner_id
            )
            .as_str()
        )
    );
    assert_eq!(user.issuer, format!("{}oauth2", sandbox.ehr_base_url));
    let context = &done.context;
    assert_eq!(context.patient.as_deref(), Some(visit.patient_id.as_str()));
    assert_eq!(
        context.encounter.as_deref(),
        Some(visit.encounter_id.as_str())
    );
    assert_eq!(
        context.appointment.as_deref(),
        Some(visit.appointment_id.as_str())
    );
    assert_eq!(
        context.location.as_deref(),
        Some(seed.department.location_id.as_str())
    );
    assert_eq!(
        context.login_department.as_deref(),
        Some(seed.department.location_id.as_str())
    );
    assert_eq!(
        context.context_ids("Appointment"),
        vec![visit.appointment_id.as_str()]
    );
    assert_eq!(context.need_patient_banner, Some(false));
    assert!(context.other.contains_key("__epic.dstu2.patient"));
    assert_eq!(done.pending.record_context["sessionId"], visit.csn);

    // The token reads the visit, as the launch service will.
    let fhir = fhir_client(&done);
    let appointment_id: AppointmentId = visit.appointment_id.parse().expect("id");
    let appointment = fhir.read(&appointment_id).await.expect("appointment");
    assert_eq!(
        appointment.patient_id().map(|p| p.as_str().to_owned()),
        Some(visit.patient_id.clone())
    );
    let encounters = fhir
        .search(&SearchQuery::<Encounter>::new().appointment(&appointment_id))
        .await
        .expect("encounter search");
    let ids: Vec<&str> = encounters
        .resources()
        .filter_map(|e| e.id.as_ref().map(|i| i.as_str()))
        .collect();
    assert_eq!(ids, vec![visit.encounter_id.as_str()]);
    let practitioner: PractitionerId = clinician.practitioner_id.parse().expect("id");
    let todays = fhir
        .search(
            &SearchQuery::<Appointment>::new()
                .practitioner(&practitioner)
                .date(DatePrefix::Eq, seed.day),
        )
        .await
        .expect("appointment search");
    let expected = seed
        .visits
        .iter()
        .filter(|v| v.practitioner_id == clinician.practitioner_id)
        .count();
    assert_eq!(todays.resources().count(), expected);
    let tomorrow = fhir
        .search(
            &SearchQuery::<Appointment>::new()
                .practitioner(&practitioner)
                .date(DatePrefix::Gt, seed.day),
        )
        .await
        .expect("appointment search");
    assert_eq!(tomorrow.resources().count(), 0);
    assert!(tomorrow.outcomes.iter().any(|o| o.has_epic_code(4101)));
    // Practitioner reads were not in the scope.
    let refused = fhir.read(&practitioner).await.expect_err("no scope");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(403));

    // The launch was one-time: replaying it ends at the client's redirect URI with an error.
    let again = client
        .begin_ehr_launch(&params["iss"], &params["launch"], BTreeMap::new())
        .await
        .expect("begins");
    let answer = http()
        .post(again.form_action().clone())
        .form(again.form_fields())
        .send()
        .await
        .expect("authorize");
    assert_eq!(answer.status(), 302);
    let error = query_map(&location(&answer));
    assert_eq!(error["error"], "invalid_request");
    assert_eq!(error["state"], again.state().expose());
}

#[tokio::test]
async fn a_patient_launch_from_mychart_reads_only_the_patients_records() {
    let env = common::start().await;
    let sandbox = &env.sandbox;
    let seed = sandbox.ehr.seed().clone();
    let visit = &seed.visits[1];
    let launch_url =
        press_schedule_button(&sandbox.schedule_url, &visit.appointment_id, "patient").await;
    assert!(
        launch_url
            .as_str()
            .starts_with(&format!("{LAUNCH_SERVICE}launch/patient?"))
    );
    let done = launch_through_the_browser(
        &smart_client(&sandbox.fhir_base_url, PATIENT_SCOPE),
        &launch_url,
    )
    .await;
    let user = done.ehr_user.as_ref().expect("user");
    assert_eq!(
        user.fhir_user_reference(),
        Some(("Patient", visit.patient_id.as_str()))
    );
    assert_eq!(
        done.context.appointment.as_deref(),
        Some(visit.appointment_id.as_str())
    );
    assert_eq!(done.context.need_patient_banner, Some(true));
    assert_eq!(done.context.login_department, None);

    let fhir = fhir_client(&done);
    let own: PatientId = visit.patient_id.parse().expect("id");
    assert_eq!(
        fhir.read(&own)
            .await
            .expect("own record")
            .id
            .map(|i| i.into_string()),
        Some(visit.patient_id.clone())
    );
    let other = seed
        .patients
        .iter()
        .find(|p| p.patient_id != visit.patient_id)
        .expect("another patient");
    let other: PatientId = other.patient_id.parse().expect("id");
    let refused = fhir.read(&other).await.expect_err("not theirs");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(403));
    let mine = fhir
        .search(&SearchQuery::<Appointment>::new().patient(&own))
        .await
        .expect("search");
    assert!(mine.resources().count() >= 1);
    assert!(
        mine.resources()
            .all(|a| a.patient_id().as_ref() == Some(&own))
    );
}

#[tokio::test]
async fn a_standalone_launch_offers_a_user_picker() {
    let env = common::start().await;
    let sandbox = &env.sandbox;
    let seed = sandbox.ehr.seed().clone();
    let client = smart_client(&sandbox.fhir_base_url, PROVIDER_SCOPE);
    let request = client
        .begin_standalone_launch(sandbox.fhir_base_url.as_str(), BTreeMap::new())
        .await
        .expect("begins");
    let http = http();
    let html = get_html(&http, &request.url()).await;
    let choices = forms(&html);
    for c in &seed.clinicians {
        assert!(
            choices
                .iter()
                .any(|f| f.button == format!("Sign in as {}", c.display()))
        );
    }
    let patient = &seed.patients[2];
    let pick = choices
        .iter()
        .find(|f| f.fields.get("user") == Some(&format!("Patient/{}", patient.patient_id)))
        .expect("the patient is offered");
    let back = submit(&http, &request.url(), pick).await;
    assert_eq!(back.status(), 302);
    let done = client
        .complete_callback(location(&back).query().unwrap_or_default())
        .await
        .expect("completes");
    assert_eq!(
        done.ehr_user.as_ref().and_then(|u| u.fhir_user_reference()),
        Some(("Patient", patient.patient_id.as_str()))
    );
    assert_eq!(
        done.context.patient.as_deref(),
        Some(patient.patient_id.as_str())
    );
    assert_eq!(done.context.appointment, None);
}

/// A raw authorization request (our own PKCE), answered with "Continue": the code.
async fn raw_code(env: &common::Env, verifier: &str, redirect_uri: &str) -> reqwest::Response {
    let sandbox = &env.sandbox;
    let visit = &sandbox.ehr.seed().visits[2];
    let launch_url = sandbox
        .ehr
        .create_launch(&visit.appointment_id, LaunchRole::Clinician)
        .expect("launch");
    let mut authorize = url(&sandbox.ehr.authorize_url());
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("launch", &query_map(&launch_url)["launch"])
        .append_pair("scope", PROVIDER_SCOPE)
        .append_pair("state", "state-1")
        .append_pair("aud", sandbox.fhir_base_url.as_str())
        .append_pair("code_challenge", &s256(verifier))
        .append_pair("code_challenge_method", "S256");
    let http = http();
    let page = http.get(authorize.clone()).send().await.expect("authorize");
    if page.status() != 200 {
        return page;
    }
    let html = page.text().await.expect("html");
    let form = forms(&html)
        .into_iter()
        .find(|f| f.button == "Continue")
        .expect("continue");
    submit(&http, &authorize, &form).await
}

fn s256(verifier: &str) -> String {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

async fn exchange(
    env: &common::Env,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
    secret: &str,
) -> (u16, Value) {
    let response = http()
        .post(env.sandbox.ehr.token_url())
        .basic_auth(CLIENT_ID, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn codes_are_single_use_bound_to_pkce_and_the_redirect_uri() {
    let env = common::start().await;
    let verifier = "a-verifier-of-more-than-forty-three-characters-0123456789";

    // An unregistered redirect URI is refused on the page: no redirect, no code.
    let refused = raw_code(&env, verifier, "http://127.0.0.1:9/elsewhere").await;
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().get("location").is_none());
    assert!(
        refused
            .text()
            .await
            .expect("page")
            .contains("not registered")
    );

    let code = query_map(&location(&raw_code(&env, verifier, REDIRECT_URI).await))["code"].clone();
    let (status, answer) = exchange(&env, &code, REDIRECT_URI, verifier, "wrong-secret").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, answer) = exchange(&env, &code, REDIRECT_URI, verifier, CLIENT_SECRET).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    let token = answer["access_token"].as_str().expect("token").to_owned();

    // A replay is refused and revokes what the code bought.
    let (status, answer) = exchange(&env, &code, REDIRECT_URI, verifier, CLIENT_SECRET).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let fhir = FhirClient::new(
        FhirClientConfig::new(
            FhirBaseUrl::parse(env.sandbox.fhir_base_url.as_str()).expect("base"),
        ),
        http(),
        Arc::new(visitbridge_fhir::StaticToken(Secret::new(token))),
    );
    let id: AppointmentId = env.sandbox.ehr.seed().visits[2]
        .appointment_id
        .parse()
        .expect("id");
    assert!(matches!(fhir.read(&id).await, Err(FhirError::Unauthorized)));

    // The redirect URI and the verifier must be those of the authorization request.
    let code = query_map(&location(&raw_code(&env, verifier, REDIRECT_URI).await))["code"].clone();
    let (status, answer) = exchange(
        &env,
        &code,
        "http://127.0.0.1:9/other",
        verifier,
        CLIENT_SECRET,
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let code = query_map(&location(&raw_code(&env, verifier, REDIRECT_URI).await))["code"].clone();
    let (status, answer) = exchange(
        &env,
        &code,
        REDIRECT_URI,
        "another-verifier-of-more-than-forty-three-characters-0123",
        CLIENT_SECRET,
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}
