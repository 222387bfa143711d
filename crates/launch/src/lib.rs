//! The launch use cases of VisitBridge, behind ports: which visit a launch opens, its one Teams
//! meeting, and where the clinician or the patient goes next.
//!
//! Each use case is a function that takes [`Ports`] (the store's repository traits, a
//! [`Meetings`] port for Graph, a [`VisitDirectory`](visitbridge_visit::VisitDirectory) for the
//! FHIR reads, a [`Clock`]) and returns an outcome the launch service maps to a response:
//!
//! - [`clinician_launch`]: a clinician's launch after the SMART callback — the meeting, or the
//!   one-time Microsoft sign-in first ([`ClinicianOutcome`]); [`after_microsoft_sign_in`]
//!   continues it;
//! - [`patient_launch`], [`patient_waiting`], [`patient_link`]: the patient's ways in — the
//!   meeting's patient join URL, or the waiting page ([`PatientOutcome`]);
//! - [`device_test`]: the visit's lobby for a device test, when there is one;
//! - [`find_configuration`]: which approved configuration a launch's `iss` belongs to (no
//!   request goes to an issuer before it matched);
//! - [`keep_notifications`]: Graph's change notifications stored with their outbox rows, and
//!   reconciliations scheduled, before the webhook acknowledges them;
//! - [`Subscriptions`]: the Graph subscriptions of visits' meetings, made in the background,
//!   renewed, made again after a refusal (with a per-visit backoff) and removed once old;
//! - [`ConfigurationSinks`]: each approved configuration's write-back sinks, set before its first
//!   event is recorded (never an event without its outbox rows);
//! - [`Reconciler`]: after a call ends, its attendance report read and what live notifications
//!   missed recorded once (retried within bounds, claimed with a lease across replicas);
//! - [`resolve_secret`]: an EHR client secret from the configuration file, else from one
//!   environment variable with a fixed prefix (never one a portal admin names);
//! - [`LiveHub`]: the clinicians' live panels — each visit's roster, rebuilt from its stored
//!   events, woken on each change, including changes another replica recorded.
//!
//! The sequence every path to a meeting follows — claim the visit's row, check it against what
//! the EHR attested, `createOrGet`, apply the lobby policy before any join URL leaves — exists
//! once, in `Ports::open_visit` (crate-private: every use case reaches a meeting through it or
//! through the patient's join URL after it, and the binary only prefetches the join URL of an
//! [`OpenedVisit`]). Nothing here knows HTTP, cookies or a concrete database: the
//! binary owns those, and tests run these functions against in-memory fakes.

mod clinician;
mod error;
mod facts;
mod issuers;
mod live;
mod meetings;
mod notifications;
mod patient;
mod ports;
mod reconcile;
mod retention;
mod secrets;
mod subscriptions;
mod writeback;

pub use clinician::{
    ClinicianLaunch, ClinicianOutcome, OpenedVisit, SignInToContinue, after_microsoft_sign_in,
    clinician_launch, ehr_user_id,
};
pub use error::LaunchCoreError;
pub use facts::{KeptFacts, VisitFacts};
pub use issuers::{
    ApprovedConfiguration, ConfigurationIssuer, IssuerRefusal, find_configuration, host_of,
};
pub use live::LiveHub;
pub use notifications::{
    KeptNotifications, NotificationError, NotificationPorts, WritebackSinks, keep_notifications,
};
pub use patient::{
    PatientLaunch, PatientOutcome, device_test, patient_launch, patient_link, patient_waiting,
};
pub use ports::{Clock, Meetings, NoTimer, Ports, SystemClock, UpstreamTimer};
pub use reconcile::{AttendanceReports, ReconcilePolicy, Reconciler};
pub use retention::{Retention, RetentionRun};
pub use secrets::{EHR_SECRET_ENV_PREFIX, SecretNotSet, resolve_secret};
pub use subscriptions::{MeetingSubscriptions, Subscriptions};
pub use writeback::{ConfigurationSinks, SinkBuilder, SinkSetupError};
