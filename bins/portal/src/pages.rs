//! The configuration pages: list, add, show, change, submit, approve, reject, history, records.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use chrono::Utc;
use serde::Deserialize;
use visitbridge_approval::{ActionKind, ApprovalState, Configuration, environment_warning};

use crate::{
    AppState,
    error::PortalError,
    extract::{PagePath, PageQuery},
    forms::SettingsInput,
    service::{self, ChangeError},
    session::{CsrfForm, User},
    views::{
        Actions, DetailPage, DetailView, FormPage, HistoryPage, HistoryRow, ListPage, ListRow,
        RecordsPage, render,
    },
};

/// Who may look at a configuration: the organisation's admins and its named approver.
pub(crate) fn check_visible(user: &User, c: &Configuration) -> Result<(), PortalError> {
    if c.visible_to(&user.actor()) {
        Ok(())
    } else {
        // Names nobody: a refused person must not learn who may see it.
        Err(PortalError::Forbidden(
            "only your organisation's VisitBridge admins and this configuration's named approver can see it"
                .to_owned(),
        ))
    }
}

/// `GET /configurations`.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
) -> Result<Response, PortalError> {
    let all = state.store().list_configurations(&user.data.tenant).await?;
    let rows = all
        .iter()
        .filter(|c| check_visible(&user, c).is_ok())
        .map(|c| ListRow::of(c, c.settings().approver == user.data.username))
        .collect();
    Ok(render(
        StatusCode::OK,
        ListPage {
            layout: user.layout(),
            rows,
        },
    ))
}

fn require_admin(user: &User, what: &str) -> Result<(), PortalError> {
    if user.is_admin {
        Ok(())
    } else {
        Err(PortalError::Forbidden(format!(
            "only your organisation's VisitBridge admins can {what}"
        )))
    }
}

/// `GET /configurations/new`.
pub(crate) async fn new_form(user: User) -> Result<Response, PortalError> {
    require_admin(&user, "add configurations")?;
    Ok(render(
        StatusCode::OK,
        add_form(&user, SettingsInput::default(), Vec::new(), None),
    ))
}

fn add_form(
    user: &User,
    values: SettingsInput,
    errors: Vec<(String, String)>,
    summary: Option<String>,
) -> FormPage {
    FormPage {
        layout: user.layout(),
        heading: "Add a configuration".to_owned(),
        action: "/configurations".to_owned(),
        submit_label: "Check and save".to_owned(),
        cancel_href: "/configurations".to_owned(),
        values,
        errors,
        revision: None,
        summary,
    }
}

fn edit_page(
    user: &User,
    c: &Configuration,
    values: SettingsInput,
    errors: Vec<(String, String)>,
    summary: Option<String>,
) -> FormPage {
    FormPage {
        layout: user.layout(),
        heading: format!("Change {}", c.settings().fhir_base_url),
        action: format!("/configurations/{}/edit", c.id()),
        submit_label: "Check and save".to_owned(),
        cancel_href: format!("/configurations/{}", c.id()),
        values,
        errors,
        revision: Some(c.revision()),
        summary,
    }
}

/// The add/edit form as posted.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConfigurationForm {
    fhir_base_url: String,
    environment: String,
    ehr_vendor: String,
    approver: String,
    client_id: String,
    patient_client_id: String,
    client_auth: String,
    secret_ref: String,
    scope_style: String,
    send_epic_client_id_header: Option<String>,
    revision: Option<u64>,
}

impl ConfigurationForm {
    fn input(&self) -> SettingsInput {
        let optional = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        SettingsInput {
            fhir_base_url: self.fhir_base_url.clone(),
            environment: self.environment.clone(),
            // A form from before the choice existed (or a script) sends none: Epic, as before.
            ehr_vendor: Some(self.ehr_vendor.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| {
                    visitbridge_approval::EhrVendor::default()
                        .as_str()
                        .to_owned()
                }),
            approver: self.approver.clone(),
            client_id: self.client_id.clone(),
            patient_client_id: optional(&self.patient_client_id),
            client_auth: self.client_auth.clone(),
            secret_ref: optional(&self.secret_ref),
            scope_style: self.scope_style.clone(),
            send_epic_client_id_header: self.send_epic_client_id_header.is_some(),
        }
    }
}

/// The form error of a FHIR base URL another organisation holds.
fn held_field(message: String) -> Vec<(String, String)> {
    vec![(crate::forms::field::FHIR_BASE_URL.to_owned(), message)]
}

fn to_detail(id: &str, notice: &str) -> Response {
    Redirect::to(&format!("/configurations/{id}?notice={notice}")).into_response()
}

/// `POST /configurations`.
pub(crate) async fn create(
    State(state): State<AppState>,
    CsrfForm(user, form): CsrfForm<ConfigurationForm>,
) -> Result<Response, PortalError> {
    require_admin(&user, "add configurations")?;
    let input = form.input();
    match service::create(&state, &user.actor(), &input).await {
        Ok(c) => Ok(to_detail(c.id().as_str(), "created")),
        Err(ChangeError::Fields { fields, summary }) => Ok(render(
            StatusCode::UNPROCESSABLE_ENTITY,
            add_form(&user, input, fields, summary),
        )),
        Err(ChangeError::Held(message)) => Ok(render(
            StatusCode::CONFLICT,
            add_form(&user, input, held_field(message), None),
        )),
        Err(ChangeError::Other(e)) => Err(e),
    }
}

/// `GET /configurations/{id}/edit`.
pub(crate) async fn edit_form(
    State(state): State<AppState>,
    user: User,
    PagePath(id): PagePath<String>,
) -> Result<Response, PortalError> {
    let c = service::load(&state, &user.data.tenant, &id).await?;
    require_admin(&user, "change configurations")?;
    let values = SettingsInput::from_settings(c.settings());
    Ok(render(
        StatusCode::OK,
        edit_page(&user, &c, values, Vec::new(), None),
    ))
}

/// `POST /configurations/{id}/edit`.
pub(crate) async fn edit(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    CsrfForm(user, form): CsrfForm<ConfigurationForm>,
) -> Result<Response, PortalError> {
    let c = service::load(&state, &user.data.tenant, &id).await?;
    require_admin(&user, "change configurations")?;
    let input = form.input();
    match service::edit(&state, &user.actor(), &c, &input, form.revision).await {
        Ok(c) => Ok(to_detail(c.id().as_str(), "saved")),
        Err(ChangeError::Fields { fields, summary }) => Ok(render(
            StatusCode::UNPROCESSABLE_ENTITY,
            edit_page(&user, &c, input, fields, summary),
        )),
        Err(ChangeError::Held(message)) => Ok(render(
            StatusCode::CONFLICT,
            edit_page(&user, &c, input, held_field(message), None),
        )),
        Err(ChangeError::Other(e)) => Err(e),
    }
}

/// Fixed texts for `?notice=` after an action (the query never puts text on the page).
fn notice(code: &str, c: &Configuration) -> Option<&'static str> {
    Some(match code {
        "created" => "Saved as a draft. Submit it for approval when it is ready.",
        "saved" if c.state() == ApprovalState::AwaitingApproval => {
            "Changes saved. They take effect once the approver approves them."
        }
        "saved" => "Changes saved.",
        "submitted" => {
            "Submitted for approval. The approver can now sign in to the EHR and approve."
        }
        "ehr_validated" => "EHR sign-in succeeded: the FHIR base URL works. You can now approve.",
        "approved" => "Approved. The integration records are ready to enter in the EHR.",
        "rejected" => "Rejected. Your reason is recorded in the history for the admin.",
        _ => return None,
    })
}

/// The detail page of `c` for `user`. What they may do is asked of the approval state machine
/// ([`Configuration::allowed_actions`]).
pub(crate) fn detail_page(
    state: &AppState,
    user: &User,
    c: &Configuration,
    notice: Option<&'static str>,
    problem: Option<String>,
    reject_error: Option<String>,
) -> DetailPage {
    let actor = user.actor();
    let url = &c.settings().fhir_base_url;
    let policy = state.config().approval.policy();
    // Only for someone who could otherwise go on to the EHR sign-in.
    let approve_refused = (c.settings().approver == user.data.username)
        .then(|| c.check_distinct_approver(&actor, &policy).err())
        .flatten()
        .filter(|_| {
            matches!(
                c.state(),
                ApprovalState::AwaitingApproval | ApprovalState::EhrValidated
            )
        })
        .map(|e| e.to_string());
    let allowed = c.allowed_actions(&actor, &policy);
    let actions = Actions {
        can_edit: allowed.contains(&ActionKind::Edit),
        can_submit: allowed.contains(&ActionKind::Submit),
        is_approver: c.settings().approver == user.data.username,
        can_ehr_sign_in: allowed.contains(&ActionKind::RecordEhrValidation),
        can_approve: allowed.contains(&ActionKind::Approve),
        can_reject: allowed.contains(&ActionKind::Reject),
        approve_refused,
    };
    DetailPage {
        layout: user.layout(),
        c: DetailView::of(c),
        actions,
        notice,
        problem,
        warning: environment_warning(url, c.settings().environment).map(|w| w.to_string()),
        reject_error,
    }
}

/// `?notice=` on the detail page.
#[derive(Debug, Deserialize)]
pub(crate) struct DetailQuery {
    notice: Option<String>,
}

/// `GET /configurations/{id}`.
pub(crate) async fn detail(
    State(state): State<AppState>,
    user: User,
    PagePath(id): PagePath<String>,
    PageQuery(query): PageQuery<DetailQuery>,
) -> Result<Response, PortalError> {
    let c = service::load(&state, &user.data.tenant, &id).await?;
    check_visible(&user, &c)?;
    let notice = query.notice.as_deref().and_then(|n| notice(n, &c));
    Ok(render(
        StatusCode::OK,
        detail_page(&state, &user, &c, notice, None, None),
    ))
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct Plain {}

/// `POST /configurations/{id}/submit`.
pub(crate) async fn submit(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    CsrfForm(user, Plain {}): CsrfForm<Plain>,
) -> Result<Response, PortalError> {
    let c = service::load(&state, &user.data.tenant, &id).await?;
    let c = service::save(&state, c.submit(&user.actor(), Utc::now())).await?;
    Ok(to_detail(c.id().as_str(), "submitted"))
}

/// `POST /configurations/{id}/approve`.
pub(crate) async fn approve(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    CsrfForm(user, Plain {}): CsrfForm<Plain>,
) -> Result<Response, PortalError> {
    let c = service::load(&state, &user.data.tenant, &id).await?;
    let policy = state.config().approval.policy();
    let c = service::save(&state, c.approve_under(&user.actor(), &policy, Utc::now())).await?;
    Ok(to_detail(c.id().as_str(), "approved"))
}

/// The reject form.
#[derive(Debug, Deserialize)]
pub(crate) struct RejectForm {
    #[serde(default)]
    reason: String,
}

/// `POST /configurations/{id}/reject`.
pub(crate) async fn reject(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    CsrfForm(user, form): CsrfForm<RejectForm>,
) -> Result<Response, PortalError> {
    let c = service::load(&state, &user.data.tenant, &id).await?;
    match c.reject(&user.actor(), &form.reason, Utc::now()) {
        Err(e @ visitbridge_approval::TransitionError::InvalidReason) => Ok(render(
            StatusCode::UNPROCESSABLE_ENTITY,
            detail_page(&state, &user, &c, None, None, Some(e.to_string())),
        )),
        transition => {
            let c = service::save(&state, transition).await?;
            Ok(to_detail(c.id().as_str(), "rejected"))
        }
    }
}

/// `GET /configurations/{id}/history`.
pub(crate) async fn history(
    State(state): State<AppState>,
    user: User,
    PagePath(id): PagePath<String>,
) -> Result<Response, PortalError> {
    let c = service::load(&state, &user.data.tenant, &id).await?;
    check_visible(&user, &c)?;
    let entries = state
        .store()
        .configuration_history(&user.data.tenant, c.id())
        .await?;
    Ok(render(
        StatusCode::OK,
        HistoryPage {
            layout: user.layout(),
            id: c.id().to_string(),
            fhir_base_url: c.settings().fhir_base_url.to_string(),
            rows: entries.iter().map(HistoryRow::of).collect(),
        },
    ))
}

/// `GET /configurations/{id}/records`.
pub(crate) async fn records(
    State(state): State<AppState>,
    user: User,
    PagePath(id): PagePath<String>,
) -> Result<Response, PortalError> {
    let c = service::load(&state, &user.data.tenant, &id).await?;
    check_visible(&user, &c)?;
    let (Some(approved), Some(records)) =
        (c.approved(), c.integration_records(state.launch_urls()))
    else {
        return Err(PortalError::Conflict(
            "there are no integration records yet: they are made when the configuration is approved"
                .to_owned(),
        ));
    };
    let pending_version = (approved.version != c.version()).then_some(c.version());
    Ok(render(
        StatusCode::OK,
        RecordsPage {
            layout: user.layout(),
            id: c.id().to_string(),
            fhir_base_url: records.fhir_base_url.to_string(),
            environment: records.environment.to_string(),
            generic: records.ehr_vendor == visitbridge_approval::EhrVendor::Generic,
            approved_version: approved.version,
            pending_version,
            records: RecordsPage::records(&records),
        },
    ))
}
