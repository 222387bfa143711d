//! An async FHIR R4 client for VisitBridge, with lean models that survive what real EHRs send.
//!
//! Only this crate knows FHIR JSON. The launch service reads Appointments, Encounters and the
//! people and places they point at; the audit crate writes AuditEvents and Communications; the
//! SMART crate reads the CapabilityStatement and supplies tokens through [`TokenSource`].
//!
//! # Design choices
//!
//! - **Lean, tolerant models.** Each model declares only the elements we use. Unknown elements
//!   land in a flattened [`Extra`] map and are written back unchanged, so a parse and a serialise
//!   lose nothing. Codes outside their value set are kept (`AppointmentStatus::Other`), instants
//!   keep their original text ([`FhirInstant`]: `2026-03-05T18:00` has no zone, so no parsed
//!   value, but the text survives), and numbers sent as strings are accepted. The spec-generated
//!   `fhir-sdk` models are used only in tests, as a conformance check: they reject a whole
//!   document for one odd code, and drop what they do not know.
//! - **A Bundle is parsed entry by entry.** One entry a model cannot read is an [`EntryError`]
//!   in its place; the rest of the page is still there.
//! - **Errors say where, not what.** [`FhirError::Decode`] names the resource type and JSON path
//!   and strips quoted values from serde's message; no error carries a response body or a token.
//!   `Debug` of [`Patient`], [`Reference`] (its `display`) and every [`Extra`] map hide content.
//! - **Bounded, honest retries.** Reads, searches and `metadata` go through
//!   `visitbridge_http::send_idempotent` (429/5xx/timeouts, jittered backoff, `Retry-After`,
//!   bounded in count and time). Writes are sent exactly once; idempotency comes from
//!   conditional create (`If-None-Exist`) or a client-chosen id with `PUT`.
//! - **Tokens stay home.** The token comes from a [`TokenSource`] per call. `metadata` is always
//!   fetched without one. Paging follows `next` links only on the base URL's origin.
//! - **Typed ids.** [`Id<R>`](Id) is checked to be one safe URL path segment and carries its
//!   resource type, so a patient id cannot be passed as a practitioner id.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use reqwest::header::{HeaderName, HeaderValue};
//! use visitbridge_fhir::{
//!     Appointment, AppointmentId, FhirBaseUrl, FhirClient, FhirClientConfig, SearchQuery,
//!     StaticToken,
//! };
//! use visitbridge_http::{HttpConfig, Secret, build_client};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let base = FhirBaseUrl::parse("https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4")?;
//! let mut config = FhirClientConfig::new(base);
//! config.extra_headers.push((
//!     HeaderName::from_static("epic-client-id"),
//!     HeaderValue::from_static("my-client-id"),
//! ));
//! let token = Arc::new(StaticToken(Secret::new("access-token")));
//! let fhir = FhirClient::new(config, build_client(&HttpConfig::default())?, token);
//!
//! let id: AppointmentId = "eVa-Ad1SCIenVq8CYQVxfKwGtP-DfG3nIy9-5oPwTg2g3".parse()?;
//! let appointment = fhir.read(&id).await?;
//! let patient = appointment.patient_id();
//!
//! if let Some(patient) = patient {
//!     let page = fhir.search_all(&SearchQuery::<Appointment>::new().patient(&patient), 5).await?;
//!     for bad in page.errors() {
//!         eprintln!("skipped: {bad}");
//!     }
//!     println!("{} appointments", page.resources().count());
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod auth;
mod base_url;
mod client;
mod error;
mod model;
mod search;
pub mod server;

pub use auth::{StaticToken, TokenSource, TokenSourceError};
pub use base_url::FhirBaseUrl;
pub use client::{ConditionalCreate, FhirClient, FhirClientConfig, UpdateOutcome};
pub use error::FhirError;
pub use model::*;
pub use search::{DatePrefix, SearchQuery};
