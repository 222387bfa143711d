//! A clinician's launch: staff only, the one-time Microsoft sign-in, then the visit's meeting.
//!
//! Round trips of a warm launch (the clinician is linked, the key is the attested Appointment):
//! the FHIR reads **and** `createOrGet` run concurrently; only a new (or drifted) meeting adds
//! the policy PATCH, which must be done before anyone receives a join URL.

use visitbridge_approval::{ConfigurationId, EhrUserId, FhirBaseUrl};
use visitbridge_fhir::PractitionerId;
use visitbridge_graph::MeetingInfo;
use visitbridge_smart::{EhrUser, LaunchContext};
use visitbridge_store::Visit;
use visitbridge_visit::{Attested, RecordContext, StaffRule, VisitDirectory, VisitKey, visit_key};

use crate::{
    LaunchCoreError, VisitFacts,
    meetings::VisitTarget,
    ports::{Ports, VisitRead},
};

/// The EHR user id links are keyed on: `Practitioner/{id}` when `fhirUser` names a Practitioner
/// (so it matches an Appointment's performer reference), else `fhirUser` or `sub` as sent.
pub fn ehr_user_id(user: &EhrUser) -> Result<EhrUserId, LaunchCoreError> {
    let id = match user.fhir_user_reference() {
        Some(("Practitioner", id)) => format!("Practitioner/{id}"),
        _ => user.id().to_owned(),
    };
    EhrUserId::new(id).map_err(|_| LaunchCoreError::UnusableUserId)
}

/// The EHR user id of a practitioner named by an Appointment.
pub(crate) fn practitioner_user_id(id: &str) -> Option<EhrUserId> {
    EhrUserId::new(format!("Practitioner/{id}")).ok()
}

/// A completed SMART launch of a clinician.
#[derive(Clone, Copy)]
pub struct ClinicianLaunch<'a> {
    /// The approved configuration the issuer matched.
    pub configuration: &'a ConfigurationId,
    /// Its FHIR base URL (the issuer user links are kept under).
    pub issuer: &'a FhirBaseUrl,
    /// Who may launch as a clinician.
    pub staff: &'a StaffRule,
    /// The user the id_token named.
    pub user: Option<&'a EhrUser>,
    /// The scopes the EHR granted.
    pub scopes: &'a [String],
    /// The launch URL's record context.
    pub record: &'a RecordContext,
    /// The token response's launch context.
    pub context: &'a LaunchContext,
    /// The EHR's FHIR server, with the launch's token.
    pub directory: &'a dyn VisitDirectory,
}

/// A clinician's visit with its settled meeting (policy applied).
#[derive(Debug, Clone)]
pub struct OpenedVisit {
    /// The visit's row.
    pub visit: Visit,
    /// Its meeting.
    pub meeting: MeetingInfo,
    /// The clinician's Microsoft object id (whom the visit's page is granted to).
    pub clinician: String,
}

/// A first launch, waiting for the clinician's one-time Microsoft sign-in: what to keep until
/// it completes (ids only; the EHR token is not kept).
#[derive(Debug, Clone)]
pub struct SignInToContinue {
    /// The EHR user to link.
    pub ehr_user_id: EhrUserId,
    /// The visit's key, attested.
    pub key: VisitKey,
    /// What the launch and FHIR told (attested).
    pub facts: VisitFacts,
}

/// Where a clinician's launch goes.
#[derive(Debug, Clone)]
pub enum ClinicianOutcome {
    /// The visit's page: the meeting is ready.
    Meeting(Box<OpenedVisit>),
    /// The clinician has no Microsoft account linked yet: sign in, then
    /// [`after_microsoft_sign_in`].
    MicrosoftSignIn(Box<SignInToContinue>),
}

/// A clinician's launch after the SMART callback.
///
/// Staff only: a token the EHR issued to a patient is refused before any user link, visit row
/// or Graph call. The meeting's key is the attested Appointment (or a group visit's conference),
/// so a launch with the visit's CSN, without it, or with another CSN reaches one visit row; the
/// URL's CSN must be an identifier of the attested visit.
pub async fn clinician_launch(
    ports: Ports<'_>,
    launch: ClinicianLaunch<'_>,
) -> Result<ClinicianOutcome, LaunchCoreError> {
    let user = launch.staff.check(launch.user, launch.scopes)?;
    // As the launch service always did: staff first, then whether meetings can be made at all.
    ports.meetings()?;
    let user_id = ehr_user_id(user)?;
    let practitioner = match user.fhir_user_reference() {
        Some(("Practitioner", id)) => PractitionerId::new(id).ok(),
        _ => None,
    };
    let link = ports.links.get_user_link(launch.issuer, &user_id).await?;
    let read = VisitRead {
        directory: launch.directory,
        record: launch.record,
        context: launch.context,
        practitioner: practitioner.as_ref(),
    };
    let mut facts = VisitFacts::from_launch(
        launch.record,
        launch.context,
        practitioner.as_ref().map(|p| p.as_str()),
    );
    let Some(link) = link else {
        // First launch: read the visit now (the EHR token stays in memory only).
        let resolved = ports.resolve(read).await?;
        facts.add(&resolved);
        return Ok(ClinicianOutcome::MicrosoftSignIn(Box::new(
            SignInToContinue {
                ehr_user_id: user_id,
                key: resolved.key,
                facts,
            },
        )));
    };
    let organizer = link.microsoft_object_id.as_str().to_owned();
    let attested = Attested::from_context(launch.context);
    // A group visit's conference id comes from the unsigned URL: it is attested before any row
    // or meeting is made under it. The attested Appointment's key needs no such wait.
    let (key, read) = match visit_key(launch.record, launch.context) {
        Some(key) if !key.is_conference() => (key, Some(read)),
        _ => {
            let resolved = ports.resolve(read).await?;
            facts.add(&resolved);
            (resolved.key, None)
        }
    };
    let target = VisitTarget {
        configuration: launch.configuration,
        key: &key,
        organizer: &organizer,
        attested: &attested,
    };
    let (visit, meeting) = ports.open_visit(target, &mut facts, read).await?;
    Ok(ClinicianOutcome::Meeting(Box::new(OpenedVisit {
        visit,
        meeting,
        clinician: organizer,
    })))
}

/// Continues a launch after the clinician's Microsoft sign-in (the user link is stored by the
/// caller): the visit kept in [`SignInToContinue`] was attested before the sign-in.
pub async fn after_microsoft_sign_in(
    ports: Ports<'_>,
    configuration: &ConfigurationId,
    key: &VisitKey,
    mut facts: VisitFacts,
    clinician: &str,
) -> Result<OpenedVisit, LaunchCoreError> {
    let attested = Attested {
        patient: facts.patient.clone(),
        appointment: facts.appointment.clone(),
    };
    let target = VisitTarget {
        configuration,
        key,
        organizer: clinician,
        attested: &attested,
    };
    let (visit, meeting) = ports.open_visit(target, &mut facts, None).await?;
    Ok(OpenedVisit {
        visit,
        meeting,
        clinician: clinician.to_owned(),
    })
}
