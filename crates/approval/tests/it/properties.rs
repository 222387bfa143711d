//! Property tests over random action sequences by random actors.

use proptest::prelude::*;
use visitbridge_approval::*;

use crate::fixtures::*;

const URLS: [&str; 3] = [URL, OTHER_URL, "https://ehr3.contoso.org/api/FHIR/R4"];
const APPROVERS: [&str; 3] = [APPROVER, ADMIN, "someone@contoso.org"];

fn who() -> impl Strategy<Value = Who> {
    prop::sample::select(Who::EVERYONE.to_vec())
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        2 => (0..URLS.len(), 0..APPROVERS.len(), any::<bool>()).prop_map(|(u, a, v2)| {
            let mut s = settings(URLS[u], APPROVERS[a]);
            if v2 {
                s.ehr_client.scope_style = ScopeStyle::V2;
            }
            Act::Edit(s)
        }),
        2 => Just(Act::Submit),
        3 => (0..URLS.len()).prop_map(|u| Act::Validate(URLS[u])),
        3 => Just(Act::Approve),
        1 => Just(Act::ApproveUnder(ApprovalPolicy::SAME_PERSON_ALLOWED)),
        1 => prop::sample::select(vec!["", "not our server"]).prop_map(Act::Reject),
        1 => Just(Act::Redrive("evt-1", "fhir-audit-event")),
    ]
}

/// Each step's outcome, with the configuration it was applied to.
type Outcomes = Vec<(Configuration, Result<Transitioned, TransitionError>)>;

/// Runs the steps and returns the final configuration, its history, and each step's outcome.
fn run(steps: &[(Who, Act)]) -> (Configuration, Vec<HistoryEntry>, Outcomes) {
    let first = created();
    let mut config = first.configuration;
    let mut history = vec![first.entry];
    let mut outcomes = Vec::new();
    for (n, (who, act)) in steps.iter().enumerate() {
        let result = apply(&config, *who, act, n + 1);
        if let Ok(t) = &result {
            history.push(t.entry.clone());
            outcomes.push((config, result.clone()));
            config = t.configuration.clone();
        } else {
            outcomes.push((config.clone(), result));
        }
    }
    (config, history, outcomes)
}

/// The settings in force at each history index, from the entries alone.
fn settings_at(history: &[HistoryEntry], i: usize) -> &ConfigurationSettings {
    history[..=i]
        .iter()
        .rev()
        .find_map(|e| match &e.action {
            HistoryAction::Created { settings } | HistoryAction::Edited { settings } => {
                Some(settings)
            }
            _ => None,
        })
        .expect("history starts with creation")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No sequence reaches Approved without an EHR sign-in by the named approver against exactly
    /// the FHIR base URL being approved, made after the last change and not rejected since. Checked
    /// on the history alone, independently of the state machine's own bookkeeping.
    #[test]
    fn no_approval_without_the_named_approvers_ehr_sign_in(
        steps in prop::collection::vec((who(), act()), 0..40)
    ) {
        let (_, history, _) = run(&steps);
        for (i, entry) in history.iter().enumerate() {
            if entry.action != HistoryAction::Approved {
                continue;
            }
            let settings = settings_at(&history, i);
            prop_assert_eq!(&entry.actor.username, &settings.approver);
            prop_assert_eq!(entry.actor.role, Role::Approver);
            let last_change = (0..i)
                .rev()
                .find(|&j| matches!(
                    history[j].action,
                    HistoryAction::Created { .. } | HistoryAction::Edited { .. }
                ))
                .expect("creation");
            let validated = (last_change + 1..i).rev().find(|&k| match &history[k].action {
                HistoryAction::EhrValidated { validation } => {
                    validation.fhir_base_url == settings.fhir_base_url
                        && validation.validated_by == settings.approver
                        && history[k].actor.username == settings.approver
                        && history[k].actor.role == Role::Approver
                }
                _ => false,
            });
            prop_assert!(validated.is_some(), "approval at {i} without validation: {history:#?}");
            let k = validated.unwrap_or_default();
            prop_assert!(
                !history[k..i].iter().any(|e| matches!(e.action, HistoryAction::Rejected { .. })),
                "approval after a rejection without a new sign-in"
            );
        }
    }

    /// The history replays to the current configuration, and is a well-formed chain.
    #[test]
    fn history_replays_to_the_current_state(
        steps in prop::collection::vec((who(), act()), 0..40)
    ) {
        let (config, history, _) = run(&steps);
        let replayed = Configuration::replay(config.id(), config.tenant(), &history);
        prop_assert_eq!(replayed.as_ref(), Ok(&config));
        prop_assert_eq!(config.revision(), history.len() as u64);
        for (i, pair) in history.windows(2).enumerate() {
            prop_assert_eq!(pair[1].revision, i as u64 + 2);
            prop_assert_eq!(pair[1].from, Some(pair[0].to));
        }
        prop_assert_eq!(history.last().map(|e| e.to), Some(config.state()));
    }

    /// Who may do what, and the invariants between state and data, after every step.
    #[test]
    fn roles_and_invariants_hold_at_every_step(
        steps in prop::collection::vec((who(), act()), 0..40)
    ) {
        let (_, _, outcomes) = run(&steps);
        for ((who, act), (before, result)) in steps.iter().zip(&outcomes) {
            let Ok(t) = result else { continue };
            let actor = who.actor();
            prop_assert_ne!(*who, Who::Foreign, "another tenant's user changed a configuration");
            match act {
                Act::Edit(_) | Act::Submit => prop_assert!(actor.has_role(Role::Admin)),
                Act::Validate(u) => {
                    prop_assert!(actor.has_role(Role::Approver));
                    prop_assert_eq!(&actor.username, &before.settings().approver);
                    prop_assert_eq!(&url(u), &before.settings().fhir_base_url);
                }
                Act::Approve | Act::ApproveUnder(_) | Act::Reject(_) => {
                    prop_assert!(actor.has_role(Role::Approver));
                    prop_assert_eq!(&actor.username, &before.settings().approver);
                }
                // A re-drive changes nothing but the revision.
                Act::Redrive(..) => {
                    prop_assert!(actor.has_role(Role::Admin));
                    prop_assert_eq!(t.configuration.state(), before.state());
                    prop_assert_eq!(t.configuration.version(), before.version());
                    prop_assert_eq!(t.configuration.settings(), before.settings());
                    prop_assert_eq!(t.configuration.last_changed_by(), before.last_changed_by());
                }
            }
            // Under the default policy, nobody approves a production change they made.
            if matches!(act, Act::Approve)
                && before.settings().environment == Environment::Production
            {
                prop_assert_ne!(Some(&actor.username), before.last_changed_by());
            }
            let c = &t.configuration;
            prop_assert_eq!(c.state() == ApprovalState::EhrValidated, c.ehr_validation().is_some());
            prop_assert_eq!(c.state() == ApprovalState::Rejected, c.rejection().is_some());
            if c.state() == ApprovalState::Approved {
                let a = c.approved().expect("approved snapshot");
                prop_assert_eq!(a.version, c.version());
                prop_assert_eq!(&a.settings, c.settings());
            }
            if let Some(a) = c.approved() {
                prop_assert_eq!(&a.validation.fhir_base_url, &a.settings.fhir_base_url);
                prop_assert_eq!(&a.validation.validated_by, &a.settings.approver);
                prop_assert_eq!(&a.approved_by, &a.settings.approver);
            }
            // Only approval changes what serves launches.
            if !matches!(act, Act::Approve | Act::ApproveUnder(_)) {
                prop_assert_eq!(c.approved(), before.approved());
            }
        }
    }
}
