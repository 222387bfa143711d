//! The JSON API: keys, problems, and the same rules as the pages.

use axum::{body::Body, http::Request};
use serde_json::{Value, json};

use crate::harness::{API_KEY, Browser, OTHER_API_KEY, Portal, admin, approver};

async fn call(
    browser: &mut Browser,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let page = browser.request(request).await;
    let json = if page.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&page.body).unwrap_or_else(|_| panic!("not json: {}", page.body))
    };
    (page.status, page.content_type, json)
}

fn settings(portal: &Portal) -> Value {
    json!({
        "fhir_base_url": portal.fhir_base(),
        "environment": "production",
        "approver": "analyst@contoso.example",
        "client_id": "vb-launch-client",
    })
}

#[tokio::test]
async fn requests_without_a_valid_key_get_a_problem_document() {
    let portal = Portal::start().await;
    let mut client = portal.browser();
    for key in [None, Some("wrong-key-wrong-key-wrong-key-wrong-key")] {
        let (status, content_type, problem) =
            call(&mut client, "GET", "/api/v1/configurations", key, None).await;
        assert_eq!(status, 401);
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(problem["status"], 401);
        assert_eq!(problem["title"], "Sign-in required");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("#problem-unauthenticated")
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer")
        );
    }
}

#[tokio::test]
async fn automation_creates_edits_and_submits_with_the_pages_rules() {
    let portal = Portal::start().await;
    let mut client = portal.browser();
    let key = Some(API_KEY);

    // A bad URL is a 422 with the problem against its field.
    let mut bad = settings(&portal);
    bad["fhir_base_url"] = json!(portal.fhir_base().trim_end_matches("/R4"));
    bad["environment"] = json!("staging");
    let (status, _, problem) = call(
        &mut client,
        "POST",
        "/api/v1/configurations",
        key,
        Some(bad),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors[0]["field"], "fhir_base_url");
    assert!(
        errors[0]["detail"]
            .as_str()
            .unwrap()
            .contains("ends in /R4")
    );
    assert_eq!(errors[1]["field"], "environment");

    // Created after the probe, as the key's organisation, by "api-key:ci".
    let (status, _, created) = call(
        &mut client,
        "POST",
        "/api/v1/configurations",
        key,
        Some(settings(&portal)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["state"], "draft");
    assert_eq!(created["settings"]["fhir_base_url"], portal.fhir_base());
    assert_eq!(created["settings"]["client_auth"], "private_key_jwt");
    let id = created["id"].as_str().unwrap().to_owned();

    // The same URL and environment twice is refused, next to the URL.
    let (status, _, problem) = call(
        &mut client,
        "POST",
        "/api/v1/configurations",
        key,
        Some(settings(&portal)),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("already has a configuration")
    );

    // Edit (a GET, change, PUT round trip) and submit.
    let (_, _, current) = call(
        &mut client,
        "GET",
        &format!("/api/v1/configurations/{id}"),
        key,
        None,
    )
    .await;
    let mut body = current["settings"].clone();
    body["client_id"] = json!("vb-launch-client-2");
    body["revision"] = current["revision"].clone();
    let (status, _, edited) = call(
        &mut client,
        "PUT",
        &format!("/api/v1/configurations/{id}"),
        key,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["version"], 2);
    let (status, _, problem) = call(
        &mut client,
        "PUT",
        &format!("/api/v1/configurations/{id}"),
        key,
        Some(body),
    )
    .await;
    assert_eq!(status, 409, "a stale revision: {problem}");
    let (status, _, submitted) = call(
        &mut client,
        "POST",
        &format!("/api/v1/configurations/{id}/submit"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{submitted}");
    assert_eq!(submitted["state"], "awaiting_approval");
    let (status, _, problem) = call(
        &mut client,
        "POST",
        &format!("/api/v1/configurations/{id}/submit"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        problem["detail"],
        "cannot submit for approval: the configuration is awaiting approval"
    );

    // Approval stays interactive; records wait for it.
    let (status, _, problem) = call(
        &mut client,
        "POST",
        &format!("/api/v1/configurations/{id}/approve"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("interactively"),
        "{problem}"
    );
    let (status, _, _) = call(
        &mut client,
        "GET",
        &format!("/api/v1/configurations/{id}/records"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 409);

    // The history names the key.
    let (_, _, history) = call(
        &mut client,
        "GET",
        &format!("/api/v1/configurations/{id}/history"),
        key,
        None,
    )
    .await;
    let entries = history["history"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["actor"]["username"], "api-key:ci");
    assert_eq!(entries[0]["action"], "created");

    // Another organisation's key sees nothing of it.
    let other = Some(OTHER_API_KEY);
    let (_, _, list) = call(&mut client, "GET", "/api/v1/configurations", other, None).await;
    assert_eq!(list["configurations"], json!([]));
    let (status, _, problem) = call(
        &mut client,
        "GET",
        &format!("/api/v1/configurations/{id}"),
        other,
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#problem-not-found")
    );
    let (status, _, _) = call(
        &mut client,
        "POST",
        &format!("/api/v1/configurations/{id}/submit"),
        other,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // And the approver finishes in the portal; the API then lists the records.
    let mut approver = portal.signed_in(approver()).await;
    assert_eq!(portal.ehr_sign_in(&mut approver, &id).await.status, 303);
    assert_eq!(
        approver
            .post(&format!("/configurations/{id}/approve"), &[])
            .await
            .status,
        303
    );
    let (status, _, records) = call(
        &mut client,
        "GET",
        &format!("/api/v1/configurations/{id}/records"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{records}");
    assert_eq!(
        records["provider_launch"]["launch_url"],
        "https://visits.example.test/launch/provider"
    );
    assert!(
        records["provider_launch"]["context_parameters"]
            .as_str()
            .unwrap()
            .starts_with("sessionId=%CSN%")
    );
    let (_, _, list) = call(&mut client, "GET", "/api/v1/configurations", key, None).await;
    assert_eq!(list["configurations"][0]["state"], "approved");
    assert_eq!(list["configurations"][0]["approved"]["version"], 2);
    // The admin of that organisation sees it in the portal too.
    let mut admin = portal.signed_in(admin()).await;
    assert!(
        admin
            .get("/configurations")
            .await
            .body
            .contains(&portal.fhir_base())
    );
}

#[tokio::test]
async fn malformed_bodies_and_unknown_endpoints_are_problems_too() {
    let portal = Portal::start().await;
    let mut client = portal.browser();
    let mut request = Request::post("/api/v1/configurations")
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    request
        .headers_mut()
        .insert("accept", "application/json".parse().unwrap());
    let page = client.request(request).await;
    assert_eq!(page.status, 400);
    assert_eq!(
        page.content_type.as_deref(),
        Some("application/problem+json")
    );
    let (status, content_type, _) =
        call(&mut client, "GET", "/api/v1/nothing", Some(API_KEY), None).await;
    assert_eq!(status, 404);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
}

#[tokio::test]
async fn another_organisations_url_and_environment_are_a_409_problem() {
    let portal = Portal::start().await;
    let mut client = portal.browser();
    let (status, _, created) = call(
        &mut client,
        "POST",
        "/api/v1/configurations",
        Some(API_KEY),
        Some(settings(&portal)),
    )
    .await;
    assert_eq!(status, 201, "{created}");

    let mut theirs = settings(&portal);
    theirs["approver"] = json!("admin@fabrikam.example");
    let (status, content_type, problem) = call(
        &mut client,
        "POST",
        "/api/v1/configurations",
        Some(OTHER_API_KEY),
        Some(theirs.clone()),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#problem-conflict"),
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("another organisation already has a configuration for this FHIR base URL and environment"),
        "{problem}"
    );
    let (_, _, list) = call(
        &mut client,
        "GET",
        "/api/v1/configurations",
        Some(OTHER_API_KEY),
        None,
    )
    .await;
    assert_eq!(list["configurations"], json!([]), "nothing was created");

    // Another environment is free; changing it to the held one is refused the same way.
    theirs["environment"] = json!("test");
    let (status, _, own) = call(
        &mut client,
        "POST",
        "/api/v1/configurations",
        Some(OTHER_API_KEY),
        Some(theirs.clone()),
    )
    .await;
    assert_eq!(status, 201, "{own}");
    let id = own["id"].as_str().unwrap();
    theirs["environment"] = json!("production");
    let (status, _, problem) = call(
        &mut client,
        "PUT",
        &format!("/api/v1/configurations/{id}"),
        Some(OTHER_API_KEY),
        Some(theirs),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#problem-conflict")
    );
}

#[tokio::test]
async fn the_api_reads_and_writes_the_ehr_vendor() {
    let portal = Portal::start().await;
    let mut client = portal.browser();
    let (status, _, created) = call(
        &mut client,
        "POST",
        "/api/v1/configurations",
        Some(API_KEY),
        Some(settings(&portal)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["settings"]["ehr_vendor"], "epic", "the default");
    let id = created["id"].as_str().unwrap();

    let mut body = created["settings"].clone();
    body["ehr_vendor"] = json!("generic");
    let (status, _, edited) = call(
        &mut client,
        "PUT",
        &format!("/api/v1/configurations/{id}"),
        Some(API_KEY),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["settings"]["ehr_vendor"], "generic");

    body["ehr_vendor"] = json!("cerner");
    let (status, _, problem) = call(
        &mut client,
        "PUT",
        &format!("/api/v1/configurations/{id}"),
        Some(API_KEY),
        Some(body),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "ehr_vendor", "{problem}");
}
