//! The whole approval path, as the admin and the approver live it.

use visitbridge_testkit::smart::PRACTITIONER_ID;

use crate::harness::{EhrAuth, Portal, admin, approver, unescape};

#[tokio::test]
async fn admin_adds_approver_validates_and_approves_then_records_are_shown() {
    visitbridge_testkit::logs::capture();
    let portal = Portal::start().await;

    // The admin signs in, adds the FHIR base URL and submits it.
    let mut admin = portal.signed_in(admin()).await;
    let list = admin.get("/configurations").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("Add a configuration"), "{}", list.body);
    let id = portal.added_configuration(&mut admin).await;
    let page = admin
        .get(&format!("/configurations/{id}?notice=created"))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Draft"), "{}", page.body);
    assert!(page.body.contains("Saved as a draft"));
    assert!(page.body.contains(&portal.fhir_base()));
    // The admin is not the approver: no approval section for them.
    assert!(!page.body.contains("Sign in to your EHR"));
    let submitted = admin
        .post(&format!("/configurations/{id}/submit"), &[])
        .await;
    assert_eq!(submitted.status, 303);

    // The approver, another person, signs in and sees the configuration waiting for them.
    let mut approver = portal.signed_in(approver()).await;
    let list = approver.get("/configurations").await;
    assert!(list.body.contains(&portal.fhir_base()), "{}", list.body);
    assert!(list.body.contains("Awaiting approval"));
    assert!(!list.body.contains("Add a configuration"), "not an admin");
    let page = approver.get(&format!("/configurations/{id}")).await;
    assert!(page.body.contains("Sign in to your EHR"), "{}", page.body);
    assert!(
        page.body.contains("disabled"),
        "approve waits for the EHR sign-in"
    );

    // Approving before the EHR sign-in is refused by the state machine.
    let early = approver
        .post(&format!("/configurations/{id}/approve"), &[])
        .await;
    assert_eq!(early.status, 409, "{}", early.body);
    assert!(
        early
            .body
            .contains("cannot approve before a successful EHR sign-in")
    );

    // EHR sign-in: a standalone launch against exactly this URL, asking only who they are.
    let done = portal.ehr_sign_in(&mut approver, &id).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let authorize = &portal.smart.authorize_requests()[0];
    assert_eq!(authorize["aud"], portal.fhir_base());
    assert_eq!(authorize["scope"], "openid fhirUser");
    assert_eq!(authorize["client_id"], crate::harness::EHR_CLIENT_ID);
    assert_eq!(
        authorize["redirect_uri"],
        "https://portal.example.test/approvals/ehr-callback"
    );
    assert_eq!(authorize["code_challenge_method"], "S256");
    let page = approver.get(done.location.as_deref().unwrap()).await;
    assert!(page.body.contains("EHR sign-in succeeded"), "{}", page.body);
    assert!(
        page.body.contains(PRACTITIONER_ID),
        "the EHR user id is shown"
    );
    assert!(
        !page
            .body
            .contains("disabled aria-describedby=\"approve-hint\"")
    );

    let approved = approver
        .post(&format!("/configurations/{id}/approve"), &[])
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let page = approver.get(approved.location.as_deref().unwrap()).await;
    assert!(page.body.contains("Approved"), "{}", page.body);

    // The records: launch URLs with Epic's context tokens, redirect URI, client id, scopes.
    let records = admin.get(&format!("/configurations/{id}/records")).await;
    assert_eq!(records.status, 200, "{}", records.body);
    let text = unescape(&records.body);
    for expected in [
        "https://visits.example.test/launch/provider",
        "https://visits.example.test/launch/patient",
        "https://visits.example.test/launch/device-test",
        "https://visits.example.test/launch/callback",
        "sessionId=%CSN%",
        "vb-launch-client",
        "launch openid fhirUser user/Appointment.rs",
    ] {
        assert!(text.contains(expected), "records lack {expected}: {text}");
    }
    assert!(
        text.contains(
            "https://visits.example.test/launch/provider?sessionId=%CSN%&departmentId=%PERFDEPID;;; ; ;;NONE;%&conferenceId=%CONFERENCEID%&environment=test"
        ),
        "{text}"
    );
    // Copy buttons are an enhancement: hidden until the script shows them.
    assert!(
        records
            .body
            .contains("class=\"copy\" data-copy-target=\"provider-url\" hidden")
    );

    // The history tells the story, in order.
    let history = admin.get(&format!("/configurations/{id}/history")).await;
    let text = unescape(&history.body);
    let steps = [
        "Created",
        "Submitted for approval",
        "Signed in to the EHR",
        "Approved",
    ];
    let mut at = 0;
    for step in steps {
        let found = text[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step} missing: {text}"));
        at += found + step.len();
    }
    assert!(text.contains("analyst@contoso.example (approver)"));
    assert!(text.contains("admin@contoso.example (admin)"));

    // Nothing secret reached the logs: no code, verifier, token, state, session or CSRF value.
    let logs = visitbridge_testkit::logs::captured();
    assert!(
        logs.contains("configuration transition"),
        "logs were captured: {logs}"
    );
    let mut secrets: Vec<String> = Vec::new();
    for request in portal.smart.token_requests() {
        for name in ["code", "code_verifier"] {
            secrets.extend(request.form.get(name).cloned());
        }
    }
    for request in portal.smart.authorize_requests() {
        for name in ["state", "code_challenge", "nonce"] {
            secrets.extend(request.get(name).cloned());
        }
    }
    secrets.extend(admin.cookies.values().cloned());
    secrets.extend(approver.cookies.values().cloned());
    secrets.push(page.csrf());
    secrets.push(visitbridge_testkit::entra::CLIENT_SECRET.to_owned());
    assert!(secrets.len() >= 8, "{secrets:?}");
    for secret in secrets {
        assert!(
            !logs.contains(&secret),
            "a secret reached the logs: {secret}"
        );
    }
    assert!(
        !logs.contains("fake-user-token"),
        "an Entra token reached the logs"
    );
    assert!(
        !logs.contains("fake-entra-code"),
        "an Entra code reached the logs"
    );
}

#[tokio::test]
async fn the_ehr_sign_in_can_use_a_private_key_jwt_client() {
    let portal = Portal::start_with(EhrAuth::PrivateKeyJwt).await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;
    let mut approver = portal.signed_in(approver()).await;
    let done = portal.ehr_sign_in(&mut approver, &id).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let token_request = &portal.smart.token_requests()[0];
    assert_eq!(
        token_request.form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(token_request.authorization.is_none(), "no secret is sent");
    assert!(!token_request.form.contains_key("client_secret"));
    let page = approver.get(done.location.as_deref().unwrap()).await;
    assert!(page.body.contains("EHR sign-in succeeded"), "{}", page.body);
}

#[tokio::test]
async fn the_ehr_sign_in_is_a_public_client_that_sends_no_secret() {
    // Whatever server the (not yet approved) URL's discovery names gets no credential to reuse.
    let portal = Portal::start_with(EhrAuth::Public).await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;
    let mut approver = portal.signed_in(approver()).await;
    let done = portal.ehr_sign_in(&mut approver, &id).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let requests = portal.smart.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let token_request = &requests[0];
    assert_eq!(token_request.authorization, None, "no Basic credentials");
    assert!(
        !token_request.form.contains_key("client_secret"),
        "{:?}",
        token_request.form.keys()
    );
    assert!(!token_request.form.contains_key("client_assertion"));
    assert_eq!(
        token_request.form["client_id"],
        crate::harness::EHR_CLIENT_ID
    );
    assert!(
        token_request.form.contains_key("code_verifier"),
        "PKCE protects the public client"
    );
    let page = approver.get(done.location.as_deref().unwrap()).await;
    assert!(page.body.contains("EHR sign-in succeeded"), "{}", page.body);
}

#[tokio::test]
async fn an_ehr_sign_in_with_a_patient_login_is_refused_and_nothing_is_recorded() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;
    let mut approver = portal.signed_in(approver()).await;

    // The approver signs in to the EHR with a MyChart (patient) login.
    portal
        .smart
        .set_fhir_user(Some("Patient/erXuFYUfucBZaryVksYEcMg3"));
    let done = portal.ehr_sign_in(&mut approver, &id).await;
    assert_eq!(done.status, 403, "{}", done.body);
    let text = unescape(&done.body);
    assert!(
        text.contains("a patient's account") && text.contains("not with a staff account"),
        "{text}"
    );
    assert!(
        !text.contains("erXuFYUfucBZaryVksYEcMg3"),
        "the patient's id is not shown: {text}"
    );
    let approve = approver
        .post(&format!("/configurations/{id}/approve"), &[])
        .await;
    assert_eq!(approve.status, 409, "{}", approve.body);
    assert!(
        approve
            .body
            .contains("cannot approve before a successful EHR sign-in")
    );

    // No fhirUser at all is no staff user either.
    portal.smart.set_fhir_user(None);
    let done = portal.ehr_sign_in(&mut approver, &id).await;
    assert_eq!(done.status, 403, "{}", done.body);
    assert!(unescape(&done.body).contains("not with a staff account"));

    let history = admin.get(&format!("/configurations/{id}/history")).await;
    assert!(
        !history.body.contains("Signed in to the EHR"),
        "{}",
        history.body
    );

    // With their staff account, it works, and the history records who it was.
    portal.smart.reset_fhir_user();
    let done = portal.ehr_sign_in(&mut approver, &id).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let approved = approver
        .post(&format!("/configurations/{id}/approve"), &[])
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let history = unescape(
        &admin
            .get(&format!("/configurations/{id}/history"))
            .await
            .body,
    );
    assert!(
        history.contains(&format!("as {}", portal.smart.fhir_user())),
        "{history}"
    );
}

/// The admin names themself approver of a configuration in `environment`, submits it, signs in
/// to the EHR and approves; returns the configuration's id and the approve answer (or the EHR
/// sign-in's refusal).
async fn admin_approves_own(portal: &Portal, environment: &str) -> (String, crate::harness::Page) {
    let upn = admin().upn;
    let mut admin = portal.signed_in(admin()).await;
    let form = portal.form_with(&[("approver", &upn), ("environment", environment)]);
    let id = portal.submitted_with(&mut admin, &form).await;
    let start = admin
        .post(&format!("/configurations/{id}/ehr-sign-in"), &[])
        .await;
    if start.status != 303 {
        return (id, start);
    }
    let callback = portal
        .smart
        .browser_get(start.location.as_deref().unwrap())
        .await;
    let done = admin.get_url(&callback).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let page = admin
        .post(&format!("/configurations/{id}/approve"), &[])
        .await;
    (id, page)
}

#[tokio::test]
async fn the_admin_who_changed_a_production_configuration_cannot_approve_it_by_default() {
    let portal = Portal::start().await;
    let (id, page) = admin_approves_own(&portal, "production").await;
    assert_eq!(page.status, 403, "{}", page.body);
    let text = unescape(&page.body);
    assert!(
        text.contains("you made the last change to this production configuration, so someone else must approve it"),
        "{text}"
    );
    assert!(
        portal.smart.authorize_requests().is_empty(),
        "refused before anyone was sent to the EHR"
    );

    // The detail page says so instead of offering the EHR sign-in.
    let mut admin = portal.signed_in(admin()).await;
    let detail = admin.get(&format!("/configurations/{id}")).await;
    assert_eq!(detail.status, 200);
    assert!(
        detail
            .element("approve-refused")
            .is_some_and(|t| t.contains("someone else must approve it")),
        "{}",
        detail.body
    );
    assert!(!detail.body.contains("Sign in to your EHR"));
}

#[tokio::test]
async fn the_admin_may_approve_their_own_test_configuration_by_default() {
    let portal = Portal::start().await;
    let (_, page) = admin_approves_own(&portal, "test").await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.location.unwrap().ends_with("notice=approved"));
}

#[tokio::test]
async fn with_the_setting_off_the_admin_may_approve_their_own_production_configuration() {
    let portal = Portal::start_configured(
        EhrAuth::Public,
        "[approval]\nrequire_distinct_approver_production = false",
    )
    .await;
    let (_, page) = admin_approves_own(&portal, "production").await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.location.unwrap().ends_with("notice=approved"));
}

#[tokio::test]
async fn with_the_setting_on_for_test_the_admin_cannot_approve_their_own_test_configuration() {
    let portal = Portal::start_configured(
        EhrAuth::Public,
        "[approval]\nrequire_distinct_approver_test = true",
    )
    .await;
    let (_, page) = admin_approves_own(&portal, "test").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(unescape(&page.body).contains("someone else must approve it"));
}

#[tokio::test]
async fn a_generic_smart_ehr_gets_records_without_epic_tokens() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    // The form offers the choice, Epic by default.
    let form = admin.get("/configurations/new").await;
    assert!(
        form.body
            .contains(r#"id="ehr_vendor-epic" name="ehr_vendor" value="epic" checked"#),
        "{}",
        form.body
    );
    let settings = portal.form_with(&[("ehr_vendor", "generic")]);
    let id = portal.submitted_with(&mut admin, &settings).await;
    let page = admin.get(&format!("/configurations/{id}")).await;
    assert_eq!(
        page.element("ehr-vendor").as_deref(),
        Some("any SMART on FHIR EHR")
    );

    let mut approver = portal.signed_in(approver()).await;
    assert_eq!(portal.ehr_sign_in(&mut approver, &id).await.status, 303);
    let approved = approver
        .post(&format!("/configurations/{id}/approve"), &[])
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);

    let records = admin.get(&format!("/configurations/{id}/records")).await;
    assert_eq!(records.status, 200, "{}", records.body);
    for key in ["provider", "patient", "device-test"] {
        assert_eq!(
            records.element(&format!("{key}-context")).as_deref(),
            Some("environment=test"),
            "{key}"
        );
    }
    assert_eq!(
        records.element("provider-url").as_deref(),
        Some("https://visits.example.test/launch/provider?environment=test")
    );
    let text = unescape(&records.body);
    assert!(
        !text.contains("%CSN%") && !text.contains("PERFDEPID"),
        "{text}"
    );
    assert!(
        records
            .element("records-form")
            .is_some_and(|t| t.contains("any SMART on FHIR EHR")),
        "{text}"
    );

    // Switching it to Epic is a change like any other: it waits for approval, and the approved
    // generic records stay in service meanwhile.
    let epic = portal.form_with(&[("ehr_vendor", "epic")]);
    let fields: Vec<(&str, &str)> = epic.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let edited = admin
        .post(&format!("/configurations/{id}/edit"), &fields)
        .await;
    assert_eq!(edited.status, 303, "{}", edited.body);
    let page = admin.get(&format!("/configurations/{id}")).await;
    assert!(page.body.contains("Awaiting approval"), "{}", page.body);
    let records = admin.get(&format!("/configurations/{id}/records")).await;
    assert_eq!(
        records.element("provider-context").as_deref(),
        Some("environment=test")
    );
}
