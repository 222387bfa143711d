//! In-memory ports: [`FakeMeetings`] (Graph's meetings, with Graph's defaults and PATCH
//! semantics), [`FakeDirectory`] (Epic-shaped FHIR resources), and the world that ties them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};
use visitbridge_approval::{
    Actor, ClientAuth, ClientId, Configuration, ConfigurationId, ConfigurationSettings,
    EhrClientSettings, EhrUserId, EhrVendor, Environment, FhirBaseUrl, ScopeStyle, TenantId,
    UrlPolicy, Username,
};
use visitbridge_audit::Sink;
use visitbridge_fhir::{
    Appointment, AppointmentId, Encounter, EncounterId, FhirError, PatientId, PractitionerId,
};
use visitbridge_graph::{
    GraphError, MeetingChanges, MeetingId, MeetingInfo, MeetingOutcome, MeetingPolicy,
    PatientJoinKind, PatientJoinUrl, UserObjectId, VisitMeetingRequest,
};
use visitbridge_http::Secret;
use visitbridge_launch_core::{Clock, Meetings, NoTimer, Ports};
use visitbridge_smart::{EhrUser, LaunchContext};
use visitbridge_store::{
    ConfigurationRepo, MicrosoftObjectId, MicrosoftTenantId, OutboxItem, SinkName, SqliteStore,
    StoredEvent, Tenant, TenantRepo, UserLink, UserLinkRepo, Visit, VisitRepo,
};
use visitbridge_visit::{RecordContext, VisitDirectory};

/// What Graph was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GraphCall {
    CreateOrGet { organizer: String, created: bool },
    Patch { meeting: String, policy: bool },
    PatientJoinUrl { meeting: String },
}

#[derive(Default)]
struct Held {
    /// Meetings as Graph holds them, by organiser and `externalId`.
    meetings: HashMap<(String, String), Value>,
    calls: Vec<GraphCall>,
    /// Join URLs handed out for meetings whose policy was not in place.
    unsafe_join_urls: Vec<String>,
    subscribed: Vec<String>,
    patient_url: Option<String>,
}

/// Graph's `onlineMeetings` for one tenant whose Teams defaults let everyone bypass the lobby:
/// `createOrGet` creates with those defaults, PATCH merges its body, and every patient join URL
/// is checked to be handed out only once the policy is on the meeting.
#[derive(Default)]
pub(crate) struct FakeMeetings {
    held: Mutex<Held>,
    policy: MeetingPolicy,
}

impl FakeMeetings {
    pub(crate) fn calls(&self) -> Vec<GraphCall> {
        self.held.lock().unwrap().calls.clone()
    }
    pub(crate) fn meeting_count(&self) -> usize {
        self.held.lock().unwrap().meetings.len()
    }
    pub(crate) fn unsafe_join_urls(&self) -> Vec<String> {
        self.held.lock().unwrap().unsafe_join_urls.clone()
    }
    pub(crate) fn subscribed(&self) -> Vec<String> {
        self.held.lock().unwrap().subscribed.clone()
    }
    /// Graph answers the patient join URL with `url` from now on.
    pub(crate) fn answer_patient_url(&self, url: &str) {
        self.held.lock().unwrap().patient_url = Some(url.to_owned());
    }
    fn find<'a>(held: &'a mut Held, id: &str) -> Option<&'a mut Value> {
        held.meetings.values_mut().find(|m| m["id"] == id)
    }
}

fn graph_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.0000000Z").to_string()
}

#[async_trait]
impl Meetings for FakeMeetings {
    async fn create_or_get(
        &self,
        request: &VisitMeetingRequest,
    ) -> Result<MeetingOutcome, GraphError> {
        let mut held = self.held.lock().unwrap();
        let key = (
            request.organizer.as_str().to_owned(),
            request.external_id.as_str().to_owned(),
        );
        let n = held.meetings.len() + 1;
        let created = !held.meetings.contains_key(&key);
        let meeting = held.meetings.entry(key).or_insert_with(|| {
            let start = request
                .start
                .unwrap_or_else(|| Utc.with_ymd_and_hms(2026, 3, 5, 14, 0, 0).unwrap());
            let end = request.end.unwrap_or(start + chrono::Duration::hours(1));
            json!({
                "id": format!("MSo{n}"),
                "joinWebUrl": format!("https://teams.microsoft.com/l/meetup-join/19%3ameeting_{n}%40thread.v2/0"),
                "externalId": request.external_id.as_str(),
                "startDateTime": graph_time(start),
                "endDateTime": graph_time(end),
                "lobbyBypassSettings": {"scope": "everyone", "isDialInBypassEnabled": true},
                "allowedPresenters": "everyone",
                "allowMeetingChat": "enabled",
                "isEntryExitAnnounced": true
            })
        });
        let info = MeetingInfo::from_graph_json(meeting)?;
        held.calls.push(GraphCall::CreateOrGet {
            organizer: request.organizer.as_str().to_owned(),
            created,
        });
        Ok(MeetingOutcome {
            meeting: info,
            created,
        })
    }

    async fn update_meeting(
        &self,
        _organizer: &UserObjectId,
        meeting: &MeetingId,
        changes: &MeetingChanges,
    ) -> Result<MeetingInfo, GraphError> {
        let mut held = self.held.lock().unwrap();
        held.calls.push(GraphCall::Patch {
            meeting: meeting.as_str().to_owned(),
            policy: changes.policy.is_some(),
        });
        let stored = Self::find(&mut held, meeting.as_str()).expect("PATCH of a meeting Graph has");
        if let (Value::Object(stored), Value::Object(patch)) = (stored, changes.patch_body()) {
            for (k, v) in patch {
                stored.insert(k, v);
            }
        }
        let stored = Self::find(&mut held, meeting.as_str()).expect("still there");
        MeetingInfo::from_graph_json(stored)
    }

    async fn patient_join_url(
        &self,
        _organizer: &UserObjectId,
        meeting: &MeetingInfo,
    ) -> PatientJoinUrl {
        let mut held = self.held.lock().unwrap();
        held.calls.push(GraphCall::PatientJoinUrl {
            meeting: meeting.id.as_str().to_owned(),
        });
        let url = held.patient_url.clone().unwrap_or_else(|| {
            format!(
                "https://visit.teams.microsoft.com/webrtc-svc/api/route?tid=t&convId={}",
                meeting.id.as_str()
            )
        });
        let current = Self::find(&mut held, meeting.id.as_str())
            .map(|m| MeetingInfo::from_graph_json(m).expect("a meeting Graph holds"));
        if !current.is_some_and(|m| self.policy.is_applied_to(&m)) {
            held.unsafe_join_urls.push(url.clone());
        }
        PatientJoinUrl {
            url,
            kind: PatientJoinKind::VirtualAppointment,
        }
    }

    fn policy(&self) -> &MeetingPolicy {
        &self.policy
    }

    fn is_safe_join_url(&self, url: &str) -> bool {
        url.starts_with("https://")
    }

    fn meeting_ready(&self, visit: &Visit) {
        self.held
            .lock()
            .unwrap()
            .subscribed
            .push(visit.id.as_str().to_owned());
    }
}

/// The EHR's FHIR server as Epic answers it, for the resources visit resolution reads.
#[derive(Default)]
pub(crate) struct FakeDirectory {
    appointments: Vec<Appointment>,
    encounters: Vec<Encounter>,
    reads: Mutex<usize>,
}

impl FakeDirectory {
    /// Appointment `id` of `patient` with `practitioner`, at 14:00 on 2026-03-05 for 30
    /// minutes, whose Epic CSN identifier is `csn`.
    pub(crate) fn with_appointment(
        mut self,
        id: &str,
        patient: &str,
        practitioner: &str,
        csn: &str,
    ) -> Self {
        self.appointments.push(
            serde_json::from_value(json!({
                "resourceType": "Appointment", "id": id, "status": "booked",
                "start": "2026-03-05T14:00:00Z", "end": "2026-03-05T14:30:00Z",
                "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8", "value": csn}],
                "participant": [
                    {"actor": {"reference": format!("Patient/{patient}"), "display": "Lopez, Camila"}},
                    {"actor": {"reference": format!("Practitioner/{practitioner}"), "display": "Physician Family Medicine, MD"}}
                ]
            }))
            .unwrap(),
        );
        self
    }
    pub(crate) fn reads(&self) -> usize {
        *self.reads.lock().unwrap()
    }
    fn count(&self) {
        *self.reads.lock().unwrap() += 1;
    }
}

fn not_found(resource_type: &'static str, id: &str) -> FhirError {
    FhirError::NotFound {
        resource_type,
        id: id.to_owned(),
    }
}

#[async_trait]
impl VisitDirectory for FakeDirectory {
    async fn appointment(&self, id: &AppointmentId) -> Result<Appointment, FhirError> {
        self.count();
        self.appointments
            .iter()
            .find(|a| a.id.as_ref() == Some(id))
            .cloned()
            .ok_or_else(|| not_found("Appointment", id.as_str()))
    }
    async fn encounter(&self, id: &EncounterId) -> Result<Encounter, FhirError> {
        self.count();
        self.encounters
            .iter()
            .find(|e| e.id.as_ref() == Some(id))
            .cloned()
            .ok_or_else(|| not_found("Encounter", id.as_str()))
    }
    async fn encounters_of(
        &self,
        appointment: &AppointmentId,
    ) -> Result<Vec<Encounter>, FhirError> {
        self.count();
        Ok(self
            .encounters
            .iter()
            .filter(|e| e.appointment_ids().contains(appointment))
            .cloned()
            .collect())
    }
    async fn appointments_between(
        &self,
        patient: &PatientId,
        practitioner: Option<&PractitionerId>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Appointment>, FhirError> {
        self.count();
        // As a server does: the patient's appointments (with the practitioner, when named)
        // starting on a day from `from` to `to`.
        Ok(self
            .appointments
            .iter()
            .filter(|a| a.patient_id().as_ref() == Some(patient))
            .filter(|a| practitioner.is_none_or(|p| a.practitioner_ids().contains(p)))
            .filter(|a| {
                a.start
                    .as_ref()
                    .and_then(|s| s.utc())
                    .is_some_and(|s| (from..=to).contains(&s.date_naive()))
            })
            .cloned()
            .collect())
    }
}

/// 2026-03-05 13:55 UTC, five minutes before the fixture appointment.
pub(crate) struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 5, 13, 55, 0).unwrap()
    }
}

/// A clock the test moves.
pub(crate) struct MovingClock(Mutex<DateTime<Utc>>);

impl MovingClock {
    /// A clock showing `now` until moved.
    pub(crate) fn at(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now))
    }

    pub(crate) fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for MovingClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A write-back sink named `epic-status` that takes every delivery.
pub(crate) fn status_sink() -> Arc<dyn Sink> {
    struct StatusSink(SinkName);

    #[async_trait]
    impl Sink for StatusSink {
        fn name(&self) -> &SinkName {
            &self.0
        }

        async fn deliver(
            &self,
            _: &OutboxItem,
            _: &StoredEvent,
            _: &Visit,
        ) -> Result<(), visitbridge_audit::SinkError> {
            Ok(())
        }
    }

    Arc::new(StatusSink(SinkName::new("epic-status").unwrap()))
}

pub(crate) const ENTRA_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
pub(crate) const CSN: &str = "10000001234";
pub(crate) const CLINICIAN_OID: &str = "6b2e8a1c-0d3f-4e5a-9b7c-1d2e3f4a5b6c";
pub(crate) const OTHER_OID: &str = "7c3f9b2d-1e4a-4f6b-8c8d-2e3f4a5b6c7d";

/// One deployment: a store, Graph, the EHR, a clock and the secret.
pub(crate) struct World {
    pub(crate) store: Arc<SqliteStore>,
    pub(crate) graph: FakeMeetings,
    pub(crate) ehr: FakeDirectory,
    pub(crate) secret: Secret,
    /// What stored patient and appointment ids are keyed with.
    pub(crate) reference_keys: visitbridge_visit::ReferenceKeys,
    pub(crate) configuration: ConfigurationId,
    pub(crate) issuer: FhirBaseUrl,
}

impl World {
    pub(crate) async fn new() -> Self {
        let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let issuer =
            FhirBaseUrl::parse("https://fhir.example.org/api/FHIR/R4", UrlPolicy::STRICT).unwrap();
        let tenant = TenantId::new("contoso").unwrap();
        store
            .insert_tenant(&Tenant {
                id: tenant.clone(),
                name: "Contoso Health".to_owned(),
                microsoft_tenant_id: MicrosoftTenantId::new(ENTRA_TENANT).unwrap(),
                created_at: FixedClock.now(),
            })
            .await
            .unwrap();
        let created = Configuration::create(
            &Actor::admin(tenant, Username::new("admin@contoso.example").unwrap()),
            ConfigurationId::new("cfg-1").unwrap(),
            ConfigurationSettings {
                fhir_base_url: issuer.clone(),
                environment: Environment::Production,
                ehr_vendor: EhrVendor::Epic,
                approver: Username::new("analyst@contoso.example").unwrap(),
                ehr_client: EhrClientSettings {
                    client_id: ClientId::new("vb-client").unwrap(),
                    patient_client_id: None,
                    auth: ClientAuth::PrivateKeyJwt,
                    scope_style: ScopeStyle::V1,
                    send_epic_client_id_header: false,
                },
            },
            FixedClock.now(),
        )
        .unwrap();
        store.insert_configuration(&created).await.unwrap();
        Self {
            store,
            graph: FakeMeetings::default(),
            ehr: FakeDirectory::default()
                .with_appointment("appt-1", "pat-1", "doc-1", CSN)
                .with_appointment("appt-2", "pat-2", "doc-1", "10000009999"),
            secret: Secret::new("a-deployment-secret-of-enough-length-for-hmac"),
            reference_keys: visitbridge_visit::ReferenceKeys::new(&Secret::new(
                "a-reference-secret-of-enough-length-for-hmac",
            )),
            configuration: created.configuration.id().clone(),
            issuer,
        }
    }

    /// Submits, validates and approves the configuration, as the portal would.
    pub(crate) async fn approve(&self) {
        let tenant = TenantId::new("contoso").unwrap();
        let admin = Actor::admin(
            tenant.clone(),
            Username::new("admin@contoso.example").unwrap(),
        );
        let approver = Actor::approver(
            tenant.clone(),
            Username::new("analyst@contoso.example").unwrap(),
        );
        let config = self
            .store
            .get_configuration(&tenant, &self.configuration)
            .await
            .unwrap()
            .unwrap();
        let t = config.submit(&admin, FixedClock.now()).unwrap();
        self.store.update_configuration(&t).await.unwrap();
        let t = t
            .configuration
            .record_ehr_validation(
                &approver,
                &self.issuer,
                EhrUserId::new("Practitioner/analyst").unwrap(),
                FixedClock.now(),
            )
            .unwrap();
        self.store.update_configuration(&t).await.unwrap();
        let t = t
            .configuration
            .approve(&approver, FixedClock.now())
            .unwrap();
        self.store.update_configuration(&t).await.unwrap();
    }

    pub(crate) fn ports(&self) -> Ports<'_> {
        Ports {
            visits: self.store.as_ref(),
            links: self.store.as_ref(),
            meetings: Some(&self.graph),
            clock: &FixedClock,
            timer: &NoTimer,
            deployment_secret: &self.secret,
            reference_keys: &self.reference_keys,
        }
    }

    /// Links the EHR's `Practitioner/{practitioner}` to the Microsoft account `oid`.
    pub(crate) async fn link(&self, practitioner: &str, oid: &str) {
        self.store
            .upsert_user_link(&UserLink {
                ehr_issuer: self.issuer.clone(),
                ehr_user_id: EhrUserId::new(format!("Practitioner/{practitioner}")).unwrap(),
                microsoft_tenant_id: MicrosoftTenantId::new(ENTRA_TENANT).unwrap(),
                microsoft_object_id: MicrosoftObjectId::new(oid).unwrap(),
                linked_at: FixedClock.now(),
            })
            .await
            .unwrap();
    }

    /// Every visit row of the configuration.
    pub(crate) async fn visits(&self) -> Vec<Visit> {
        let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        self.store
            .visits_since(&self.configuration, epoch, 100)
            .await
            .unwrap()
    }
}

/// The launch URL's record context with `csn` as `sessionId`.
pub(crate) fn record(csn: Option<&str>) -> RecordContext {
    RecordContext {
        session_id: csn.map(str::to_owned),
        ..RecordContext::default()
    }
}

/// A token response's launch context as Epic sends it.
pub(crate) fn context(patient: &str, appointment: Option<&str>) -> LaunchContext {
    let mut value = json!({"patient": patient});
    if let Some(appointment) = appointment {
        value["appointment"] = json!(appointment);
    }
    serde_json::from_value(value).unwrap()
}

/// The id_token's user: a Practitioner, or a Patient.
pub(crate) fn user(fhir_user: &str) -> EhrUser {
    EhrUser {
        issuer: "https://fhir.example.org/api/FHIR/R4".to_owned(),
        subject: "sub-1".to_owned(),
        fhir_user: Some(format!("https://fhir.example.org/api/FHIR/R4/{fhir_user}")),
    }
}
