//! Harness for VisitBridge's browser end-to-end tests: a headless Chromium driven over WebDriver.
//!
//! [`Browser::start`] launches Debian's `chromedriver` on a free loopback port and opens a
//! Chromium session with the flags this machine needs (headless, no sandbox as root, no background
//! networking, a fresh profile), so each simulated person — clinician, patient, admin — gets a
//! browser of their own with its own cookies. Helpers wait for what a person would wait for (a
//! text on the page), within a bound, and save screenshots as test artefacts.
//!
//! `scripts/setup` installs `chromium` and `chromium-driver`; `CHROMEDRIVER` and `CHROME_BIN`
//! override their paths.
#![deny(missing_docs)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};

/// Why the browser could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// chromedriver or Chromium is missing or would not start.
    #[error(
        "cannot start the browser: {0} (run scripts/setup to install chromium and chromium-driver)"
    )]
    Start(String),
    /// A WebDriver command failed.
    #[error("webdriver: {0}")]
    WebDriver(#[from] fantoccini::error::CmdError),
    /// A page never showed what the test waited for.
    #[error("timed out after {seconds} s waiting for {what} on {url}; the page said:\n{page}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// Where.
        url: String,
        /// The page's visible text when giving up.
        page: String,
        /// How long it waited.
        seconds: u64,
    },
    /// Saving an artefact failed.
    #[error("cannot save {0}: {1}")]
    Artefact(PathBuf, std::io::Error),
}

/// How long a person waits for a page to show something before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// One person's browser: its own chromedriver, Chromium process and profile.
pub struct Browser {
    client: Client,
    driver: Child,
    artefacts: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium; screenshots go to `artefacts`.
    pub async fn start(artefacts: impl Into<PathBuf>) -> Result<Self, BrowserError> {
        let artefacts = artefacts.into();
        std::fs::create_dir_all(&artefacts)
            .map_err(|e| BrowserError::Artefact(artefacts.clone(), e))?;
        let chromedriver =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
        let chrome = std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        if !Path::new(&chrome).exists() {
            return Err(BrowserError::Start(format!("no Chromium at {chrome}")));
        }
        let port = free_port()?;
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BrowserError::Start(format!("{chromedriver}: {e}")))?;
        let profile = tempfile::tempdir().map_err(|e| BrowserError::Start(e.to_string()))?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chrome,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen; a person would wait too.
        let mut last = String::new();
        for _ in 0..100 {
            match builder.connect(&url).await {
                Ok(client) => {
                    return Ok(Self {
                        client,
                        driver,
                        artefacts,
                        _profile: profile,
                    });
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut driver = driver;
        let _ = driver.kill();
        Err(BrowserError::Start(format!(
            "chromedriver did not accept a session: {last}"
        )))
    }

    /// The WebDriver client, for anything the helpers below don't cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) -> Result<(), BrowserError> {
        self.client.goto(url).await?;
        Ok(())
    }

    /// The address of the page shown.
    pub async fn url(&self) -> Result<String, BrowserError> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// The visible text of the page.
    pub async fn text(&self) -> Result<String, BrowserError> {
        Ok(self.client.find(Locator::Css("body")).await?.text().await?)
    }

    /// Waits until the page's visible text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str) -> Result<String, BrowserError> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let text = self.text().await.unwrap_or_default();
            if text.contains(needle) {
                return Ok(text);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(BrowserError::Timeout {
                    what: format!("the text {needle:?}"),
                    url: self.url().await.unwrap_or_default(),
                    page: text,
                    seconds: PATIENCE.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Clicks the link or button whose visible text contains `label` (waiting for it to appear).
    pub async fn click(&self, label: &str) -> Result<(), BrowserError> {
        // A page that re-renders between the find and the click (a live panel, the sandbox
        // meeting's roster) leaves the element found detached: find it again, a few times.
        let mut attempts = 0;
        loop {
            let element = self.wait_for_clickable(label).await?;
            match element.click().await {
                Ok(()) => return Ok(()),
                Err(_) if attempts < 3 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn wait_for_clickable(&self, label: &str) -> Result<Element, BrowserError> {
        let literal = xpath_literal(label);
        let xpath = format!(
            "//a[contains(normalize-space(.), {literal})] | //button[contains(normalize-space(.), {literal})] | //input[(@type='submit' or @type='button') and contains(@value, {literal})]"
        );
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(element) = self.client.find(Locator::XPath(&xpath)).await {
                return Ok(element);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(BrowserError::Timeout {
                    what: format!("a link or button {label:?}"),
                    url: self.url().await.unwrap_or_default(),
                    page: self.text().await.unwrap_or_default(),
                    seconds: PATIENCE.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Types `value` into the form field labelled `label` (by `<label for>` or `name`).
    pub async fn fill(&self, label: &str, value: &str) -> Result<(), BrowserError> {
        let literal = xpath_literal(label);
        let xpath = format!(
            "//input[@id=//label[contains(normalize-space(.), {literal})]/@for] | //select[@id=//label[contains(normalize-space(.), {literal})]/@for] | //input[@name={literal}] | //select[@name={literal}]"
        );
        let field = self.client.find(Locator::XPath(&xpath)).await?;
        if field.tag_name().await?.eq_ignore_ascii_case("select") {
            field.select_by_label(value).await?;
        } else {
            field.clear().await?;
            field.send_keys(value).await?;
        }
        Ok(())
    }

    /// Saves a screenshot of the page as `{artefacts}/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf, BrowserError> {
        let png = self.client.screenshot().await?;
        let path = self.artefacts.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(|e| BrowserError::Artefact(path.clone(), e))?;
        Ok(path)
    }

    /// Ends the session and stops chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// A free loopback port for chromedriver (it takes a port number, not a listener).
fn free_port() -> Result<u16, BrowserError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| BrowserError::Start(e.to_string()))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| BrowserError::Start(e.to_string()))
}

/// `s` as an XPath string literal, whatever quotes it holds.
fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}
