//! A process killed in the middle of an approval leaves each configuration in its old or its new
//! state, never a torn one: a child process (this test binary, re-run as the ignored
//! `child_writes_transitions_until_killed`) takes configurations through create → submit → EHR
//! sign-in → approve → edit as fast as it can, and is SIGKILLed at moments spread over the run,
//! five times; afterwards every configuration's history and document agree.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use visitbridge_approval::{ApprovalState, Environment};
use visitbridge_store::*;

use crate::fixtures::*;

const CHILD_DATABASE: &str = "VISITBRIDGE_STORE_CRASH_CHILD_DATABASE";

/// The child: runs until killed (only when the parent starts it; `--ignored` otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_process_killed_mid_approval_leaves_old_or_new_state"]
async fn child_writes_transitions_until_killed() {
    let database = std::env::var(CHILD_DATABASE).expect("started by the parent test");
    let store = DatabaseLocation::parse(&database)
        .unwrap()
        .open(&PostgresOptions::default())
        .await
        .unwrap();
    let t = tenant_id("contoso");
    let _ = store.insert_tenant(&tenant("contoso")).await;
    let run = std::process::id();
    for n in 0.. {
        let fhir = format!("https://ehr-{run}-{n}.example.org/api/FHIR/R4");
        let config = create(
            &store,
            &t,
            &format!("cfg-{run}-{n}"),
            &fhir,
            Environment::Test,
        )
        .await;
        let approved = approve(&store, config).await;
        let mut changed = settings(&fhir, Environment::Test);
        changed.ehr_client.client_id =
            visitbridge_approval::ClientId::new(format!("changed-{n}")).unwrap();
        let edited = approved.edit(&admin(&t), changed, at(4)).unwrap();
        store.update_configuration(&edited).await.unwrap();
    }
}

async fn a_process_killed_mid_approval_leaves_old_or_new_state(db: TestDb) {
    let store = db.store().await;
    for kill in 0..5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "crash::child_writes_transitions_until_killed",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DATABASE, db.url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over different moments of the loop.
        tokio::time::sleep(Duration::from_millis(300 + kill * 97)).await;
        child.kill().unwrap();
        let _ = child.wait();
    }
    let t = tenant_id("contoso");
    let configurations = store.list_configurations(&t).await.unwrap();
    assert!(
        configurations.len() >= 5,
        "the children got work done: {}",
        configurations.len()
    );
    let mut approved = 0;
    for config in &configurations {
        let history = store.configuration_history(&t, config.id()).await.unwrap();
        // One history entry per revision, in order, and the document is the last one's state.
        let revisions: Vec<u64> = history.iter().map(|h| h.revision).collect();
        assert_eq!(
            revisions,
            (1..=config.revision()).collect::<Vec<_>>(),
            "{}",
            config.id()
        );
        assert_eq!(
            history.last().map(|h| h.to),
            Some(config.state()),
            "{}",
            config.id()
        );
        // An approved version serves launches exactly when one was approved.
        let serving = store
            .find_approved(&config.settings().fhir_base_url, Environment::Test)
            .await
            .unwrap();
        let was_approved = history.iter().any(|h| h.to == ApprovalState::Approved);
        assert_eq!(serving.is_some(), was_approved, "{}", config.id());
        if was_approved {
            approved += 1;
        }
    }
    assert!(approved > 0, "some approvals completed before the kills");
    eprintln!(
        "{:?}: {} configurations after 5 SIGKILLs, {approved} approved, none torn",
        db.backend,
        configurations.len()
    );
}

crate::on_both_backends!(a_process_killed_mid_approval_leaves_old_or_new_state);
