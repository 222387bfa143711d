//! Running both simulated services on loopback ports, for the demo binary and for tests.

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use chrono::Utc;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use url::Url;

use crate::{
    EhrClients, EhrConfig, MsApps, MsConfig, MsUser, SandboxEhr, SandboxError, SandboxMicrosoft,
    Seed, microsoft::SANDBOX_TENANT_ID,
};

/// What [`Sandbox::start`] runs.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where the EHR listens (port 0 picks a free port).
    pub ehr_listen: SocketAddr,
    /// Where the Microsoft cloud listens (port 0 picks a free port).
    pub ms_listen: SocketAddr,
    /// The EHR's public URL when it differs from the bound address (a proxy, a container);
    /// default `http://{bound address}/`.
    pub ehr_public_base: Option<Url>,
    /// The Microsoft cloud's public URL when it differs from the bound address.
    pub ms_public_base: Option<Url>,
    /// The launch service the schedule's buttons open.
    pub launch_service_base: Url,
    /// The EHR's client registrations.
    pub ehr_clients: EhrClients,
    /// Skip the EHR's "Continue" page on EHR launches.
    pub auto_approve_ehr_launches: bool,
    /// The Microsoft app registrations.
    pub ms_apps: MsApps,
    /// The Microsoft tenant id.
    pub tenant_id: String,
    /// Sign in to Microsoft as this user (object id or UPN) without the picker.
    pub auto_sign_in: Option<String>,
}

impl SandboxConfig {
    /// Both services on free loopback ports, accepting any client (demo mode).
    pub fn new(launch_service_base: Url) -> Self {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self {
            ehr_listen: loopback,
            ms_listen: loopback,
            ehr_public_base: None,
            ms_public_base: None,
            launch_service_base,
            ehr_clients: EhrClients::AcceptAny,
            auto_approve_ehr_launches: false,
            ms_apps: MsApps::AcceptAny,
            tenant_id: SANDBOX_TENANT_ID.to_owned(),
            auto_sign_in: None,
        }
    }
}

/// Starts sandboxes.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Binds both listeners, builds both services (sharing one seed) and serves them until
    /// [`RunningSandbox::shutdown`] or drop.
    pub async fn start(config: SandboxConfig) -> Result<RunningSandbox, SandboxError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| SandboxError::Bind { addr, source })
        };
        let ehr_listener = bind(config.ehr_listen).await?;
        let ms_listener = bind(config.ms_listen).await?;
        let ehr_base = match config.ehr_public_base {
            Some(url) => url,
            None => base_url(&ehr_listener, config.ehr_listen)?,
        };
        let ms_base = match config.ms_public_base {
            Some(url) => url,
            None => base_url(&ms_listener, config.ms_listen)?,
        };

        let seed = Seed::generate(Utc::now());
        let ehr = SandboxEhr::with_seed(
            EhrConfig {
                clients: config.ehr_clients,
                auto_approve_launches: config.auto_approve_ehr_launches,
                ..EhrConfig::new(ehr_base.clone(), config.launch_service_base)
            },
            seed.clone(),
        )?;
        let microsoft = SandboxMicrosoft::new(MsConfig {
            tenant_id: config.tenant_id,
            users: MsUser::from_seed(&seed),
            apps: config.ms_apps,
            auto_sign_in: config.auto_sign_in,
            ..MsConfig::new(ms_base.clone())
        })?;

        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            serve(ehr_listener, ehr.router(), stopped.clone()),
            serve(ms_listener, microsoft.router(), stopped),
        ];
        tracing::info!(ehr = %ehr_base, microsoft = %ms_base, "sandbox started");
        let ehr_root = ehr_base.as_str().trim_end_matches('/');
        let ms_root = ms_base.as_str().trim_end_matches('/');
        let parse = |text: String| {
            Url::parse(&text).map_err(|e| SandboxError::Config(format!("{text}: {e}")))
        };
        Ok(RunningSandbox {
            fhir_base_url: parse(ehr.fhir_base_url())?,
            schedule_url: parse(format!("{ehr_root}/"))?,
            audit_url: parse(format!("{ehr_root}/audit"))?,
            graph_base_url: parse(format!("{ms_root}/graph/"))?,
            rooms_url: parse(format!("{ms_root}/rooms"))?,
            tenant_id: microsoft.tenant_id().to_owned(),
            ehr_base_url: ehr_base,
            ms_base_url: ms_base,
            ehr,
            microsoft,
            stop,
            tasks,
        })
    }
}

fn base_url(listener: &TcpListener, asked: SocketAddr) -> Result<Url, SandboxError> {
    let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
        addr: asked,
        source,
    })?;
    Url::parse(&format!("http://{addr}/")).map_err(|e| SandboxError::Config(e.to_string()))
}

fn serve(
    listener: TcpListener,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            // Ends on `true` or when the sender is dropped with the RunningSandbox.
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "sandbox server stopped with an error");
        }
    })
}

/// Both services, running. Dropping it stops them.
#[derive(Debug)]
pub struct RunningSandbox {
    /// The EHR's origin (`http://127.0.0.1:{port}/`).
    pub ehr_base_url: Url,
    /// `{ehr}/api/FHIR/R4`: the FHIR base URL and SMART `iss`.
    pub fhir_base_url: Url,
    /// `{ehr}/`: today's schedule with the *Begin virtual visit* buttons.
    pub schedule_url: Url,
    /// `{ehr}/audit`: AuditEvents and connection statuses received.
    pub audit_url: Url,
    /// The Microsoft origin: Entra's login host (`{ms}/{tenant}/oauth2/v2.0/...`).
    pub ms_base_url: Url,
    /// `{ms}/graph/`: the Graph root.
    pub graph_base_url: Url,
    /// `{ms}/rooms`: the meeting rooms.
    pub rooms_url: Url,
    /// The Microsoft tenant id.
    pub tenant_id: String,
    /// The EHR (for its state and programmatic launches).
    pub ehr: SandboxEhr,
    /// The Microsoft cloud (for its state and programmatic room actions).
    pub microsoft: SandboxMicrosoft,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSandbox {
    /// Stops both servers, letting requests in flight finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}
