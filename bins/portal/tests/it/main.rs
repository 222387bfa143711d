//! Tests of the portal over HTTP: Microsoft and EHR sign-ins through wiremock fakes, a real SQLite
//! file, and the binary as an operator starts it.

mod api;
mod approval;
mod bad_input;
mod binary;
mod binary_crash;
mod fhir;
mod fuzz;
mod harness;
mod process;
mod refusals;
mod replicas;
mod sessions;
mod soak;
mod visits;
