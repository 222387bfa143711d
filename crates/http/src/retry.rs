//! Bounded retries for idempotent calls: jittered backoff, `Retry-After`, a total time budget.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, header::HeaderMap};

/// How an idempotent call is retried.
///
/// Both bounds apply: at most `max_attempts` tries in all, and no new try is started once the
/// next wait would end after `max_total` from the first try. A `Retry-After` longer than what is left
/// of the budget ends the retries at once (the caller reports the throttle instead of hanging).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The first backoff; each later one doubles, capped at `max_delay`.
    pub base_delay: Duration,
    /// The largest backoff between two tries (a `Retry-After` may ask for more, up to the budget).
    pub max_delay: Duration,
    /// The time budget across all tries and waits.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_total: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries (for writes and tests).
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The backoff before try number `attempt + 1` (`attempt` counts from 1): exponential with
    /// "full jitter" between half and all of the step, or `retry_after` when the server said so.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait;
        }
        let step = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(jitter_fraction())
    }
}

/// A uniformly random fraction in `[0, 1)` from the system random source.
fn jitter_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// Statuses worth another try for an idempotent call: 429, 500, 502, 503, 504.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// The wait a `Retry-After` header asks for, in delay-seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Why an idempotent call gave up without any HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Every try timed out.
    #[error("timed out after {attempts} attempt(s)")]
    Timeout {
        /// Tries made.
        attempts: u32,
    },
    /// The connection failed (refused, reset, TLS) on the last try.
    #[error("transport error after {attempts} attempt(s): {source}")]
    Transport {
        /// Tries made.
        attempts: u32,
        /// The last transport error (never carries headers, so no token).
        #[source]
        source: reqwest::Error,
    },
}

impl SendError {
    /// Tries made before giving up.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Timeout { attempts } | Self::Transport { attempts, .. } => *attempts,
        }
    }
}

/// Sends an **idempotent** request, retrying on 429/5xx/timeouts within `policy`.
///
/// `make_request` builds a fresh request for each try (a `RequestBuilder` is consumed by sending).
/// Returns the last response, which may still be a retryable status when the bounds were reached:
/// the caller turns it into its own typed error with the upstream's details.
pub async fn send_idempotent<F>(
    policy: &RetryPolicy,
    mut make_request: F,
) -> Result<reqwest::Response, SendError>
where
    F: FnMut() -> reqwest::RequestBuilder,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = make_request().send().await;
        let retry_wait = match &outcome {
            Ok(response) if is_retryable_status(response.status()) => {
                Some(retry_after(response.headers()))
            }
            Ok(_) => None,
            Err(e) if e.is_timeout() || e.is_connect() || e.is_request() => Some(None),
            Err(_) => None,
        };
        let Some(server_wait) = retry_wait else {
            return finish(outcome, attempt);
        };
        let wait = policy.delay(attempt, server_wait);
        let out_of_budget = started.elapsed() + wait > policy.max_total;
        if attempt >= policy.max_attempts || out_of_budget {
            return finish(outcome, attempt);
        }
        tracing::debug!(
            attempt,
            wait_ms = wait.as_millis() as u64,
            "retrying upstream call"
        );
        tokio::time::sleep(wait).await;
    }
}

fn finish(
    outcome: Result<reqwest::Response, reqwest::Error>,
    attempts: u32,
) -> Result<reqwest::Response, SendError> {
    outcome.map_err(|source| {
        if source.is_timeout() {
            SendError::Timeout { attempts }
        } else {
            SendError::Transport { attempts, source }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            max_total: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d9 = p.delay(9, None);
            assert!(d9 <= Duration::from_millis(400), "capped: {d9:?}");
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }
}
