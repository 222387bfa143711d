//! Tests of the launch service, end to end over HTTP against wiremock fakes of the EHR (SMART,
//! FHIR, Epic's connection-status service) and Microsoft (Entra ID, Graph), with a real SQLite
//! file; and the binary as a user starts it.

mod attestation;
mod bad_input;
mod binary;
mod browser_sessions;
mod disclosure;
mod events;
mod generic;
mod harness;
mod launch_page;
mod patient;
mod privacy;
mod provider;
mod round_trips;
mod routes;
mod security;
mod sessions;
mod upkeep;
