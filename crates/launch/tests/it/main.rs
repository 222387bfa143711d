//! The launch use cases against in-memory ports: a SQLite store in memory, a Graph fake that
//! holds meetings as Graph's JSON (and one of its subscriptions), a FHIR directory fake, a fixed
//! or moving clock, write-back sinks that count what they are given.

mod clinician;
mod fakes;
mod issuers;
mod notifications;
mod patient;
mod reconcile;
mod retention;
mod subscriptions;
mod writeback;
