//! The accounting start from the portal: `GET usage_start_url` answers a JSON list whose first
//! element has `start_date` (as the original's `USAGE_EXPORTER_START_DATE_ENDPOINT`).
//!
//! Fetched when a usage source first refreshes; until it answers, that refresh fails (and is
//! retried with backoff), so the source is not ready and exports nothing it would have to
//! take back.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::sources::portal::{self, PortalError};

/// Why the start date could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StartDateError {
    #[error("start date URL {0}")]
    Fetch(#[from] PortalError),
    #[error("start date URL {url}: {problem}")]
    Invalid { url: String, problem: String },
}

#[derive(Debug, Deserialize)]
struct Entry {
    start_date: String,
}

/// Parses the portal's answer.
pub fn parse(body: &[u8]) -> Result<SystemTime, String> {
    let list: Vec<Entry> = serde_json::from_slice(body)
        .map_err(|e| format!("expected [{{\"start_date\": …}}]: {e}"))?;
    let first = list.first().ok_or("the list is empty")?;
    parse_time(&first.start_date)
}

/// `2024-01-01`, `2024-01-01T00:00:00Z`, `2024-01-01 00:00:00`, or with an offset `+02:00`.
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let t = text.trim();
    let invalid = || format!("'{text}' is not a date or an RFC 3339 time");
    if t.len() == 10 {
        return humantime::parse_rfc3339_weak(&format!("{t}T00:00:00Z")).map_err(|_| invalid());
    }
    if let Ok(utc) = humantime::parse_rfc3339_weak(t) {
        return Ok(utc);
    }
    // An explicit offset other than zero: read the clock time as UTC, then shift.
    let (clock, offset) = t.split_at(t.len().saturating_sub(6));
    let sign = match offset.as_bytes().first() {
        Some(b'+') => 1i64,
        Some(b'-') => -1,
        _ => return Err(invalid()),
    };
    let (h, m) = offset[1..].split_once(':').ok_or_else(invalid)?;
    let minutes: i64 =
        h.parse::<i64>().map_err(|_| invalid())? * 60 + m.parse::<i64>().map_err(|_| invalid())?;
    let utc = humantime::parse_rfc3339_weak(clock).map_err(|_| invalid())?;
    let shift = Duration::from_secs((minutes * 60).unsigned_abs());
    if sign > 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    }
    .ok_or_else(invalid)
}

/// Fetches the start date once.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<SystemTime, StartDateError> {
    let body = portal::get(client, url).await?;
    parse(&body).map_err(|problem| StartDateError::Invalid {
        url: portal::redact(url),
        problem,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_the_portal_answer() {
        let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
        let cases: [(&str, Result<SystemTime, &str>); 8] = [
            (
                r#"[{"start_date": "2024-01-01"}]"#,
                Ok(at("2024-01-01T00:00:00Z")),
            ),
            (
                r#"[{"start_date": "2024-01-01T06:30:00Z", "id": 3}, {"start_date": "1999-01-01"}]"#,
                Ok(at("2024-01-01T06:30:00Z")),
            ),
            (
                r#"[{"start_date": "2024-01-01T06:30:00+02:00"}]"#,
                Ok(at("2024-01-01T04:30:00Z")),
            ),
            (
                r#"[{"start_date": "2024-01-01T06:30:00-01:30"}]"#,
                Ok(at("2024-01-01T08:00:00Z")),
            ),
            (r#"[]"#, Err("the list is empty")),
            (
                r#"{"start_date": "2024-01-01"}"#,
                Err("expected [{\"start_date\""),
            ),
            (
                r#"[{"start": "2024-01-01"}]"#,
                Err("missing field `start_date`"),
            ),
            (r#"[{"start_date": "soon"}]"#, Err("'soon' is not a date")),
        ];
        for (body, want) in cases {
            match (parse(body.as_bytes()), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{body}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{body}: {got}"),
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }
}
