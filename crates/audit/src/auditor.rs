//! The auditor's FHIR endpoint over the AuditEvents we keep (each within its retention):
//! `GET [base]/AuditEvent` searched by `entity` (an Appointment or Patient reference), `patient`,
//! `date` (`AuditEvent.recorded`, with prefixes; several are all to hold) and `_count`, paged by
//! the `ct` cursor of its `next` link; `GET [base]/AuditEvent/{id}`; and the CapabilityStatement
//! that says so (`GET [base]/metadata`).
//!
//! The store keeps patient and appointment ids only as keyed hashes, so a search by reference is
//! a search by the reference's key under each configuration the auditor may see. Parameters this
//! endpoint does not know are ignored, as FHIR's lenient handling says, and left out of the
//! `self` link; with `Prefer: handling=strict` they are refused.

use std::collections::BTreeSet;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use visitbridge_approval::ConfigurationId;
use visitbridge_fhir::server::{DateRange, RequestError, SearchMatch, searchset};
use visitbridge_store::{AuditEventFilter, AuditRepo, EventId, StoreError, VisitRepo};
use visitbridge_visit::ReferenceKeys;

/// Matches on a page when `_count` is not given.
pub const DEFAULT_COUNT: u32 = 50;

/// The most matches on one page (a larger `_count` is lowered to it, as FHIR allows).
pub const MAX_COUNT: u32 = 500;

/// A FHIR resource id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// What a search asks for, as parsed from its query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEventSearch {
    /// Appointment ids any of which the visit's must be (`None`: any visit).
    appointments: Option<BTreeSet<String>>,
    /// Patient ids any of which the visit's must be.
    patients: Option<BTreeSet<String>>,
    date: DateRange,
    count: u32,
    cursor: Option<(DateTime<Utc>, EventId)>,
    /// The parameters used, in order, for the `self` and `next` links (not the cursor).
    used: Vec<(String, String)>,
}

/// Both sets of alternatives must hold (a parameter given twice).
fn and(acc: Option<BTreeSet<String>>, alternatives: BTreeSet<String>) -> Option<BTreeSet<String>> {
    Some(match acc {
        None => alternatives,
        Some(acc) => acc.intersection(&alternatives).cloned().collect(),
    })
}

impl AuditEventSearch {
    /// Parses `query` (the URL's query string, not decoded). `strict`: the request said
    /// `Prefer: handling=strict`, so an unknown parameter is an error instead of ignored.
    pub fn parse(query: Option<&str>, strict: bool) -> Result<Self, RequestError> {
        let mut search = Self {
            appointments: None,
            patients: None,
            date: DateRange::default(),
            count: DEFAULT_COUNT,
            cursor: None,
            used: Vec::new(),
        };
        let pairs = query.map_or_else(Vec::new, |q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        });
        for (name, value) in pairs {
            // A modifier changes what a parameter means; one this server does not know must not
            // be ignored (it would widen the search), whatever the handling.
            if name.contains(':') {
                return Err(RequestError::NotSupported(
                    "search parameter modifiers (name:modifier) are not supported".to_owned(),
                ));
            }
            match name.as_str() {
                "entity" => {
                    let (mut appointments, mut patients) = (BTreeSet::new(), BTreeSet::new());
                    for reference in value.split(',') {
                        match reference.split_once('/') {
                            Some(("Appointment", id)) if is_fhir_id(id) => {
                                appointments.insert(id.to_owned());
                            }
                            Some(("Patient", id)) if is_fhir_id(id) => {
                                patients.insert(id.to_owned());
                            }
                            Some(("Appointment" | "Patient", _)) => {
                                return Err(RequestError::invalid("entity", "not a FHIR id"));
                            }
                            _ => {
                                return Err(RequestError::NotSupported(
                                    "entity: only relative Appointment/{id} and Patient/{id} \
                                     references are searchable"
                                        .to_owned(),
                                ));
                            }
                        }
                    }
                    // One value's alternatives are of one type, or the search is about both.
                    if !appointments.is_empty() && !patients.is_empty() {
                        return Err(RequestError::NotSupported(
                            "entity: give Appointment and Patient references in separate \
                             parameters"
                                .to_owned(),
                        ));
                    }
                    if !appointments.is_empty() {
                        search.appointments = and(search.appointments, appointments);
                    } else {
                        search.patients = and(search.patients, patients);
                    }
                }
                "patient" => {
                    let mut patients = BTreeSet::new();
                    for reference in value.split(',') {
                        let id = reference.strip_prefix("Patient/").unwrap_or(reference);
                        if !is_fhir_id(id) {
                            return Err(RequestError::invalid(
                                "patient",
                                "expected Patient/{id} or a FHIR id",
                            ));
                        }
                        patients.insert(id.to_owned());
                    }
                    search.patients = and(search.patients, patients);
                }
                // A `+` of a zone offset that was not percent-encoded arrives as a space.
                "date" => {
                    search.date = search.date.and(DateRange::parse(&value.replace(' ', "+"))?)
                }
                "_count" => {
                    let count: u32 = value.parse().map_err(|_| {
                        RequestError::invalid("_count", "expected a whole number from 1")
                    })?;
                    if count == 0 {
                        return Err(RequestError::NotSupported(
                            "_count: 0 (a count without the matches) is not supported".to_owned(),
                        ));
                    }
                    search.count = count.min(MAX_COUNT);
                    continue;
                }
                "ct" => {
                    search.cursor = Some(decode_cursor(&value)?);
                    continue;
                }
                "_format" => {
                    if !matches!(
                        value.as_str(),
                        "json" | "application/json" | "application/fhir+json"
                    ) {
                        return Err(RequestError::NotAcceptable(
                            "_format: this server answers JSON only".to_owned(),
                        ));
                    }
                }
                _ if strict => {
                    return Err(RequestError::NotSupported(format!(
                        "{}: not a search parameter of this server (see its CapabilityStatement)",
                        // A parameter name is not patient data, but keep it printable and short.
                        name.chars()
                            .filter(|c| c.is_ascii_graphic())
                            .take(40)
                            .collect::<String>()
                    )));
                }
                _ => continue,
            }
            search.used.push((name, value));
        }
        search
            .used
            .push(("_count".to_owned(), search.count.to_string()));
        Ok(search)
    }

    /// Whether the search names a patient or an appointment (so it needs the reference keys).
    pub fn by_reference(&self) -> bool {
        self.appointments.is_some() || self.patients.is_some()
    }

    /// The matches a page holds.
    pub fn count(&self) -> u32 {
        self.count
    }

    fn link(&self, base: &str, cursor: Option<&str>) -> String {
        let mut url = format!("{base}/AuditEvent?");
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.used {
            query.append_pair(name, value);
        }
        if let Some(cursor) = cursor {
            query.append_pair("ct", cursor);
        }
        url.push_str(&query.finish());
        url
    }
}

/// `at`, rounded up to a whole millisecond.
fn ceil_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = DateTime::<Utc>::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
    if floor < at {
        floor + chrono::Duration::milliseconds(1)
    } else {
        floor
    }
}

fn encode_cursor(at: DateTime<Utc>, event: &EventId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", at.timestamp_millis(), event.as_str()))
}

fn decode_cursor(text: &str) -> Result<(DateTime<Utc>, EventId), RequestError> {
    let bad = || RequestError::invalid("ct", "not a page of this search (follow the next link)");
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (millis, event) = text.split_once(':').ok_or_else(bad)?;
    let at = millis
        .parse::<i64>()
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .ok_or_else(bad)?;
    Ok((at, EventId::new(event).map_err(|_| bad())?))
}

/// An AuditEvent as this endpoint serves it: the stored resource, with our event id as its id.
fn served(event_id: &EventId, mut resource: Value) -> Value {
    if let Some(object) = resource.as_object_mut() {
        object.insert("id".to_owned(), Value::String(event_id.as_str().to_owned()));
    }
    resource
}

/// Runs `search` over the events of `configurations` (those the auditor may see): one page, as
/// a `searchset` Bundle whose links start with `base` (the endpoint's absolute URL, no trailing
/// slash). One store read.
pub async fn search_audit_events(
    store: &dyn AuditRepo,
    keys: &ReferenceKeys,
    configurations: &[ConfigurationId],
    search: &AuditEventSearch,
    base: &str,
    now: DateTime<Utc>,
) -> Result<Value, StoreError> {
    let key_all = |ids: &BTreeSet<String>, key: &dyn Fn(&str, &str) -> String| -> Vec<String> {
        configurations
            .iter()
            .flat_map(|c| ids.iter().map(move |id| key(c.as_str(), id)))
            .collect()
    };
    let filter = AuditEventFilter {
        configurations: configurations.to_vec(),
        patient_keys: search.patients.as_ref().map_or_else(Vec::new, |ids| {
            key_all(ids, &|c, id| keys.patient(c, id).as_str().to_owned())
        }),
        appointment_keys: search.appointments.as_ref().map_or_else(Vec::new, |ids| {
            key_all(ids, &|c, id| keys.appointment(c, id).as_str().to_owned())
        }),
        // The store keeps milliseconds: a bound between two is the next one.
        recorded_from: search.date.from.map(ceil_millis),
        recorded_before: search.date.before.map(ceil_millis),
        after: search.cursor.clone(),
    };
    let nothing = search.date.is_empty()
        || search.appointments.as_ref().is_some_and(BTreeSet::is_empty)
        || search.patients.as_ref().is_some_and(BTreeSet::is_empty)
        || configurations.is_empty();
    let mut events = if nothing {
        Vec::new()
    } else {
        store
            .search_audit_events(&filter, search.count.saturating_add(1))
            .await?
    };
    let more = events.len() > usize::try_from(search.count).unwrap_or(usize::MAX);
    events.truncate(usize::try_from(search.count).unwrap_or(usize::MAX));
    let next = more
        .then(|| events.last())
        .flatten()
        .map(|last| search.link(base, Some(&encode_cursor(last.recorded_at, &last.event_id))));
    let current = search
        .cursor
        .as_ref()
        .map(|(at, id)| encode_cursor(*at, id));
    let matches = events
        .into_iter()
        .map(|e| SearchMatch {
            full_url: format!("{base}/AuditEvent/{}", e.event_id),
            resource: served(&e.event_id, e.audit_event),
        })
        .collect();
    Ok(searchset(
        &search.link(base, current.as_deref()),
        next.as_deref(),
        matches,
        now,
    ))
}

/// `GET [base]/AuditEvent/{id}`: the AuditEvent, if it is one of `configurations`' and still
/// kept; else `NotFound` (whether it exists elsewhere is not told).
pub async fn read_audit_event<S>(
    store: &S,
    configurations: &[ConfigurationId],
    id: &str,
) -> Result<Value, RequestError>
where
    S: AuditRepo + VisitRepo + ?Sized,
{
    let not_found = || RequestError::NotFound("no such AuditEvent".to_owned());
    let event_id = EventId::new(id).map_err(|_| not_found())?;
    let failed = |e: StoreError| {
        tracing::warn!(error = %e, "cannot read an AuditEvent");
        RequestError::Exception
    };
    let event = store
        .get_event(&event_id)
        .await
        .map_err(failed)?
        .ok_or_else(not_found)?;
    let visit = store
        .get_visit(&event.visit_id)
        .await
        .map_err(failed)?
        .ok_or_else(not_found)?;
    if !configurations.contains(&visit.configuration_id) || event.audit_event.is_null() {
        return Err(not_found());
    }
    Ok(served(&event.event_id, event.audit_event))
}

/// The endpoint's CapabilityStatement: AuditEvent read and search, with the parameters above.
pub fn capability_statement(base: &str, software_version: &str, now: DateTime<Utc>) -> Value {
    let param = |name: &str, type_: &str, definition: Option<&str>, doc: &str| {
        let mut p = json!({ "name": name, "type": type_, "documentation": doc });
        if let Some(d) = definition {
            p["definition"] = json!(d);
        }
        p
    };
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "publisher": "VisitBridge",
        "kind": "instance",
        "software": { "name": "VisitBridge", "version": software_version },
        "implementation": {
            "description": "VisitBridge auditor endpoint: the AuditEvents of video visits, kept \
                            until delivered to the EHR and then for the configured retention",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Sign in to the portal as an admin, or send an API key as a bearer \
                              token. Unknown search parameters are ignored unless the request \
                              says Prefer: handling=strict.",
            "security": {
                "cors": false,
                "description": "Portal admin session or Authorization: Bearer <API key>",
            },
            "resource": [{
                "type": "AuditEvent",
                "interaction": [{ "code": "read" }, { "code": "search-type" }],
                "searchParam": [
                    param(
                        "entity",
                        "reference",
                        Some("http://hl7.org/fhir/SearchParameter/AuditEvent-entity"),
                        "Appointment/{id} or Patient/{id}",
                    ),
                    param(
                        "patient",
                        "reference",
                        Some("http://hl7.org/fhir/SearchParameter/AuditEvent-patient"),
                        "Patient/{id} or {id}",
                    ),
                    param(
                        "date",
                        "date",
                        Some("http://hl7.org/fhir/SearchParameter/AuditEvent-date"),
                        "AuditEvent.recorded; prefixes eq, ge, gt, le, lt; a date without a \
                         time is a UTC date",
                    ),
                    param(
                        "_count",
                        "number",
                        None,
                        "matches per page, 1 to 500 (default 50)",
                    ),
                ],
            }],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_keeps_what_it_used_and_refuses_what_it_cannot_do() {
        let s = AuditEventSearch::parse(
            Some("entity=Appointment%2Fappt-1&date=ge2026-03-01&_sort=date&_count=900"),
            false,
        )
        .unwrap();
        assert_eq!(s.count(), MAX_COUNT);
        assert_eq!(
            s.link("https://p.example/fhir", None),
            "https://p.example/fhir/AuditEvent?entity=Appointment%2Fappt-1&date=ge2026-03-01&_count=500"
        );
        let strict = AuditEventSearch::parse(Some("_sort=date"), true).unwrap_err();
        assert_eq!(strict.code(), "not-supported");
        for (query, code) in [
            ("entity=Encounter/e-1", "not-supported"),
            (
                "entity=https://ehr.example/fhir/Appointment/a",
                "not-supported",
            ),
            ("entity=Appointment/has%20space", "invalid"),
            ("patient=Patient/", "invalid"),
            ("_count=0", "not-supported"),
            ("_count=many", "invalid"),
            ("date=ne2026", "not-supported"),
            ("ct=garbage!", "invalid"),
            ("_format=xml", "not-supported"),
            ("patient:exact=p-1", "not-supported"),
            ("date:missing=true", "not-supported"),
        ] {
            let err = AuditEventSearch::parse(Some(query), false).unwrap_err();
            assert_eq!(err.code(), code, "{query}: {err}");
            if query.starts_with("_format") {
                assert_eq!(err.status(), 406);
            }
        }
    }

    #[test]
    fn repeated_references_must_all_hold() {
        let s = AuditEventSearch::parse(
            Some("entity=Appointment/a,Appointment/b&entity=Appointment/b"),
            false,
        )
        .unwrap();
        assert_eq!(s.appointments, Some(BTreeSet::from(["b".to_owned()])));
        let none = AuditEventSearch::parse(Some("patient=p-1&entity=Patient/p-2"), false).unwrap();
        assert_eq!(none.patients, Some(BTreeSet::new()));
    }

    #[test]
    fn a_bound_between_two_milliseconds_is_the_next_one_and_a_raw_plus_is_one() {
        let t = DateTime::parse_from_rfc3339("2026-03-05T18:00:00.2505Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            ceil_millis(t),
            DateTime::parse_from_rfc3339("2026-03-05T18:00:00.251Z").unwrap()
        );
        assert_eq!(ceil_millis(ceil_millis(t)), ceil_millis(t));
        let s = AuditEventSearch::parse(Some("date=ge2026-03-05T18:00:00+01:00"), false).unwrap();
        assert_eq!(
            s.date.from,
            Some(
                DateTime::parse_from_rfc3339("2026-03-05T17:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
    }

    #[test]
    fn the_capability_statement_is_valid_r4_and_names_the_standard_parameters() {
        let cs = capability_statement("https://p.example/fhir", "1.0.0", Utc::now());
        assert_eq!(
            visitbridge_testkit::fhir_schema::r4_schema_errors(&cs),
            Vec::<String>::new()
        );
        // cpb-1, cpb-2 and the instance rule: rest present, implementation for kind instance.
        assert_eq!(cs["kind"], "instance");
        assert_eq!(cs["implementation"]["url"], "https://p.example/fhir");
        let params: Vec<&str> = cs["rest"][0]["resource"][0]["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["definition"].as_str())
            .collect();
        assert_eq!(
            params,
            [
                "http://hl7.org/fhir/SearchParameter/AuditEvent-entity",
                "http://hl7.org/fhir/SearchParameter/AuditEvent-patient",
                "http://hl7.org/fhir/SearchParameter/AuditEvent-date",
            ]
        );
    }

    #[test]
    fn a_cursor_round_trips() {
        let at = DateTime::from_timestamp_millis(1_772_733_600_123).unwrap();
        let id = EventId::new("0b1f6c1e-2f6a-5b1a-9d8e-000000000001").unwrap();
        assert_eq!(decode_cursor(&encode_cursor(at, &id)).unwrap(), (at, id));
    }
}
