//! Captures everything `tracing` logs in a test binary, for privacy assertions on log output.
//!
//! One global subscriber per test binary, installed on first use: a thread-local one
//! (`set_default`) misses events from other threads and, worse, lets callsites first hit by
//! other tests be cached as disabled, which makes log assertions flaky. Tests running in parallel
//! share the buffer, so assert on what must *never* appear, or on text the test itself caused.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

fn buffer() -> Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
        .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (at `debug` for our crates; noisy transport crates at
/// `info`) unless already installed.
pub fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let buffer = buffer();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,wiremock=off,hyper=info,hyper_util=info,h2=info,reqwest=info,rustls=info",
            ))
            .with_ansi(false)
            .with_writer(move || LogWriter(buffer.clone()))
            .try_init();
    });
}

/// Everything logged so far in this test binary.
pub fn captured() -> String {
    let buffer = buffer();
    let bytes = buffer.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&bytes).into_owned()
}
