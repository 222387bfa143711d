//! Tests of the launch service, end to end over HTTP against wiremock fakes of the EHR (SMART,
//! FHIR, Epic's connection-status service) and Microsoft (Entra ID, Graph), with a real SQLite
//! file; and the binary as a user starts it.

mod at_rest;
mod attestation;
mod bad_input;
mod binary;
mod browser_sessions;
mod cluster;
mod crash;
mod disclosure;
mod events;
mod faults;
mod generic;
mod harness;
mod honest_errors;
mod identity;
mod launch_page;
mod meeting_times;
mod metrics;
mod patient;
mod privacy;
mod provider;
mod replicas;
mod round_trips;
mod routes;
mod security;
mod server_limits;
mod sessions;
mod soak;
mod upkeep;
mod webhook_batch;
