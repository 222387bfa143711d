//! Shared actors, settings and a tiny action language for the state machine tests.

use chrono::{DateTime, Duration, TimeZone, Utc};
use visitbridge_approval::*;

pub(crate) const URL: &str = "https://ehr.contoso.org/api/FHIR/R4";
pub(crate) const OTHER_URL: &str = "https://ehr2.contoso.org/api/FHIR/R4";
pub(crate) const ADMIN: &str = "admin@contoso.org";
pub(crate) const APPROVER: &str = "analyst@contoso.org";

pub(crate) fn tenant() -> TenantId {
    TenantId::new("contoso").unwrap()
}

pub(crate) fn url(s: &str) -> FhirBaseUrl {
    FhirBaseUrl::parse(s, UrlPolicy::STRICT).unwrap()
}

pub(crate) fn user(s: &str) -> Username {
    Username::new(s).unwrap()
}

pub(crate) fn settings(fhir: &str, approver: &str) -> ConfigurationSettings {
    ConfigurationSettings {
        fhir_base_url: url(fhir),
        environment: Environment::Production,
        ehr_vendor: EhrVendor::Epic,
        approver: user(approver),
        ehr_client: EhrClientSettings {
            client_id: ClientId::new("vb-client").unwrap(),
            patient_client_id: None,
            auth: ClientAuth::ClientSecretBasic {
                secret_ref: SecretRef::new("EHR_CLIENT_SECRET").unwrap(),
            },
            scope_style: ScopeStyle::V1,
            send_epic_client_id_header: true,
        },
    }
}

/// A fixed clock: step `n` happens `n` minutes after a fixed instant.
pub(crate) fn at(n: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap() + Duration::minutes(n as i64)
}

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// The tenant admin (admin role only).
    Admin,
    /// The named approver (approver role only), spelled as configured.
    Approver,
    /// The named approver, spelled in upper case.
    ApproverUpper,
    /// Another user of the tenant who holds the approver role but is not named.
    Other,
    /// The admin holding both roles (may be the named approver after an edit).
    AdminApprover,
    /// Someone of another tenant with the named approver's username and both roles.
    Foreign,
}

impl Who {
    /// Every kind of actor.
    pub(crate) const EVERYONE: [Who; 6] = [
        Who::Admin,
        Who::Approver,
        Who::ApproverUpper,
        Who::Other,
        Who::AdminApprover,
        Who::Foreign,
    ];

    pub(crate) fn actor(self) -> Actor {
        let foreign = TenantId::new("fabrikam").unwrap();
        match self {
            Who::Admin => Actor::admin(tenant(), user(ADMIN)),
            Who::Approver => Actor::approver(tenant(), user(APPROVER)),
            Who::ApproverUpper => Actor::approver(tenant(), user(&APPROVER.to_uppercase())),
            Who::Other => Actor::approver(tenant(), user("someone@contoso.org")),
            Who::AdminApprover => Actor::new(tenant(), user(ADMIN), &[Role::Admin, Role::Approver]),
            Who::Foreign => Actor::new(foreign, user(APPROVER), &[Role::Admin, Role::Approver]),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Who::Admin => "admin",
            Who::Approver => "approver",
            Who::ApproverUpper => "APPROVER",
            Who::Other => "other",
            Who::AdminApprover => "admin+approver",
            Who::Foreign => "foreign",
        }
    }
}

/// What they do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Act {
    /// Edit to these settings.
    Edit(ConfigurationSettings),
    Submit,
    /// Record an EHR sign-in against this URL.
    Validate(&'static str),
    Approve,
    /// Approve under a policy other than the default.
    ApproveUnder(ApprovalPolicy),
    Reject(&'static str),
    /// Re-drive a dead-lettered write-back of (event, sink).
    Redrive(&'static str, &'static str),
}

impl Act {
    pub(crate) fn name(&self) -> String {
        match self {
            Act::Edit(s) => format!("edit({}, {})", s.fhir_base_url, s.approver),
            Act::Submit => "submit".into(),
            Act::Validate(u) => format!("validate({u})"),
            Act::Approve => "approve".into(),
            Act::ApproveUnder(p) if *p == ApprovalPolicy::SAME_PERSON_ALLOWED => {
                "approve(same person allowed)".into()
            }
            Act::ApproveUnder(p) => format!(
                "approve(distinct: production {}, test {})",
                p.require_distinct_approver_production, p.require_distinct_approver_test
            ),
            Act::Reject(r) => format!("reject({r:?})"),
            Act::Redrive(e, s) => format!("redrive({e}, {s})"),
        }
    }
}

/// Applies `act` by `who` at step `n`.
pub(crate) fn apply(
    config: &Configuration,
    who: Who,
    act: &Act,
    n: usize,
) -> Result<Transitioned, TransitionError> {
    let actor = who.actor();
    match act {
        Act::Edit(s) => config.edit(&actor, s.clone(), at(n)),
        Act::Submit => config.submit(&actor, at(n)),
        Act::Validate(u) => config.record_ehr_validation(
            &actor,
            &url(u),
            EhrUserId::new("Practitioner/abc").unwrap(),
            at(n),
        ),
        Act::Approve => config.approve(&actor, at(n)),
        Act::ApproveUnder(policy) => config.approve_under(&actor, policy, at(n)),
        Act::Reject(r) => config.reject(&actor, r, at(n)),
        Act::Redrive(e, s) => config.record_redrive(&actor, e, s, at(n)),
    }
}

/// A freshly created configuration (URL, named approver APPROVER) and its creation entry.
pub(crate) fn created() -> Transitioned {
    Configuration::create(
        &Who::Admin.actor(),
        ConfigurationId::new("cfg-1").unwrap(),
        settings(URL, APPROVER),
        at(0),
    )
    .unwrap()
}
