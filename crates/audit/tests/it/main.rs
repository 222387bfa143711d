//! Integration tests of visitbridge-audit: a real SQLite file, wiremock fakes of the FHIR server
//! and of Epic's connection-status service, Graph's roster payloads through Graph's own parser.

mod crash;
mod delivery;
mod privacy;
mod reconcile;
mod recording;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use tempfile::TempDir;
use url::Url;
use visitbridge_approval::{
    Actor, ClientAuth, ClientId, Configuration, ConfigurationId, ConfigurationSettings,
    EhrClientSettings, Environment, ScopeStyle, TenantId, UrlPolicy, Username,
};
use visitbridge_audit::{
    AuditEventMode, AuditRecorder, ConfiguredSinks, DeliveryPolicy, DeliveryReport, DeliveryWorker,
    EpicConnectionStatusConfig, SinkConfig, SinkContext,
};
use visitbridge_fhir::{FhirBaseUrl, FhirClient, FhirClientConfig, StaticToken};
use visitbridge_graph::{
    ClientStateSecret, EventKind, EventSource, MeetingRef, Notification, Participant,
    ParticipantEvent, ParticipantKind, UserObjectId, parse_notifications,
};
use visitbridge_http::{HttpConfig, Secret, build_client};
use visitbridge_store::{
    ConfigurationRepo, MicrosoftObjectId, MicrosoftTenantId, SqliteStore, Tenant, TenantRepo,
    Visit, VisitId, VisitRepo,
};
use visitbridge_testkit::{
    epic::EpicConnectionStatusFake,
    fhir::{self, FhirFake},
};
use wiremock::MockServer;

/// Our client id at Epic.
const EPIC_CLIENT_ID: &str = "vb-epic-client-id";
/// The backend-services token every sink sends.
const TOKEN: &str = "backend-services-token";
/// The visit's CSN.
const CONFERENCE_ID: &str = "1234567890";
/// The `clientState` of the fixture notification.
const CLIENT_STATE: &str = "the-secret-client-state";
/// The meeting of the fixture notification.
const JOIN_URL: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NTg0NjhhNTUtNWQ3ZS00MjE0LWE3ZDEtNDMwMDBlNTViYjY0%40thread.v2/0";
/// The organiser: the staff user who leaves in the fixture notification ("Dr. Ross").
const ORGANIZER: &str = "5810cedeb-b2c1-e9bd-5d6b-2b5d0ae9e5d5";
/// The ACS guest who joins in the fixture notification ("Guest").
const GUEST: &str = "8:acs:2f1c...";

/// Codes obviously made up for tests: Epic's real ones are in its vendor guide only.
fn epic_config(base: &str) -> EpicConnectionStatusConfig {
    EpicConnectionStatusConfig {
        interconnect_base: Url::parse(base).unwrap(),
        client_id: EPIC_CLIENT_ID.into(),
        vendor_name: "VisitBridge".into(),
        external_id_type: "TEST-EXTERNAL-ID-TYPE".into(),
        connected_status: "TEST-CONNECTED".into(),
        disconnected_status: "TEST-DISCONNECTED".into(),
        lobby_status: None,
    }
}

fn epic_sink(base: &str) -> SinkConfig {
    SinkConfig::EpicConnectionStatus(Box::new(epic_config(base)))
}

/// Tiny backoff so retry tests take milliseconds; a long lease so nothing expires by accident.
fn fast_policy() -> DeliveryPolicy {
    DeliveryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        lease: Duration::from_secs(30),
        delivery_timeout: Duration::from_secs(15),
        batch_size: 32,
        concurrency: 4,
        poll_interval: Duration::from_millis(20),
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 5, 18, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
}

/// A store file with tenant, configuration and the fixture visit; both fakes; the sinks.
struct Env {
    dir: TempDir,
    store: Arc<SqliteStore>,
    visit: Visit,
    fhir_server: MockServer,
    fhir: FhirFake,
    _epic_server: MockServer,
    epic: EpicConnectionStatusFake,
    sinks: Arc<ConfiguredSinks>,
    context: SinkContext,
}

/// Which sinks [`Env::new`] configures.
#[derive(Clone, Copy)]
enum Sinks {
    /// Epic status, FHIR AuditEvent (client-assigned ids) and Communication.
    All,
    /// Only Epic's connection status.
    Epic,
}

impl Env {
    async fn new(sinks: Sinks) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(dir.path().join("vb.sqlite"))
                .await
                .unwrap(),
        );
        let configuration = add_configuration(&store).await;
        let visit = store
            .upsert_visit(&Visit {
                id: VisitId::new("visit-1").unwrap(),
                configuration_id: configuration,
                external_meeting_id: "vb-0123456789abcdef0123456789abcdef".into(),
                graph_meeting_id: Some("MSo1N2Y5ZGFjYy03MWJmLTQ3NDMtYjQxMy01M2EdFGkdRWHJlQ".into()),
                join_web_url: Some(JOIN_URL.into()),
                organizer_object_id: Some(MicrosoftObjectId::new(ORGANIZER).unwrap()),
                practitioner_fhir_id: Some(fhir::PRACTITIONER_ID.into()),
                appointment_fhir_id: Some(fhir::APPOINTMENT_ID.into()),
                encounter_fhir_id: Some(fhir::ENCOUNTER_ID.into()),
                patient_fhir_id: Some(fhir::PATIENT_ID.into()),
                conference_id: Some(CONFERENCE_ID.into()),
                created_at: at(0),
                ended_at: None,
                patient_key: None,
                appointment_key: None,
                department: None,
            })
            .await
            .unwrap();

        let (fhir_server, fhir) = FhirFake::start().await;
        let (epic_server, epic) = EpicConnectionStatusFake::start(EPIC_CLIENT_ID).await;
        epic.require_token(TOKEN);
        let http = build_client(&HttpConfig::default()).unwrap();
        let token = Arc::new(StaticToken(Secret::new(TOKEN)));
        let fhir_client = FhirClient::new(
            FhirClientConfig::new(FhirBaseUrl::parse(fhir.base_url()).unwrap()),
            http.clone(),
            token.clone(),
        );
        let context = SinkContext {
            http,
            token,
            fhir: fhir_client,
        };
        let env = Self {
            dir,
            store,
            visit,
            fhir_server,
            fhir,
            _epic_server: epic_server,
            epic,
            sinks: Arc::new(ConfiguredSinks::new()),
            context,
        };
        let configs = match sinks {
            Sinks::All => vec![
                epic_sink(env.epic.interconnect_base()),
                SinkConfig::FhirAuditEvent {
                    mode: AuditEventMode::ClientAssignedId,
                },
                SinkConfig::FhirCommunication,
            ],
            Sinks::Epic => vec![epic_sink(env.epic.interconnect_base())],
        };
        env.set_sinks(&configs);
        env
    }

    fn set_sinks(&self, configs: &[SinkConfig]) {
        let built = configs
            .iter()
            .map(|c| c.build(&self.context).unwrap())
            .collect();
        self.sinks
            .set(self.visit.configuration_id.clone(), built)
            .unwrap();
    }

    fn recorder(&self) -> AuditRecorder {
        AuditRecorder::new(self.store.clone(), self.sinks.clone())
    }

    /// Waits (bounded) until the Epic fake has received `count` calls.
    async fn eventually_calls(&self, count: usize) {
        for _ in 0..200 {
            if self.epic.calls().len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("Epic never received {count} calls");
    }

    fn worker(&self) -> DeliveryWorker {
        DeliveryWorker::new(self.store.clone(), self.sinks.clone(), fast_policy())
    }
}

async fn add_configuration(store: &SqliteStore) -> ConfigurationId {
    let tenant = TenantId::new("contoso").unwrap();
    store
        .insert_tenant(&Tenant {
            id: tenant.clone(),
            name: "Contoso Health".into(),
            microsoft_tenant_id: MicrosoftTenantId::new("72f988bf-86f1-41af-91ab-2d7cd011db47")
                .unwrap(),
            created_at: at(0),
        })
        .await
        .unwrap();
    let settings = ConfigurationSettings {
        fhir_base_url: visitbridge_approval::FhirBaseUrl::parse(
            "https://ehr.example.org/api/FHIR/R4",
            UrlPolicy::STRICT,
        )
        .unwrap(),
        environment: Environment::Production,
        ehr_vendor: visitbridge_approval::EhrVendor::Epic,
        approver: Username::new("analyst@example.org").unwrap(),
        ehr_client: EhrClientSettings {
            client_id: ClientId::new("vb-client").unwrap(),
            patient_client_id: None,
            auth: ClientAuth::PrivateKeyJwt,
            scope_style: ScopeStyle::V1,
            send_epic_client_id_header: true,
        },
    };
    let created = Configuration::create(
        &Actor::admin(tenant, Username::new("admin@example.org").unwrap()),
        ConfigurationId::new("cfg-1").unwrap(),
        settings,
        at(0),
    )
    .unwrap();
    store.insert_configuration(&created).await.unwrap();
    created.configuration.id().clone()
}

/// Graph's fixture roster notification through Graph's own parser: the ACS guest joined, the
/// organiser left (both with display names in the payload).
fn fixture_notifications() -> Vec<Notification> {
    parse_notifications(
        visitbridge_testkit::fixtures::GRAPH_ROSTER_NOTIFICATION.as_bytes(),
        &ClientStateSecret::new(Secret::new(CLIENT_STATE)),
        None,
    )
    .unwrap()
}

fn person(kind: EventKind, seconds: i64, who: ParticipantKind) -> ParticipantEvent {
    ParticipantEvent {
        kind,
        at: at(seconds),
        meeting: MeetingRef::JoinWebUrl(JOIN_URL.into()),
        participant: Some(Participant {
            participant_id: Some(format!("leg-{seconds}")),
            kind: who,
        }),
        source: EventSource::Notification,
    }
}

fn staff(object_id: &str) -> ParticipantKind {
    ParticipantKind::OrganizationUser {
        object_id: UserObjectId::new(object_id),
        tenant_id: None,
    }
}

fn guest(id: &str) -> ParticipantKind {
    ParticipantKind::AcsGuest {
        opaque_id: id.into(),
    }
}

/// Runs delivery rounds until one claims nothing (each round a second later, so retries with the
/// tiny test backoff are due); the sum of the rounds.
async fn drain(worker: &DeliveryWorker) -> DeliveryReport {
    let mut total = DeliveryReport::default();
    for round in 1..50 {
        let report = worker
            .run_once(Utc::now() + chrono::Duration::seconds(round))
            .await
            .unwrap();
        if report.claimed == 0 {
            return total;
        }
        total.claimed += report.claimed;
        total.delivered += report.delivered;
        total.retried += report.retried;
        total.dead += report.dead;
    }
    panic!("the outbox did not drain: {total:?}");
}
