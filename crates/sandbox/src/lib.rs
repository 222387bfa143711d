//! A simulated EHR and a simulated Microsoft 365, so VisitBridge runs end to end on one machine:
//! the newcomer's one-command demo and the browser tests use it instead of Epic and Microsoft.
//!
//! # What it plays
//!
//! - [`SandboxEhr`]: a SMART on FHIR EHR shaped like Epic. SMART configuration and
//!   CapabilityStatement, an authorize page ("Signed in as … — Continue" for EHR launches, a user
//!   picker for standalone ones), a token endpoint with PKCE S256, single-use codes, client
//!   authentication and Epic's launch context (`patient`, `encounter`, `appointment`, `location`,
//!   `loginDepartment`, `fhirContext`, `__epic.dstu2.patient`, …), RS256 id_tokens and their
//!   JWKS, FHIR R4 reads and searches of the seeded Patients, Practitioners, PractitionerRoles,
//!   Location, Appointments and Encounters with Epic's OperationOutcomes, AuditEvent
//!   (conditional create on `_tag`, `PUT`) and Communication writes, Epic's Telehealth
//!   connection-status service, and two pages: today's **schedule** with *Begin virtual visit*
//!   buttons for the clinician (Hyperspace) and the patient (MyChart), and what write-back
//!   delivered (`/audit`).
//! - [`SandboxMicrosoft`]: Entra ID (OpenID Connect sign-in with a one-click user picker,
//!   client-credentials tokens, Entra's `AADSTS` errors) and Graph (`createOrGet` idempotent by
//!   organiser + `externalId`, PATCH, `getVirtualAppointmentJoinWebUrl`, attendance reports,
//!   subscriptions with the real validation handshake and `clientState`), and a **meeting room
//!   page** per meeting where simulated participants join (the lobby setting decides who
//!   waits), are admitted and leave. Each action sends real change notifications to the
//!   meeting's subscriptions, in order, from a background worker that retries a few times.
//!
//! # Design choices
//!
//! - **A normal library, not test code.** axum routers over in-memory state (`std::sync::Mutex`,
//!   never held across an await), askama pages, `jsonwebtoken` for RS256. Use it in-process
//!   ([`SandboxEhr::router`], [`SandboxMicrosoft::router`]) or as servers ([`Sandbox::start`]).
//! - **Real protocol rules.** Whatever a real server enforces and a client could get wrong is
//!   enforced here too: exact redirect URIs, `aud`, PKCE, single-use codes (a replay revokes the
//!   tokens the code bought), `private_key_jwt` assertions (signature against the client's JWKS,
//!   `aud`, five-minute life, unique `jti`), bearer tokens on every FHIR and Graph call, scopes,
//!   subscription validation. `EhrClients::AcceptAny` / `MsApps::AcceptAny` relax only *which*
//!   client may call (for the demo), never the protocol.
//! - **Synthetic people only.** The seed ([`Seed`]) has clearly fake names ("Test, Alex"); they
//!   exist only inside the simulated EHR and directory, which is exactly the data VisitBridge
//!   must never store. The visits are generated for today (UTC).
//! - **Keys.** Each identity provider generates a fresh RSA key at start (or uses a configured
//!   PEM): nothing to ship, and the sandbox protects nothing.
//! - **No tokens in logs.** Logs name clients, meetings and subscriptions, never a token, code or
//!   secret.
//!
//! # URL layout
//!
//! EHR (origin `{ehr}`): `/` schedule, `/audit`, `/api/FHIR/R4` (the SMART `iss`; with
//! `/.well-known/smart-configuration`, `/metadata`, `/{type}`, `/{type}/{id}`),
//! `/oauth2/authorize`, `/oauth2/token`, `/oauth2/jwks` (issuer `{ehr}/oauth2`),
//! `/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus`. Schedule buttons open
//! `{launch service}/launch/provider` or `/launch/patient` with `iss`, `launch`, `sessionId` (the
//! CSN), `departmentId` and `environment=test`.
//!
//! Microsoft (origin `{ms}`, which is the Entra login base): `/{tenant}/v2.0/.well-known/openid-configuration`,
//! `/{tenant}/oauth2/v2.0/authorize`, `/{tenant}/oauth2/v2.0/token`,
//! `/{tenant}/discovery/v2.0/keys`; Graph at `{ms}/graph/` (`/graph/v1.0/users/{id}/onlineMeetings/…`,
//! `/graph/beta/subscriptions`); meeting rooms at `/rooms` and `/rooms/{meeting id}` (a meeting's
//! `joinWebUrl`; the patient's virtual appointment URL adds `?role=patient`).
//!
//! # Example
//!
//! ```no_run
//! use url::Url;
//! use visitbridge_sandbox::{LaunchRole, Sandbox, SandboxConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let sandbox = Sandbox::start(SandboxConfig::new(Url::parse("http://127.0.0.1:8080")?)).await?;
//! println!("EHR schedule: {}", sandbox.schedule_url);
//! println!("SMART iss:    {}", sandbox.fhir_base_url);
//! println!("Entra login:  {} (tenant {})", sandbox.ms_base_url, sandbox.tenant_id);
//! println!("Graph:        {}", sandbox.graph_base_url);
//! // What the clinician's button opens, without a browser:
//! let visit = &sandbox.ehr.seed().visits[0];
//! let launch = sandbox.ehr.create_launch(&visit.appointment_id, LaunchRole::Clinician)?;
//! println!("launch:       {launch}");
//! sandbox.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod ehr;
mod error;
mod html;
mod keys;
mod microsoft;
mod run;
mod seed;
pub mod shapes;
mod util;

pub use ehr::{
    CONNECTION_STATUS_PATH, ClientCredential, ClientRegistration, ConnectionStatusCall, EhrClients,
    EhrConfig, FHIR_PATH, LaunchRole, SandboxEhr,
};
pub use error::SandboxError;
pub use microsoft::{
    AppCredential, AppRegistration, DeliveryRecord, MsApps, MsConfig, MsUser, RoomRole,
    SANDBOX_TENANT_ID, SandboxMicrosoft,
};
pub use run::{RunningSandbox, Sandbox, SandboxConfig};
pub use seed::{
    SANDBOX_DOMAIN, Seed, SeedClinician, SeedDepartment, SeedPatient, SeedStaff, SeedVisit,
};
