//! State machine behaviour, table-driven through one `check` helper.

use visitbridge_approval::*;

use crate::fixtures::*;

/// Runs `steps` on a freshly created configuration (a draft for [`URL`], approver [`APPROVER`])
/// and compares one line per step, `who action -> new state` or `-> error: message`, with
/// `expected`. Also checks that the history replays to the final configuration.
fn check(steps: &[(Who, Act)], expected: &str) -> Configuration {
    let first = created();
    let mut config = first.configuration;
    let mut history = vec![first.entry];
    let mut lines = Vec::new();
    for (n, (who, act)) in steps.iter().enumerate() {
        let outcome = match apply(&config, *who, act, n + 1) {
            Ok(t) => {
                config = t.configuration;
                history.push(t.entry);
                config.state().as_str().to_owned()
            }
            Err(e) => format!("error: {e}"),
        };
        lines.push(format!("{} {} -> {outcome}", who.name(), act.name()));
    }
    let expected: Vec<&str> = expected
        .trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines, expected, "\nactual:\n{}\n", lines.join("\n"));
    let replayed = Configuration::replay(config.id(), config.tenant(), &history).unwrap();
    assert_eq!(replayed, config);
    config
}

#[test]
fn happy_path_to_approval() {
    let config = check(
        &[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
            (Who::Approver, Act::Approve),
        ],
        "
        admin submit -> awaiting_approval
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        approver approve -> approved
        ",
    );
    let approved = config.approved().unwrap();
    assert_eq!(approved.version, 1);
    assert_eq!(approved.approved_by, user(APPROVER));
    assert_eq!(approved.validation.fhir_base_url, url(URL));
    assert_eq!(approved.validation.ehr_user_id.as_str(), "Practitioner/abc");
    assert_eq!(approved.validation.validated_at, at(2));
    assert_eq!(approved.approved_at, at(3));
    assert_eq!(config.revision(), 4);
}

#[test]
fn approval_needs_the_ehr_sign_in_against_exactly_this_url() {
    check(
        &[
            (Who::Approver, Act::Approve),
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Approve),
            (Who::Approver, Act::Validate(OTHER_URL)),
            (Who::Approver, Act::Validate("https://ehr.contoso.org/api/FHIR/R4/")),
            (Who::Approver, Act::Approve),
        ],
        "
        approver approve -> error: cannot approve: the configuration is a draft
        admin submit -> awaiting_approval
        approver approve -> error: cannot approve before a successful EHR sign-in against https://ehr.contoso.org/api/FHIR/R4
        approver validate(https://ehr2.contoso.org/api/FHIR/R4) -> error: the EHR sign-in was made against https://ehr2.contoso.org/api/FHIR/R4, but this configuration's FHIR base URL is https://ehr.contoso.org/api/FHIR/R4
        approver validate(https://ehr.contoso.org/api/FHIR/R4/) -> ehr_validated
        approver approve -> approved
        ",
    );
}

#[test]
fn only_the_named_approver_validates_and_approves() {
    check(
        &[
            (Who::Admin, Act::Submit),
            (Who::Other, Act::Validate(URL)),
            (Who::Admin, Act::Validate(URL)),
            (Who::AdminApprover, Act::Validate(URL)),
            (Who::Foreign, Act::Validate(URL)),
            (Who::ApproverUpper, Act::Validate(URL)),
            (Who::Other, Act::Approve),
            (Who::Admin, Act::Approve),
            (Who::Foreign, Act::Approve),
            (Who::Approver, Act::Approve),
        ],
        "
        admin submit -> awaiting_approval
        other validate(https://ehr.contoso.org/api/FHIR/R4) -> error: only this configuration's named approver can record the EHR sign-in
        admin validate(https://ehr.contoso.org/api/FHIR/R4) -> error: only someone with the approver role can record the EHR sign-in
        admin+approver validate(https://ehr.contoso.org/api/FHIR/R4) -> error: only this configuration's named approver can record the EHR sign-in
        foreign validate(https://ehr.contoso.org/api/FHIR/R4) -> error: this configuration belongs to another organisation
        APPROVER validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        other approve -> error: only this configuration's named approver can approve
        admin approve -> error: only someone with the approver role can approve
        foreign approve -> error: this configuration belongs to another organisation
        approver approve -> approved
        ",
    );
}

#[test]
fn admin_who_is_the_named_approver_still_signs_in_to_the_ehr() {
    let config = check(
        &[
            (Who::Admin, Act::Edit(settings(URL, ADMIN))),
            (Who::AdminApprover, Act::Submit),
            (Who::AdminApprover, Act::Approve),
            (Who::Approver, Act::Validate(URL)),
            (Who::AdminApprover, Act::Validate(URL)),
            (Who::AdminApprover, Act::ApproveUnder(ApprovalPolicy::SAME_PERSON_ALLOWED)),
        ],
        "
        admin edit(https://ehr.contoso.org/api/FHIR/R4, admin@contoso.org) -> draft
        admin+approver submit -> awaiting_approval
        admin+approver approve -> error: cannot approve before a successful EHR sign-in against https://ehr.contoso.org/api/FHIR/R4
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> error: only this configuration's named approver can record the EHR sign-in
        admin+approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        admin+approver approve(same person allowed) -> approved
        ",
    );
    assert_eq!(config.approved().unwrap().version, 2);
}

#[test]
fn by_default_the_admin_who_last_changed_a_production_configuration_cannot_approve_it() {
    let strict_test = ApprovalPolicy {
        require_distinct_approver_production: true,
        require_distinct_approver_test: true,
    };
    let mut test_settings = settings(URL, ADMIN);
    test_settings.environment = Environment::Test;
    let config = check(
        &[
            (Who::Admin, Act::Edit(settings(URL, ADMIN))),
            (Who::AdminApprover, Act::Submit),
            (Who::AdminApprover, Act::Validate(URL)),
            (Who::AdminApprover, Act::Approve),
            (Who::AdminApprover, Act::ApproveUnder(ApprovalPolicy::SAME_PERSON_ALLOWED)),
            // A test configuration: the same person may approve by default, not under a policy
            // that wants two people for test too.
            (Who::AdminApprover, Act::Edit(test_settings)),
            (Who::AdminApprover, Act::Validate(URL)),
            (Who::AdminApprover, Act::ApproveUnder(strict_test)),
            (Who::AdminApprover, Act::Approve),
        ],
        "
        admin edit(https://ehr.contoso.org/api/FHIR/R4, admin@contoso.org) -> draft
        admin+approver submit -> awaiting_approval
        admin+approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        admin+approver approve -> error: you made the last change to this production configuration, so someone else must approve it: change the named approver to another person, or ask the portal's operator about require_distinct_approver
        admin+approver approve(same person allowed) -> approved
        admin+approver edit(https://ehr.contoso.org/api/FHIR/R4, admin@contoso.org) -> awaiting_approval
        admin+approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        admin+approver approve(distinct: production true, test true) -> error: you made the last change to this test configuration, so someone else must approve it: change the named approver to another person, or ask the portal's operator about require_distinct_approver
        admin+approver approve -> approved
        ",
    );
    assert_eq!(config.last_changed_by(), Some(&user(ADMIN)));
}

#[test]
fn an_approver_who_did_not_make_the_last_change_may_approve_production() {
    let config = check(
        &[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
            (Who::Approver, Act::Approve),
        ],
        "
        admin submit -> awaiting_approval
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        approver approve -> approved
        ",
    );
    assert_eq!(config.last_changed_by(), Some(&user(ADMIN)));
}

#[test]
fn a_configuration_stored_before_the_last_change_was_recorded_needs_a_new_submission() {
    let t = created()
        .configuration
        .submit(&Who::Admin.actor(), at(1))
        .unwrap();
    let t = t
        .configuration
        .record_ehr_validation(
            &Who::Approver.actor(),
            &url(URL),
            EhrUserId::new("Practitioner/abc").unwrap(),
            at(2),
        )
        .unwrap();
    let mut document = serde_json::to_value(&t.configuration).unwrap();
    document.as_object_mut().unwrap().remove("last_changed_by");
    let old: Configuration = serde_json::from_value(document).unwrap();
    assert_eq!(old.last_changed_by(), None);
    let refused = old.approve(&Who::Approver.actor(), at(3)).unwrap_err();
    assert_eq!(refused, TransitionError::LastChangeUnrecorded);
    assert!(
        old.approve_under(
            &Who::Approver.actor(),
            &ApprovalPolicy::SAME_PERSON_ALLOWED,
            at(3)
        )
        .is_ok()
    );
}

#[test]
fn only_admins_change_and_submit() {
    check(
        &[
            (Who::Approver, Act::Edit(settings(OTHER_URL, APPROVER))),
            (Who::Approver, Act::Submit),
            (Who::Foreign, Act::Submit),
            (Who::Admin, Act::Edit(settings(URL, APPROVER))),
            (Who::Admin, Act::Submit),
            (Who::Admin, Act::Submit),
        ],
        "
        approver edit(https://ehr2.contoso.org/api/FHIR/R4, analyst@contoso.org) -> error: only someone with the admin role can change the configuration
        approver submit -> error: only someone with the admin role can submit for approval
        foreign submit -> error: this configuration belongs to another organisation
        admin edit(https://ehr.contoso.org/api/FHIR/R4, analyst@contoso.org) -> error: nothing changed
        admin submit -> awaiting_approval
        admin submit -> error: cannot submit for approval: the configuration is awaiting approval
        ",
    );
}

#[test]
fn an_edit_drops_the_ehr_sign_in() {
    check(
        &[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
            (Who::Admin, Act::Edit(settings(OTHER_URL, APPROVER))),
            (Who::Approver, Act::Approve),
            (Who::Approver, Act::Validate(URL)),
            (Who::Approver, Act::Validate(OTHER_URL)),
            (Who::Approver, Act::Approve),
        ],
        "
        admin submit -> awaiting_approval
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        admin edit(https://ehr2.contoso.org/api/FHIR/R4, analyst@contoso.org) -> awaiting_approval
        approver approve -> error: cannot approve before a successful EHR sign-in against https://ehr2.contoso.org/api/FHIR/R4
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> error: the EHR sign-in was made against https://ehr.contoso.org/api/FHIR/R4, but this configuration's FHIR base URL is https://ehr2.contoso.org/api/FHIR/R4
        approver validate(https://ehr2.contoso.org/api/FHIR/R4) -> ehr_validated
        approver approve -> approved
        ",
    );
}

#[test]
fn changing_the_approver_hands_over_the_approval() {
    check(
        &[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
            (Who::Admin, Act::Edit(settings(URL, "someone@contoso.org"))),
            (Who::Approver, Act::Validate(URL)),
            (Who::Other, Act::Validate(URL)),
            (Who::Other, Act::Approve),
        ],
        "
        admin submit -> awaiting_approval
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        admin edit(https://ehr.contoso.org/api/FHIR/R4, someone@contoso.org) -> awaiting_approval
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> error: only this configuration's named approver can record the EHR sign-in
        other validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        other approve -> approved
        ",
    );
}

#[test]
fn editing_an_approved_configuration_keeps_the_approved_version_serving() {
    let config = check(
        &[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
            (Who::Approver, Act::Approve),
            (Who::Admin, Act::Edit(settings(OTHER_URL, APPROVER))),
            (Who::Approver, Act::Approve),
        ],
        "
        admin submit -> awaiting_approval
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        approver approve -> approved
        admin edit(https://ehr2.contoso.org/api/FHIR/R4, analyst@contoso.org) -> awaiting_approval
        approver approve -> error: cannot approve before a successful EHR sign-in against https://ehr2.contoso.org/api/FHIR/R4
        ",
    );
    assert_eq!(config.version(), 2);
    assert_eq!(config.settings().fhir_base_url, url(OTHER_URL));
    let serving = config.approved().unwrap();
    assert_eq!(serving.version, 1);
    assert_eq!(serving.settings.fhir_base_url, url(URL));
}

#[test]
fn rejection_then_resubmission() {
    let config = check(
        &[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Reject("   ")),
            (Who::Approver, Act::Reject("wrong environment: this is our test server")),
            (Who::Approver, Act::Validate(URL)),
            (Who::Approver, Act::Reject("again")),
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
            (Who::Approver, Act::Reject("changed my mind")),
            (Who::Admin, Act::Edit(settings(OTHER_URL, APPROVER))),
        ],
        "
        admin submit -> awaiting_approval
        approver reject(\"   \") -> error: give a reason for the rejection, of at most 1000 characters
        approver reject(\"wrong environment: this is our test server\") -> rejected
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> error: cannot record the EHR sign-in: the configuration is rejected
        approver reject(\"again\") -> error: cannot reject: the configuration is rejected
        admin submit -> awaiting_approval
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        approver reject(\"changed my mind\") -> rejected
        admin edit(https://ehr2.contoso.org/api/FHIR/R4, analyst@contoso.org) -> awaiting_approval
        ",
    );
    assert!(config.rejection().is_none());
    assert!(config.ehr_validation().is_none());
}

#[test]
fn rejecting_an_edit_keeps_the_approved_version() {
    let config = check(
        &[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
            (Who::Approver, Act::Approve),
            (Who::Approver, Act::Reject("no")),
            (Who::Admin, Act::Submit),
            (Who::Admin, Act::Edit(settings(OTHER_URL, APPROVER))),
            (Who::Approver, Act::Reject("not our server")),
        ],
        "
        admin submit -> awaiting_approval
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        approver approve -> approved
        approver reject(\"no\") -> error: cannot reject: the configuration is approved
        admin submit -> error: cannot submit for approval: the configuration is approved
        admin edit(https://ehr2.contoso.org/api/FHIR/R4, analyst@contoso.org) -> awaiting_approval
        approver reject(\"not our server\") -> rejected
        ",
    );
    assert_eq!(config.rejection().unwrap().reason, "not our server");
    assert_eq!(
        config.approved().unwrap().settings.fhir_base_url,
        url(URL),
        "the rejected edit must not take the approved version out of service"
    );
}

#[test]
fn history_records_who_did_what_and_when() {
    let first = created();
    let submitted = first
        .configuration
        .submit(&Who::Admin.actor(), at(1))
        .unwrap();
    let entry = &submitted.entry;
    assert_eq!(entry.revision, 2);
    assert_eq!(entry.version, 1);
    assert_eq!(entry.at, at(1));
    assert_eq!(entry.actor.username, user(ADMIN));
    assert_eq!(entry.actor.role, Role::Admin);
    assert_eq!(entry.from, Some(ApprovalState::Draft));
    assert_eq!(entry.to, ApprovalState::AwaitingApproval);
    assert_eq!(entry.action.kind(), ActionKind::Submit);
    assert_eq!(first.entry.from, None);

    // Entries serialise flat, with the action's name and data alongside.
    let json = serde_json::to_value(&first.entry).unwrap();
    assert_eq!(json["action"], "created");
    assert_eq!(json["settings"]["fhir_base_url"], URL);
    assert_eq!(
        json["settings"]["ehr_client"]["auth"]["method"],
        "client_secret_basic"
    );
    let back: HistoryEntry = serde_json::from_value(json).unwrap();
    assert_eq!(back, first.entry);
}

#[test]
fn replay_refuses_forged_histories() {
    let first = created();
    let submitted = first
        .configuration
        .submit(&Who::Admin.actor(), at(1))
        .unwrap();
    let id = first.configuration.id().clone();
    let t = tenant();

    assert_eq!(Configuration::replay(&id, &t, &[]), Err(ReplayError::Empty));
    assert_eq!(
        Configuration::replay(&id, &t, std::slice::from_ref(&submitted.entry)),
        Err(ReplayError::OutOfPlace { revision: 2 })
    );

    // An approval entry inserted without the EHR sign-in is not a legal transition.
    let mut forged = submitted.entry.clone();
    forged.revision = 3;
    forged.from = Some(ApprovalState::AwaitingApproval);
    forged.to = ApprovalState::Approved;
    forged.action = HistoryAction::Approved;
    forged.actor = ActorRecord {
        username: user(APPROVER),
        role: Role::Approver,
    };
    let err = Configuration::replay(
        &id,
        &t,
        &[first.entry.clone(), submitted.entry.clone(), forged],
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ReplayError::Refused {
                revision: 3,
                source: TransitionError::EhrValidationMissing { .. }
            }
        ),
        "{err:?}"
    );

    // A doctored state in an otherwise legal entry is caught.
    let mut doctored = submitted.entry;
    doctored.to = ApprovalState::Approved;
    assert_eq!(
        Configuration::replay(&id, &t, &[first.entry, doctored]),
        Err(ReplayError::Mismatch { revision: 2 })
    );
}

#[test]
fn configuration_serde_round_trip() {
    let first = created();
    let json = serde_json::to_string(&first.configuration).unwrap();
    let back: Configuration = serde_json::from_str(&json).unwrap();
    assert_eq!(back, first.configuration);
}

#[test]
fn state_names_round_trip() {
    for state in ApprovalState::ALL {
        assert_eq!(ApprovalState::from_name(state.as_str()), Some(state));
    }
    assert_eq!(ApprovalState::from_name("nope"), None);
    for env in [Environment::Test, Environment::Production] {
        assert_eq!(Environment::from_name(env.as_str()), Some(env));
    }
}

#[test]
fn a_redrive_is_recorded_by_an_admin_and_changes_nothing_else() {
    let config = check(
        &[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
            (Who::Approver, Act::Approve),
            (Who::Approver, Act::Redrive("evt-1", "fhir-audit-event")),
            (Who::Foreign, Act::Redrive("evt-1", "fhir-audit-event")),
            (Who::Admin, Act::Redrive("evt 1", "fhir-audit-event")),
            (Who::Admin, Act::Redrive("evt-1", "fhir-audit-event")),
        ],
        "
        admin submit -> awaiting_approval
        approver validate(https://ehr.contoso.org/api/FHIR/R4) -> ehr_validated
        approver approve -> approved
        approver redrive(evt-1, fhir-audit-event) -> error: only someone with the admin role can send a write-back again
        foreign redrive(evt-1, fhir-audit-event) -> error: this configuration belongs to another organisation
        admin redrive(evt 1, fhir-audit-event) -> error: a re-drive names an event and a sink by their ids
        admin redrive(evt-1, fhir-audit-event) -> approved
        ",
    );
    assert_eq!(config.revision(), 5);
    assert_eq!(config.version(), 1);
    assert_eq!(config.approved().unwrap().version, 1);
}
