//! The sinks VisitBridge ships: Epic's connection-status service and standard FHIR writes.

pub mod epic;
pub mod fhir;
