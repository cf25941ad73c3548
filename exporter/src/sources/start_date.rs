//! The accounting start from the portal: `GET usage_start_url` answers a JSON list whose first
//! element has `start_date` (as the original's `USAGE_EXPORTER_START_DATE_ENDPOINT`).
//!
//! Fetched when a usage source first refreshes; until it answers, that refresh fails (and is
//! retried with backoff), so the source is not ready and exports nothing it would have to
//! take back.

use std::time::SystemTime;

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

/// Parses one date or time as every date input does (`crate::dates`).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    crate::dates::parse(text)
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
        let cases: [(&str, Result<SystemTime, &str>); 9] = [
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
            // A multi-byte character where a byte offset used to cut the text: an error, not
            // a panic.
            (
                r#"[{"start_date": "2024-05-01T€€x"}]"#,
                Err("is not a date"),
            ),
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
