//! The test world: an EHR (SMART + FHIR + Epic's connection-status service) on one wiremock
//! server, Microsoft (Entra + Graph) on another, a real SQLite file, the launch service on a
//! loopback port, and a browser with a small cookie jar that follows redirects the way a real one
//! does (submitting the auto-posting EHR sign-in form, stopping at Teams).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use serde_json::{Value, json};
use tempfile::TempDir;
use visitbridge_approval::{
    Actor, ClientAuth, ClientId, Configuration, ConfigurationId, ConfigurationSettings,
    EhrClientSettings, EhrUserId, Environment, FhirBaseUrl, ScopeStyle, TenantId, UrlPolicy,
    Username,
};
use visitbridge_launch::{LaunchConfig, LaunchService, app};
use visitbridge_store::{
    MicrosoftTenantId, PostgresOptions, PostgresStore, SqliteStore, Store, Tenant, Visit, VisitId,
    VisitSubscription,
};

use crate::cluster::{LoadBalancer, Replica};
use visitbridge_testkit::{
    entra::{self, EntraUser, FakeEntra},
    epic::{EpicConnectionStatusFake, INTERCONNECT_PREFIX},
    fhir::{APPOINTMENT_ID, FhirFake, fhir_json},
    fixtures::{self, keys},
    graph::{FakeGraph, plain_notification, roster_update, user_participant},
    smart::{ExpectedClientAuth, SmartFake},
};
use wiremock::{
    Mock, MockServer,
    matchers::{method, path},
};

/// Our client id at the fake EHR.
pub(crate) const EHR_CLIENT_ID: &str = "visitbridge-test-client";
/// The key id of our backend key (the testkit's client RSA key).
pub(crate) const BACKEND_KID: &str = "visitbridge-test-1";
/// The subscriptions' `clientState`.
pub(crate) const CLIENT_STATE: &str = "test-client-state-5b1f0c";
/// The id of the approved configuration.
pub(crate) const CONFIGURATION_ID: &str = "cfg-test";
/// The bearer token of `/metrics` on the main listener.
pub(crate) const METRICS_TOKEN: &str = "test-metrics-token-0123456789abcdef";

/// Installs the capturing subscriber once (shared by every test of this binary).
pub(crate) fn capture_logs() {
    visitbridge_testkit::logs::capture();
}

/// The logs captured so far.
pub(crate) fn logs() -> String {
    visitbridge_testkit::logs::captured()
}

/// A notification of `subscription` whose resource names the meeting in a form no join URL can
/// be read from: only the subscription leads to the visit.
pub(crate) fn through_subscription(subscription: &str, payload: Value) -> Value {
    let mut body = plain_notification(subscription, CLIENT_STATE, "https://unused", payload);
    body["value"][0]["resource"] =
        Value::String("communications/onlineMeetings/MSo1N2Y5ZGFjYy03MWJm".into());
    body
}

/// A roster update: the default clinician joined at `at`.
pub(crate) fn clinician_joined(at: &str) -> Value {
    roster_update(
        at,
        vec![user_participant(
            "leg-doc",
            &EntraUser::default().oid,
            "Dr. Ross",
        )],
        vec![],
    )
}

/// A roster update about guest number `guest` (an ACS browser join, `8:acs:guest-{guest}`):
/// joined or left, `second` seconds after 18:00 (within the hour).
pub(crate) fn guest_roster(guest: usize, joined: bool, second: usize) -> Value {
    let participant = visitbridge_testkit::graph::acs_participant(
        &format!("leg-{guest}"),
        &format!("8:acs:guest-{guest}"),
        "Camila Lopez",
    );
    let at = format!(
        "2026-03-05T18:{:02}:{:02}Z",
        (second / 60) % 60,
        second % 60
    );
    if joined {
        roster_update(&at, vec![participant], vec![])
    } else {
        roster_update(&at, vec![], vec![participant])
    }
}

/// What a test changes in the world.
#[derive(Clone)]
pub(crate) struct Options {
    /// Configure Microsoft 365.
    pub(crate) microsoft: bool,
    /// The approved configuration's environment.
    pub(crate) environment: Environment,
    /// Write-back attempts before a dead letter.
    pub(crate) max_attempts: u32,
    /// Also write back through Epic's connection-status service.
    pub(crate) epic_sink: bool,
    /// Seconds from a call's end to its reconciliation with the attendance report.
    pub(crate) reconcile_delay_seconds: u64,
    /// Attempts at reading an attendance report.
    pub(crate) reconcile_max_attempts: u32,
    /// More top-level configuration lines (keys and inline tables only).
    pub(crate) extra_config: String,
    /// Where the data lives.
    pub(crate) backend: Backend,
    /// `0`: the service runs in the test process. More: that many launch-service processes (the
    /// binary) on the one database, behind a load balancer whose address is [`Env::base`].
    pub(crate) replicas: usize,
}

/// The database of a test world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// A SQLite file in the world's folder.
    Sqlite,
    /// A fresh database on the throwaway PostgreSQL server.
    Postgres,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            microsoft: true,
            environment: Environment::Test,
            max_attempts: 4,
            epic_sink: true,
            reconcile_delay_seconds: 0,
            reconcile_max_attempts: 3,
            extra_config: String::new(),
            backend: Backend::Sqlite,
            replicas: 0,
        }
    }
}

/// A running test world.
pub(crate) struct Env {
    pub(crate) dir: TempDir,
    pub(crate) ehr: MockServer,
    pub(crate) smart: SmartFake,
    pub(crate) fhir: FhirFake,
    pub(crate) epic: EpicConnectionStatusFake,
    pub(crate) ms: MockServer,
    pub(crate) entra: FakeEntra,
    pub(crate) graph: FakeGraph,
    /// A second handle on the service's database.
    pub(crate) store: Arc<dyn Store>,
    /// The service's database: the SQLite file's path or the PostgreSQL URL.
    pub(crate) database: String,
    /// `http://127.0.0.1:{port}` (a new port after a restart).
    pub(crate) base: String,
    /// The configuration file, without `public_base_url` (which follows the port).
    config: String,
    running: Option<Running>,
    /// With [`Options::replicas`]: the processes, and the balancer in front of them.
    pub(crate) replicas: Vec<Replica>,
    pub(crate) balancer: Option<LoadBalancer>,
}

/// The service and the task serving it.
struct Running {
    _service: LaunchService,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Builds the service for `config` on a fresh loopback port and serves it.
async fn serve(config: &str) -> (Running, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let toml = format!("public_base_url = \"{base}\"\n{config}");
    let config = LaunchConfig::from_toml(&toml).unwrap();
    let service = LaunchService::build(config, url::Url::parse(&base).unwrap())
        .await
        .unwrap();
    let router = app(service.state());
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (
        Running {
            _service: service,
            server,
        },
        base,
    )
}

/// Stores an approved configuration for `fhir_base` in `environment`.
pub(crate) async fn approve(
    store: &dyn Store,
    id: &str,
    fhir_base: &str,
    environment: Environment,
) {
    let tenant = TenantId::new("contoso").unwrap();
    let _ = store
        .insert_tenant(&Tenant {
            id: tenant.clone(),
            name: "Contoso Health".into(),
            microsoft_tenant_id: MicrosoftTenantId::new(entra::TENANT_ID).unwrap(),
            created_at: Utc::now(),
        })
        .await;
    let admin = Actor::admin(
        tenant.clone(),
        Username::new("admin@contoso.example").unwrap(),
    );
    let approver = Actor::approver(tenant, Username::new("analyst@contoso.example").unwrap());
    let url = FhirBaseUrl::parse(fhir_base, UrlPolicy::DEVELOPMENT).unwrap();
    let settings = ConfigurationSettings {
        fhir_base_url: url.clone(),
        environment,
        ehr_vendor: Default::default(),
        approver: Username::new("analyst@contoso.example").unwrap(),
        ehr_client: EhrClientSettings {
            client_id: ClientId::new(EHR_CLIENT_ID).unwrap(),
            patient_client_id: None,
            auth: ClientAuth::PrivateKeyJwt,
            scope_style: ScopeStyle::V1,
            send_epic_client_id_header: true,
        },
    };
    let now = Utc::now();
    let t =
        Configuration::create(&admin, ConfigurationId::new(id).unwrap(), settings, now).unwrap();
    store.save_configuration(&t).await.unwrap();
    let t = t.configuration.submit(&admin, now).unwrap();
    store.save_configuration(&t).await.unwrap();
    let t = t
        .configuration
        .record_ehr_validation(
            &approver,
            &url,
            EhrUserId::new("Practitioner/analyst").unwrap(),
            now,
        )
        .unwrap();
    store.save_configuration(&t).await.unwrap();
    let t = t.configuration.approve(&approver, now).unwrap();
    store.save_configuration(&t).await.unwrap();
}

impl Env {
    pub(crate) async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub(crate) async fn start_with(options: Options) -> Self {
        capture_logs();
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("visitbridge.sqlite");
        let key_path = dir.path().join("backend.pem");
        std::fs::write(&key_path, keys::CLIENT_RSA).unwrap();

        let ehr = MockServer::start().await;
        let smart = SmartFake::mount(
            &ehr,
            ExpectedClientAuth::PrivateKeyJwt {
                client_id: EHR_CLIENT_ID.into(),
                public_key_pem: keys::CLIENT_RSA_PUB.into(),
                algorithm: jsonwebtoken::Algorithm::RS384,
                kid: BACKEND_KID.into(),
            },
        )
        .await;
        let fhir = FhirFake::mount_on(&ehr, visitbridge_testkit::fhir::EPIC_BASE_PATH).await;
        let epic =
            EpicConnectionStatusFake::mount_on(&ehr, INTERCONNECT_PREFIX, EHR_CLIENT_ID).await;
        let ms = MockServer::start().await;
        let entra = FakeEntra::mount(&ms).await;
        let graph = FakeGraph::mount_with_entra(&ms, &entra).await;

        let (database, store): (String, Arc<dyn Store>) = match options.backend {
            Backend::Sqlite => (
                db_path.display().to_string(),
                Arc::new(SqliteStore::open(&db_path).await.unwrap()),
            ),
            Backend::Postgres => {
                let server = visitbridge_testpg::shared().unwrap_or_else(|e| panic!("{e}"));
                let url = server.create_database().await.unwrap();
                let store = PostgresStore::connect(&url, &PostgresOptions::default())
                    .await
                    .unwrap();
                (url, Arc::new(store))
            }
        };
        approve(
            &*store,
            CONFIGURATION_ID,
            &smart.fhir_base(),
            options.environment,
        )
        .await;

        let microsoft = if options.microsoft {
            format!(
                r#"
                [microsoft]
                login_base = "{login}"
                tenant_id = "{tenant}"
                client_id = "{client}"
                client_secret = "{secret}"
                graph_base = "{graph}"
                client_state = "{CLIENT_STATE}"
                "#,
                login = entra.login_base(),
                tenant = entra::TENANT_ID,
                client = entra::CLIENT_ID,
                secret = entra::CLIENT_SECRET,
                graph = graph.graph_base(),
            )
        } else {
            String::new()
        };
        let epic_sink = if options.epic_sink {
            format!(
                r#"
                [[writeback.sinks]]
                kind = "epic-connection-status"
                interconnect_base = "{interconnect}"
                client_id = "{EHR_CLIENT_ID}"
                vendor_name = "VisitBridge"
                external_id_type = "TEST-ID-TYPE"
                connected_status = "TEST-CONNECTED"
                disconnected_status = "TEST-DISCONNECTED"
                "#,
                interconnect = epic.interconnect_base(),
            )
        } else {
            String::new()
        };
        let config = format!(
            r#"
            notification_base_url = "https://visits.example.test"
            database = "{db}"
            dev_mode = true
            deployment_secret = "test-deployment-secret-0123456789abcdef"
            metrics_bearer_token = "{METRICS_TOKEN}"
            patient_link_ttl_minutes = 60
            {extra}
            [backend_key]
            private_key_file = "{key}"
            key_id = "{BACKEND_KID}"
            algorithm = "RS384"
            [writeback]
            max_attempts = {attempts}
            retry_base_millis = 30
            retry_max_seconds = 1
            poll_millis = 50
            [[writeback.sinks]]
            kind = "fhir-audit-event"
            mode = "conditional-create"
            {epic_sink}
            [upkeep]
            poll_millis = 50
            reconcile_delay_seconds = {delay}
            reconcile_retry_seconds = 0
            reconcile_max_attempts = {reconcile_attempts}
            {microsoft}
            "#,
            db = database,
            key = key_path.display(),
            attempts = options.max_attempts,
            delay = options.reconcile_delay_seconds,
            reconcile_attempts = options.reconcile_max_attempts,
            extra = options.extra_config,
        );
        let mut env = Self {
            dir,
            ehr,
            smart,
            fhir,
            epic,
            ms,
            entra,
            graph,
            store,
            database,
            base: String::new(),
            config,
            running: None,
            replicas: Vec::new(),
            balancer: None,
        };
        if options.replicas == 0 {
            let (running, base) = serve(&env.config).await;
            env.running = Some(running);
            env.base = base;
        } else {
            let balancer = LoadBalancer::start().await;
            env.base = balancer.base.clone();
            env.balancer = Some(balancer);
            let started = futures_util::future::join_all(
                (0..options.replicas).map(|n| env.start_replica_process(n)),
            )
            .await;
            for (n, replica) in started.into_iter().enumerate() {
                env.balancer().set_backend(n, replica.addr());
                env.replicas.push(replica);
            }
        }
        env
    }

    /// Starts launch-service process number `n` of the world (public base: the balancer).
    async fn start_replica_process(&self, n: usize) -> Replica {
        let file = self.dir.path().join(format!("launch-{n}.toml"));
        std::fs::write(
            &file,
            format!("public_base_url = \"{}\"\n{}", self.base, self.config),
        )
        .unwrap();
        Replica::start(&file, self.dir.path().join(format!("launch-{n}.log"))).await
    }

    /// Starts replica `n` again after [`Replica::kill`] (on a new port, known to the balancer).
    pub(crate) async fn restart_replica(&mut self, n: usize) {
        let replica = self.start_replica_process(n).await;
        self.balancer().set_backend(n, replica.addr());
        self.replicas[n] = replica;
    }

    /// The load balancer in front of the replicas.
    pub(crate) fn balancer(&self) -> &LoadBalancer {
        self.balancer.as_ref().expect("a world with replicas")
    }

    /// Every replica's logs (for a failing test to show).
    pub(crate) fn replica_logs(&self) -> String {
        self.replicas
            .iter()
            .enumerate()
            .map(|(n, r)| format!("--- replica {n} ---\n{}", r.logs()))
            .collect()
    }

    /// Stops the service (its background tasks end with it), as a crash or a deployment would.
    pub(crate) fn stop(&mut self) {
        self.running = None;
    }

    /// Starts a new service on the same database and configuration, on a new port.
    pub(crate) async fn resume(&mut self) {
        assert!(self.running.is_none(), "stop the service first");
        let (running, base) = serve(&self.config).await;
        self.running = Some(running);
        self.base = base;
    }

    /// A restart: stop, then resume.
    pub(crate) async fn restart(&mut self) {
        self.stop();
        self.resume().await;
    }

    /// Restarts the service with its configuration file changed by `edit` (as a deployment of a
    /// new configuration would).
    pub(crate) async fn restart_with_config(&mut self, edit: impl FnOnce(&str) -> String) {
        self.config = edit(&self.config);
        self.restart().await;
    }

    /// A launch URL of a record, with the EHR's `iss` and a `launch`, the record context, and
    /// `extra` parameters.
    pub(crate) fn launch_url(&self, record: &str, extra: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&format!("{}/launch/{record}", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("iss", &self.smart.fhir_base())
            .append_pair("launch", "opaque-launch-token");
        for (k, v) in extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        url.to_string()
    }

    /// Another of the fixture patient's visits: its Appointment (the fixture's shape, with `id`
    /// and the CSN `csn`) is served from now on, and the EHR's token responses attest it (see
    /// [`Self::attest_appointment`]).
    pub(crate) async fn another_visit(&self, id: &str, csn: &str) {
        let mut appointment: Value = serde_json::from_str(fixtures::EPIC_APPOINTMENT).unwrap();
        appointment["id"] = json!(id);
        appointment["identifier"][0]["value"] = json!(csn);
        Mock::given(method("GET"))
            .and(path(self.fhir.path(&format!("Appointment/{id}"))))
            .respond_with(fhir_json(200, appointment.to_string()))
            .with_priority(1)
            .mount(&self.ehr)
            .await;
        self.attest_appointment(id);
    }

    /// From now on the EHR's token responses attest the Appointment `id` (the fixture's context
    /// otherwise; without its Encounter unless it is the fixture's Appointment).
    pub(crate) fn attest_appointment(&self, id: &str) {
        let mut context: serde_json::Map<String, Value> =
            serde_json::from_str(fixtures::EPIC_TOKEN_RESPONSE).unwrap();
        context.retain(|k, _| {
            !matches!(
                k.as_str(),
                "access_token" | "token_type" | "expires_in" | "scope" | "id_token" | "state"
            )
        });
        context.insert("appointment".into(), json!(id));
        if id != APPOINTMENT_ID {
            context.remove("encounter");
        }
        self.smart.set_launch_context(Value::Object(context));
    }

    /// The record context of the fixture visit (CSN and a test environment).
    pub(crate) fn visit_context() -> Vec<(&'static str, &'static str)> {
        vec![
            ("sessionId", "10000001234"),
            ("departmentId", "10501101"),
            ("conferenceId", ""),
            ("environment", "test"),
        ]
    }

    pub(crate) fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// A visit by id, from the service's database.
    pub(crate) async fn visit(&self, id: &str) -> Visit {
        self.store
            .get_visit(&VisitId::new(id).unwrap())
            .await
            .unwrap()
            .expect("visit stored")
    }

    /// Waits (bounded) until `check` holds.
    pub(crate) async fn eventually(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        for _ in 0..200 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    /// The service's Prometheus text, scraped with the bearer token.
    pub(crate) async fn metrics(&self) -> String {
        let response = reqwest::Client::new()
            .get(format!("{}/metrics", self.base))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// Posts a Graph change notification to the service; its status.
    pub(crate) async fn post_notification(&self, body: &Value) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/graph/notifications", self.base))
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Requests Graph received with `method` whose path contains `part`.
    pub(crate) async fn graph_requests(&self, method: &str, part: &str) -> usize {
        self.ms
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == method && r.url.path().contains(part))
            .count()
    }

    /// The clinician's launch, and the visit once its subscription is stored.
    pub(crate) async fn subscribed_visit(&self) -> (Visit, VisitSubscription) {
        let page = crate::provider::provider_launch(self, &self.browser()).await;
        let visit = self.visit(&page.visit_id()).await;
        self.eventually("the subscription stored", async || {
            self.store
                .subscription_of(&visit.id)
                .await
                .unwrap()
                .is_some()
        })
        .await;
        let stored = self
            .store
            .subscription_of(&visit.id)
            .await
            .unwrap()
            .unwrap();
        (visit, stored)
    }

    /// Brings the visit's stored subscription to five minutes before its end (inside the
    /// renewal margin), as if time had passed.
    pub(crate) async fn subscription_ends_soon(&self, visit: &VisitId, stored: &VisitSubscription) {
        let soon = Utc::now() + chrono::Duration::minutes(5);
        assert!(
            self.store
                .set_subscription(
                    visit,
                    &stored.subscription_id,
                    soon,
                    Some(&stored.subscription_id)
                )
                .await
                .unwrap()
        );
    }

    /// Waits until the visit's subscription was renewed (more than 11 hours left).
    pub(crate) async fn wait_subscription_renewed(&self, visit: &VisitId) {
        self.eventually("the subscription renewed", async || {
            self.store
                .subscription_of(visit)
                .await
                .unwrap()
                .is_some_and(|s| s.expires_at > Utc::now() + chrono::Duration::hours(11))
        })
        .await;
    }

    /// Waits until nothing is pending in the outbox.
    pub(crate) async fn wait_nothing_pending(&self, what: &str) {
        self.eventually(what, async || {
            self.store.outbox_depth().await.unwrap().pending == 0
        })
        .await;
    }

    /// Makes the visit's scheduled reconciliation due now (its delay has passed).
    pub(crate) async fn reconcile_now(&self, visit: &VisitId) {
        self.store
            .schedule_reconciliation(visit, Utc::now())
            .await
            .unwrap();
    }

    /// Waits until the visit has no reconciliation scheduled (done, or given up).
    pub(crate) async fn wait_reconciled(&self, what: &str, visit: &VisitId) {
        self.wait_reconciled_and(what, visit, async || true).await;
    }

    /// Waits until the visit has no reconciliation scheduled and then `also` holds.
    pub(crate) async fn wait_reconciled_and(
        &self,
        what: &str,
        visit: &VisitId,
        also: impl AsyncFn() -> bool,
    ) {
        self.eventually(what, async || {
            self.store.reconciliation_of(visit).await.unwrap().is_none() && also().await
        })
        .await;
    }
}

/// Where a navigation ended.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) status: u16,
    /// The last URL requested.
    pub(crate) url: String,
    pub(crate) body: String,
    /// The Teams URL we were redirected to (not followed).
    pub(crate) teams: Option<String>,
    /// Every URL requested, in order.
    pub(crate) trail: Vec<String>,
}

impl Page {
    /// The visit id of a `/visits/{id}` page.
    pub(crate) fn visit_id(&self) -> String {
        let path = url::Url::parse(&self.url).unwrap().path().to_owned();
        path.strip_prefix("/visits/")
            .unwrap_or_else(|| panic!("not a visit page: {} ({})", self.url, self.body))
            .to_owned()
    }
}

/// A browser: a cookie jar for our host, redirects followed by hand.
#[derive(Clone)]
pub(crate) struct Browser {
    client: reqwest::Client,
    base: String,
    jar: Arc<Mutex<BTreeMap<String, String>>>,
}

fn unescape(s: &str) -> String {
    s.replace("&#x2F;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

/// The action and fields of the auto-posting sign-in form, if `body` is that page.
pub(crate) fn authorize_form(body: &str) -> Option<(String, Vec<(String, String)>)> {
    let form_at = body.find("<form id=\"authorize\"")?;
    let form_tag_end = form_at + body[form_at..].find('>')?;
    let action = attribute(&body[form_at..form_tag_end], "action")?;
    let fields = body[form_tag_end..]
        .split("<input ")
        .skip(1)
        .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
        .collect();
    Some((action, fields))
}

pub(crate) fn is_teams(url: &str) -> bool {
    url.starts_with("https://teams.microsoft.com/")
        || url.starts_with("https://visit.teams.microsoft.com/")
}

impl Browser {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            // A new connection per request, so that a load balancer in front of replicas
            // routes each request on its own (as one without session affinity does).
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            base: base.to_owned(),
            jar: Arc::default(),
        }
    }

    fn ours(&self, url: &str) -> bool {
        url.starts_with(&self.base)
    }

    /// The `Cookie` header this browser sends to our host.
    pub(crate) fn cookie_header(&self) -> String {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let mut jar = self.jar.lock().unwrap();
            // As a browser does: `Max-Age=0` removes the cookie.
            if text.contains("Max-Age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// The cookies whose names start with `prefix`, as (name, value).
    pub(crate) fn cookies_named(&self, prefix: &str) -> Vec<(String, String)> {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sets (or replaces) a cookie of our host.
    pub(crate) fn set_cookie(&self, name: &str, value: &str) {
        self.jar
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }

    /// One GET (cookies for our host only).
    pub(crate) async fn get(&self, url: &str) -> reqwest::Response {
        let mut request = self.client.get(url);
        if self.ours(url) && !self.jar.lock().unwrap().is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        let response = request.send().await.unwrap();
        if self.ours(url) {
            self.keep_cookies(&response);
        }
        response
    }

    /// One form POST (cookies for our host only).
    pub(crate) async fn post_form(
        &self,
        url: &str,
        fields: &[(String, String)],
    ) -> reqwest::Response {
        let mut request = self.client.post(url).form(fields);
        if self.ours(url) && !self.jar.lock().unwrap().is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        let response = request.send().await.unwrap();
        if self.ours(url) {
            self.keep_cookies(&response);
        }
        response
    }

    /// Follows redirects (and submits the EHR sign-in form) until a page, or a Teams URL.
    pub(crate) async fn navigate(&self, start: &str) -> Page {
        let mut url = start.to_owned();
        let mut form: Option<Vec<(String, String)>> = None;
        let mut trail = Vec::new();
        for _ in 0..20 {
            trail.push(url.clone());
            let response = match form.take() {
                Some(fields) => self.post_form(&url, &fields).await,
                None => self.get(&url).await,
            };
            let status = response.status().as_u16();
            if response.status().is_redirection() {
                let location = response.headers()["location"].to_str().unwrap().to_owned();
                let next = url::Url::parse(&url)
                    .unwrap()
                    .join(&location)
                    .unwrap()
                    .to_string();
                if is_teams(&next) {
                    return Page {
                        status,
                        url,
                        body: String::new(),
                        teams: Some(next),
                        trail,
                    };
                }
                url = next;
                continue;
            }
            let body = response.text().await.unwrap();
            if status == 200
                && let Some((action, fields)) = authorize_form(&body)
            {
                url = action;
                form = Some(fields);
                continue;
            }
            return Page {
                status,
                url,
                body,
                teams: None,
                trail,
            };
        }
        panic!("too many redirects from {start}");
    }
}
