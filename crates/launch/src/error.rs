//! Why a launch use case could not go on.

use visitbridge_graph::GraphError;
use visitbridge_store::StoreError;
use visitbridge_visit::{LinkError, NotStaff, VisitError};

/// Why a launch use case stopped. The launch service maps each to its page.
#[derive(Debug, thiserror::Error)]
pub enum LaunchCoreError {
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// Graph failed or refused.
    #[error("microsoft graph failed")]
    Graph(#[source] Box<GraphError>),
    /// The visit could not be resolved, or is not the one the EHR attested.
    #[error("the visit could not be resolved")]
    Visit(#[from] VisitError),
    /// A clinician launch by someone who is not staff (a patient's token, say).
    #[error("not a staff launch")]
    NotStaff(#[from] NotStaff),
    /// A patient link that is invalid, expired or names no visit.
    #[error("the patient link cannot be used")]
    Link(#[from] LinkError),
    /// The EHR named its user with an id VisitBridge cannot keep.
    #[error("the EHR sent a user id VisitBridge cannot keep")]
    UnusableUserId,
    /// A visit a session or link names is not in the store.
    #[error("the visit is not known")]
    VisitNotFound,
    /// A meeting was asked for a visit whose row has no organiser.
    #[error("a meeting was asked for a visit without organiser")]
    NoOrganizer,
    /// Microsoft 365 is not configured, and this step needs a meeting.
    #[error("microsoft 365 is not configured")]
    MeetingsNotConfigured,
    /// Graph gave a patient join URL that may not be a redirect target.
    #[error("graph gave a patient join url that is not https")]
    UnsafeJoinUrl,
}

impl From<GraphError> for LaunchCoreError {
    fn from(e: GraphError) -> Self {
        Self::Graph(Box::new(e))
    }
}
