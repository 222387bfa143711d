//! The patient's ways in: the portal launch, the signed link, the waiting page, the device test.
//!
//! The patient is sent only to the join URL Graph returned for the visit's meeting, after the
//! meeting policy (lobby) is in place. When the clinician has not launched yet, the meeting is
//! created under the visit's practitioner if they are linked to Microsoft; otherwise the patient
//! waits (the page checks again).
//!
//! The launch URL's `sessionId` is the patient's to edit (the EHR signs only `launch`), so the
//! visit it names is used only when it is the one the EHR attested in the token response: a
//! stored visit of the token's `patient` (and `appointment`, when named), else — after the FHIR
//! reads the launch makes anyway — a CSN that is an identifier of the attested Appointment or
//! Encounter, under a key no other appointment or patient holds.

use visitbridge_approval::{ConfigurationId, FhirBaseUrl};
use visitbridge_graph::ExternalMeetingId;
use visitbridge_smart::LaunchContext;
use visitbridge_store::{Visit, VisitId};
use visitbridge_visit::{
    Attested, Fit, LinkError, PatientLink, RecordContext, VisitDirectory, visit_key,
};

use crate::{
    LaunchCoreError, VisitFacts, clinician::practitioner_user_id, meetings::stored_ids,
    ports::Ports, ports::VisitRead,
};

/// A completed SMART launch of a patient.
#[derive(Clone, Copy)]
pub struct PatientLaunch<'a> {
    /// The approved configuration the issuer matched.
    pub configuration: &'a ConfigurationId,
    /// Its FHIR base URL (the issuer practitioners' links are kept under).
    pub issuer: &'a FhirBaseUrl,
    /// The launch URL's record context.
    pub record: &'a RecordContext,
    /// The token response's launch context.
    pub context: &'a LaunchContext,
    /// The EHR's FHIR server, with the launch's token.
    pub directory: &'a dyn VisitDirectory,
}

/// Where a patient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientOutcome {
    /// To the meeting's patient join URL (its lobby policy is in place).
    Meeting(String),
    /// To the waiting page: no clinician of the visit is linked to Microsoft yet.
    Wait {
        /// The visit waited for.
        visit: VisitId,
        /// The visit's practitioners (FHIR ids), any of whom may start the meeting.
        practitioners: Vec<String>,
        /// The issuer their links are kept under, when known.
        issuer: Option<FhirBaseUrl>,
    },
}

/// The first of `practitioners` linked to a Microsoft account at `issuer`.
async fn first_linked(
    ports: Ports<'_>,
    issuer: &FhirBaseUrl,
    practitioners: &[String],
) -> Result<Option<String>, LaunchCoreError> {
    for id in practitioners {
        let Some(user) = practitioner_user_id(id) else {
            continue;
        };
        if let Some(link) = ports.links.get_user_link(issuer, &user).await? {
            return Ok(Some(link.microsoft_object_id.as_str().to_owned()));
        }
    }
    Ok(None)
}

/// A patient's launch from the portal, after the SMART callback.
pub async fn patient_launch(
    ports: Ports<'_>,
    launch: PatientLaunch<'_>,
) -> Result<PatientOutcome, LaunchCoreError> {
    let attested = Attested::from_context(launch.context);
    // The clinician usually launched first: the meeting is found by the visit key, and taken
    // without a FHIR read when its stored ids are the attested patient's and appointment's.
    let mut existing = None;
    if let Some(key) = visit_key(launch.record, launch.context) {
        let external = ports.external_id(launch.configuration, &key);
        if let Some(visit) = ports
            .visits
            .visit_by_key(launch.configuration, external.as_str())
            .await?
        {
            if visit.organizer_object_id.is_some()
                && attested.stored_fit(stored_ids(ports.reference_keys, &visit)) == Fit::Same
            {
                let url = ports.patient_meeting(visit, &VisitFacts::default()).await?;
                return Ok(PatientOutcome::Meeting(url));
            }
            existing = Some(visit);
        }
    }
    let resolved = ports
        .resolve(VisitRead {
            directory: launch.directory,
            record: launch.record,
            context: launch.context,
            practitioner: None,
        })
        .await?;
    if let Some(existing) = &existing {
        // Checked before the claim, which would fill the row's empty fields.
        attested.check_claimed(
            &resolved.key,
            &resolved,
            stored_ids(ports.reference_keys, existing),
        )?;
    }
    let mut facts = VisitFacts::from_launch(launch.record, launch.context, None);
    facts.add(&resolved);
    let external = ports.external_id(launch.configuration, &resolved.key);
    let practitioners: Vec<String> = resolved
        .practitioners
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    let performer = first_linked(ports, launch.issuer, &practitioners).await?;
    let visit = ports
        .claim(
            launch.configuration,
            &external,
            &facts,
            performer.as_deref(),
        )
        .await?;
    attested.check_claimed(
        &resolved.key,
        &resolved,
        stored_ids(ports.reference_keys, &visit),
    )?;
    if visit.organizer_object_id.is_some() {
        let url = ports.patient_meeting(visit, &facts).await?;
        return Ok(PatientOutcome::Meeting(url));
    }
    Ok(PatientOutcome::Wait {
        visit: visit.id,
        practitioners,
        issuer: Some(launch.issuer.clone()),
    })
}

/// A waiting patient checks again: the meeting's URL once a clinician launched or one of the
/// visit's `practitioners` is linked at `issuer` (the meeting is then created under them), else
/// `None` (keep waiting).
pub async fn patient_waiting(
    ports: Ports<'_>,
    visit: &VisitId,
    practitioners: &[String],
    issuer: Option<&FhirBaseUrl>,
) -> Result<Option<String>, LaunchCoreError> {
    let visit = ports
        .visits
        .get_visit(visit)
        .await?
        .ok_or(LaunchCoreError::VisitNotFound)?;
    if visit.organizer_object_id.is_some() {
        return Ok(Some(
            ports.patient_meeting(visit, &VisitFacts::default()).await?,
        ));
    }
    let performer = match issuer {
        Some(issuer) => first_linked(ports, issuer, practitioners).await?,
        None => None,
    };
    let Some(performer) = performer else {
        return Ok(None);
    };
    let external = ExternalMeetingId::from_stored(visit.external_meeting_id.clone());
    let visit = ports
        .claim(
            &visit.configuration_id,
            &external,
            &VisitFacts::default(),
            Some(&performer),
        )
        .await?;
    Ok(Some(
        ports.patient_meeting(visit, &VisitFacts::default()).await?,
    ))
}

/// A signed, expiring patient link (`token`): the meeting when a clinician is in charge of it,
/// else the waiting page.
pub async fn patient_link(
    ports: Ports<'_>,
    token: &str,
) -> Result<PatientOutcome, LaunchCoreError> {
    let link = PatientLink::verify(token, ports.deployment_secret, ports.clock.now())?;
    let configuration =
        ConfigurationId::new(link.configuration_id).map_err(|_| LinkError::Invalid)?;
    let visit = ports
        .visits
        .visit_by_key(&configuration, &link.external_meeting_id)
        .await?
        .ok_or(LinkError::Invalid)?;
    if visit.organizer_object_id.is_some() {
        let url = ports.patient_meeting(visit, &VisitFacts::default()).await?;
        return Ok(PatientOutcome::Meeting(url));
    }
    Ok(PatientOutcome::Wait {
        visit: visit.id,
        practitioners: Vec::new(),
        issuer: None,
    })
}

/// A device-test launch: the visit's lobby when its meeting exists and is the attested
/// patient's visit (Teams shows a camera and microphone preview there), else `None` (the page
/// shows instructions). A Graph failure only costs the lobby.
pub async fn device_test(
    ports: Ports<'_>,
    configuration: &ConfigurationId,
    record: &RecordContext,
    context: &LaunchContext,
) -> Result<Option<String>, LaunchCoreError> {
    let Some(key) = visit_key(record, context) else {
        return Ok(None);
    };
    let external = ports.external_id(configuration, &key);
    let Some(visit) = ports
        .visits
        .visit_by_key(configuration, external.as_str())
        .await?
    else {
        return Ok(None);
    };
    if !(has_meeting(&visit)
        && Attested::from_context(context).stored_fit(stored_ids(ports.reference_keys, &visit))
            == Fit::Same)
    {
        return Ok(None);
    }
    match ports.patient_url(&visit, None).await {
        Ok(url) => Ok(Some(url)),
        Err(e) => {
            tracing::warn!(error = %e, "device test without the visit's lobby");
            Ok(None)
        }
    }
}

fn has_meeting(visit: &Visit) -> bool {
    visit.join_web_url.is_some() && visit.organizer_object_id.is_some()
}
