//! A throwaway PostgreSQL server for tests, started from the machine's own PostgreSQL binaries.
//!
//! [`TestPostgres::start`] runs `initdb` into a temporary directory and `postgres` on a free
//! loopback port, with TLS on (a certificate signed by a throwaway CA, see
//! [`TestPostgres::ca_pem`]) and durability off (tests do not survive power loss). `initdb`
//! refuses to run as root, and CI runs as root: then the server runs as an unprivileged user
//! (`postgres` if the machine has one, else `nobody`) that owns the data directory. Each test takes
//! a fresh database from [`TestPostgres::create_database`], so tests share one server and never
//! each other's rows.
//!
//! [`shared`] is one server per test process. A process-wide value is never dropped, so a watchdog
//! (a shell loop started with the server) stops the server and removes its directory when the test
//! process exits, however it exits. A server from [`TestPostgres::start`] stops when dropped.
//!
//! When no PostgreSQL binaries are found the error says how to install them: the suite fails, it
//! does not skip.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The database superuser the harness creates (trusted on loopback, no password).
pub const SUPERUSER: &str = "visitbridge";

/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong starting or using the server.
#[derive(Debug, thiserror::Error)]
pub enum TestPostgresError {
    /// No PostgreSQL binaries on this machine.
    #[error(
        "PostgreSQL's server binaries (initdb, postgres) were not found; install them with \
         `scripts/setup` or `apt-get install postgresql`, or set VISITBRIDGE_PG_BINDIR to their \
         directory"
    )]
    NotInstalled,
    /// Running as root without an unprivileged user to run the server as.
    #[error(
        "running as root, and neither a `postgres` nor a `nobody` user exists to run the server"
    )]
    NoUnprivilegedUser,
    /// A file-system or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command.
        command: String,
        /// What it printed.
        output: String,
    },
    /// The server did not accept connections in time.
    #[error("PostgreSQL did not become ready within {READY_TIMEOUT:?}; its log: {log}")]
    NotReady {
        /// The end of the server's log.
        log: String,
    },
    /// Making the throwaway certificate failed.
    #[error("making the server's certificate failed")]
    Certificate(#[source] rcgen::Error),
    /// A statement against the server failed.
    #[error("PostgreSQL refused a statement")]
    Postgres(#[source] tokio_postgres::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestPostgresError {
    let what = what.into();
    move |source| TestPostgresError::Io { what, source }
}

/// The unprivileged user the server runs as when the tests run as root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A running throwaway PostgreSQL server.
#[derive(Debug)]
pub struct TestPostgres {
    port: u16,
    ca_pem: String,
    bindir: PathBuf,
    run_as: Option<RunAs>,
    server: Option<Child>,
    /// Removed on drop (after the server stopped).
    dir: Option<tempfile::TempDir>,
    databases: AtomicU32,
}

impl TestPostgres {
    /// Starts a server; it stops, and its files are removed, when the value is dropped.
    pub fn start() -> Result<Self, TestPostgresError> {
        let bindir = find_bindir()?;
        let run_as = run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("visitbridge-pg-")
            .tempdir()
            .map_err(io("creating the server's temporary directory"))?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(io("creating the data directory"))?;
        if let Some(user) = run_as {
            for path in [dir.path(), data.as_path()] {
                chown(path, Some(user.uid), Some(user.gid)).map_err(io(format!(
                    "giving {} to the server's user",
                    path.display()
                )))?;
            }
        }
        let output = command(&bindir, "initdb", run_as)
            .args([
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .arg(format!("--username={SUPERUSER}"))
            .arg("--pgdata")
            .arg(&data)
            .output()
            .map_err(io("running initdb"))?;
        if !output.status.success() {
            return Err(TestPostgresError::Command {
                command: "initdb".to_owned(),
                output: String::from_utf8_lossy(&[output.stdout, output.stderr].concat())
                    .into_owned(),
            });
        }
        let ca_pem = write_certificates(&data, run_as)?;

        // A free port can be taken by someone else before the server binds it: try a few.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = command(&bindir, "postgres", run_as)
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(&data)
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
                .args(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt"])
                .args(["-c", "ssl_key_file=server.key"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(dir.path())?)
                .spawn()
                .map_err(io("starting postgres"))?;
            match wait_ready(port, &mut server, dir.path()) {
                Ok(()) => {
                    return Ok(Self {
                        port,
                        ca_pem,
                        bindir,
                        run_as,
                        server: Some(server),
                        dir: Some(dir),
                        databases: AtomicU32::new(0),
                    });
                }
                Err(e) => {
                    stop(&mut server);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or(TestPostgresError::NotReady { log: String::new() }))
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM certificate of the throwaway CA that signed the server's certificate (issued for
    /// `localhost` and `127.0.0.1`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The URL of `database` as the superuser, without TLS.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Creates a new, empty database and returns its URL (see [`TestPostgres::url`]).
    pub async fn create_database(&self) -> Result<String, TestPostgresError> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .map_err(TestPostgresError::Postgres)?;
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(TestPostgresError::Postgres)?;
        drop(client);
        let _ = connection.await;
        Ok(self.url(&name))
    }

    /// Stops the server at once (as a crash would), keeping its files; [`TestPostgres::restart`]
    /// starts it again on the same port.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Starts the server again after [`TestPostgres::kill`], on the same port and data.
    pub fn restart(&mut self) -> Result<(), TestPostgresError> {
        self.kill();
        let dir = self
            .dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .ok_or(TestPostgresError::NotReady { log: String::new() })?;
        let data = dir.join("data");
        // A killed postmaster leaves its pid file; the new one checks the pid is gone.
        let mut server = command(&self.bindir, "postgres", self.run_as)
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&dir)?)
            .spawn()
            .map_err(io("restarting postgres"))?;
        wait_ready(self.port, &mut server, &dir)?;
        self.server = Some(server);
        Ok(())
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            stop(&mut server);
        }
    }
}

/// One server for the whole test process, started on first use and stopped by a watchdog when the
/// process exits.
pub fn shared() -> Result<&'static TestPostgres, String> {
    static SHARED: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let mut server = TestPostgres::start().map_err(|e| error_chain(&e))?;
            // The value is never dropped: hand the server's end to a watchdog.
            if let (Some(child), Some(dir)) = (server.server.as_ref(), server.dir.take()) {
                start_watchdog(child.id(), dir.keep()).map_err(|e| error_chain(&e))?;
            }
            Ok(server)
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Waits (in a detached shell) for this process to exit, then stops the server and removes its
/// directory. Its output goes nowhere, so it never holds a pipe of whoever ran the tests.
fn start_watchdog(server_pid: u32, dir: PathBuf) -> Result<(), TestPostgresError> {
    let script = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
        kill -INT "$2" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$2" 2>/dev/null
        rm -rf "$3"
    "#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("visitbridge-pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(server_pid.to_string())
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(io("starting the PostgreSQL watchdog"))?;
    Ok(())
}

/// Fast shutdown (SIGINT), then SIGKILL if it lingers.
fn stop(server: &mut Child) {
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(server.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
    let _ = server.wait();
}

fn command(bindir: &Path, program: &str, run_as: Option<RunAs>) -> Command {
    let mut command = Command::new(bindir.join(program));
    // Not the caller's locale or PG* settings: the server must not depend on them.
    command.env("LC_ALL", "C").env_remove("PGDATA");
    if let Some(user) = run_as {
        command.gid(user.gid).uid(user.uid);
    }
    command
}

fn log_file(dir: &Path) -> Result<std::fs::File, TestPostgresError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .map_err(io("opening the server log"))
}

fn wait_ready(port: u16, server: &mut Child, dir: &Path) -> Result<(), TestPostgresError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let log = || {
        let text = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or_default().to_owned()
    };
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            return Err(TestPostgresError::NotReady { log: log() });
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
            && log().contains("ready to accept connections")
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(TestPostgresError::NotReady { log: log() })
}

fn free_port() -> Result<u16, TestPostgresError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

/// The directory holding `initdb` and `postgres`: `VISITBRIDGE_PG_BINDIR`, else the `PATH`, else
/// Debian's `/usr/lib/postgresql/<version>/bin` (the newest).
fn find_bindir() -> Result<PathBuf, TestPostgresError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("VISITBRIDGE_PG_BINDIR").map(PathBuf::from) {
        return if has_both(&dir) {
            Ok(dir)
        } else {
            Err(TestPostgresError::NotInstalled)
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or(TestPostgresError::NotInstalled)
}

/// `None` unless running as root; then the unprivileged user the server runs as.
fn run_as() -> Result<Option<RunAs>, TestPostgresError> {
    // The owner of /proc/self is this process's effective user.
    let euid = std::fs::metadata("/proc/self")
        .map_err(io("reading /proc/self"))?
        .uid();
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(io("reading /etc/passwd"))?;
    let user = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [n, _, uid, gid, ..] if *n == name => Some(RunAs {
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                }),
                _ => None,
            }
        })
    };
    user("postgres")
        .or_else(|| user("nobody"))
        .map(Some)
        .ok_or(TestPostgresError::NoUnprivilegedUser)
}

/// The PEM certificate of a new CA that signed nothing: for checking that a client refuses a
/// server whose certificate another CA signed.
pub fn unrelated_ca_pem() -> Result<String, TestPostgresError> {
    let key = rcgen::KeyPair::generate().map_err(TestPostgresError::Certificate)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(TestPostgresError::Certificate)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ok(params
        .self_signed(&key)
        .map_err(TestPostgresError::Certificate)?
        .pem())
}

/// Writes a throwaway CA and a server certificate for `localhost`/`127.0.0.1` into the data
/// directory, readable by the server only; returns the CA's PEM.
fn write_certificates(data: &Path, run_as: Option<RunAs>) -> Result<String, TestPostgresError> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().map_err(TestPostgresError::Certificate)?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(TestPostgresError::Certificate)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "VisitBridge test CA");
    let ca = ca_params
        .self_signed(&ca_key)
        .map_err(TestPostgresError::Certificate)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().map_err(TestPostgresError::Certificate)?;
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(TestPostgresError::Certificate)?;
    let server = server_params
        .signed_by(&server_key, &issuer)
        .map_err(TestPostgresError::Certificate)?;
    for (name, contents, mode) in [
        ("server.crt", server.pem(), 0o644),
        ("server.key", server_key.serialize_pem(), 0o600),
    ] {
        let path = data.join(name);
        std::fs::write(&path, contents).map_err(io(format!("writing {name}")))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io(format!("protecting {name}")))?;
        if let Some(user) = run_as {
            chown(&path, Some(user.uid), Some(user.gid)).map_err(io(format!("giving {name}")))?;
        }
    }
    Ok(ca.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_started_server_gives_fresh_databases_and_stops_when_dropped() {
        let server = TestPostgres::start().unwrap();
        let first = server.create_database().await.unwrap();
        let second = server.create_database().await.unwrap();
        assert_ne!(first, second);
        let (client, connection) = tokio_postgres::connect(&first, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT current_user, 1 + 1", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), SUPERUSER);
        assert_eq!(row.get::<_, i32>(1), 2);
        drop(client);
        let port = server.port();
        drop(server);
        assert!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
            "the server still listens after drop"
        );
    }
}
