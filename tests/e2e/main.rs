//! The walk-throughs of the README, in real headless Chromium against the whole system on
//! loopback (`visitbridge_demo::start`): what a clinician, a patient, an admin and an approver do
//! and see. Screenshots of the key pages go to `target/e2e-artifacts/`.

mod portal;
mod visit;

use std::path::PathBuf;

use visitbridge_demo::{DemoOptions, RunningDemo};

/// Where screenshots go.
fn artefacts(test: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/e2e-artifacts")
        .join(test)
}

/// The whole system on free loopback ports with a fresh database.
async fn demo() -> RunningDemo {
    let any = "127.0.0.1:0".parse().expect("address");
    visitbridge_demo::start(DemoOptions {
        ehr: any,
        microsoft: any,
        portal: any,
        launch: any,
        data_dir: None,
        database: None,
    })
    .await
    .expect("the demo starts")
}
