//! The EHR's FHIR R4 API: the CapabilityStatement, reads and searches of the seed (Epic's
//! OperationOutcomes on errors), AuditEvent and Communication writes, and Epic's connection-status
//! web service. Everything but `metadata` needs a bearer token this sandbox issued.

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{NaiveDate, Utc};
use serde_json::{Value, json};

use super::{AccessToken, ConnectionStatusCall, SandboxEhr};
use crate::{
    html::Refusal,
    util::{fhir_instant, parse_time},
};

const FHIR_JSON: &str = "application/fhir+json";
/// The system of Epic's numeric error codes.
/// Types that can be read and searched.
const READABLE: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Appointment",
    "Encounter",
    "AuditEvent",
];

/// A FHIR JSON answer.
fn fhir_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        body.to_string(),
    )
        .into_response()
}

/// An OperationOutcome as Epic writes it (its numeric code in `details.coding`).
fn outcome_json(code: &str, epic_code: Option<u32>, diagnostics: &str) -> Value {
    crate::shapes::epic_operation_outcome(code, epic_code, diagnostics)
}

fn outcome(status: StatusCode, code: &str, epic_code: Option<u32>, diagnostics: &str) -> Response {
    fhir_json(status, &outcome_json(code, epic_code, diagnostics))
}

/// What Epic answers for a missing, expired or foreign token.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            r#"Bearer error="invalid_token", error_description="The access token provided is expired, revoked, malformed, or invalid for other reasons.""#,
        )],
    )
        .into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Search,
    Create,
    Update,
}

impl AccessToken {
    /// Whether a scope (`user/`, `patient/` or `system/`; SMART v1 or v2 permissions) grants
    /// `access` to `resource_type`.
    fn allows(&self, resource_type: &str, access: Access) -> bool {
        self.scopes.iter().any(|scope| {
            let Some((context, rest)) = scope.split_once('/') else {
                return false;
            };
            let Some((kind, permission)) = rest.split_once('.') else {
                return false;
            };
            if !matches!(context, "user" | "patient" | "system")
                || (kind != "*" && kind != resource_type)
            {
                return false;
            }
            let v1 = match access {
                Access::Read | Access::Search => "read",
                Access::Create | Access::Update => "write",
            };
            let v2 = match access {
                Access::Read => 'r',
                Access::Search => 's',
                Access::Create => 'c',
                Access::Update => 'u',
            };
            permission == "*"
                || permission == v1
                || (permission.chars().all(|c| "cruds".contains(c)) && permission.contains(v2))
        })
    }

    /// For a patient's own token: whether `resource` is in that patient's records.
    fn may_see(&self, resource: &Value) -> bool {
        let Some(patient) = &self.patient_only else {
            return true;
        };
        let reference = format!("Patient/{patient}");
        match resource["resourceType"].as_str() {
            Some("Patient") => resource["id"] == patient.as_str(),
            Some("Appointment") => references(&resource["participant"], "actor", &reference),
            Some("Encounter") => resource["subject"]["reference"] == reference.as_str(),
            _ => true,
        }
    }
}

/// Whether any element of `list` has `list[i][field].reference == reference`.
fn references(list: &Value, field: &str, reference: &str) -> bool {
    list.as_array().is_some_and(|items| {
        items
            .iter()
            .any(|item| item[field]["reference"] == reference)
    })
}

impl SandboxEhr {
    fn bearer(&self, headers: &HeaderMap) -> Option<AccessToken> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.lock()
            .tokens
            .get(token.trim())
            .filter(|t| t.expires_at > Utc::now())
            .cloned()
    }

    /// All resources of a type (the seed, or what was written).
    fn all_of(&self, resource_type: &str) -> Vec<Value> {
        match resource_type {
            "AuditEvent" => self.lock().audit_events.clone(),
            other => self
                .inner
                .resources
                .of_type(other)
                .map(<[Value]>::to_vec)
                .unwrap_or_default(),
        }
    }
}

pub(crate) async fn metadata(State(ehr): State<SandboxEhr>) -> Response {
    let read_search = |kind: &str| json!({ "type": kind, "interaction": [ { "code": "read" }, { "code": "search-type" } ] });
    let statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhir_instant(Utc::now()),
        "kind": "instance",
        "software": { "name": "VisitBridge sandbox EHR (Epic-shaped)", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Simulated EHR for demos and tests", "url": ehr.fhir_base_url() },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [ {
            "mode": "server",
            "security": {
                "extension": [ {
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        { "url": "authorize", "valueUri": ehr.authorize_url() },
                        { "url": "token", "valueUri": ehr.token_url() }
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
                { "type": "AuditEvent", "interaction": [ { "code": "create" }, { "code": "update" }, { "code": "read" }, { "code": "search-type" } ],
                  "updateCreate": true, "conditionalCreate": true }
            ]
        } ]
    });
    fhir_json(StatusCode::OK, &statement)
}

pub(crate) async fn read(
    State(ehr): State<SandboxEhr>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = ehr.bearer(&headers) else {
        return unauthorized();
    };
    if !READABLE.contains(&resource_type.as_str()) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            None,
            &format!("The resource type {resource_type} is not supported."),
        );
    }
    if !token.allows(&resource_type, Access::Read) {
        return forbidden(&resource_type);
    }
    let found = ehr
        .all_of(&resource_type)
        .into_iter()
        .find(|r| r["id"] == id.as_str());
    match found {
        Some(resource) if token.may_see(&resource) => fhir_json(StatusCode::OK, &resource),
        Some(_) => forbidden(&resource_type),
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            Some(4102),
            "The read resource request contained an invalid ID.",
        ),
    }
}

fn forbidden(resource_type: &str) -> Response {
    outcome(
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
        &format!("The access token does not grant access to this {resource_type}."),
    )
}

/// Search parameters a type cannot be searched without (Epic refuses an unbounded search).
fn required_params(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Appointment" => &["patient", "practitioner", "identifier", "_id"],
        "Encounter" => &["patient", "subject", "appointment", "identifier", "_id"],
        _ => &[],
    }
}

pub(crate) async fn search(
    State(ehr): State<SandboxEhr>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(token) = ehr.bearer(&headers) else {
        return unauthorized();
    };
    if !READABLE.contains(&resource_type.as_str()) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            None,
            &format!("The resource type {resource_type} is not supported."),
        );
    }
    if !token.allows(&resource_type, Access::Search) {
        return forbidden(&resource_type);
    }
    let query = query.unwrap_or_default();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let required = required_params(&resource_type);
    if !required.is_empty() && !params.iter().any(|(k, _)| required.contains(&k.as_str())) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "required",
            Some(4110),
            &format!(
                "A required search parameter is missing: one of {}.",
                required.join(", ")
            ),
        );
    }
    let mut bad_date = false;
    let matches: Vec<Value> = ehr
        .all_of(&resource_type)
        .into_iter()
        .filter(|r| token.may_see(r))
        .filter(|r| {
            params.iter().all(|(name, value)| {
                matches_param(r, name, value).unwrap_or_else(|| {
                    bad_date = true;
                    false
                })
            })
        })
        .collect();
    if bad_date {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            Some(4100),
            "The date parameter is not a valid FHIR date.",
        );
    }
    let base = ehr.fhir_base_url();
    let self_url = if query.is_empty() {
        format!("{base}/{resource_type}")
    } else {
        format!("{base}/{resource_type}?{query}")
    };
    let mut entries: Vec<Value> = matches
        .iter()
        .map(|r| {
            let full_url = format!(
                "{base}/{resource_type}/{}",
                r["id"].as_str().unwrap_or_default()
            );
            json!({
                "link": [ { "relation": "self", "url": full_url } ],
                "fullUrl": full_url,
                "resource": r,
                "search": { "mode": "match" }
            })
        })
        .collect();
    if matches.is_empty() {
        entries.push(json!({
            "resource": outcome_json("processing", Some(4101), "Resource request returns no results."),
            "search": { "mode": "outcome" }
        }));
    }
    fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": matches.len(),
            "link": [ { "relation": "self", "url": self_url } ],
            "entry": entries
        }),
    )
}

/// Whether `resource` satisfies one search parameter (any of comma-separated values). Unknown
/// parameters match everything, as servers ignore what they do not support. `None` means the
/// value is malformed.
fn matches_param(resource: &Value, name: &str, value: &str) -> Option<bool> {
    let any = |test: &dyn Fn(&str) -> bool| value.split(',').any(|v| test(v.trim()));
    let strip = |v: &str, kind: &str| v.strip_prefix(&format!("{kind}/")).unwrap_or(v).to_owned();
    Some(match name {
        "_id" => any(&|v| resource["id"] == v),
        "patient" | "subject" => any(&|v| {
            let reference = format!("Patient/{}", strip(v, "Patient"));
            match resource["resourceType"].as_str() {
                Some("Appointment") => references(&resource["participant"], "actor", &reference),
                Some("Encounter") => resource["subject"]["reference"] == reference.as_str(),
                _ => false,
            }
        }),
        "practitioner" => any(&|v| {
            let reference = format!("Practitioner/{}", strip(v, "Practitioner"));
            match resource["resourceType"].as_str() {
                Some("Appointment") => references(&resource["participant"], "actor", &reference),
                Some("Encounter") => references(&resource["participant"], "individual", &reference),
                Some("PractitionerRole") => {
                    resource["practitioner"]["reference"] == reference.as_str()
                }
                _ => false,
            }
        }),
        "appointment" => any(&|v| {
            let reference = format!("Appointment/{}", strip(v, "Appointment"));
            resource["appointment"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["reference"] == reference.as_str()))
        }),
        "identifier" => any(&|v| {
            let (system, val) = match v.split_once('|') {
                Some((s, val)) => (Some(s), val),
                None => (None, v),
            };
            resource["identifier"].as_array().is_some_and(|ids| {
                ids.iter().any(|id| {
                    id["value"].as_str().map(str::trim) == Some(val)
                        && system.is_none_or(|s| s.is_empty() || id["system"] == s)
                })
            })
        }),
        "status" => any(&|v| resource["status"] == v),
        "_tag" => any(&|v| {
            let (system, code) = v.split_once('|').unwrap_or(("", v));
            resource["meta"]["tag"].as_array().is_some_and(|tags| {
                tags.iter()
                    .any(|t| t["code"] == code && (system.is_empty() || t["system"] == system))
            })
        }),
        "date" => {
            let start = match resource["resourceType"].as_str() {
                Some("Appointment") => resource["start"].as_str(),
                Some("Encounter") => resource["period"]["start"].as_str(),
                _ => return Some(true),
            };
            let start = start.and_then(parse_time)?;
            date_matches(start, value)?
        }
        _ => true,
    })
}

/// `date=[prefix]YYYY-MM-DD` (or a full date-time) against an instant.
fn date_matches(at: chrono::DateTime<Utc>, value: &str) -> Option<bool> {
    let (prefix, text) = match value.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "lt" | "ge" | "le")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let ordering = if text.len() == 10 {
        at.date_naive()
            .cmp(&NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?)
    } else {
        at.cmp(&parse_time(text)?)
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    Some(match prefix {
        "ne" => ordering != Equal,
        "gt" => ordering == Greater,
        "lt" => ordering == Less,
        "ge" => ordering != Less,
        "le" => ordering != Greater,
        _ => ordering == Equal,
    })
}

fn is_fhir_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(FHIR_JSON) || v.starts_with("application/json"))
}

fn wants_minimal(headers: &HeaderMap) -> bool {
    headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("return=minimal"))
}

/// A write answer: status, `Location`, and the resource unless `Prefer: return=minimal`.
fn written(status: StatusCode, location: &str, resource: &Value, minimal: bool) -> Response {
    let mut response = if minimal {
        status.into_response()
    } else {
        fhir_json(status, resource)
    };
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Checks token, scope, content type and body of a write; the parsed resource on success.
fn check_write(
    ehr: &SandboxEhr,
    headers: &HeaderMap,
    resource_type: &str,
    access: Access,
    body: &[u8],
) -> Result<Value, Refusal> {
    let Some(token) = ehr.bearer(headers) else {
        return Err(unauthorized().into());
    };
    let allowed = match access {
        Access::Create => matches!(resource_type, "AuditEvent" | "Communication"),
        _ => resource_type == "AuditEvent",
    };
    if !allowed {
        return Err(outcome(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            None,
            &format!("This server does not support this interaction on {resource_type}."),
        )
        .into());
    }
    if !token.allows(resource_type, access) {
        return Err(forbidden(resource_type).into());
    }
    if !is_fhir_json(headers) {
        return Err(outcome(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            None,
            "Content-Type must be application/fhir+json",
        )
        .into());
    }
    let Ok(resource) = serde_json::from_slice::<Value>(body) else {
        return Err(outcome(
            StatusCode::BAD_REQUEST,
            "structure",
            None,
            "The body is not JSON.",
        )
        .into());
    };
    if resource["resourceType"] != resource_type {
        return Err(outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            None,
            &format!("Expected a resource of type {resource_type}."),
        )
        .into());
    }
    Ok(resource)
}

fn stamp(resource: &mut Value, id: &str) {
    resource["id"] = json!(id);
    if !resource["meta"].is_object() {
        resource["meta"] = json!({});
    }
    resource["meta"]["versionId"] = json!("1");
    resource["meta"]["lastUpdated"] = json!(fhir_instant(Utc::now()));
}

pub(crate) async fn create(
    State(ehr): State<SandboxEhr>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut resource = match check_write(&ehr, &headers, &resource_type, Access::Create, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let base = ehr.fhir_base_url();
    let minimal = wants_minimal(&headers);
    let criteria = headers
        .get("if-none-exist")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut st = ehr.lock();
    if let Some(criteria) = criteria {
        let params: BTreeMap<String, String> = url::form_urlencoded::parse(criteria.as_bytes())
            .into_owned()
            .collect();
        let Some(tag) = params.get("_tag").filter(|_| params.len() == 1) else {
            return outcome(
                StatusCode::BAD_REQUEST,
                "not-supported",
                None,
                "If-None-Exist supports only the _tag parameter here.",
            );
        };
        let existing: Vec<&Value> = st
            .audit_events
            .iter()
            .filter(|r| matches_param(r, "_tag", tag) == Some(true))
            .collect();
        match existing.as_slice() {
            [] => {}
            [one] => {
                let id = one["id"].as_str().unwrap_or_default();
                let location = format!("{base}/AuditEvent/{id}/_history/1");
                return written(StatusCode::OK, &location, one, minimal);
            }
            _ => {
                return outcome(
                    StatusCode::PRECONDITION_FAILED,
                    "duplicate",
                    None,
                    "More than one resource matches the If-None-Exist criteria.",
                );
            }
        }
    }
    st.next_id += 1;
    let prefix = if resource_type == "AuditEvent" {
        "audit"
    } else {
        "comm"
    };
    let id = format!("sbx-{prefix}-{}", st.next_id);
    stamp(&mut resource, &id);
    if resource_type == "AuditEvent" {
        st.audit_events.push(resource.clone());
    } else {
        st.communications.push(resource.clone());
    }
    drop(st);
    tracing::info!(resource_type = %resource_type, id = %id, "sandbox ehr stored a resource");
    let location = format!("{base}/{resource_type}/{id}/_history/1");
    written(StatusCode::CREATED, &location, &resource, minimal)
}

pub(crate) async fn update(
    State(ehr): State<SandboxEhr>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut resource = match check_write(&ehr, &headers, &resource_type, Access::Update, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    if resource["id"] != id.as_str() {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            None,
            "The resource id does not match the URL.",
        );
    }
    stamp(&mut resource, &id);
    let mut st = ehr.lock();
    let status = match st.audit_events.iter_mut().find(|r| r["id"] == id.as_str()) {
        Some(existing) => {
            *existing = resource.clone();
            StatusCode::OK
        }
        None => {
            st.audit_events.push(resource.clone());
            StatusCode::CREATED
        }
    };
    drop(st);
    let location = format!("{}/AuditEvent/{id}/_history/1", ehr.fhir_base_url());
    written(status, &location, &resource, wants_minimal(&headers))
}

/// Epic's `SetExternalConnectionStatus`: records the call for the schedule and audit pages.
pub(crate) async fn connection_status(
    State(ehr): State<SandboxEhr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let error = |status: StatusCode, message: &str| {
        (status, Json(json!({ "Message": message }))).into_response()
    };
    let Some(token) = ehr.bearer(&headers) else {
        return unauthorized();
    };
    let epic_client = headers
        .get("epic-client-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if epic_client != token.client_id {
        return error(
            StatusCode::FORBIDDEN,
            "The Epic-Client-ID header is missing or does not match the access token's client.",
        );
    }
    let params: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let names = [
        "ConferenceID",
        "ExternalID",
        "ExternalIDType",
        "VendorName",
        "ConnectionStatus",
    ];
    if let Some(missing) = names.iter().find(|n| get(n).is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("The parameter {missing} is required."),
        );
    }
    if ehr.inner.seed.visit_by_csn(&get("ConferenceID")).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "No video visit has this ConferenceID.",
        );
    }
    let call = ConnectionStatusCall {
        at: Utc::now(),
        client_id: token.client_id,
        conference_id: get("ConferenceID"),
        external_id: get("ExternalID"),
        external_id_type: get("ExternalIDType"),
        vendor_name: get("VendorName"),
        connection_status: get("ConnectionStatus"),
    };
    tracing::info!(
        conference_id = %call.conference_id,
        status = %call.connection_status,
        "sandbox ehr received a connection status"
    );
    ehr.lock().connection_statuses.push(call);
    Json(json!({})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scopes: &str) -> AccessToken {
        AccessToken {
            client_id: "c".into(),
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
            patient_only: None,
            expires_at: Utc::now(),
        }
    }

    #[test]
    fn scopes_grant_in_v1_and_v2_forms() {
        let v1 = token("launch openid user/Appointment.read system/AuditEvent.write");
        assert!(v1.allows("Appointment", Access::Read));
        assert!(v1.allows("Appointment", Access::Search));
        assert!(!v1.allows("Appointment", Access::Create));
        assert!(!v1.allows("Patient", Access::Read));
        assert!(v1.allows("AuditEvent", Access::Create));
        let v2 = token("user/Appointment.rs patient/*.r system/Communication.c");
        assert!(v2.allows("Appointment", Access::Search));
        assert!(v2.allows("Patient", Access::Read));
        assert!(!v2.allows("Patient", Access::Search));
        assert!(v2.allows("Communication", Access::Create));
        assert!(!v2.allows("Communication", Access::Update));
    }

    #[test]
    fn dates_compare_by_day_or_instant() {
        let at = parse_time("2026-03-05T18:00:00Z").expect("time");
        assert_eq!(date_matches(at, "2026-03-05"), Some(true));
        assert_eq!(date_matches(at, "ge2026-03-05"), Some(true));
        assert_eq!(date_matches(at, "lt2026-03-05"), Some(false));
        assert_eq!(date_matches(at, "gt2026-03-05T17:00:00Z"), Some(true));
        assert_eq!(date_matches(at, "le2026-03-04"), Some(false));
        assert_eq!(date_matches(at, "yesterday"), None);
    }
}
