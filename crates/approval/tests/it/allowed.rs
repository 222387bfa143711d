//! What an actor may do now, and who may see a configuration: asked of the same rules the
//! transitions use.

use std::collections::BTreeSet;

use visitbridge_approval::*;

use crate::fixtures::*;

fn allowed(config: &Configuration, who: Who) -> BTreeSet<ActionKind> {
    config.allowed_actions(&who.actor(), &ApprovalPolicy::DEFAULT)
}

fn kinds(actions: &[ActionKind]) -> BTreeSet<ActionKind> {
    actions.iter().copied().collect()
}

/// Runs `acts` (each must succeed) from a fresh draft.
fn after(acts: &[(Who, Act)]) -> Configuration {
    let mut config = created().configuration;
    for (n, (who, act)) in acts.iter().enumerate() {
        config = apply(&config, *who, act, n + 1).unwrap().configuration;
    }
    config
}

#[test]
fn a_draft_is_the_admins_to_change_and_submit() {
    let draft = after(&[]);
    assert_eq!(
        allowed(&draft, Who::Admin),
        kinds(&[ActionKind::Edit, ActionKind::Submit])
    );
    assert_eq!(allowed(&draft, Who::Approver), kinds(&[]));
    assert_eq!(allowed(&draft, Who::Other), kinds(&[]));
    assert_eq!(allowed(&draft, Who::Foreign), kinds(&[]));
}

#[test]
fn awaiting_approval_the_named_approver_signs_in_or_rejects() {
    let awaiting = after(&[(Who::Admin, Act::Submit)]);
    assert_eq!(
        allowed(&awaiting, Who::Approver),
        kinds(&[ActionKind::RecordEhrValidation, ActionKind::Reject])
    );
    assert_eq!(allowed(&awaiting, Who::Admin), kinds(&[ActionKind::Edit]));
    assert_eq!(allowed(&awaiting, Who::Other), kinds(&[]));
}

#[test]
fn after_the_ehr_sign_in_the_named_approver_may_approve() {
    let validated = after(&[
        (Who::Admin, Act::Submit),
        (Who::Approver, Act::Validate(URL)),
    ]);
    assert_eq!(
        allowed(&validated, Who::Approver),
        kinds(&[
            ActionKind::RecordEhrValidation,
            ActionKind::Approve,
            ActionKind::Reject
        ])
    );
}

#[test]
fn the_admin_who_changed_it_may_not_approve_production_under_the_default_policy() {
    let edited = settings(URL, ADMIN);
    let validated = after(&[
        (Who::AdminApprover, Act::Edit(edited)),
        (Who::AdminApprover, Act::Submit),
        (Who::AdminApprover, Act::Validate(URL)),
    ]);
    let actor = Who::AdminApprover.actor();
    let refused = validated.allowed_actions(&actor, &ApprovalPolicy::DEFAULT);
    assert!(!refused.contains(&ActionKind::Approve), "{refused:?}");
    assert!(refused.contains(&ActionKind::Reject), "{refused:?}");
    let same_person = validated.allowed_actions(&actor, &ApprovalPolicy::SAME_PERSON_ALLOWED);
    assert!(
        same_person.contains(&ActionKind::Approve),
        "{same_person:?}"
    );
}

#[test]
fn every_allowed_action_is_one_the_transition_takes() {
    let states = [
        after(&[]),
        after(&[(Who::Admin, Act::Submit)]),
        after(&[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
        ]),
        after(&[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Validate(URL)),
            (Who::Approver, Act::Approve),
        ]),
        after(&[
            (Who::Admin, Act::Submit),
            (Who::Approver, Act::Reject("no")),
        ]),
    ];
    for config in &states {
        for w in Who::EVERYONE {
            let allowed = allowed(config, w);
            let attempts = [
                (ActionKind::Edit, Act::Edit(settings(OTHER_URL, APPROVER))),
                (ActionKind::Submit, Act::Submit),
                (ActionKind::RecordEhrValidation, Act::Validate(URL)),
                (ActionKind::Approve, Act::Approve),
                (ActionKind::Reject, Act::Reject("not this one")),
            ];
            for (kind, act) in attempts {
                assert_eq!(
                    allowed.contains(&kind),
                    apply(config, w, &act, 9).is_ok(),
                    "{} {kind} in {}",
                    w.name(),
                    config.state()
                );
            }
        }
    }
}

#[test]
fn admins_and_the_named_approver_see_a_configuration() {
    let config = after(&[]);
    assert!(config.visible_to(&Who::Admin.actor()));
    assert!(config.visible_to(&Who::Approver.actor()));
    assert!(config.visible_to(&Who::AdminApprover.actor()));
    assert!(!config.visible_to(&Who::Other.actor()));
    assert!(!config.visible_to(&Who::Foreign.actor()));
}
