//! The README's start command works: the binary starts with no configuration file, prints its
//! URLs, and they answer; `--help` lists the options.

use std::{
    io::{BufRead as _, BufReader, Lines},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
};

/// The launch binary's standard output, line by line (keep it open while the binary runs: a
/// closed pipe would fail its later prints).
pub(crate) type Output = Lines<BufReader<ChildStdout>>;

/// Starts the launch binary on a fresh database in `dir`, listening on a free loopback port,
/// with `args` besides, no configuration from the environment, and its output piped.
pub(crate) fn start_launch(dir: &Path, args: &[&std::ffi::OsStr]) -> (Child, Output) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_visitbridge-launch"))
        .args(["--listen", "127.0.0.1:0", "--database"])
        .arg(dir.join("visitbridge.sqlite"))
        .args(args)
        .env_remove("VISITBRIDGE_LAUNCH_CONFIG")
        .env_remove("VISITBRIDGE_LAUNCH_METRICS_BEARER_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let output = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, output)
}

#[tokio::test]
async fn binary_starts_and_prints_urls_that_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut lines) = start_launch(dir.path(), &[]);
    let health = loop {
        let line = lines
            .next()
            .expect("binary exited before printing its URLs")
            .unwrap();
        if let Some(url) = line.split_whitespace().find(|w| w.ends_with("/healthz")) {
            break url.to_owned();
        }
    };
    let answer = reqwest::get(&health).await;
    let jwks = reqwest::get(health.replace("/healthz", "/.well-known/jwks.json")).await;
    child.kill().unwrap();
    let _ = child.wait();
    let answer = answer.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok");
    assert_eq!(jwks.unwrap().status(), 200);
}

#[tokio::test]
async fn the_binary_serves_metrics_on_the_metrics_listener_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut lines) = start_launch(
        dir.path(),
        &["--metrics-listen".as_ref(), "127.0.0.1:0".as_ref()],
    );
    let (mut health, mut metrics) = (None, None);
    while health.is_none() || metrics.is_none() {
        let line = lines
            .next()
            .expect("binary exited before printing its URLs")
            .unwrap();
        for word in line.split_whitespace() {
            if word.ends_with("/healthz") {
                health = Some(word.to_owned());
            } else if word.ends_with("/metrics") {
                metrics = Some(word.to_owned());
            }
        }
    }
    let (health, metrics) = (health.unwrap(), metrics.unwrap());
    let scraped = reqwest::get(&metrics).await;
    let public = reqwest::get(health.replace("/healthz", "/metrics")).await;
    child.kill().unwrap();
    let _ = child.wait();
    assert_ne!(
        metrics,
        health.replace("/healthz", "/metrics"),
        "another port"
    );
    let scraped = scraped.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("# TYPE visitbridge_launches_total counter")
    );
    assert_eq!(public.unwrap().status(), 404);
}

#[test]
fn help_lists_the_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_visitbridge-launch"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--config",
        "--listen",
        "--public-base-url",
        "--database",
        "--dev-mode",
        "--metrics-listen",
        "--metrics-bearer-token",
    ] {
        assert!(text.contains(option), "{option} missing from:\n{text}");
    }
    assert!(text.contains("VISITBRIDGE_LAUNCH_DEPLOYMENT_SECRET"));
}

#[tokio::test]
async fn the_binary_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut lines) = start_launch(dir.path(), &[]);
    while !lines
        .next()
        .expect("binary exited before it was ready")
        .unwrap()
        .contains("Press Ctrl+C")
    {}
    // What Docker, Kubernetes and systemd send.
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(25),
            "still running after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a clean stop: {status:?}");
}

/// `migrate` brings the schema up to date and exits, for operators who migrate before rolling
/// out; run again, it has nothing to do. The password in the URL is never printed.
#[tokio::test]
async fn migrate_brings_the_schema_up_to_date_and_exits() {
    let server = visitbridge_testpg::shared().unwrap_or_else(|e| panic!("{e}"));
    let url = server
        .create_database()
        .await
        .unwrap()
        .replacen("@", ":not-printed-secret@", 1);
    let migrate = || {
        Command::new(env!("CARGO_BIN_EXE_visitbridge-launch"))
            .args(["--database", &url, "migrate"])
            .env_remove("VISITBRIDGE_LAUNCH_CONFIG")
            .output()
            .unwrap()
    };
    let first = migrate();
    let text = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(text.contains("schema at version 9 (was 0)"), "{text}");
    assert!(!text.contains("not-printed-secret"), "{text}");
    let again = migrate();
    let text = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(text.contains("schema at version 9 (was 9)"), "{text}");

    // An unreachable database: a clear error and a failure exit, no panic.
    let refused = Command::new(env!("CARGO_BIN_EXE_visitbridge-launch"))
        .args([
            "--database",
            "postgres://nobody:secret@127.0.0.1:1/none?sslmode=disable",
            "migrate",
        ])
        .env_remove("VISITBRIDGE_LAUNCH_CONFIG")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("migrating postgres://nobody:***@127.0.0.1:1/none"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("secret@"),
        "{err}"
    );
}

#[test]
fn migrate_on_sqlite_reports_the_versions_it_went_between() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist yet is made.
    let database = dir.path().join("new").join("visitbridge.sqlite");
    let migrate = || {
        let output = Command::new(env!("CARGO_BIN_EXE_visitbridge-launch"))
            .arg("--database")
            .arg(&database)
            .arg("migrate")
            .env_remove("VISITBRIDGE_LAUNCH_CONFIG")
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(migrate().contains("schema at version 9 (was 0)"));
    assert!(migrate().contains("schema at version 9 (was 9)"));
}
