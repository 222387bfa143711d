//! The approval state machine: configurations, actors, typed transitions and their history.

use std::{collections::BTreeSet, fmt};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    ConfigurationId, ConfigurationSettings, EhrUserId, Environment, FhirBaseUrl, TenantId, Username,
};

/// Where a configuration stands in its approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Being written by an admin; not yet submitted.
    Draft,
    /// Submitted (or changed); waits for the approver's EHR sign-in.
    AwaitingApproval,
    /// The named approver signed in to the EHR at exactly this FHIR base URL; waits for approval.
    EhrValidated,
    /// Approved: this version serves launches.
    Approved,
    /// Rejected by the approver; the admin may change it or submit it again.
    Rejected,
}

impl ApprovalState {
    /// Every state, for exhaustive tests and pickers.
    pub const ALL: [Self; 5] = [
        Self::Draft,
        Self::AwaitingApproval,
        Self::EhrValidated,
        Self::Approved,
        Self::Rejected,
    ];

    /// The stable name used in storage: `draft`, `awaiting_approval`, `ehr_validated`,
    /// `approved`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::AwaitingApproval => "awaiting_approval",
            Self::EhrValidated => "ehr_validated",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    /// The inverse of [`ApprovalState::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Draft => "a draft",
            Self::AwaitingApproval => "awaiting approval",
            Self::EhrValidated => "EHR-validated",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        })
    }
}

/// A role a signed-in person can act in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Tenant admin: creates, changes and submits configurations.
    Admin,
    /// Approver: validates a FHIR base URL by signing in to the EHR, approves or rejects. Only
    /// effective for the configurations that name this person as their approver.
    Approver,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Admin => "admin",
            Self::Approver => "approver",
        })
    }
}

/// The signed-in person attempting a transition, as the portal established it (Microsoft sign-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The organisation the person signed in for.
    pub tenant: TenantId,
    /// Their Microsoft username.
    pub username: Username,
    /// The roles they hold; one person may be both admin and approver.
    pub roles: Vec<Role>,
}

impl Actor {
    /// A person with the given roles.
    pub fn new(tenant: TenantId, username: Username, roles: &[Role]) -> Self {
        Self {
            tenant,
            username,
            roles: roles.to_vec(),
        }
    }

    /// An admin (only).
    pub fn admin(tenant: TenantId, username: Username) -> Self {
        Self::new(tenant, username, &[Role::Admin])
    }

    /// An approver (only).
    pub fn approver(tenant: TenantId, username: Username) -> Self {
        Self::new(tenant, username, &[Role::Approver])
    }

    /// Whether they hold `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Who did something, as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRecord {
    /// Their Microsoft username.
    pub username: Username,
    /// The role they acted in.
    pub role: Role,
}

/// Proof that the named approver signed in to the EHR against a FHIR base URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EhrValidation {
    /// The FHIR base URL the sign-in was made against.
    pub fhir_base_url: FhirBaseUrl,
    /// The EHR user who signed in (the only EHR data kept).
    pub ehr_user_id: EhrUserId,
    /// When.
    pub validated_at: DateTime<Utc>,
    /// The Microsoft user who did it.
    pub validated_by: Username,
}

/// An approved version of a configuration's settings: what launches use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovedSnapshot {
    /// The configuration version that was approved.
    pub version: u32,
    /// The settings of that version.
    pub settings: ConfigurationSettings,
    /// When it was approved.
    pub approved_at: DateTime<Utc>,
    /// Who approved it.
    pub approved_by: Username,
    /// The EHR sign-in the approval rests on.
    pub validation: EhrValidation,
}

/// Why and by whom a configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The approver's reason.
    pub reason: String,
    /// When.
    pub rejected_at: DateTime<Utc>,
    /// Who.
    pub rejected_by: Username,
}

/// Who may approve, as the portal's operator configured it: whether the approver must be someone
/// other than the admin who last changed (created, edited or submitted) the configuration.
///
/// The reference product lets one person be admin and approver; a health system that wants two
/// people behind every production change turns this on (the default). The EHR sign-in is needed
/// either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Refuse approval of a production configuration by the admin who last changed it.
    pub require_distinct_approver_production: bool,
    /// Refuse approval of a test configuration by the admin who last changed it.
    pub require_distinct_approver_test: bool,
}

impl ApprovalPolicy {
    /// The default: a distinct approver for production, the same person allowed for test.
    pub const DEFAULT: Self = Self {
        require_distinct_approver_production: true,
        require_distinct_approver_test: false,
    };

    /// The same person may change and approve in every environment (the reference product's
    /// rule). Replaying a history uses it: an approval is judged by the policy of its time.
    pub const SAME_PERSON_ALLOWED: Self = Self {
        require_distinct_approver_production: false,
        require_distinct_approver_test: false,
    };

    /// Whether approvals in `environment` need someone other than the admin who last changed it.
    pub fn requires_distinct_approver(&self, environment: Environment) -> bool {
        match environment {
            Environment::Production => self.require_distinct_approver_production,
            Environment::Test => self.require_distinct_approver_test,
        }
    }
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a history entry records, with the data needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HistoryAction {
    /// Created with these settings.
    Created {
        /// The initial settings.
        settings: ConfigurationSettings,
    },
    /// Settings changed to these.
    Edited {
        /// The new settings.
        settings: ConfigurationSettings,
    },
    /// Submitted for approval.
    Submitted,
    /// The approver's EHR sign-in was recorded.
    EhrValidated {
        /// The sign-in.
        validation: EhrValidation,
    },
    /// Approved.
    Approved,
    /// Rejected.
    Rejected {
        /// The approver's reason.
        reason: String,
    },
    /// An admin sent a write-back that had been given up on (a dead letter) again. Changes
    /// nothing of the configuration; recorded here because it is the configuration's EHR that
    /// gets it.
    WritebackRedriven {
        /// The participant event whose delivery was re-driven (our opaque event id).
        event_id: String,
        /// The sink it goes to (e.g. `fhir-audit-event`).
        sink: String,
    },
}

impl HistoryAction {
    /// The kind of action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Created { .. } => ActionKind::Create,
            Self::Edited { .. } => ActionKind::Edit,
            Self::Submitted => ActionKind::Submit,
            Self::EhrValidated { .. } => ActionKind::RecordEhrValidation,
            Self::Approved => ActionKind::Approve,
            Self::Rejected { .. } => ActionKind::Reject,
            Self::WritebackRedriven { .. } => ActionKind::RedriveWriteback,
        }
    }
}

/// The kinds of transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// [`Configuration::create`].
    Create,
    /// [`Configuration::edit`].
    Edit,
    /// [`Configuration::submit`].
    Submit,
    /// [`Configuration::record_ehr_validation`].
    RecordEhrValidation,
    /// [`Configuration::approve`].
    Approve,
    /// [`Configuration::reject`].
    Reject,
    /// [`Configuration::record_redrive`].
    RedriveWriteback,
}

impl ActionKind {
    /// The stable name used in storage, e.g. `record_ehr_validation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Edit => "edit",
            Self::Submit => "submit",
            Self::RecordEhrValidation => "record_ehr_validation",
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::RedriveWriteback => "redrive_writeback",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create a configuration",
            Self::Edit => "change the configuration",
            Self::Submit => "submit for approval",
            Self::RecordEhrValidation => "record the EHR sign-in",
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::RedriveWriteback => "send a write-back again",
        })
    }
}

/// One transition, as appended to a configuration's immutable history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The configuration revision this entry produced (1 for creation, then +1 per entry).
    pub revision: u64,
    /// The configuration's settings version after the entry.
    pub version: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// Who, in which role.
    pub actor: ActorRecord,
    /// The state before (`None` for creation).
    pub from: Option<ApprovalState>,
    /// The state after.
    pub to: ApprovalState,
    /// What was done, with its data.
    #[serde(flatten)]
    pub action: HistoryAction,
}

/// The result of a successful transition: the new configuration and the history entry to append.
/// Store both together (atomically) or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transitioned {
    /// The configuration after the transition.
    pub configuration: Configuration,
    /// The entry that records it.
    pub entry: HistoryEntry,
}

/// Why a transition was refused. Refusals change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// The actor signed in for another organisation.
    #[error("this configuration belongs to another organisation")]
    WrongTenant,
    /// The actor lacks the role the action needs.
    #[error("only someone with the {role} role can {action}")]
    MissingRole {
        /// What was attempted.
        action: ActionKind,
        /// The role it needs.
        role: Role,
    },
    /// An approver action by someone other than the configuration's named approver. The message
    /// names nobody (it is shown to the person refused); `approver` is for the caller.
    #[error("only this configuration's named approver can {action}")]
    NotNamedApprover {
        /// What was attempted.
        action: ActionKind,
        /// Who may do it.
        approver: Username,
    },
    /// The action does not apply in the current state.
    #[error("cannot {action}: the configuration is {state}")]
    IllegalTransition {
        /// What was attempted.
        action: ActionKind,
        /// The current state.
        state: ApprovalState,
    },
    /// Approval attempted before the approver's EHR sign-in.
    #[error("cannot approve before a successful EHR sign-in against {url}")]
    EhrValidationMissing {
        /// The URL the sign-in must be made against.
        url: FhirBaseUrl,
    },
    /// The EHR sign-in was made against another URL than the configuration's.
    #[error(
        "the EHR sign-in was made against {validated}, but this configuration's FHIR base URL is {configured}"
    )]
    ValidationUrlMismatch {
        /// The URL signed in against.
        validated: FhirBaseUrl,
        /// The configuration's URL.
        configured: FhirBaseUrl,
    },
    /// An edit that changes nothing.
    #[error("nothing changed")]
    NothingChanged,
    /// A rejection without a usable reason.
    #[error("give a reason for the rejection, of at most {MAX_REASON_CHARS} characters")]
    InvalidReason,
    /// A re-drive whose event or sink is not an id.
    #[error("a re-drive names an event and a sink by their ids")]
    InvalidRedrive,
    /// The approver is the admin who last changed the configuration, and the policy wants
    /// another person for this environment. The message names nobody but the reader.
    #[error(
        "you made the last change to this {environment} configuration, so someone else must approve it: \
         change the named approver to another person, or ask the portal's operator about \
         require_distinct_approver"
    )]
    SameAdminAndApprover {
        /// The configuration's environment.
        environment: Environment,
    },
    /// The policy wants a distinct approver but who last changed the configuration is not
    /// recorded (it was last changed by an older version of VisitBridge).
    #[error(
        "who last changed this configuration is not recorded, so approval by another person cannot \
         be checked: reject it and ask an admin to submit it again"
    )]
    LastChangeUnrecorded,
}

/// The longest rejection reason accepted.
pub const MAX_REASON_CHARS: usize = 1000;

/// Why a history could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// No entries.
    #[error("the history is empty")]
    Empty,
    /// The first entry is not the creation, or a later one is.
    #[error("history entry {revision} is out of place")]
    OutOfPlace {
        /// The entry's revision.
        revision: u64,
    },
    /// An entry is not a legal transition from the state before it.
    #[error("history entry {revision} is not a legal transition: {source}")]
    Refused {
        /// The entry's revision.
        revision: u64,
        /// Why the transition is refused.
        source: TransitionError,
    },
    /// Replaying an entry produces a different entry (states, revision or version differ).
    #[error("history entry {revision} does not match its replay")]
    Mismatch {
        /// The entry's revision.
        revision: u64,
    },
}

/// A tenant's configuration of one FHIR base URL in one environment, with its approval state.
///
/// Changed only through the transition methods, each of which returns a new value and the history
/// entry recording it. (Deserialising is for reading back what the store wrote.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    id: ConfigurationId,
    tenant: TenantId,
    settings: ConfigurationSettings,
    state: ApprovalState,
    version: u32,
    revision: u64,
    ehr_validation: Option<EhrValidation>,
    rejection: Option<Rejection>,
    approved: Option<ApprovedSnapshot>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The admin who last created, edited or submitted it (absent in documents written before
    /// it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_changed_by: Option<Username>,
}

impl Configuration {
    /// The configuration's id.
    pub fn id(&self) -> &ConfigurationId {
        &self.id
    }

    /// The owning organisation.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The current settings (which may be awaiting approval: see [`Configuration::approved`]).
    pub fn settings(&self) -> &ConfigurationSettings {
        &self.settings
    }

    /// The approval state of the current settings.
    pub fn state(&self) -> ApprovalState {
        self.state
    }

    /// The settings version: 1 at creation, +1 per edit.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The revision: the number of history entries, +1 per transition (for optimistic concurrency).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The approver's EHR sign-in for the current settings, while awaiting approval.
    pub fn ehr_validation(&self) -> Option<&EhrValidation> {
        self.ehr_validation.as_ref()
    }

    /// The latest rejection, while the configuration is rejected.
    pub fn rejection(&self) -> Option<&Rejection> {
        self.rejection.as_ref()
    }

    /// The last approved version, which serves launches, even while a later edit awaits approval.
    pub fn approved(&self) -> Option<&ApprovedSnapshot> {
        self.approved.as_ref()
    }

    /// When it was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// When it last changed.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }

    /// The admin who last created, edited or submitted it: the change an approval vouches for.
    pub fn last_changed_by(&self) -> Option<&Username> {
        self.last_changed_by.as_ref()
    }

    /// An admin creates a configuration, as a draft of version 1.
    pub fn create(
        actor: &Actor,
        id: ConfigurationId,
        settings: ConfigurationSettings,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, TransitionError> {
        require_role(actor, ActionKind::Create, Role::Admin)?;
        let configuration = Self {
            id,
            tenant: actor.tenant.clone(),
            settings: settings.clone(),
            state: ApprovalState::Draft,
            version: 1,
            revision: 1,
            ehr_validation: None,
            rejection: None,
            approved: None,
            created_at: at,
            updated_at: at,
            last_changed_by: Some(actor.username.clone()),
        };
        let entry = HistoryEntry {
            revision: 1,
            version: 1,
            at,
            actor: record(actor, Role::Admin),
            from: None,
            to: ApprovalState::Draft,
            action: HistoryAction::Created { settings },
        };
        Ok(Transitioned {
            configuration,
            entry,
        })
    }

    /// An admin changes the settings. A draft stays a draft; anything else goes back to awaiting
    /// approval, dropping an EHR sign-in made for the old settings. A previously approved version
    /// keeps serving launches until the new one is approved.
    pub fn edit(
        &self,
        actor: &Actor,
        settings: ConfigurationSettings,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, TransitionError> {
        self.edit_guard(actor)?;
        if settings == self.settings {
            return Err(TransitionError::NothingChanged);
        }
        let to = match self.state {
            ApprovalState::Draft => ApprovalState::Draft,
            _ => ApprovalState::AwaitingApproval,
        };
        Ok(self.commit(
            actor,
            Role::Admin,
            at,
            to,
            HistoryAction::Edited {
                settings: settings.clone(),
            },
            |c| {
                c.settings = settings;
                c.version += 1;
                c.ehr_validation = None;
                c.rejection = None;
                c.last_changed_by = Some(actor.username.clone());
            },
        ))
    }

    /// An admin submits a draft, or resubmits a rejected configuration unchanged.
    pub fn submit(
        &self,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, TransitionError> {
        self.submit_guard(actor)?;
        Ok(self.commit(
            actor,
            Role::Admin,
            at,
            ApprovalState::AwaitingApproval,
            HistoryAction::Submitted,
            |c| {
                c.rejection = None;
                c.last_changed_by = Some(actor.username.clone());
            },
        ))
    }

    /// The named approver's successful EHR sign-in against `validated_url`, as `ehr_user_id`, is
    /// recorded. The URL must be exactly the configuration's FHIR base URL. A second sign-in
    /// replaces the first.
    pub fn record_ehr_validation(
        &self,
        actor: &Actor,
        validated_url: &FhirBaseUrl,
        ehr_user_id: EhrUserId,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, TransitionError> {
        self.ehr_validation_guard(actor)?;
        if *validated_url != self.settings.fhir_base_url {
            return Err(TransitionError::ValidationUrlMismatch {
                validated: validated_url.clone(),
                configured: self.settings.fhir_base_url.clone(),
            });
        }
        let validation = EhrValidation {
            fhir_base_url: validated_url.clone(),
            ehr_user_id,
            validated_at: at,
            validated_by: actor.username.clone(),
        };
        Ok(self.commit(
            actor,
            Role::Approver,
            at,
            ApprovalState::EhrValidated,
            HistoryAction::EhrValidated {
                validation: validation.clone(),
            },
            |c| c.ehr_validation = Some(validation),
        ))
    }

    /// The named approver approves under [`ApprovalPolicy::DEFAULT`]: see
    /// [`Configuration::approve_under`].
    pub fn approve(
        &self,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, TransitionError> {
        self.approve_under(actor, &ApprovalPolicy::DEFAULT, at)
    }

    /// Whether `actor` is someone `policy` lets approve this configuration as far as who made
    /// its last change goes (the other checks are [`Configuration::approve_under`]'s). Asked
    /// before the approver is sent to the EHR too, so nobody signs in for an approval that would
    /// be refused.
    pub fn check_distinct_approver(
        &self,
        actor: &Actor,
        policy: &ApprovalPolicy,
    ) -> Result<(), TransitionError> {
        let environment = self.settings.environment;
        if !policy.requires_distinct_approver(environment) {
            return Ok(());
        }
        match &self.last_changed_by {
            Some(admin) if *admin == actor.username => {
                Err(TransitionError::SameAdminAndApprover { environment })
            }
            Some(_) => Ok(()),
            None => Err(TransitionError::LastChangeUnrecorded),
        }
    }

    /// The named approver approves, after their EHR sign-in against exactly this FHIR base URL,
    /// and, where `policy` wants it, being someone other than the admin who last changed it. The
    /// approved version then serves launches.
    pub fn approve_under(
        &self,
        actor: &Actor,
        policy: &ApprovalPolicy,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, TransitionError> {
        let validation = self.approve_guard(actor, policy)?.clone();
        let snapshot = ApprovedSnapshot {
            version: self.version,
            settings: self.settings.clone(),
            approved_at: at,
            approved_by: actor.username.clone(),
            validation,
        };
        Ok(self.commit(
            actor,
            Role::Approver,
            at,
            ApprovalState::Approved,
            HistoryAction::Approved,
            |c| {
                c.approved = Some(snapshot);
                c.ehr_validation = None;
            },
        ))
    }

    /// The named approver rejects the current settings, with a reason (which must hold no patient
    /// data: it is stored and shown). A previously approved version keeps serving launches.
    pub fn reject(
        &self,
        actor: &Actor,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, TransitionError> {
        self.reject_guard(actor)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(TransitionError::InvalidReason);
        }
        let rejection = Rejection {
            reason: reason.to_owned(),
            rejected_at: at,
            rejected_by: actor.username.clone(),
        };
        Ok(self.commit(
            actor,
            Role::Approver,
            at,
            ApprovalState::Rejected,
            HistoryAction::Rejected {
                reason: reason.to_owned(),
            },
            |c| {
                c.rejection = Some(rejection);
                c.ehr_validation = None;
            },
        ))
    }

    /// An admin of the organisation re-drives a dead-lettered write-back of this configuration's
    /// visits: recorded in its history, nothing else changes (state, version, settings, and who
    /// last changed them, which the approval rules look at). `event_id` and `sink` must be ids
    /// (1 to 512 characters, no spaces): they are shown in the history.
    pub fn record_redrive(
        &self,
        actor: &Actor,
        event_id: &str,
        sink: &str,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, TransitionError> {
        self.admin_check(actor, ActionKind::RedriveWriteback)?;
        let id_like = |s: &str| {
            !s.is_empty()
                && s.len() <= 512
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if !id_like(event_id) || !id_like(sink) {
            return Err(TransitionError::InvalidRedrive);
        }
        Ok(self.commit(
            actor,
            Role::Admin,
            at,
            self.state,
            HistoryAction::WritebackRedriven {
                event_id: event_id.to_owned(),
                sink: sink.to_owned(),
            },
            |_| {},
        ))
    }

    /// Rebuilds a configuration from its history by re-running every transition, which must each be
    /// legal and reproduce the recorded entry.
    pub fn replay(
        id: &ConfigurationId,
        tenant: &TenantId,
        history: &[HistoryEntry],
    ) -> Result<Self, ReplayError> {
        let mut current: Option<Self> = None;
        for entry in history {
            let revision = entry.revision;
            let actor = Actor::new(
                tenant.clone(),
                entry.actor.username.clone(),
                &[entry.actor.role],
            );
            let at = entry.at;
            let result = match (&current, &entry.action) {
                (None, HistoryAction::Created { settings }) => {
                    Self::create(&actor, id.clone(), settings.clone(), at)
                }
                (None, _) | (Some(_), HistoryAction::Created { .. }) => {
                    return Err(ReplayError::OutOfPlace { revision });
                }
                (Some(c), HistoryAction::Edited { settings }) => {
                    c.edit(&actor, settings.clone(), at)
                }
                (Some(c), HistoryAction::Submitted) => c.submit(&actor, at),
                (Some(c), HistoryAction::EhrValidated { validation }) => c.record_ehr_validation(
                    &actor,
                    &validation.fhir_base_url,
                    validation.ehr_user_id.clone(),
                    at,
                ),
                // Judged when it happened, under the operator's policy of the time.
                (Some(c), HistoryAction::Approved) => {
                    c.approve_under(&actor, &ApprovalPolicy::SAME_PERSON_ALLOWED, at)
                }
                (Some(c), HistoryAction::Rejected { reason }) => c.reject(&actor, reason, at),
                (Some(c), HistoryAction::WritebackRedriven { event_id, sink }) => {
                    c.record_redrive(&actor, event_id, sink, at)
                }
            };
            let transitioned =
                result.map_err(|source| ReplayError::Refused { revision, source })?;
            if transitioned.entry != *entry {
                return Err(ReplayError::Mismatch { revision });
            }
            current = Some(transitioned.configuration);
        }
        current.ok_or(ReplayError::Empty)
    }

    /// Whether `actor` may see this configuration: its organisation's admins and its named
    /// approver.
    pub fn visible_to(&self, actor: &Actor) -> bool {
        actor.tenant == self.tenant
            && (actor.has_role(Role::Admin) || actor.username == self.settings.approver)
    }

    /// The transitions `actor` may take now under `policy`, as far as who they are and the
    /// configuration's state go (what they then submit, such as new settings or a reason, is
    /// checked by the transition itself). The same checks as the transitions', so a listed action
    /// is refused only for its input.
    pub fn allowed_actions(&self, actor: &Actor, policy: &ApprovalPolicy) -> BTreeSet<ActionKind> {
        [
            (ActionKind::Edit, self.edit_guard(actor).is_ok()),
            (ActionKind::Submit, self.submit_guard(actor).is_ok()),
            (
                ActionKind::RecordEhrValidation,
                self.ehr_validation_guard(actor).is_ok(),
            ),
            (
                ActionKind::Approve,
                self.approve_guard(actor, policy).is_ok(),
            ),
            (ActionKind::Reject, self.reject_guard(actor).is_ok()),
        ]
        .into_iter()
        .filter_map(|(action, allowed)| allowed.then_some(action))
        .collect()
    }

    /// [`Configuration::edit`]'s checks before its input.
    fn edit_guard(&self, actor: &Actor) -> Result<(), TransitionError> {
        self.admin_check(actor, ActionKind::Edit)
    }

    /// [`Configuration::submit`]'s checks.
    fn submit_guard(&self, actor: &Actor) -> Result<(), TransitionError> {
        self.admin_check(actor, ActionKind::Submit)?;
        if !matches!(self.state, ApprovalState::Draft | ApprovalState::Rejected) {
            return Err(self.illegal(ActionKind::Submit));
        }
        Ok(())
    }

    /// [`Configuration::record_ehr_validation`]'s checks before its input.
    fn ehr_validation_guard(&self, actor: &Actor) -> Result<(), TransitionError> {
        self.under_review_by_approver(actor, ActionKind::RecordEhrValidation)
    }

    /// The named approver's `action` on a configuration awaiting their decision (signed in to
    /// the EHR or not).
    fn under_review_by_approver(
        &self,
        actor: &Actor,
        action: ActionKind,
    ) -> Result<(), TransitionError> {
        self.approver_check(actor, action)?;
        if !matches!(
            self.state,
            ApprovalState::AwaitingApproval | ApprovalState::EhrValidated
        ) {
            return Err(self.illegal(action));
        }
        Ok(())
    }

    /// [`Configuration::approve_under`]'s checks; the EHR sign-in the approval rests on.
    fn approve_guard(
        &self,
        actor: &Actor,
        policy: &ApprovalPolicy,
    ) -> Result<&EhrValidation, TransitionError> {
        let action = ActionKind::Approve;
        self.approver_check(actor, action)?;
        match self.state {
            ApprovalState::EhrValidated => {}
            ApprovalState::AwaitingApproval => {
                return Err(TransitionError::EhrValidationMissing {
                    url: self.settings.fhir_base_url.clone(),
                });
            }
            _ => return Err(self.illegal(action)),
        }
        self.check_distinct_approver(actor, policy)?;
        // The state implies a matching validation; checked again because approval is the one
        // transition that must never happen without it.
        match &self.ehr_validation {
            Some(v)
                if v.fhir_base_url == self.settings.fhir_base_url
                    && v.validated_by == self.settings.approver =>
            {
                Ok(v)
            }
            _ => Err(TransitionError::EhrValidationMissing {
                url: self.settings.fhir_base_url.clone(),
            }),
        }
    }

    /// [`Configuration::reject`]'s checks before its input.
    fn reject_guard(&self, actor: &Actor) -> Result<(), TransitionError> {
        self.under_review_by_approver(actor, ActionKind::Reject)
    }

    fn admin_check(&self, actor: &Actor, action: ActionKind) -> Result<(), TransitionError> {
        if actor.tenant != self.tenant {
            return Err(TransitionError::WrongTenant);
        }
        require_role(actor, action, Role::Admin)
    }

    fn approver_check(&self, actor: &Actor, action: ActionKind) -> Result<(), TransitionError> {
        if actor.tenant != self.tenant {
            return Err(TransitionError::WrongTenant);
        }
        require_role(actor, action, Role::Approver)?;
        if actor.username != self.settings.approver {
            return Err(TransitionError::NotNamedApprover {
                action,
                approver: self.settings.approver.clone(),
            });
        }
        Ok(())
    }

    fn illegal(&self, action: ActionKind) -> TransitionError {
        TransitionError::IllegalTransition {
            action,
            state: self.state,
        }
    }

    fn commit(
        &self,
        actor: &Actor,
        role: Role,
        at: DateTime<Utc>,
        to: ApprovalState,
        action: HistoryAction,
        change: impl FnOnce(&mut Self),
    ) -> Transitioned {
        let mut configuration = self.clone();
        change(&mut configuration);
        configuration.state = to;
        configuration.revision += 1;
        configuration.updated_at = at;
        let entry = HistoryEntry {
            revision: configuration.revision,
            version: configuration.version,
            at,
            actor: record(actor, role),
            from: Some(self.state),
            to,
            action,
        };
        Transitioned {
            configuration,
            entry,
        }
    }
}

fn require_role(actor: &Actor, action: ActionKind, role: Role) -> Result<(), TransitionError> {
    if actor.has_role(role) {
        Ok(())
    } else {
        Err(TransitionError::MissingRole { action, role })
    }
}

fn record(actor: &Actor, role: Role) -> ActorRecord {
    ActorRecord {
        username: actor.username.clone(),
        role,
    }
}
