//! The portal binary SIGKILLed in the middle of requests: one editor per configuration keeps
//! changing it through the JSON API while the process is killed at moments spread over the run
//! and started again on the same database. Afterwards every configuration is whole — its
//! revision is the length of its history, the history runs 1, 2, 3 … without a gap, what it shows
//! is the edit of its newest revision — and no acknowledged edit is lost: each acknowledged
//! revision is in the history, and the shown settings are the last acknowledged edit or one sent
//! after it (in flight at a kill). Both backends.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

use crate::{
    harness::API_KEY,
    process::{World, log_tail, start},
};

/// Configurations edited at once (one editor each).
const CONFIGURATIONS: usize = 3;
/// SIGKILLs in a run.
const KILLS: usize = 5;

/// What one editor saw of its configuration.
#[derive(Debug, Default)]
struct Edits {
    /// (edit number, revision) of each edit the portal acknowledged (200).
    acknowledged: Vec<(u64, u64)>,
    /// Edit numbers sent without an answer (the process died under them).
    unanswered: Vec<u64>,
}

fn client_id(edit: u64) -> String {
    format!("vb-edit-{edit}")
}

async fn the_portal_killed_mid_edit_keeps_every_configuration_whole(database: String) {
    let world = World::new(&database, CONFIGURATIONS).await;
    let (config, fhir_bases) = (world.config.clone(), world.fhir_bases.clone());
    let settings = crate::process::settings;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut process = start(&config);
    let base = Arc::new(Mutex::new(process.base.clone()));
    let current = {
        let base = Arc::clone(&base);
        move || base.lock().unwrap().clone()
    };

    let ids = world.create_configurations(&http, &current()).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let editors: Vec<_> = ids
        .iter()
        .zip(&fhir_bases)
        .map(|(id, fhir_base)| {
            let (http, id, fhir_base, stop, current, log) = (
                http.clone(),
                id.clone(),
                fhir_base.clone(),
                Arc::clone(&stop),
                current.clone(),
                config.clone(),
            );
            tokio::spawn(async move {
                let mut edits = Edits::default();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let answer = http
                        .put(format!("{}/api/v1/configurations/{id}", current()))
                        .bearer_auth(API_KEY)
                        .json(&settings(&fhir_base, &client_id(n)))
                        .send()
                        .await;
                    match answer {
                        Ok(response) if response.status() == 200 => {
                            let body: Value = match response.json().await {
                                Ok(body) => body,
                                Err(_) => {
                                    edits.unanswered.push(n);
                                    continue;
                                }
                            };
                            edits
                                .acknowledged
                                .push((n, body["revision"].as_u64().unwrap()));
                        }
                        Ok(response) => panic!(
                            "edit {n}: {}\nthe portal's log ends:\n{}",
                            response.status(),
                            log_tail(&log, 30)
                        ),
                        Err(_) => {
                            edits.unanswered.push(n);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                edits
            })
        })
        .collect();

    // Kills spread over the run, at moments that fall anywhere in a request.
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + 137 * kill as u64)).await;
        drop(process);
        process = start(&config);
        *base.lock().unwrap() = process.base.clone();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    let mut total_acknowledged = 0;
    let mut total_unanswered = 0;
    let mut stored_unanswered = 0;
    for (id, editor) in ids.iter().zip(editors) {
        let edits = editor.await.unwrap();
        total_acknowledged += edits.acknowledged.len();
        total_unanswered += edits.unanswered.len();
        let get = |path: String| {
            let http = http.clone();
            async move {
                let response = http.get(path).bearer_auth(API_KEY).send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.unwrap()
            }
        };
        let shown = get(format!("{}/api/v1/configurations/{id}", current())).await;
        let history = get(format!("{}/api/v1/configurations/{id}/history", current())).await;
        let revisions: Vec<u64> = history["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["revision"].as_u64().unwrap())
            .collect();
        let revision = shown["revision"].as_u64().unwrap();
        // Whole: the history is the revisions 1..=revision, no gap, no torn entry.
        assert_eq!(revisions, (1..=revision).collect::<Vec<_>>(), "{id}");
        // Nothing acknowledged is lost.
        for (_, acknowledged) in &edits.acknowledged {
            assert!(
                *acknowledged <= revision,
                "{id}: {acknowledged} > {revision}"
            );
        }
        // Stored without an answer: at most the one edit in flight at each kill.
        let edits_stored = revision - 1;
        let acknowledged = edits.acknowledged.len() as u64;
        assert!(
            edits_stored >= acknowledged && edits_stored - acknowledged <= KILLS as u64,
            "{id}: {edits_stored} edits stored, {edits:?}"
        );
        stored_unanswered += edits_stored - acknowledged;
        // What it shows is the last acknowledged edit, or one sent after it that was in flight.
        let shown_client = shown["settings"]["client_id"].as_str().unwrap().to_owned();
        let last_acknowledged = edits.acknowledged.last().map(|(n, _)| *n).unwrap_or(0);
        let candidates: Vec<String> = std::iter::once(last_acknowledged)
            .chain(
                edits
                    .unanswered
                    .iter()
                    .copied()
                    .filter(|n| *n > last_acknowledged),
            )
            .map(client_id)
            .collect();
        assert!(
            candidates.contains(&shown_client),
            "{id}: shows {shown_client}, expected one of {candidates:?}"
        );
        if let Some((n, r)) = edits.acknowledged.last()
            && *r == revision
        {
            assert_eq!(shown_client, client_id(*n), "{id}");
        }
    }
    assert!(
        total_acknowledged >= 30,
        "{total_acknowledged} edits acknowledged"
    );
    eprintln!(
        "portal killed {KILLS} times under {CONFIGURATIONS} editors: {total_acknowledged} edits acknowledged, {total_unanswered} unanswered (of which {stored_unanswered} stored: in flight at a kill), every configuration whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_killed_mid_edit_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("portal.sqlite").display().to_string();
    the_portal_killed_mid_edit_keeps_every_configuration_whole(database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_killed_mid_edit_on_postgres() {
    let server = visitbridge_testpg::shared().unwrap_or_else(|e| panic!("{e}"));
    let url = server.create_database().await.unwrap();
    the_portal_killed_mid_edit_keeps_every_configuration_whole(url).await;
}
