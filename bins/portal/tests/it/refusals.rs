//! Each refusal, with what the person sees.

use crate::harness::{Portal, admin, approver, colleague, other_admin, unescape};

/// A 403 page names nobody: not the approver, not the admin, not the person refused.
fn assert_names_no_user(page: &crate::harness::Page, what: &str) {
    assert_eq!(page.status, 403, "{what}: {}", page.body);
    let text = unescape(&page.body).to_lowercase();
    for someone in [approver(), admin(), colleague(), other_admin()] {
        assert!(
            !text.contains(&someone.upn.to_lowercase()),
            "{what}: the 403 page names {}: {}",
            someone.upn,
            page.body
        );
        assert!(
            !text.contains(&someone.name.to_lowercase()),
            "{what}: the 403 page names {}: {}",
            someone.name,
            page.body
        );
    }
}

#[tokio::test]
async fn a_wrong_approver_is_refused_without_naming_anyone() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;

    // A colleague who is not the named approver can neither see nor act on it, and learns
    // nobody's username from the refusal.
    let mut colleague = portal.signed_in(colleague()).await;
    let page = colleague.get(&format!("/configurations/{id}")).await;
    assert_names_no_user(&page, "detail");
    assert!(
        unescape(&page.body).contains(
            "only your organisation's VisitBridge admins and this configuration's named approver can see it"
        ),
        "{}",
        page.body
    );
    for path in ["history", "records"] {
        let page = colleague.get(&format!("/configurations/{id}/{path}")).await;
        assert_names_no_user(&page, path);
    }
    for action in ["ehr-sign-in", "approve"] {
        let page = colleague
            .post(&format!("/configurations/{id}/{action}"), &[])
            .await;
        assert_names_no_user(&page, action);
        assert!(
            unescape(&page.body).contains("only this configuration's named approver can"),
            "{action}: {}",
            page.body
        );
    }
    let page = colleague
        .post(&format!("/configurations/{id}/reject"), &[("reason", "no")])
        .await;
    assert_names_no_user(&page, "reject");
    assert!(
        portal.smart.authorize_requests().is_empty(),
        "nobody was sent to the EHR"
    );

    // The admin is not the approver either: admin rights do not include approving.
    let page = admin
        .post(&format!("/configurations/{id}/ehr-sign-in"), &[])
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(unescape(&page.body).contains("only this configuration's named approver"));
    assert!(
        !page.body.contains("analyst@contoso.example"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_post_without_the_right_csrf_token_is_refused() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let form = portal.form();
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let missing = admin.post_raw("/configurations", &fields).await;
    assert_eq!(missing.status, 403, "{}", missing.body);
    assert!(
        missing.body.contains("this form has expired"),
        "{}",
        missing.body
    );
    assert!(missing.body.contains("reload the page and try again"));

    let mut wrong = vec![("csrf", "not-the-token")];
    wrong.extend_from_slice(&fields);
    let page = admin.post_raw("/configurations", &wrong).await;
    assert_eq!(page.status, 403);

    // Another session's token does not work either.
    let mut approver = portal.signed_in(approver()).await;
    let theirs = approver.get("/configurations").await.csrf();
    let mut borrowed = vec![("csrf", theirs.as_str())];
    borrowed.extend_from_slice(&fields);
    assert_eq!(
        admin.post_raw("/configurations", &borrowed).await.status,
        403
    );

    // A cross-site form post is refused before it reaches the handler.
    let page = admin
        .request(
            axum::http::Request::post("/signout")
                .header("sec-fetch-site", "cross-site")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(axum::body::Body::from("csrf=x"))
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, 403);

    let list = admin.get("/configurations").await;
    assert!(
        list.body.contains("no configurations yet"),
        "nothing was created: {}",
        list.body
    );
}

#[tokio::test]
async fn another_organisations_admin_cannot_see_or_change_a_configuration() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;

    let mut other = portal.signed_in(other_admin()).await;
    let list = other.get("/configurations").await;
    assert_eq!(list.status, 200);
    assert!(!list.body.contains(&portal.fhir_base()), "{}", list.body);
    for path in ["", "/edit", "/history", "/records"] {
        let page = other.get(&format!("/configurations/{id}{path}")).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(
            page.body
                .contains("does not exist, or belongs to another organisation")
        );
    }
    let form = portal.form();
    let mut fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fields.retain(|(k, _)| *k != "approver");
    fields.push(("approver", "admin@fabrikam.example"));
    let page = other
        .post(&format!("/configurations/{id}/edit"), &fields)
        .await;
    assert_eq!(page.status, 404, "{}", page.body);
    let page = other
        .post(&format!("/configurations/{id}/submit"), &[])
        .await;
    assert_eq!(page.status, 404);

    // Unchanged for its own organisation.
    let page = admin.get(&format!("/configurations/{id}")).await;
    assert!(page.body.contains("analyst@contoso.example"));
    assert!(page.body.contains("Awaiting approval"));
}

#[tokio::test]
async fn a_failed_ehr_sign_in_is_explained_and_approves_nothing() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;
    let mut approver = portal.signed_in(approver()).await;

    // The EHR does not know the client yet (Microsoft's reference product's classic failure).
    portal.smart.set_token_error(Some((
        401,
        "invalid_client",
        "Client authentication failed <b>x</b>",
    )));
    let page = portal.ehr_sign_in(&mut approver, &id).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let text = unescape(&page.body);
    assert!(
        text.contains("OAuth set-up incomplete: the EHR does not recognise the VisitBridge client (invalid_client)"),
        "{text}"
    );
    assert!(
        !text.contains("Client authentication failed"),
        "the EHR's free text is not shown"
    );
    assert!(page.body.contains("Awaiting approval"));
    portal.smart.set_token_error(None);

    // The approver cancels at the EHR: it redirects back with an OAuth error.
    let start = approver
        .post(&format!("/configurations/{id}/ehr-sign-in"), &[])
        .await;
    let authorize = url::Url::parse(start.location.as_deref().unwrap()).unwrap();
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let page = approver
        .get(&format!(
            "/approvals/ehr-callback?error=access_denied&error_description=User+cancelled&state={state}"
        ))
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("the EHR sign-in was cancelled or refused; sign in to the EHR again"),
        "{}",
        page.body
    );

    // The same state cannot be used again, and nothing was approved.
    let replay = approver
        .get(&format!("/approvals/ehr-callback?code=abc&state={state}"))
        .await;
    assert_eq!(replay.status, 400);
    assert!(replay.body.contains("unknown, expired or was already used"));
    let page = approver
        .post(&format!("/configurations/{id}/approve"), &[])
        .await;
    assert_eq!(page.status, 409, "{}", page.body);
    let history = admin.get(&format!("/configurations/{id}/history")).await;
    assert!(!history.body.contains("Signed in to the EHR"));
}

#[tokio::test]
async fn an_ehr_sign_in_callback_in_another_session_is_refused() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;
    let mut approver = portal.signed_in(approver()).await;
    let start = approver
        .post(&format!("/configurations/{id}/ehr-sign-in"), &[])
        .await;
    let callback = portal
        .smart
        .browser_get(start.location.as_deref().unwrap())
        .await;

    // An attacker's callback URL opened in the approver's other session does not count.
    let mut second = portal.signed_in(crate::harness::approver()).await;
    let page = second.get_url(&callback).await;
    assert_eq!(page.status, 400, "{}", page.body);
    let page = admin.get(&format!("/configurations/{id}")).await;
    assert!(page.body.contains("Awaiting approval"));
}

#[tokio::test]
async fn an_ehr_callback_with_a_repeated_state_is_refused() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;
    let state_of = |location: &str| {
        url::Url::parse(location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned()
    };
    // The approver starts an EHR sign-in (state A, bound to their session)...
    let mut victim = portal.signed_in(approver()).await;
    let start = victim
        .post(&format!("/configurations/{id}/ehr-sign-in"), &[])
        .await;
    let victim_state = state_of(start.location.as_deref().unwrap());
    // ...while an attacker completes their own at the EHR (state B, code X).
    let mut attacker = portal.signed_in(approver()).await;
    let start = attacker
        .post(&format!("/configurations/{id}/ehr-sign-in"), &[])
        .await;
    let authorize = start.location.unwrap();
    let attacker_state = state_of(&authorize);
    let callback = portal.smart.browser_get(&authorize).await;
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    // The binding check must not see A while the sign-in completes B.
    let page = victim
        .get(&format!(
            "/approvals/ehr-callback?state={victim_state}&code={code}&state={attacker_state}"
        ))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("unknown, expired or was already used"),
        "{}",
        page.body
    );
    assert!(
        portal.smart.token_requests().is_empty(),
        "the code was never exchanged"
    );
    let history = admin.get(&format!("/configurations/{id}/history")).await;
    assert!(!history.body.contains("Signed in to the EHR"));

    // The victim's own sign-in was not burnt by the forged callback.
    let page = portal.ehr_sign_in(&mut victim, &id).await;
    assert_eq!(page.status, 303, "{}", page.body);
}

#[tokio::test]
async fn a_change_after_approval_goes_back_for_approval_while_the_approved_version_serves() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut admin).await;
    let mut approver = portal.signed_in(approver()).await;
    assert_eq!(portal.ehr_sign_in(&mut approver, &id).await.status, 303);
    assert_eq!(
        approver
            .post(&format!("/configurations/{id}/approve"), &[])
            .await
            .status,
        303
    );

    // The admin changes the client id.
    let edit = admin.get(&format!("/configurations/{id}/edit")).await;
    assert_eq!(edit.status, 200);
    assert!(
        edit.body.contains("name=\"revision\" value=\"4\""),
        "{}",
        edit.body
    );
    let form = portal.form();
    let mut fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fields.retain(|(k, _)| *k != "client_id");
    fields.extend([("client_id", "vb-launch-client-2"), ("revision", "4")]);
    let saved = admin
        .post(&format!("/configurations/{id}/edit"), &fields)
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let page = admin.get(saved.location.as_deref().unwrap()).await;
    assert!(page.body.contains("Awaiting approval"), "{}", page.body);
    assert!(
        page.body
            .contains("keeps serving launches until version 2 is approved")
    );

    // The records stay those of the approved version 1.
    let records = admin.get(&format!("/configurations/{id}/records")).await;
    assert_eq!(records.status, 200);
    let text = unescape(&records.body);
    assert!(text.contains("vb-launch-client<"), "{text}");
    assert!(!text.contains("vb-launch-client-2"), "{text}");
    assert!(text.contains("Version 2 of this configuration is waiting for approval"));

    // The approver must sign in to the EHR again: the old sign-in vouched for the old settings.
    let page = approver
        .post(&format!("/configurations/{id}/approve"), &[])
        .await;
    assert_eq!(page.status, 409);

    // Saving the same form again (stale revision) is refused rather than applied twice.
    let stale = admin
        .post(&format!("/configurations/{id}/edit"), &fields)
        .await;
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(stale.body.contains("changed by someone else"));
}

#[tokio::test]
async fn url_problems_are_shown_next_to_the_field_and_nothing_is_saved() {
    let portal = Portal::start().await;
    let mut admin = portal.signed_in(admin()).await;
    let base = portal.fhir_base();
    let server = portal.ehr_server.uri();
    let cases = [
        (
            base.trim_end_matches("/R4").to_owned(),
            format!("not a valid FHIR URL: the FHIR R4 base URL ends in /R4; did you mean {base}?"),
        ),
        (
            format!("{server}/other/api/FHIR/R4"),
            format!(
                "not a valid FHIR URL: {server}/other/api/FHIR/R4 is not a SMART on FHIR endpoint (no SMART configuration, HTTP 404)"
            ),
        ),
        (
            "http://127.0.0.1:1/fhir/R4".to_owned(),
            "not a valid FHIR URL: nothing answered at http://127.0.0.1:1/fhir/R4".to_owned(),
        ),
    ];
    for (url, message) in cases {
        let form = portal.form();
        let mut fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fields.retain(|(k, _)| *k != "fhir_base_url");
        fields.push(("fhir_base_url", &url));
        let page = admin.post("/configurations", &fields).await;
        assert_eq!(page.status, 422, "{url}: {}", page.body);
        let error = unescape(&page.element("fhir_base_url-error").unwrap_or_default());
        assert!(error.contains(&message), "{url}: {error}");
        assert!(page.body.contains("aria-invalid=\"true\""));
        assert!(
            page.body.contains(&format!("value=\"{url}\"")),
            "the entry is kept"
        );
    }

    // Other fields get their own messages.
    let page = admin
        .post(
            "/configurations",
            &[("fhir_base_url", base.as_str()), ("approver", "analyst")],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(
        page.element("environment-error")
            .unwrap()
            .contains("choose test or production")
    );
    assert!(
        page.element("approver-error")
            .unwrap()
            .contains("Microsoft username")
    );
    assert!(
        page.element("client_id-error")
            .unwrap()
            .contains("client id")
    );

    let list = admin.get("/configurations").await;
    assert!(list.body.contains("no configurations yet"));
}

#[tokio::test]
async fn pages_need_a_sign_in() {
    let portal = Portal::start().await;
    let mut browser = portal.browser();
    let page = browser.get("/configurations").await;
    assert_eq!(page.status, 401);
    assert!(page.body.contains("Sign in with Microsoft"));
    let page = browser.post_raw("/configurations", &[("csrf", "x")]).await;
    assert_eq!(page.status, 401);
    let page = browser.get("/approvals/ehr-callback?code=x&state=y").await;
    assert_eq!(page.status, 401);
    let home = browser.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("href=\"/signin\""));
}

/// The text of the FHIR base URL field's error on a form page.
fn url_error(page: &crate::harness::Page) -> String {
    page.element("fhir_base_url-error").unwrap_or_default()
}

#[tokio::test]
async fn another_organisation_cannot_take_a_fhir_base_url_and_environment_already_held() {
    const HELD: &str =
        "another organisation already has a configuration for this FHIR base URL and environment";
    let portal = Portal::start().await;
    let mut contoso = portal.signed_in(admin()).await;
    let id = portal.submitted_configuration(&mut contoso).await;

    // Fabrikam's admin enters Contoso's URL and environment: refused on the form, next to the
    // URL, before the URL is even probed.
    let mut fabrikam = portal.signed_in(other_admin()).await;
    let form = portal.form_with(&[("approver", "admin@fabrikam.example")]);
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let probes = portal.smart.discovery_requests();
    let page = fabrikam.post("/configurations", &fields).await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert!(url_error(&page).contains(HELD), "{}", page.body);
    assert!(
        page.body.contains("name=\"fhir_base_url\""),
        "the form is shown again"
    );
    assert_eq!(portal.smart.discovery_requests(), probes, "no probe");
    let list = fabrikam.get("/configurations").await;
    assert!(
        !list.body.contains(&portal.fhir_base()),
        "nothing was saved"
    );

    // Nor by changing one of its own configurations to it.
    let own = portal.form_with(&[
        ("approver", "admin@fabrikam.example"),
        ("environment", "production"),
    ]);
    let own_fields: Vec<(&str, &str)> = own.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let created = fabrikam.post("/configurations", &own_fields).await;
    assert_eq!(
        created.status, 303,
        "another environment is another configuration: {}",
        created.body
    );
    let theirs = created
        .location
        .unwrap()
        .strip_prefix("/configurations/")
        .and_then(|rest| rest.split('?').next())
        .unwrap()
        .to_owned();
    let page = fabrikam
        .post(&format!("/configurations/{theirs}/edit"), &fields)
        .await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert!(url_error(&page).contains(HELD), "{}", page.body);

    // Contoso's own configuration is untouched and goes on to approval.
    let mut approver = portal.signed_in(approver()).await;
    assert_eq!(portal.ehr_sign_in(&mut approver, &id).await.status, 303);
    let approved = approver
        .post(&format!("/configurations/{id}/approve"), &[])
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let page = fabrikam.post("/configurations", &fields).await;
    assert_eq!(
        page.status, 409,
        "still refused once approved: {}",
        page.body
    );
}
