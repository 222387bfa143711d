//! The README's start command works: the binary starts, prints its URLs, and they answer.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

#[tokio::test]
async fn binary_starts_and_prints_urls_that_answer() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_visitbridge-launch"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
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
    child.kill().unwrap();
    let _ = child.wait();
    let answer = answer.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok");
}
