//! The launch service's HTTP edge: an oversized webhook body is answered in problem JSON, and the
//! binary closes slow request heads and caps connections per client IP (`[server]`).

use std::{
    net::SocketAddr,
    process::Child,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
};

use crate::harness::Env;

#[tokio::test]
async fn an_oversized_notification_body_gets_problem_json() {
    let env = Env::start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/graph/notifications", env.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 413);
    assert_eq!(problem["title"], "Too large");
    assert!(
        problem["type"].as_str().unwrap().ends_with("too-large"),
        "{problem}"
    );
}

/// The binary, started with `[server]` limits; killed when dropped.
struct Binary {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_binary(server_section: &str) -> Binary {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("launch.toml");
    std::fs::write(
        &config,
        format!("dev_mode = true\n\n[server]\n{server_section}\n"),
    )
    .unwrap();
    let (child, mut lines) =
        crate::binary::start_launch(dir.path(), &["--config".as_ref(), config.as_ref()]);
    let health = loop {
        let line = lines.next().expect("binary exited early").unwrap();
        if let Some(url) = line.split_whitespace().find(|w| w.ends_with("/healthz")) {
            break url.to_owned();
        }
    };
    let addr = url::Url::parse(&health)
        .unwrap()
        .socket_addrs(|| None)
        .unwrap()[0];
    // The binary logs every request to stdout: read it, or a full pipe would stall the binary.
    std::thread::spawn(move || for _ in lines {});
    Binary {
        child,
        addr,
        _dir: dir,
    }
}

async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// How long until the server closes `stream`, at most `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    answer
}

#[tokio::test]
async fn the_binary_closes_a_slow_request_head_and_caps_connections_per_client() {
    let binary = start_binary("header_read_timeout_seconds = 1\nmax_connections_per_ip = 2");

    // A request line sent halfway, then nothing: closed after the timeout.
    let mut slow = connect_from([127, 0, 0, 1], binary.addr).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let closed = closed_within(&mut slow, Duration::from_secs(6)).await;
    assert!(closed.is_some(), "a slow request head is closed");
    drop(slow);

    // Two held connections from one address; a third from it is closed, another address served.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from([127, 0, 0, 1], binary.addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = connect_from([127, 0, 0, 1], binary.addr).await;
    let closed = closed_within(&mut third, Duration::from_millis(800)).await;
    assert!(
        closed.is_some(),
        "the connection over the cap is closed at once"
    );
    let answer = healthz(&mut connect_from([127, 0, 0, 2], binary.addr).await).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Malformed request lines, huge and many headers, smuggling shapes, bad encodings and
/// pipelining against the real binary: each ends in a 4xx, a closed connection or (for what is
/// a valid request after all) an answer — never a 5xx or a hang; `/healthz` answers after each;
/// memory stays bounded.
#[tokio::test]
async fn the_binary_survives_raw_socket_abuse() {
    let binary = start_binary("header_read_timeout_seconds = 2");
    let endings =
        visitbridge_testkit::abuse::assert_survives_abuse(binary.addr, binary.child.id()).await;
    // The figures docs/reliability.md reports (shown with --nocapture).
    eprintln!("raw-socket endings: {endings:?}");
    assert_eq!(endings.len(), visitbridge_testkit::abuse::cases().len());
}
