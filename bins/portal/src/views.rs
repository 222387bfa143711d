//! The HTML pages: askama templates (in `templates/`, auto-escaped) and the view models they show.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use visitbridge_approval::{
    ApprovalState, Configuration, HistoryAction, HistoryEntry, IntegrationRecord,
    IntegrationRecords, RecordKind,
};

use crate::forms::{FieldErrors, SettingsInput};

/// Renders a page with a status.
pub(crate) fn render(status: StatusCode, page: impl IntoResponse) -> Response {
    (status, page).into_response()
}

/// What every page's frame shows: who is signed in, and the token for its forms.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// The signed-in Microsoft username.
    pub(crate) username: Option<String>,
    /// The session's CSRF token (hidden field of every POST form).
    pub(crate) csrf: String,
    /// Whether the user is an admin of their organisation.
    pub(crate) is_admin: bool,
}

pub(crate) fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn state_label(state: ApprovalState) -> String {
    match state {
        ApprovalState::Draft => "Draft",
        ApprovalState::AwaitingApproval => "Awaiting approval",
        ApprovalState::EhrValidated => "EHR sign-in done, awaiting approval",
        ApprovalState::Approved => "Approved",
        ApprovalState::Rejected => "Rejected",
    }
    .to_owned()
}

/// An error page.
#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) layout: Layout,
    pub(crate) title: String,
    pub(crate) message: String,
    pub(crate) sign_in: bool,
}

/// The start page: sign in with Microsoft.
#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
pub(crate) struct HomePage {
    pub(crate) layout: Layout,
    /// Why the last sign-in failed, if it did.
    pub(crate) problem: Option<String>,
}

/// One line of the configuration list.
pub(crate) struct ListRow {
    pub(crate) id: String,
    pub(crate) fhir_base_url: String,
    pub(crate) environment: String,
    pub(crate) approver: String,
    pub(crate) state: String,
    pub(crate) state_class: &'static str,
    pub(crate) approved_version: Option<u32>,
    pub(crate) you_approve: bool,
}

impl ListRow {
    pub(crate) fn of(c: &Configuration, you_approve: bool) -> Self {
        let s = c.settings();
        Self {
            id: c.id().to_string(),
            fhir_base_url: s.fhir_base_url.to_string(),
            environment: s.environment.to_string(),
            approver: s.approver.to_string(),
            state: state_label(c.state()),
            state_class: c.state().as_str(),
            approved_version: c.approved().map(|a| a.version),
            you_approve,
        }
    }
}

/// The list of an organisation's configurations.
#[derive(Template, WebTemplate)]
#[template(path = "list.html")]
pub(crate) struct ListPage {
    pub(crate) layout: Layout,
    pub(crate) rows: Vec<ListRow>,
}

/// The add/edit form.
#[derive(Template, WebTemplate)]
#[template(path = "form.html")]
pub(crate) struct FormPage {
    pub(crate) layout: Layout,
    pub(crate) heading: String,
    pub(crate) action: String,
    pub(crate) submit_label: String,
    pub(crate) cancel_href: String,
    pub(crate) values: SettingsInput,
    pub(crate) errors: FieldErrors,
    /// The revision the form was opened at (edits only).
    pub(crate) revision: Option<u64>,
    /// A problem with the whole form (e.g. nothing changed, a concurrent change).
    pub(crate) summary: Option<String>,
}

impl FormPage {
    fn error(&self, field: &str) -> &str {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map_or("", |(_, m)| m.as_str())
    }

    fn patient_client_id(&self) -> &str {
        self.values.patient_client_id.as_deref().unwrap_or("")
    }

    fn secret_ref(&self) -> &str {
        self.values.secret_ref.as_deref().unwrap_or("")
    }
}

/// A configuration as the detail page shows it.
pub(crate) struct DetailView {
    pub(crate) id: String,
    pub(crate) fhir_base_url: String,
    pub(crate) environment: String,
    pub(crate) ehr_vendor: String,
    pub(crate) approver: String,
    pub(crate) client_id: String,
    pub(crate) patient_client_id: Option<String>,
    pub(crate) client_auth: &'static str,
    pub(crate) secret_ref: Option<String>,
    pub(crate) scope_style: String,
    pub(crate) epic_header: bool,
    pub(crate) state: String,
    pub(crate) state_class: &'static str,
    pub(crate) version: u32,
    /// (who, when, as which EHR user)
    pub(crate) validation: Option<(String, String, String)>,
    /// (version, when, by whom)
    pub(crate) approved: Option<(u32, String, String)>,
    /// (reason, by whom, when)
    pub(crate) rejection: Option<(String, String, String)>,
    pub(crate) updated_at: String,
}

impl DetailView {
    pub(crate) fn of(c: &Configuration) -> Self {
        let s = c.settings();
        let input = SettingsInput::from_settings(s);
        Self {
            id: c.id().to_string(),
            fhir_base_url: s.fhir_base_url.to_string(),
            environment: s.environment.to_string(),
            ehr_vendor: s.ehr_vendor.to_string(),
            approver: s.approver.to_string(),
            client_id: input.client_id,
            patient_client_id: input.patient_client_id,
            client_auth: s.ehr_client.auth.method_name(),
            secret_ref: input.secret_ref,
            scope_style: input.scope_style,
            epic_header: s.ehr_client.send_epic_client_id_header,
            state: state_label(c.state()),
            state_class: c.state().as_str(),
            version: c.version(),
            validation: c.ehr_validation().map(|v| {
                (
                    v.validated_by.to_string(),
                    when(v.validated_at),
                    v.ehr_user_id.to_string(),
                )
            }),
            approved: c
                .approved()
                .map(|a| (a.version, when(a.approved_at), a.approved_by.to_string())),
            rejection: c.rejection().map(|r| {
                (
                    r.reason.clone(),
                    r.rejected_by.to_string(),
                    when(r.rejected_at),
                )
            }),
            updated_at: when(c.updated_at()),
        }
    }
}

/// What the signed-in person may do with the configuration shown.
#[derive(Debug, Clone, Default)]
pub(crate) struct Actions {
    pub(crate) can_edit: bool,
    pub(crate) can_submit: bool,
    pub(crate) is_approver: bool,
    pub(crate) can_ehr_sign_in: bool,
    pub(crate) can_approve: bool,
    pub(crate) can_reject: bool,
    /// Why this person cannot approve whatever they do (they made the last change and the
    /// operator wants someone else to approve), to show instead of the EHR sign-in.
    pub(crate) approve_refused: Option<String>,
}

/// One configuration, with its actions.
#[derive(Template, WebTemplate)]
#[template(path = "detail.html")]
pub(crate) struct DetailPage {
    pub(crate) layout: Layout,
    pub(crate) c: DetailView,
    pub(crate) actions: Actions,
    /// The outcome of the last action (fixed texts).
    pub(crate) notice: Option<&'static str>,
    /// A problem to show prominently (failed EHR sign-in, refused action).
    pub(crate) problem: Option<String>,
    /// The test/production mix-up warning, if any.
    pub(crate) warning: Option<String>,
    /// A problem with the rejection reason.
    pub(crate) reject_error: Option<String>,
}

/// One history line.
pub(crate) struct HistoryRow {
    pub(crate) revision: u64,
    pub(crate) version: u32,
    pub(crate) at: String,
    pub(crate) actor: String,
    pub(crate) role: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) what: String,
    pub(crate) detail: String,
}

impl HistoryRow {
    pub(crate) fn of(e: &HistoryEntry) -> Self {
        let (what, detail) = match &e.action {
            HistoryAction::Created { settings } => (
                "Created",
                format!(
                    "{} ({}), approver {}",
                    settings.fhir_base_url, settings.environment, settings.approver
                ),
            ),
            HistoryAction::Edited { settings } => (
                "Changed",
                format!(
                    "{} ({}), approver {}, client id {}",
                    settings.fhir_base_url,
                    settings.environment,
                    settings.approver,
                    settings.ehr_client.client_id
                ),
            ),
            HistoryAction::Submitted => ("Submitted for approval", String::new()),
            HistoryAction::EhrValidated { validation } => (
                "Signed in to the EHR",
                format!(
                    "as {} against {}",
                    validation.ehr_user_id, validation.fhir_base_url
                ),
            ),
            HistoryAction::Approved => ("Approved", String::new()),
            HistoryAction::Rejected { reason } => ("Rejected", reason.clone()),
            HistoryAction::WritebackRedriven { event_id, sink } => (
                "Write-back sent again",
                format!("event {event_id} to {sink}"),
            ),
        };
        Self {
            revision: e.revision,
            version: e.version,
            at: when(e.at),
            actor: e.actor.username.to_string(),
            role: e.actor.role.to_string(),
            from: e.from.map(state_label).unwrap_or_else(|| "–".to_owned()),
            to: state_label(e.to),
            what: what.to_owned(),
            detail,
        }
    }
}

/// A configuration's history.
#[derive(Template, WebTemplate)]
#[template(path = "history.html")]
pub(crate) struct HistoryPage {
    pub(crate) layout: Layout,
    pub(crate) id: String,
    pub(crate) fhir_base_url: String,
    pub(crate) rows: Vec<HistoryRow>,
}

/// One integration record, ready to copy.
pub(crate) struct RecordView {
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) launch_url: String,
    pub(crate) launch_url_with_context: String,
    pub(crate) context_parameters: String,
    pub(crate) redirect_uri: String,
    pub(crate) client_id: String,
    pub(crate) scopes: String,
}

impl RecordView {
    fn of(r: &IntegrationRecord) -> Self {
        let (key, title) = match r.kind {
            RecordKind::ProviderLaunch => ("provider", "Provider launch"),
            RecordKind::PatientLaunch => ("patient", "Patient launch"),
            RecordKind::DeviceTest => ("device-test", "Device test"),
        };
        Self {
            key,
            title,
            launch_url: r.launch_url.to_string(),
            launch_url_with_context: format!("{}?{}", r.launch_url, r.context_parameters),
            context_parameters: r.context_parameters.clone(),
            redirect_uri: r.redirect_uri.to_string(),
            client_id: r.client_id.to_string(),
            scopes: r.scope_string(),
        }
    }
}

/// The integration records of the approved version.
#[derive(Template, WebTemplate)]
#[template(path = "records.html")]
pub(crate) struct RecordsPage {
    pub(crate) layout: Layout,
    pub(crate) id: String,
    pub(crate) fhir_base_url: String,
    pub(crate) environment: String,
    /// Records for a generic SMART EHR rather than Epic.
    pub(crate) generic: bool,
    pub(crate) approved_version: u32,
    /// A later version waits for approval; the records stay those of the approved one.
    pub(crate) pending_version: Option<u32>,
    pub(crate) records: Vec<RecordView>,
}

impl RecordsPage {
    pub(crate) fn records(records: &IntegrationRecords) -> Vec<RecordView> {
        records.all().into_iter().map(RecordView::of).collect()
    }
}
