//! Serving FHIR R4 searches: one `date` search value as the range of instants it matches, the
//! `searchset` Bundle of a page with its paging links, and the OperationOutcome of a refused
//! request (<https://hl7.org/fhir/R4/search.html>, <https://hl7.org/fhir/R4/http.html>).
//!
//! What a server searches, and which parameters it knows, is its own: this module only gives
//! the shapes and rules the specification fixes.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use serde_json::{Value, json};

use crate::DatePrefix;

/// The media type of FHIR JSON.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Why a request could not be answered, as its OperationOutcome says
/// (<https://hl7.org/fhir/R4/valueset-issue-type.html>).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A parameter's value is not what the specification allows (`invalid`, HTTP 400).
    #[error("{parameter}: {reason}")]
    Invalid {
        /// The parameter.
        parameter: String,
        /// What is wrong, without echoing the value.
        reason: String,
    },
    /// The request uses something this server does not do (`not-supported`, HTTP 400).
    #[error("{0}")]
    NotSupported(String),
    /// No such resource (`not-found`, HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// No credentials, or not good ones (`login`, HTTP 401).
    #[error("{0}")]
    Login(String),
    /// The caller may not do this (`forbidden`, HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The method is not one this endpoint serves (`not-supported`, HTTP 405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The client accepts no format this server answers in (`not-supported`, HTTP 406).
    #[error("{0}")]
    NotAcceptable(String),
    /// The request is larger than the server takes (`too-long`, HTTP 413).
    #[error("the request is too large")]
    TooLarge,
    /// The answer took too long (`timeout`, HTTP 504).
    #[error("the server did not answer in time")]
    Timeout,
    /// The server failed (`exception`, HTTP 500); the detail stays in the log.
    #[error("the server could not answer")]
    Exception,
}

impl RequestError {
    /// An invalid value of `parameter`.
    pub fn invalid(parameter: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            parameter: parameter.to_owned(),
            reason: reason.into(),
        }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } | Self::NotSupported(_) => 400,
            Self::Login(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::NotAcceptable(_) => 406,
            Self::TooLarge => 413,
            Self::Timeout => 504,
            Self::Exception => 500,
        }
    }

    /// The issue type code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid",
            Self::NotSupported(_) | Self::MethodNotAllowed(_) | Self::NotAcceptable(_) => {
                "not-supported"
            }
            Self::TooLarge => "too-long",
            Self::Timeout => "timeout",
            Self::NotFound(_) => "not-found",
            Self::Login(_) => "login",
            Self::Forbidden(_) => "forbidden",
            Self::Exception => "exception",
        }
    }

    /// The OperationOutcome that answers the request.
    pub fn outcome(&self) -> Value {
        json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": self.code(),
                "diagnostics": self.to_string(),
            }],
        })
    }
}

/// The instants a `date` search value matches, for an element that is an instant (such as
/// `AuditEvent.recorded`): from `from` (inclusive) to `before` (exclusive); `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DateRange {
    /// The earliest instant that matches.
    pub from: Option<DateTime<Utc>>,
    /// The first instant after the range.
    pub before: Option<DateTime<Utc>>,
}

impl DateRange {
    /// Parses one value of a `date` parameter: an optional prefix (`eq`, `ge`, `gt`, `le`, `lt`;
    /// `ne`, `sa`, `eb` and `ap` are not supported) and a date, dateTime or instant. A value
    /// stands for the whole of its precision (`2026-03-05` is that day); a value without a time
    /// is a UTC date, and a time needs its zone, as in FHIR's dateTime.
    pub fn parse(value: &str) -> Result<Self, RequestError> {
        let (prefix, text) = match value.get(..2) {
            Some("eq") => (DatePrefix::Eq, &value[2..]),
            Some("ge") => (DatePrefix::Ge, &value[2..]),
            Some("gt") => (DatePrefix::Gt, &value[2..]),
            Some("le") => (DatePrefix::Le, &value[2..]),
            Some("lt") => (DatePrefix::Lt, &value[2..]),
            Some(p @ ("ne" | "sa" | "eb" | "ap")) => {
                return Err(RequestError::NotSupported(format!(
                    "date: the prefix {p} is not supported (use eq, ge, gt, le or lt)"
                )));
            }
            _ => (DatePrefix::Eq, value),
        };
        let (start, end) = precision_range(text).ok_or_else(|| {
            RequestError::invalid(
                "date",
                "expected a date (YYYY, YYYY-MM, YYYY-MM-DD) or a dateTime with its zone",
            )
        })?;
        Ok(match prefix {
            DatePrefix::Eq => Self {
                from: Some(start),
                before: Some(end),
            },
            DatePrefix::Ge => Self {
                from: Some(start),
                before: None,
            },
            DatePrefix::Gt => Self {
                from: Some(end),
                before: None,
            },
            DatePrefix::Lt => Self {
                from: None,
                before: Some(start),
            },
            DatePrefix::Le => Self {
                from: None,
                before: Some(end),
            },
        })
    }

    /// The instants both ranges match (several `date` parameters are all to hold).
    pub fn and(self, other: Self) -> Self {
        Self {
            from: self.from.max(other.from),
            before: match (self.before, other.before) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// Whether no instant can match.
    pub fn is_empty(&self) -> bool {
        matches!((self.from, self.before), (Some(from), Some(before)) if from >= before)
    }
}

/// The range `[start, end)` a date, dateTime or instant text stands for.
fn precision_range(text: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let utc_midnight = |date: NaiveDate| Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN));
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        text.get(range)
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u32>().ok())
    };
    match text.len() {
        4 => {
            let year = i32::try_from(digits(0..4)?).ok()?;
            let start = NaiveDate::from_ymd_opt(year, 1, 1)?;
            let end = NaiveDate::from_ymd_opt(year + 1, 1, 1)?;
            Some((utc_midnight(start), utc_midnight(end)))
        }
        7 if bytes[4] == b'-' => {
            let year = i32::try_from(digits(0..4)?).ok()?;
            let start = NaiveDate::from_ymd_opt(year, digits(5..7)?, 1)?;
            let end = if start.month() == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, start.month() + 1, 1)?
            };
            Some((utc_midnight(start), utc_midnight(end)))
        }
        10 => {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            Some((utc_midnight(date), utc_midnight(date.succ_opt()?)))
        }
        _ => date_time_range(text),
    }
}

/// `YYYY-MM-DDThh:mm[:ss[.f…]]` and a zone (`Z` or `±hh:mm`): the minute, second or fraction.
fn date_time_range(text: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let zone_at = text
        .rfind(['Z', '+'])
        .or_else(|| text.rfind('-').filter(|&i| i > 10))?;
    let (local, zone) = text.split_at(zone_at);
    let offset = match zone.as_bytes() {
        b"Z" => FixedOffset::east_opt(0)?,
        // `±hh:mm`, hours to 14 (FHIR's and ISO 8601's widest).
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let digit = |b: &u8| i32::from(b - b'0');
            let (h, m) = (digit(h1) * 10 + digit(h2), digit(m1) * 10 + digit(m2));
            if h > 14 || m > 59 || (h == 14 && m > 0) {
                return None;
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            FixedOffset::east_opt(sign * (h * 3600 + m * 60))?
        }
        _ => return None,
    };
    let (format, step) = match local.len() {
        16 => ("%Y-%m-%dT%H:%M", Duration::minutes(1)),
        19 => ("%Y-%m-%dT%H:%M:%S", Duration::seconds(1)),
        n if n > 20 && n <= 29 && local.as_bytes()[19] == b'.' => {
            let places = u32::try_from(n - 20).ok()?;
            (
                "%Y-%m-%dT%H:%M:%S%.f",
                Duration::nanoseconds(10_i64.pow(9 - places)),
            )
        }
        _ => return None,
    };
    let naive = chrono::NaiveDateTime::parse_from_str(local, format).ok()?;
    let start = offset
        .from_local_datetime(&naive)
        .single()?
        .with_timezone(&Utc);
    Some((start, start + step))
}

/// One entry of a search's page: the resource's absolute URL and the resource.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchMatch {
    /// `Bundle.entry.fullUrl`: where the resource is read on this server.
    pub full_url: String,
    /// The resource.
    pub resource: Value,
}

/// The `searchset` Bundle of one page of a search: the `self` link (the search as understood,
/// only the parameters that were used), the `next` link when there is a next page, and the
/// matches (`search.mode` `match`). `total` is left out: counting every match is not needed for
/// paging, and the specification makes it optional.
pub fn searchset(
    self_url: &str,
    next_url: Option<&str>,
    matches: Vec<SearchMatch>,
    timestamp: DateTime<Utc>,
) -> Value {
    let mut link = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(next) = next_url {
        link.push(json!({ "relation": "next", "url": next }));
    }
    let entry: Vec<Value> = matches
        .into_iter()
        .map(|m| {
            json!({
                "fullUrl": m.full_url,
                "resource": m.resource,
                "search": { "mode": "match" },
            })
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "link": link,
    });
    if !entry.is_empty() {
        bundle["entry"] = Value::Array(entry);
    }
    bundle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn range(from: Option<&str>, before: Option<&str>) -> DateRange {
        DateRange {
            from: from.map(at),
            before: before.map(at),
        }
    }

    #[test]
    fn a_date_value_stands_for_its_whole_precision_and_the_prefix_picks_a_side() {
        let day = (Some("2026-03-05T00:00:00Z"), Some("2026-03-06T00:00:00Z"));
        assert_eq!(DateRange::parse("2026-03-05").unwrap(), range(day.0, day.1));
        assert_eq!(
            DateRange::parse("eq2026-03-05").unwrap(),
            range(day.0, day.1)
        );
        assert_eq!(
            DateRange::parse("ge2026-03-05").unwrap(),
            range(day.0, None)
        );
        assert_eq!(
            DateRange::parse("gt2026-03-05").unwrap(),
            range(day.1, None)
        );
        assert_eq!(
            DateRange::parse("lt2026-03-05").unwrap(),
            range(None, day.0)
        );
        assert_eq!(
            DateRange::parse("le2026-03-05").unwrap(),
            range(None, day.1)
        );
        assert_eq!(
            DateRange::parse("2026").unwrap(),
            range(Some("2026-01-01T00:00:00Z"), Some("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            DateRange::parse("2026-12").unwrap(),
            range(Some("2026-12-01T00:00:00Z"), Some("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            DateRange::parse("ge2026-03-05T18:00:00-05:00").unwrap(),
            range(Some("2026-03-05T23:00:00Z"), None)
        );
        assert_eq!(
            DateRange::parse("2026-03-05T18:00Z").unwrap(),
            range(Some("2026-03-05T18:00:00Z"), Some("2026-03-05T18:01:00Z"))
        );
        assert_eq!(
            DateRange::parse("lt2026-03-05T18:00:00.25+01:00").unwrap(),
            range(None, Some("2026-03-05T17:00:00.25Z"))
        );
        assert_eq!(
            DateRange::parse("2026-03-05T18:00:00.250Z").unwrap(),
            range(
                Some("2026-03-05T18:00:00.250Z"),
                Some("2026-03-05T18:00:00.251Z")
            )
        );
    }

    #[test]
    fn odd_dates_and_prefixes_are_refused_with_the_right_issue() {
        for bad in [
            "",
            "ge",
            "2026-13",
            "2026-02-30",
            "2026-03-05T18:00:00",
            "2026-03-05 18:00:00Z",
            "2026-03-05T18:00:00+25:00",
            "2026-03-05T18:00:00+-5:00",
            "2026-03-05T18:00:00+05:-3",
            "2026-03-05T18:00:00+14:30",
            "2026-03-05T18:00:00\u{e9}",
            "\u{e9}\u{e9}2026",
            "yesterday",
        ] {
            let err = DateRange::parse(bad).unwrap_err();
            assert_eq!(err.code(), "invalid", "{bad:?}");
            assert_eq!(err.status(), 400);
            assert!(!err.to_string().contains(bad) || bad.is_empty(), "{err}");
        }
        let err = DateRange::parse("ap2026-03-05").unwrap_err();
        assert_eq!(err.code(), "not-supported");
    }

    #[test]
    fn ranges_combine_to_what_all_of_them_match() {
        let both = DateRange::parse("ge2026-03-01")
            .unwrap()
            .and(DateRange::parse("lt2026-04-01").unwrap());
        assert_eq!(
            both,
            range(Some("2026-03-01T00:00:00Z"), Some("2026-04-01T00:00:00Z"))
        );
        assert!(!both.is_empty());
        assert!(
            DateRange::parse("ge2026-04-01")
                .unwrap()
                .and(DateRange::parse("lt2026-03-01").unwrap())
                .is_empty()
        );
    }

    #[test]
    fn a_page_is_a_searchset_with_self_and_next_links() {
        let page = searchset(
            "https://x.example/fhir/AuditEvent?date=ge2026",
            Some("https://x.example/fhir/AuditEvent?date=ge2026&ct=abc"),
            vec![SearchMatch {
                full_url: "https://x.example/fhir/AuditEvent/e-1".into(),
                resource: json!({ "resourceType": "AuditEvent", "id": "e-1" }),
            }],
            at("2026-03-05T18:00:00Z"),
        );
        assert_eq!(page["type"], "searchset");
        assert_eq!(page["link"][1]["relation"], "next");
        assert_eq!(page["entry"][0]["search"]["mode"], "match");
        let empty = searchset(
            "https://x.example/fhir/AuditEvent",
            None,
            vec![],
            Utc::now(),
        );
        assert!(
            empty.get("entry").is_none(),
            "an empty page has no entry array"
        );
        assert_eq!(empty["link"].as_array().unwrap().len(), 1);
    }
}
