//! The upstreams' shapes and rules that both simulators play — this crate's sandbox (for the
//! demo) and `visitbridge-testkit`'s wiremock fakes (for tests) — kept once, so that a fidelity
//! fix is made in one place.

use serde_json::{Value, json};

/// The coding system of Epic's numeric error codes in an OperationOutcome's `details`.
pub const EPIC_ERROR_SYSTEM: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369";

/// An OperationOutcome as Epic writes it: one issue, Epic's numeric code (if any) in
/// `details.coding` with [`EPIC_ERROR_SYSTEM`], `diagnostics` as given.
///
/// `code` is the FHIR issue type (`invalid`, `not-found`, `processing`, …); severity is
/// `warning` for 4101 ("no results") and `fatal` otherwise, as Epic does.
pub fn epic_operation_outcome(code: &str, epic_code: Option<u32>, diagnostics: &str) -> Value {
    let severity = if epic_code == Some(4101) {
        "warning"
    } else {
        "fatal"
    };
    let mut issue = json!({ "severity": severity, "code": code, "diagnostics": diagnostics });
    if let Some(epic) = epic_code {
        issue["details"] = json!({
            "coding": [ { "system": EPIC_ERROR_SYSTEM, "code": epic.to_string(), "display": diagnostics } ],
            "text": diagnostics
        });
    }
    json!({ "resourceType": "OperationOutcome", "issue": [issue] })
}

/// An `onlineMeeting` as Graph answers a client that sent `prefer` headers: without
/// `Prefer: include-unknown-enum-members`, Graph hides the newer lobby scopes (`invited`,
/// `organizationExcludingGuests`) as `unknownFutureValue`.
pub fn graph_meeting_as_preferred<'a>(
    mut meeting: Value,
    prefer: impl IntoIterator<Item = &'a str>,
) -> Value {
    let wants_new = prefer
        .into_iter()
        .any(|v| v.contains("include-unknown-enum-members"));
    if !wants_new
        && let Some(scope) = meeting.pointer_mut("/lobbyBypassSettings/scope")
        && matches!(
            scope.as_str(),
            Some("invited" | "organizationExcludingGuests")
        )
    {
        *scope = Value::String("unknownFutureValue".to_owned());
    }
    meeting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_lobby_scopes_are_hidden_unless_asked_for() {
        let meeting = json!({"lobbyBypassSettings": {"scope": "invited"}});
        let hidden = graph_meeting_as_preferred(meeting.clone(), []);
        assert_eq!(hidden["lobbyBypassSettings"]["scope"], "unknownFutureValue");
        let shown = graph_meeting_as_preferred(
            meeting,
            ["odata.maxpagesize=10, include-unknown-enum-members"],
        );
        assert_eq!(shown["lobbyBypassSettings"]["scope"], "invited");
        let old = graph_meeting_as_preferred(
            json!({"lobbyBypassSettings": {"scope": "organization"}}),
            [],
        );
        assert_eq!(old["lobbyBypassSettings"]["scope"], "organization");
    }

    #[test]
    fn epic_outcomes_carry_the_numeric_code_and_severity() {
        let none = epic_operation_outcome("processing", Some(4101), "No results");
        assert_eq!(none["issue"][0]["severity"], "warning");
        assert_eq!(none["issue"][0]["details"]["coding"][0]["code"], "4101");
        assert_eq!(
            none["issue"][0]["details"]["coding"][0]["system"],
            EPIC_ERROR_SYSTEM
        );
        let plain = epic_operation_outcome("not-found", None, "gone");
        assert_eq!(plain["issue"][0]["severity"], "fatal");
        assert!(plain["issue"][0].get("details").is_none());
    }
}
