//! Test support for VisitBridge: wiremock fakes of every upstream, and the fixtures they serve.
//!
//! Every crate's tests (and the workspace end-to-end tests) talk real HTTP to these fakes, so the
//! shapes are written once, here, copied from the real services' documented answers
//! (`fixtures/` holds payloads as Epic and Microsoft send them). Each module mounts its mocks on a
//! [`wiremock::MockServer`] you pass in, so one server can play a whole EHR (SMART + FHIR) or the
//! whole Microsoft cloud (Entra ID + Graph), the way the real hosts are laid out.
//!
//! - [`fixtures`]: the sample payloads and test keys, compiled in (no file reads at run time).
//! - [`smart`]: a SMART App Launch authorization server (discovery, token, JWKS, signed id_tokens).
//! - [`fhir`]: an Epic-shaped FHIR R4 server.
//! - [`entra`]: Entra ID (app-only tokens, OpenID Connect user sign-in).
//! - [`graph`]: Microsoft Graph online meetings, subscriptions and attendance reports.
//! - [`epic`]: Epic's proprietary Telehealth connection-status web service.
//! - [`logs`]: everything `tracing` logs in a test binary, for privacy assertions.
//! - [`abuse`]: raw-socket HTTP abuse (malformed, huge, slow and pipelined requests).
//! - [`faults`]: upstream faults (status codes, broken bodies, redirects, dropped connections).
//! - [`fuzz`]: a stable fuzzing harness (seeds, a corpus folder, mutations).
//!
//! This crate is a dev-dependency only; its set-up code may panic on a broken fixture.
//!
//! # Example
//!
//! One mock server playing an Epic-like EHR: SMART authorization server and FHIR R4 API under
//! the same host, the way Epic lays them out.
//!
//! ```
//! use visitbridge_testkit::{
//!     fhir::FhirFake,
//!     smart::{ExpectedClientAuth, SmartFake},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (server, fhir) = FhirFake::start().await;
//! let smart = SmartFake::mount(&server, ExpectedClientAuth::Any).await;
//! // The SMART `iss` the client under test launches against, and the FHIR base it then reads.
//! assert_eq!(smart.fhir_base(), fhir.base_url());
//! # }
//! ```
#![deny(missing_docs)]

pub mod abuse;
pub mod entra;
pub mod epic;
pub mod faults;
pub mod fhir;
pub mod fhir_schema;
pub mod fixtures;
pub mod fuzz;
pub mod graph;
pub mod logs;
pub mod smart;
