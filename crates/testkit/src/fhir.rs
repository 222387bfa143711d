//! An Epic-shaped FHIR R4 server: fixture reads, searchset Bundles, Epic OperationOutcomes, and
//! stateful AuditEvent/Communication writes.
//!
//! [`FhirFake::mount_on`] mounts everything under a base path of a [`MockServer`] you own (so the
//! SMART fake can share the host, as at Epic); [`FhirFake::start`] starts a server of its own at
//! Epic's path layout. What it serves:
//!
//! - `GET metadata` (no token needed): a CapabilityStatement with the SMART `oauth-uris`
//!   extension pointing at `{origin}{prefix}/oauth2/authorize` and `…/token`, where `prefix` is the
//!   base path without its `/api/FHIR/R4` tail (Epic's layout).
//! - Reads of the fixture resources ([`APPOINTMENT_ID`], [`ENCOUNTER_ID`], [`PATIENT_ID`],
//!   [`PRACTITIONER_ID`], [`PRACTITIONER_ROLE_ID`], [`LOCATION_ID`]) with the fixture bytes; any
//!   other id of those types is a 404 OperationOutcome with Epic code 4102.
//! - `GET Appointment?patient=…` or `?practitioner=…` (any other parameters, such as `date`, are
//!   accepted and not evaluated) and `GET Encounter?appointment=…`: a searchset Bundle with the
//!   fixture, `fullUrl` and `search.mode`; for other ids an empty Bundle with Epic's 4101
//!   "no results" outcome entry.
//! - `POST AuditEvent` honouring `If-None-Exist` (201 the first time, 200 for a repeat of the same
//!   criteria), `PUT AuditEvent/{id}` (201 then 200), `POST Communication` (201). Writes must be
//!   `application/fhir+json` (else 415) and of the right `resourceType` (else 400 with an
//!   OperationOutcome). [`FhirFake::audit_events`] and [`FhirFake::communications`] return what
//!   was stored.
//!
//! Every call except `metadata` needs `Authorization: Bearer …` (any token, unless
//! [`FhirFake::expire_token`] says otherwise), else 401 as Epic answers.
//! Epic itself has no AuditEvent endpoint: that part plays a generic server (HAPI-like).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{bearer_token, method, path, path_regex, query_param},
};

use crate::fixtures::{EPIC_APPOINTMENT, EPIC_ENCOUNTER, EPIC_PATIENT, EPIC_PRACTITIONER};

/// Epic's FHIR R4 base path (after the host), as in the sandbox.
pub const EPIC_BASE_PATH: &str = "/interconnect-fhir-oauth/api/FHIR/R4";
/// The system of Epic's numeric error codes in `OperationOutcome.issue.details.coding`.
pub use visitbridge_sandbox::shapes::EPIC_ERROR_SYSTEM;
/// The FHIR content type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// The fixture Appointment's id.
pub const APPOINTMENT_ID: &str = "eVa-Ad1SCIenVq8CYQVxfKwGtP-DfG3nIy9-5oPwTg2g3";
/// The fixture Encounter's id.
pub const ENCOUNTER_ID: &str = "eySnzekbpf6uGZz87ndPuRQ3";
/// The fixture Patient's id (Camila Lopez in Epic's sandbox).
pub const PATIENT_ID: &str = "erXuFYUfucBZaryVksYEcMg3";
/// The fixture Practitioner's id.
pub const PRACTITIONER_ID: &str = "eM5CWtq15N0WJeuCet5bJlQ3";
/// The Location the fixture Appointment takes place at.
pub const LOCATION_ID: &str = "e4W4rmGe9QzuGm2Dy4NBqVc0KDe6yGxNaypmj3qA0ZuU3";
/// The fixture PractitionerRole's id.
pub const PRACTITIONER_ROLE_ID: &str = "eN4pZ2FdGDwZ0G3ZQbxsF8w3";

/// An R4 Location as Epic returns it (the one the fixture Appointment points at).
pub const EPIC_LOCATION: &str = r#"{
  "resourceType": "Location",
  "id": "e4W4rmGe9QzuGm2Dy4NBqVc0KDe6yGxNaypmj3qA0ZuU3",
  "identifier": [ { "use": "usual", "system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.686980", "value": "1700101" } ],
  "status": "active",
  "name": "EMC FAMILY MEDICINE",
  "mode": "instance",
  "type": [ { "coding": [ { "system": "urn:oid:1.2.840.114350.1.13.0.1.7.10.686980.30", "code": "1", "display": "Family Medicine" } ], "text": "Family Medicine" } ],
  "telecom": [ { "system": "phone", "value": "608-271-9000", "use": "work" } ],
  "address": { "line": ["1979 Milky Way"], "city": "Verona", "state": "WI", "postalCode": "53593", "country": "US" },
  "managingOrganization": { "reference": "Organization/enRyWnSP963FYDpoks4NHOA3", "display": "Epic Hospital System" }
}"#;

/// An R4 PractitionerRole as Epic returns it (the fixture Practitioner at the fixture Location).
pub const EPIC_PRACTITIONER_ROLE: &str = r#"{
  "resourceType": "PractitionerRole",
  "id": "eN4pZ2FdGDwZ0G3ZQbxsF8w3",
  "active": true,
  "practitioner": { "reference": "Practitioner/eM5CWtq15N0WJeuCet5bJlQ3", "display": "Physician Family Medicine, MD" },
  "organization": { "reference": "Organization/enRyWnSP963FYDpoks4NHOA3", "display": "Epic Hospital System" },
  "location": [ { "reference": "Location/e4W4rmGe9QzuGm2Dy4NBqVc0KDe6yGxNaypmj3qA0ZuU3", "display": "EMC FAMILY MEDICINE" } ],
  "specialty": [ { "coding": [ { "system": "urn:oid:1.2.840.114350.1.13.0.1.7.10.836982.1050", "code": "9", "display": "Family Medicine" } ], "text": "Family Medicine" } ]
}"#;

/// An OperationOutcome as Epic writes it: one issue, Epic's numeric code (if any) in
/// `details.coding` with [`EPIC_ERROR_SYSTEM`], `diagnostics` as given (the shape is the
/// sandbox's, [`visitbridge_sandbox::shapes::epic_operation_outcome`]).
pub fn operation_outcome(code: &str, epic_code: Option<u32>, diagnostics: &str) -> String {
    visitbridge_sandbox::shapes::epic_operation_outcome(code, epic_code, diagnostics).to_string()
}

/// A response with a FHIR JSON body (`set_body_raw`, so the content type stays
/// `application/fhir+json`).
pub fn fhir_json(status: u16, body: impl Into<Vec<u8>>) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.into(), FHIR_JSON)
}

/// What Epic answers for a missing, expired or revoked token: 401 with a `WWW-Authenticate`
/// challenge and no body.
pub fn unauthorized() -> ResponseTemplate {
    ResponseTemplate::new(401).insert_header(
        "WWW-Authenticate",
        r#"Bearer error="invalid_token", error_description="The access token provided is expired, revoked, malformed, or invalid for other reasons.""#,
    )
}

/// A searchset Bundle: `entries` are resource JSON texts, each with `fullUrl`
/// (`{base_url}/{type}/{id}`) and `search.mode` (`outcome` for OperationOutcomes, else `match`);
/// `self_url` and `next` become the paging links. `total` counts the matches.
pub fn searchset(base_url: &str, self_url: &str, entries: &[&str], next: Option<&str>) -> String {
    let mut matches = 0;
    let entry: Vec<Value> = entries
        .iter()
        .map(|text| {
            let resource: Value = serde_json::from_str(text).expect("bundle entry is JSON"); // allow-unwrap: test setup
            let kind = resource["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if kind == "OperationOutcome" {
                return json!({ "resource": resource, "search": { "mode": "outcome" } });
            }
            matches += 1;
            let id = resource["id"].as_str().unwrap_or_default();
            json!({
                "link": [ { "relation": "self", "url": format!("{base_url}/{kind}/{id}") } ],
                "fullUrl": format!("{base_url}/{kind}/{id}"),
                "resource": resource,
                "search": { "mode": "match" }
            })
        })
        .collect();
    let mut link = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(next) = next {
        link.push(json!({ "relation": "next", "url": next }));
    }
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": matches,
        "link": link,
        "entry": entry
    })
    .to_string()
}

/// A CapabilityStatement (R4, Epic-like) whose SMART `oauth-uris` extension names `authorize`
/// and `token`; it declares read/search for the resources we use, `create` for Communication, and
/// `create` with `conditionalCreate` and `updateCreate` for AuditEvent.
pub fn capability_statement(authorize: &str, token: &str) -> String {
    let read_search = |kind: &str| json!({ "type": kind, "interaction": [ { "code": "read" }, { "code": "search-type" } ] });
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-02-01T00:00:00Z",
        "kind": "instance",
        "software": { "name": "Epic", "version": "February 2026" },
        "fhirVersion": "4.0.1",
        "format": ["xml", "json"],
        "rest": [ {
            "mode": "server",
            "security": {
                "extension": [ {
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        { "url": "authorize", "valueUri": authorize },
                        { "url": "token", "valueUri": token }
                    ]
                } ],
                "service": [ { "coding": [ { "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" } ], "text": "OAuth" } ]
            },
            "resource": [
                read_search("Appointment"),
                read_search("Encounter"),
                read_search("Patient"),
                read_search("Practitioner"),
                read_search("PractitionerRole"),
                read_search("Location"),
                { "type": "Communication", "interaction": [ { "code": "create" } ] },
                { "type": "AuditEvent", "interaction": [ { "code": "create" }, { "code": "update" } ],
                  "updateCreate": true, "conditionalCreate": true }
            ]
        } ]
    })
    .to_string()
}

/// The FHIR fake mounted on a server: its base URL and what it stored.
#[derive(Debug, Clone)]
pub struct FhirFake {
    base_url: String,
    base_path: String,
    store: Arc<Mutex<Store>>,
}

#[derive(Debug, Default)]
struct Store {
    next_id: u32,
    /// AuditEvents by id, in creation order.
    audit_events: Vec<(String, Value)>,
    /// `If-None-Exist` criteria already satisfied, with the id they matched (a map: a
    /// benchmark's backlog sends a hundred thousand).
    criteria: HashMap<String, String>,
    communications: Vec<Value>,
}

impl FhirFake {
    /// Starts a server of its own with the fake at [`EPIC_BASE_PATH`].
    pub async fn start() -> (MockServer, FhirFake) {
        let server = MockServer::start().await;
        let fake = Self::mount_on(&server, EPIC_BASE_PATH).await;
        (server, fake)
    }

    /// Mounts the fake under `base_path` (e.g. [`EPIC_BASE_PATH`]) on `server`.
    pub async fn mount_on(server: &MockServer, base_path: &str) -> FhirFake {
        let base_path = format!("/{}", base_path.trim_matches('/'));
        let fake = FhirFake {
            base_url: format!("{}{base_path}", server.uri()),
            base_path,
            store: Arc::default(),
        };
        fake.mount(server).await;
        fake
    }

    /// The FHIR base URL (the `iss`), without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The base path on the server, e.g. `/interconnect-fhir-oauth/api/FHIR/R4`.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// `{base_path}/{rest}`: a path for extra mocks a test mounts next to the fake.
    pub fn path(&self, rest: &str) -> String {
        format!("{}/{}", self.base_path, rest.trim_start_matches('/'))
    }

    /// Makes `token` answer 401 (as an expired token does) on every call that needs a token.
    pub async fn expire_token(&self, server: &MockServer, token: &str) {
        Mock::given(bearer_token(token))
            .and(path_regex(format!(
                "^{}/[A-Z]",
                regex_escape(&self.base_path)
            )))
            .respond_with(unauthorized())
            .with_priority(1)
            .mount(server)
            .await;
    }

    /// The AuditEvents stored so far (created or put), oldest first, each with its `id`.
    pub fn audit_events(&self) -> Vec<Value> {
        self.lock()
            .audit_events
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The Communications stored so far, oldest first, each with its `id`.
    pub fn communications(&self) -> Vec<Value> {
        self.lock().communications.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn mount(&self, server: &MockServer) {
        let base = &self.base_path;
        let origin = server.uri();
        let oauth_prefix = base.strip_suffix("/api/FHIR/R4").unwrap_or("");
        Mock::given(method("GET"))
            .and(path(format!("{base}/metadata")))
            .respond_with(fhir_json(
                200,
                capability_statement(
                    &format!("{origin}{oauth_prefix}/oauth2/authorize"),
                    &format!("{origin}{oauth_prefix}/oauth2/token"),
                ),
            ))
            .with_priority(2)
            .mount(server)
            .await;

        // Everything else needs a bearer token. A call with one to a path the fake does not serve
        // falls through to wiremock's 404, so a wrong URL is not mistaken for a token problem.
        Mock::given(path_regex(format!("^{}/[A-Z]", regex_escape(base))))
            .and(|request: &Request| !has_bearer(request))
            .respond_with(unauthorized())
            .with_priority(10)
            .mount(server)
            .await;

        let reads = [
            ("Appointment", APPOINTMENT_ID, EPIC_APPOINTMENT),
            ("Encounter", ENCOUNTER_ID, EPIC_ENCOUNTER),
            ("Patient", PATIENT_ID, EPIC_PATIENT),
            ("Practitioner", PRACTITIONER_ID, EPIC_PRACTITIONER),
            (
                "PractitionerRole",
                PRACTITIONER_ROLE_ID,
                EPIC_PRACTITIONER_ROLE,
            ),
            ("Location", LOCATION_ID, EPIC_LOCATION),
        ];
        for (kind, id, body) in reads {
            authed(method("GET"), path(format!("{base}/{kind}/{id}")))
                .respond_with(fhir_json(200, body))
                .with_priority(3)
                .mount(server)
                .await;
            authed(
                method("GET"),
                path_regex(format!("^{}/{kind}/[^/]+$", regex_escape(base))),
            )
            .respond_with(fhir_json(
                404,
                operation_outcome(
                    "not-found",
                    Some(4102),
                    "The read resource request contained an invalid ID.",
                ),
            ))
            .with_priority(5)
            .mount(server)
            .await;
        }

        let appointment_search = searchset(
            &self.base_url,
            &format!("{}/Appointment?patient={PATIENT_ID}", self.base_url),
            &[EPIC_APPOINTMENT],
            None,
        );
        for (param, id) in [("patient", PATIENT_ID), ("practitioner", PRACTITIONER_ID)] {
            authed(method("GET"), path(format!("{base}/Appointment")))
                .and(query_param(param, id))
                .respond_with(fhir_json(200, appointment_search.clone()))
                .with_priority(3)
                .mount(server)
                .await;
        }
        authed(method("GET"), path(format!("{base}/Encounter")))
            .and(query_param("appointment", APPOINTMENT_ID))
            .respond_with(fhir_json(
                200,
                searchset(
                    &self.base_url,
                    &format!("{}/Encounter?appointment={APPOINTMENT_ID}", self.base_url),
                    &[EPIC_ENCOUNTER],
                    None,
                ),
            ))
            .with_priority(3)
            .mount(server)
            .await;
        for kind in ["Appointment", "Encounter"] {
            let no_results = operation_outcome(
                "processing",
                Some(4101),
                "Resource request returns no results.",
            );
            authed(method("GET"), path(format!("{base}/{kind}")))
                .respond_with(fhir_json(
                    200,
                    searchset(
                        &self.base_url,
                        &format!("{}/{kind}", self.base_url),
                        &[&no_results],
                        None,
                    ),
                ))
                .with_priority(5)
                .mount(server)
                .await;
        }

        let writes = Writes { fake: self.clone() };
        authed(method("POST"), path(format!("{base}/AuditEvent")))
            .respond_with(writes.clone())
            .with_priority(3)
            .mount(server)
            .await;
        authed(
            method("PUT"),
            path_regex(format!("^{}/AuditEvent/[^/]+$", regex_escape(base))),
        )
        .respond_with(writes.clone())
        .with_priority(3)
        .mount(server)
        .await;
        authed(method("POST"), path(format!("{base}/Communication")))
            .respond_with(writes)
            .with_priority(3)
            .mount(server)
            .await;
    }
}

fn has_bearer(request: &Request) -> bool {
    request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "))
}

/// A mock that only matches calls carrying a bearer token.
fn authed(
    first: impl wiremock::Match + 'static,
    second: impl wiremock::Match + 'static,
) -> wiremock::MockBuilder {
    Mock::given(first).and(second).and(has_bearer)
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = c.is_ascii_punctuation() && c != '/';
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The stateful write endpoints.
#[derive(Clone)]
struct Writes {
    fake: FhirFake,
}

impl Respond for Writes {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let content_type = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with(FHIR_JSON) {
            return fhir_json(
                415,
                operation_outcome(
                    "not-supported",
                    None,
                    "Content-Type must be application/fhir+json",
                ),
            );
        }
        let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
            return fhir_json(
                400,
                operation_outcome("structure", None, "body is not JSON"),
            );
        };
        let segments: Vec<&str> = request
            .url
            .path()
            .strip_prefix(self.fake.base_path.as_str())
            .unwrap_or_default()
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let kind = segments.first().copied().unwrap_or_default();
        if body["resourceType"] != kind {
            return fhir_json(
                400,
                operation_outcome("invalid", None, &format!("expected resourceType {kind}")),
            );
        }
        let base_url = self.fake.base_url.clone();
        let mut store = self.fake.lock();
        let location = |id: &str| format!("{base_url}/{kind}/{id}/_history/1");
        match (kind, segments.get(1)) {
            ("AuditEvent", Some(id)) => {
                if body["id"] != **id {
                    return fhir_json(
                        400,
                        operation_outcome("invalid", None, "resource id does not match the URL"),
                    );
                }
                let existing = store.audit_events.iter().position(|(known, _)| known == id);
                match existing {
                    Some(at) => {
                        store.audit_events[at].1 = body;
                        ResponseTemplate::new(200).insert_header("Location", location(id))
                    }
                    None => {
                        store.audit_events.push(((*id).to_owned(), body));
                        ResponseTemplate::new(201).insert_header("Location", location(id))
                    }
                }
            }
            ("AuditEvent", None) => {
                let criteria = request
                    .headers
                    .get("if-none-exist")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let Some(criteria) = &criteria
                    && let Some(id) = store.criteria.get(criteria)
                {
                    return ResponseTemplate::new(200).insert_header("Location", location(id));
                }
                store.next_id += 1;
                let id = format!("audit-{}", store.next_id);
                body["id"] = json!(id);
                store.audit_events.push((id.clone(), body));
                if let Some(criteria) = criteria {
                    store.criteria.insert(criteria, id.clone());
                }
                ResponseTemplate::new(201).insert_header("Location", location(&id))
            }
            _ => {
                store.next_id += 1;
                let id = format!("comm-{}", store.next_id);
                body["id"] = json!(id);
                store.communications.push(body);
                ResponseTemplate::new(201).insert_header("Location", location(&id))
            }
        }
    }
}
