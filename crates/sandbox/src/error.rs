//! The crate's error type: what can go wrong starting a sandbox or driving it from code.

use std::net::SocketAddr;

/// Errors of the sandbox's public API (start-up and programmatic actions).
///
/// Errors of the simulated services themselves are not Rust errors: they are answered over HTTP
/// in the shape of the service being played (OAuth error JSON, FHIR OperationOutcome, Graph and
/// Entra error bodies, an HTML page).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A listener could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot work (for example a base URL that cannot take a path).
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// The signing key could not be generated or loaded.
    #[error("could not set up the sandbox signing key: {0}")]
    Key(String),
    /// The system random source failed.
    #[error("the system random source failed")]
    Random,
    /// No seeded visit has this appointment id.
    #[error("no visit with appointment id {0}")]
    UnknownVisit(String),
    /// No meeting has this id.
    #[error("no meeting with id {0}")]
    UnknownMeeting(String),
    /// The meeting has no participant with this id.
    #[error("no participant {0} in the meeting")]
    UnknownParticipant(String),
}
