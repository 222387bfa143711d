//! The launch decisions of VisitBridge, kept out of the launch service's HTTP wiring.
//!
//! When a clinician or patient launches a virtual visit, the launch service must decide *which
//! visit* it is (and so which one Teams meeting), and later what the clinician's live panel shows.
//! Those decisions are here, unit-tested against fakes, with no HTTP server or database:
//!
//! - [`RecordContext`]: the integration record's context parameters (`sessionId`, `departmentId`,
//!   `conferenceId`, `environment`) as the EHR substituted them. Only those keys are read; a
//!   token the EHR left unsubstituted (`%CSN%`) is an error that says the record was copied wrong.
//! - [`visit_key`]: the meeting's key from the launch alone, so the meeting can be created
//!   *while* FHIR is read: a group visit's conference id, else the Appointment the token
//!   response names (attested by the EHR). One appointment has one key whether or not the launch
//!   URL carries its CSN, so it has one visit row and one meeting: the CSN is never a key, only
//!   evidence that must match the attested Appointment or Encounter. Keys are namespaced
//!   (`conf:`, `appt:`; `csn:` rows are from earlier versions) so two kinds of id can never
//!   collide. A conference id comes from the unsigned launch URL, so nothing is handed out under
//!   it before [`Attested`] agrees.
//! - [`StaffRule`]: who may act as a clinician: a staff `fhirUser`, never a patient's token.
//! - [`resolve_visit`]: the Appointment behind the launch, in a fixed order of evidence — Epic's
//!   `appointment` in the token response, SMART 2's `fhirContext`, the Encounter's
//!   `appointment`, the patient's appointment closest to now — through the [`VisitDirectory`]
//!   trait (implemented for `visitbridge_fhir::FhirClient`). Only ids come out: names on
//!   references are never read.
//! - [`Attested`]: the launch URL's context is not signed by the EHR (only `launch` is), so the
//!   visit a key leads to is used only once it agrees with the token response's attested
//!   `patient`/`appointment`: a stored visit by its ids, a visit read through FHIR by the CSN
//!   being an identifier of the attested Appointment or Encounter.
//! - [`PatientLink`]: signed (HMAC-SHA256 under the deployment secret, domain-separated),
//!   expiring links to a visit, carrying the configuration id and the *hashed* visit key.
//! - [`RosterState`]: the live participant panel (lobby, connected, disconnected) from Graph's
//!   participant events, labelled "Clinician (you)", "Patient / guest 1"… — display names do not
//!   exist in any type here.
//!
//! # Example
//!
//! ```
//! use visitbridge_smart::LaunchContext;
//! use visitbridge_visit::{RecordContext, visit_key};
//!
//! let record = RecordContext::from_params([("sessionId", "12345"), ("environment", "test")])?;
//! let context: LaunchContext = serde_json::from_str(r#"{"appointment": "eVa-Ad1"}"#)?;
//! let key = visit_key(&record, &context).ok_or("no visit key")?;
//! assert_eq!(key.as_str(), "appt:eVa-Ad1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod attest;
mod context;
mod identity;
mod link;
mod reference;
mod resolve;
mod roster;

pub use attest::{Attested, Fit, StoredIds};
pub use context::{RecordContext, RecordContextError, VisitKey, context_appointment, visit_key};
pub use identity::{NotStaff, StaffRule};
pub use link::{LinkError, PatientLink, at_unix};
pub use reference::{ReferenceKey, ReferenceKeys, ReferenceKind};
pub use resolve::{
    FoundBy, LaunchFacts, ResolvedVisit, VisitDirectory, VisitError, department_name, resolve_visit,
};
pub use roster::{PanelEntry, PanelView, Party, PartyClass, Presence, RosterChange, RosterState};
