//! Replicas as production runs them: launch-service processes (the real binary) on one database,
//! behind a small load balancer that hands each new connection to the next live replica and notes
//! which replica served which request line.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One launch-service process.
pub(crate) struct Replica {
    child: Child,
    /// Its own address, `http://127.0.0.1:{port}` (not through the balancer).
    pub(crate) base: String,
    /// Its standard output and error (the logs), for a failing test to show.
    pub(crate) log: PathBuf,
}

impl Replica {
    /// Starts the binary with `config` (a file), listening on a free loopback port, and waits
    /// until it is ready.
    pub(crate) async fn start(config: &Path, log: PathBuf) -> Self {
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_visitbridge-launch"))
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("VISITBRIDGE_LAUNCH_DATABASE")
            .env_remove("VISITBRIDGE_LAUNCH_LISTEN")
            .env_remove("VISITBRIDGE_LAUNCH_PUBLIC_BASE_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log_file.try_clone().unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // The output is copied to the log for the whole life of the process (a closed pipe would
        // fail its later prints).
        std::thread::spawn(move || {
            let mut log_file = log_file;
            let mut listening = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_file, "{line}");
                if let Some(at) = line.trim().strip_prefix("Listening on:") {
                    listening = Some(at.trim().trim_end_matches('/').to_owned());
                }
                if line.contains("Press Ctrl+C")
                    && let Some(base) = listening.take()
                {
                    let _ = ready_tx.send(base);
                }
            }
        });
        let base =
            tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap();
        match base {
            Ok(base) => Self { child, base, log },
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the launch service did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL: no clean stop, as a crash or a lost host).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the process logged.
    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which replica the balancer gives the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Each to the next one, in turn.
    RoundRobin,
    /// All to this one (while it is up).
    Only(usize),
}

#[derive(Debug)]
struct Balancing {
    backends: Vec<SocketAddr>,
    route: Route,
    next: usize,
    /// (replica, first line of the request) per connection.
    served: Vec<(usize, String)>,
}

/// A TCP load balancer on a loopback port: each connection goes to one replica (the routed one,
/// or the next that accepts the connection when it is down), as a cloud load balancer without
/// session affinity does.
pub(crate) struct LoadBalancer {
    /// `http://127.0.0.1:{port}`: the public base URL of every replica.
    pub(crate) base: String,
    state: Arc<Mutex<Balancing>>,
    task: tokio::task::JoinHandle<()>,
}

impl LoadBalancer {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(Balancing {
            backends: Vec::new(),
            route: Route::RoundRobin,
            next: 0,
            served: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(forward(client, Arc::clone(&shared)));
            }
        });
        Self { base, state, task }
    }

    /// Sets replica `index`'s address (a new one after a restart).
    pub(crate) fn set_backend(&self, index: usize, addr: SocketAddr) {
        let mut state = self.state.lock().unwrap();
        if state.backends.len() <= index {
            state.backends.resize(index + 1, addr);
        }
        state.backends[index] = addr;
    }

    pub(crate) fn route(&self, route: Route) {
        self.state.lock().unwrap().route = route;
    }

    /// Which replica served each request so far, with its request line.
    pub(crate) fn served(&self) -> Vec<(usize, String)> {
        self.state.lock().unwrap().served.clone()
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(mut client: tokio::net::TcpStream, state: Arc<Mutex<Balancing>>) {
    let mut first = vec![0u8; 8192];
    let n = match client.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    first.truncate(n);
    let line = String::from_utf8_lossy(&first)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let (order, count) = {
        let mut state = state.lock().unwrap();
        let count = state.backends.len();
        let start = match state.route {
            Route::Only(i) => i,
            Route::RoundRobin => {
                state.next += 1;
                state.next - 1
            }
        };
        let order: Vec<(usize, SocketAddr)> = (0..count)
            .map(|k| (start + k) % count)
            .map(|i| (i, state.backends[i]))
            .collect();
        (order, count)
    };
    if count == 0 {
        return;
    }
    for (index, addr) in order {
        let Ok(mut backend) = tokio::net::TcpStream::connect(addr).await else {
            continue;
        };
        state.lock().unwrap().served.push((index, line));
        if backend.write_all(&first).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        return;
    }
}
