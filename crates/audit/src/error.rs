//! The audit crate's error type.

use visitbridge_store::{SinkName, StoreError};

/// Why recording or delivering visit events failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sink configuration cannot be used as it is.
    #[error("invalid write-back sink configuration: {0}")]
    InvalidSinkConfig(String),
    /// Two sinks of one configuration have the same name.
    #[error("the write-back sink {0} is configured twice")]
    DuplicateSink(SinkName),
    /// The AuditEvent could not be encoded.
    #[error("could not encode the audit event")]
    Encode,
}
