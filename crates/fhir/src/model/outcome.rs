//! `OperationOutcome`: how FHIR servers (and Epic, with its numeric codes) explain errors.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{CodeableConcept, Extra, IssueSeverity, Resource, TypeTag};

/// The code system of Epic's numeric error codes in `issue.details.coding`
/// (4100 invalid parameter, 4101 no results, 4102 invalid id, 4107 merged patient, …).
pub const EPIC_ERROR_SYSTEM: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369";

/// An R4 OperationOutcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationOutcome {
    /// Always `OperationOutcome`.
    #[serde(rename = "resourceType")]
    pub resource_type: TypeTag<OperationOutcome>,
    /// The issues, most important first by convention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issue: Vec<OutcomeIssue>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutcomeIssue {
    /// `fatal`, `error`, `warning` or `information`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<IssueSeverity>,
    /// The FHIR issue type (`invalid`, `not-found`, `processing`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Coded details (Epic: its numeric code) and text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<CodeableConcept>,
    /// The server's diagnostic message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    /// Other elements (location, expression).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource for OperationOutcome {
    const TYPE: &'static str = "OperationOutcome";
}

impl OutcomeIssue {
    /// Epic's numeric code for this issue, when present.
    pub fn epic_code(&self) -> Option<u32> {
        self.details
            .as_ref()?
            .coding
            .iter()
            .filter(|c| c.system.as_deref() == Some(EPIC_ERROR_SYSTEM))
            .find_map(|c| c.code.as_deref()?.trim().parse().ok())
    }
}

impl OperationOutcome {
    /// Epic's numeric codes across all issues (e.g. `[4101]` for "no results").
    pub fn epic_codes(&self) -> Vec<u32> {
        self.issue
            .iter()
            .filter_map(OutcomeIssue::epic_code)
            .collect()
    }

    /// Whether any issue carries Epic code `code`.
    pub fn has_epic_code(&self, code: u32) -> bool {
        self.issue.iter().any(|i| i.epic_code() == Some(code))
    }
}

/// One line per outcome: `severity code [epic N]: message` for the first issue, and how many more.
///
/// Only server-written fields appear (severity, code, Epic code, diagnostics or details text);
/// never a response body.
impl fmt::Display for OperationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.issue.first() else {
            return f.write_str("empty operation outcome");
        };
        let severity = first
            .severity
            .as_ref()
            .map_or("issue", IssueSeverity::as_str);
        write!(
            f,
            "{severity} {}",
            first.code.as_deref().unwrap_or("unknown")
        )?;
        if let Some(code) = first.epic_code() {
            write!(f, " [epic {code}]")?;
        }
        let text = first
            .diagnostics
            .as_deref()
            .or_else(|| first.details.as_ref()?.text.as_deref());
        if let Some(text) = text {
            let text: String = text.chars().take(300).collect();
            write!(f, ": {text}")?;
        }
        if self.issue.len() > 1 {
            write!(f, " (+{} more)", self.issue.len() - 1)?;
        }
        Ok(())
    }
}
