//! The whole VisitBridge system on one machine, for a first look and for end-to-end tests.
//!
//! [`start`] runs, on loopback ports, the sandbox EHR and the sandbox Microsoft 365 (from
//! `visitbridge-sandbox`), the launch service and the configuration portal, sharing one embedded
//! SQLite database. It seeds that database with the sandbox organisation and an **approved**
//! configuration for the sandbox EHR (test environment), so the EHR schedule's *Begin virtual
//! visit* buttons work at once; the portal shows that configuration, and its approval flow can be
//! walked through again with a new one.
//!
//! This is wiring only: the services are configured through the same TOML their binaries read, so
//! the demo also documents a working configuration of each.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use chrono::Utc;
use url::Url;
use visitbridge_approval::{
    Actor, ClientAuth, ClientId, Configuration, ConfigurationId, ConfigurationSettings,
    EhrClientSettings, EhrUserId, Environment, FhirBaseUrl, Role, ScopeStyle, SecretRef, TenantId,
    UrlPolicy, Username,
};
use visitbridge_launch::{LaunchConfig, LaunchService};
use visitbridge_portal::{AppState as PortalState, PortalConfig};
use visitbridge_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use visitbridge_store::{DatabaseLocation, MicrosoftTenantId, PostgresOptions, Store, Tenant};

/// The EHR client id the demo configuration is registered with (the sandbox accepts any).
pub const DEMO_EHR_CLIENT_ID: &str = "visitbridge-demo";
/// The name of the demo configuration's EHR client secret (`secret_ref`).
const DEMO_SECRET_REF: &str = "SANDBOX_EHR_CLIENT_SECRET";

/// Where the demo listens and keeps its data.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The sandbox EHR's address (port 0 picks a free port).
    pub ehr: SocketAddr,
    /// The sandbox Microsoft 365's address.
    pub microsoft: SocketAddr,
    /// The configuration portal's address.
    pub portal: SocketAddr,
    /// The launch service's address.
    pub launch: SocketAddr,
    /// Where the SQLite database goes; `None`: a temporary folder removed at exit.
    pub data_dir: Option<PathBuf>,
    /// The database, over `data_dir`'s SQLite file: e.g. a `postgres://` URL to try the demo on
    /// PostgreSQL.
    pub database: Option<DatabaseLocation>,
}

/// The running demo: its addresses and who to sign in as.
pub struct RunningDemo {
    /// The sandbox EHR's schedule of today's video visits.
    pub schedule_url: Url,
    /// What the EHR received through write-back.
    pub ehr_audit_url: Url,
    /// The sandbox EHR's FHIR base (the SMART `iss`).
    pub fhir_base_url: Url,
    /// The sandbox Microsoft 365's meeting rooms.
    pub rooms_url: Url,
    /// The configuration portal.
    pub portal_url: Url,
    /// The launch service.
    pub launch_url: Url,
    /// The launch service's Prometheus metrics, on their own loopback listener (the main
    /// listener does not serve them).
    pub metrics_url: Url,
    /// The portal admin's Microsoft username.
    pub admin: String,
    /// The approver's Microsoft username.
    pub approver: String,
    /// The database (a SQLite file unless `DemoOptions::database` named another).
    pub database: DatabaseLocation,
    /// The simulated EHR and Microsoft 365 (for tests that look inside).
    pub sandbox: RunningSandbox,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _launch: LaunchService,
    _data: Option<tempfile::TempDir>,
}

impl RunningDemo {
    /// The lines the binary prints: what to open and who to be.
    pub fn banner(&self) -> String {
        format!(
            "VisitBridge demo is running (sandbox EHR and Microsoft 365, all on this machine):\n\
             \n  EHR schedule:   {schedule}\n  Portal:         {portal}\n  Meeting rooms:  {rooms}\n  \
             EHR audit log:  {audit}\n  Launch service: {launch}\n  Metrics:        {metrics}\n  \
             Auditor (FHIR): {auditor} (signed in to the portal as the admin)\n\
             \nWalk-through: open the EHR schedule and click \"Begin virtual visit\" as the clinician\n\
             (first time: pick the clinician at the Microsoft sign-in), then as the patient; admit the\n\
             patient in the meeting room and watch the clinician's live panel.\n\
             Portal: sign in as {admin} (admin) or {approver} (approver).\n\
             Database: {db}\nPress Ctrl+C to stop.",
            schedule = self.schedule_url,
            portal = self.portal_url,
            rooms = self.rooms_url,
            audit = self.ehr_audit_url,
            launch = self.launch_url,
            metrics = self.metrics_url,
            auditor = format_args!(
                "{}/fhir/AuditEvent",
                self.portal_url.as_str().trim_end_matches('/')
            ),
            admin = self.admin,
            approver = self.approver,
            db = self.database,
        )
    }
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the sandbox, the launch service and the portal, seeded and wired together.
pub async fn start(options: DemoOptions) -> anyhow::Result<RunningDemo> {
    let launch_listener = tokio::net::TcpListener::bind(options.launch)
        .await
        .with_context(|| format!("cannot listen on {}", options.launch))?;
    let portal_listener = tokio::net::TcpListener::bind(options.portal)
        .await
        .with_context(|| format!("cannot listen on {}", options.portal))?;
    // Metrics on a listener of their own, on the launch service's (loopback) address.
    let metrics_listener = tokio::net::TcpListener::bind(SocketAddr::new(options.launch.ip(), 0))
        .await
        .context("cannot listen for the launch service's metrics")?;
    let metrics_url = Url::parse(&format!(
        "http://{}/metrics",
        metrics_listener.local_addr()?
    ))?;
    let launch_url = Url::parse(&format!("http://{}/", launch_listener.local_addr()?))?;
    let portal_url = Url::parse(&format!("http://{}/", portal_listener.local_addr()?))?;

    let sandbox = Sandbox::start(SandboxConfig {
        ehr_listen: options.ehr,
        ms_listen: options.microsoft,
        ..SandboxConfig::new(launch_url.clone())
    })
    .await
    .context("starting the sandbox")?;
    let seed = sandbox.ehr.seed().clone();
    let staff = |name: &str| {
        seed.staff
            .iter()
            .find(|s| s.display_name.contains(name))
            .map(|s| s.upn.clone())
            .with_context(|| format!("the sandbox has no {name}"))
    };
    let admin = staff("Admin")?;
    let approver = staff("Analyst")?;

    let (data, data_dir) = match options.data_dir {
        Some(dir) => (None, dir),
        None => {
            let tmp = tempfile::tempdir().context("creating a temporary data folder")?;
            let path = tmp.path().to_owned();
            (Some(tmp), path)
        }
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    // The embedded default, written into both configurations; `--database` overrides it there
    // the way a flag overrides a file.
    let embedded = data_dir.join("visitbridge.sqlite");
    let database = options
        .database
        .clone()
        .unwrap_or_else(|| DatabaseLocation::Sqlite(embedded.clone()));
    let store = database
        .open(&PostgresOptions::default())
        .await
        .with_context(|| format!("opening {database}"))?;
    seed_approved_configuration(&*store, &sandbox, &admin, &approver).await?;

    let toml_str = |s: &str| format!("{s:?}");
    let launch_config = LaunchConfig::from_toml(&format!(
        r#"
listen = {listen}
public_base_url = {launch}
dev_mode = true

[ehr_client_secrets]
{secret_ref} = "sandbox-secret-not-a-real-one"

[microsoft]
login_base = {ms}
tenant_id = {tenant}
client_id = "visitbridge-demo"
client_secret = "sandbox-secret-not-a-real-one"
graph_base = {graph}

[[writeback.sinks]]
kind = "fhir-audit-event"
mode = "conditional-create"

[[writeback.sinks]]
kind = "epic-connection-status"
interconnect_base = {ehr}
client_id = {client}
vendor_name = "VisitBridge"
external_id_type = "sandbox-external-id"
connected_status = "sandbox-connected"
disconnected_status = "sandbox-disconnected"
lobby_status = "sandbox-in-lobby"
"#,
        listen = toml_str(&launch_listener.local_addr()?.to_string()),
        launch = toml_str(launch_url.as_str()),
        secret_ref = DEMO_SECRET_REF,
        ms = toml_str(sandbox.ms_base_url.as_str()),
        tenant = toml_str(&sandbox.tenant_id),
        graph = toml_str(sandbox.graph_base_url.as_str()),
        ehr = toml_str(sandbox.ehr_base_url.as_str()),
        client = toml_str(DEMO_EHR_CLIENT_ID),
    ))
    .context("the demo's launch configuration")?;
    // One reference secret for both services, as a deployment shares it: the portal's auditor
    // endpoint finds visits by the keyed hashes the launch service makes with it.
    let reference_secret = visitbridge_http::Secret::new(
        visitbridge_http::random_token(32).context("generating the reference secret")?,
    );
    let launch_config = LaunchConfig {
        database: database.clone(),
        reference_secret: reference_secret.clone(),
        ..launch_config
    };
    let launch = LaunchService::build(launch_config, launch_url.clone())
        .await
        .context("starting the launch service")?;

    let portal_config = PortalConfig::from_toml(&format!(
        r#"
listen = {listen}
public_base_url = {portal}
cookie_secure = false
database = {db}
launch_base_url = {launch}
dev_mode = true

[entra]
authority = {authority}
client_id = "visitbridge-demo-portal"
client_secret = "sandbox-secret-not-a-real-one"

# The approver's EHR sign-in is a public client (PKCE, no secret): it runs against a URL before
# its approval, so it never carries a credential that URL's server could keep.
[ehr_sign_in]
client_id = "visitbridge-demo-portal"
client_auth = "public"

[[admins]]
microsoft_tenant_id = {tenant}
usernames = [{admin}]
"#,
        listen = toml_str(&portal_listener.local_addr()?.to_string()),
        portal = toml_str(portal_url.as_str()),
        db = toml_str(&embedded.display().to_string()),
        launch = toml_str(launch_url.as_str()),
        authority = toml_str(&format!(
            "{}{}",
            sandbox.ms_base_url.as_str(),
            sandbox.tenant_id
        )),
        tenant = toml_str(&sandbox.tenant_id),
        admin = toml_str(&admin),
    ))
    .context("the demo's portal configuration")?;
    let portal_config = PortalConfig {
        database: database.clone(),
        reference_secret,
        ..portal_config
    };
    let portal = PortalState::new(portal_config, store).context("starting the portal")?;
    let housekeeping = portal.spawn_housekeeping(std::time::Duration::from_secs(300));

    let launch_app = visitbridge_launch::app(launch.state());
    let metrics_app = visitbridge_launch::metrics_app(launch.state());
    let portal_app = visitbridge_portal::app(portal);
    let tasks = vec![
        housekeeping,
        tokio::spawn(async move {
            let limits = visitbridge_web::ServerLimits::default();
            let serving =
                visitbridge_web::serve(launch_listener, launch_app, limits, std::future::pending());
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "the launch service stopped");
            }
        }),
        tokio::spawn(async move {
            let limits = visitbridge_web::ServerLimits::default();
            let serving = visitbridge_web::serve(
                metrics_listener,
                metrics_app,
                limits,
                std::future::pending(),
            );
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "the launch service's metrics stopped");
            }
        }),
        tokio::spawn(async move {
            let limits = visitbridge_web::ServerLimits::default();
            let serving =
                visitbridge_web::serve(portal_listener, portal_app, limits, std::future::pending());
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "the portal stopped");
            }
        }),
    ];

    Ok(RunningDemo {
        schedule_url: sandbox.schedule_url.clone(),
        ehr_audit_url: sandbox.audit_url.clone(),
        fhir_base_url: sandbox.fhir_base_url.clone(),
        rooms_url: sandbox.rooms_url.clone(),
        portal_url,
        launch_url,
        metrics_url,
        admin,
        approver,
        database,
        sandbox,
        tasks,
        _launch: launch,
        _data: data,
    })
}

/// The sandbox organisation and an approved test configuration for the sandbox EHR, made through
/// the approval state machine exactly as the portal would (admin adds and submits; the approver
/// signs in to the EHR and approves). Skipped when the database already has it.
async fn seed_approved_configuration(
    store: &dyn Store,
    sandbox: &RunningSandbox,
    admin: &str,
    approver: &str,
) -> anyhow::Result<()> {
    let url = FhirBaseUrl::parse(sandbox.fhir_base_url.as_str(), UrlPolicy::DEVELOPMENT)
        .map_err(|p| anyhow::anyhow!("the sandbox FHIR URL: {p}"))?;
    if store
        .find_approved(&url, Environment::Test)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let microsoft_tenant = MicrosoftTenantId::new(sandbox.tenant_id.clone())?;
    let tenant = match store.tenant_by_microsoft_id(&microsoft_tenant).await? {
        Some(tenant) => tenant.id,
        None => {
            let id = TenantId::new(sandbox.tenant_id.clone())?;
            store
                .insert_tenant(&Tenant {
                    id: id.clone(),
                    name: "VisitBridge Sandbox Health".to_owned(),
                    microsoft_tenant_id: microsoft_tenant,
                    created_at: Utc::now(),
                })
                .await?;
            id
        }
    };
    let admin = Actor::new(tenant.clone(), Username::new(admin)?, &[Role::Admin]);
    let approver_name = Username::new(approver)?;
    let approver = Actor::approver(tenant, approver_name.clone());
    let settings = ConfigurationSettings {
        fhir_base_url: url.clone(),
        environment: Environment::Test,
        ehr_vendor: visitbridge_approval::EhrVendor::Epic,
        approver: approver_name,
        ehr_client: EhrClientSettings {
            client_id: ClientId::new(DEMO_EHR_CLIENT_ID)?,
            patient_client_id: None,
            auth: ClientAuth::ClientSecretBasic {
                secret_ref: SecretRef::new(DEMO_SECRET_REF)?,
            },
            scope_style: ScopeStyle::V1,
            send_epic_client_id_header: true,
        },
    };
    let now = Utc::now();
    let id = ConfigurationId::new("sandbox-ehr-test")?;
    let created = Configuration::create(&admin, id, settings, now)?;
    store.save_configuration(&created).await?;
    let submitted = created.configuration.submit(&admin, now)?;
    store.save_configuration(&submitted).await?;
    let ehr_user = EhrUserId::new("sandbox-analyst")?;
    let validated = submitted
        .configuration
        .record_ehr_validation(&approver, &url, ehr_user, now)?;
    store.save_configuration(&validated).await?;
    let approved = validated.configuration.approve(&approver, now)?;
    store.save_configuration(&approved).await?;
    Ok(())
}
