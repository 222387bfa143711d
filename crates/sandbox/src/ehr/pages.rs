//! The EHR's pages: today's schedule with *Begin virtual visit* buttons (what Hyperspace and
//! MyChart do), and what write-back delivered (AuditEvents, connection statuses, Communications).

use askama::Template;
use axum::{body::Bytes, extract::State, http::StatusCode, response::Response};
use serde_json::Value;

use super::{LaunchRole, PRODUCT, SandboxEhr};
use crate::{
    html::{self, message, see_other},
    util::form_map,
};

struct ScheduleRow {
    appointment_id: String,
    time: String,
    patient: String,
    clinician: String,
    department: String,
    status: String,
    connection: String,
    audit_events: usize,
}

#[derive(Template)]
#[template(path = "ehr_schedule.html")]
struct SchedulePage<'a> {
    product: &'a str,
    title: &'a str,
    day: String,
    rows: Vec<ScheduleRow>,
    fhir_base: String,
}

/// Whether `event` names the visit's Appointment or Encounter.
fn is_about(event: &Value, appointment_id: &str, encounter_id: &str) -> bool {
    let wanted = [
        format!("Appointment/{appointment_id}"),
        format!("Encounter/{encounter_id}"),
    ];
    event["entity"].as_array().is_some_and(|entities| {
        entities.iter().any(|e| {
            e["what"]["reference"]
                .as_str()
                .is_some_and(|r| wanted.iter().any(|w| r.ends_with(w.as_str())))
        })
    })
}

pub(crate) async fn schedule(State(ehr): State<SandboxEhr>) -> Response {
    let seed = &ehr.inner.seed;
    let (statuses, audit_events) = {
        let st = ehr.lock();
        (st.connection_statuses.clone(), st.audit_events.clone())
    };
    let rows = seed
        .visits
        .iter()
        .map(|v| {
            let connection = statuses
                .iter()
                .rev()
                .find(|c| c.conference_id == v.csn)
                .map(|c| {
                    format!(
                        "{} ({} {}) at {} UTC",
                        c.connection_status,
                        c.external_id_type,
                        c.external_id,
                        c.at.format("%H:%M:%S")
                    )
                })
                .unwrap_or_else(|| "none yet".to_owned());
            ScheduleRow {
                appointment_id: v.appointment_id.clone(),
                time: format!("{}–{}", v.start.format("%H:%M"), v.end.format("%H:%M")),
                patient: seed
                    .patient(&v.patient_id)
                    .map(|p| p.display())
                    .unwrap_or_default(),
                clinician: seed
                    .clinician(&v.practitioner_id)
                    .map(|c| c.display())
                    .unwrap_or_default(),
                department: seed.department.name.clone(),
                status: format!("Booked · CSN {}", v.csn),
                connection,
                audit_events: audit_events
                    .iter()
                    .filter(|e| is_about(e, &v.appointment_id, &v.encounter_id))
                    .count(),
            }
        })
        .collect();
    html::render(&SchedulePage {
        product: PRODUCT,
        title: "Today's video visits",
        day: seed.day.format("%A %-d %B %Y").to_string(),
        rows,
        fhir_base: ehr.fhir_base_url(),
    })
}

pub(crate) async fn launch(State(ehr): State<SandboxEhr>, body: Bytes) -> Response {
    let form = form_map(&body);
    let role = match form.get("role").map(String::as_str) {
        Some("patient") => LaunchRole::Patient,
        Some("clinician") => LaunchRole::Clinician,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                PRODUCT,
                "Launch refused",
                "Choose the clinician or the patient button.",
            );
        }
    };
    let appointment = form.get("appointment").map(String::as_str).unwrap_or("");
    match ehr.create_launch(appointment, role) {
        Ok(url) => see_other(url.as_str()),
        Err(e) => message(
            StatusCode::BAD_REQUEST,
            PRODUCT,
            "Launch refused",
            &e.to_string(),
        ),
    }
}

struct AuditRow {
    id: String,
    recorded: String,
    kind: String,
    agents: String,
    entities: String,
    json: String,
}

struct StatusRow {
    at: String,
    conference_id: String,
    external_id: String,
    external_id_type: String,
    vendor_name: String,
    connection_status: String,
    client_id: String,
}

struct CommunicationRow {
    id: String,
    text: String,
}

#[derive(Template)]
#[template(path = "ehr_audit.html")]
struct AuditPage<'a> {
    product: &'a str,
    title: &'a str,
    events: Vec<AuditRow>,
    statuses: Vec<StatusRow>,
    communications: Vec<CommunicationRow>,
}

fn codes(value: &Value) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut push = |c: &Value| {
        if let Some(code) = c["code"].as_str() {
            out.push(match c["display"].as_str() {
                Some(d) => format!("{code} {d}"),
                None => code.to_owned(),
            });
        }
    };
    push(&value["type"]);
    for sub in value["subtype"].as_array().into_iter().flatten() {
        push(sub);
    }
    out.join(" · ")
}

fn who(value: &Value, list: &str, field: &str) -> String {
    value[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let who = &a[field];
            who["reference"].as_str().map(str::to_owned).or_else(|| {
                who["identifier"]["value"]
                    .as_str()
                    .map(|v| format!("identifier {v}"))
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn audit(State(ehr): State<SandboxEhr>) -> Response {
    let (events, statuses, communications) = {
        let st = ehr.lock();
        (
            st.audit_events.clone(),
            st.connection_statuses.clone(),
            st.communications.clone(),
        )
    };
    let events = events
        .iter()
        .rev()
        .map(|e| AuditRow {
            id: e["id"].as_str().unwrap_or_default().to_owned(),
            recorded: e["recorded"].as_str().unwrap_or_default().to_owned(),
            kind: codes(e),
            agents: who(e, "agent", "who"),
            entities: who(e, "entity", "what"),
            json: serde_json::to_string_pretty(e).unwrap_or_default(),
        })
        .collect();
    let statuses = statuses
        .iter()
        .rev()
        .map(|c| StatusRow {
            at: c.at.format("%H:%M:%S").to_string(),
            conference_id: c.conference_id.clone(),
            external_id: c.external_id.clone(),
            external_id_type: c.external_id_type.clone(),
            vendor_name: c.vendor_name.clone(),
            connection_status: c.connection_status.clone(),
            client_id: c.client_id.clone(),
        })
        .collect();
    let communications = communications
        .iter()
        .rev()
        .map(|c| CommunicationRow {
            id: c["id"].as_str().unwrap_or_default().to_owned(),
            text: c["payload"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["contentString"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    html::render(&AuditPage {
        product: PRODUCT,
        title: "Received from write-back",
        events,
        statuses,
        communications,
    })
}
