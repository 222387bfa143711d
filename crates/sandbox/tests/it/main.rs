//! Integration tests of the sandbox, driven with VisitBridge's own client crates over real HTTP.

mod common;
mod ehr_launch;
mod fhir_api;
mod microsoft;
