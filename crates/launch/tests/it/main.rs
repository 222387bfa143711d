//! The launch use cases against in-memory ports: a SQLite store in memory, a Graph fake that
//! holds meetings as Graph's JSON, a FHIR directory fake, a fixed clock.

mod clinician;
mod fakes;
mod issuers;
mod notifications;
mod patient;
mod subscriptions;
