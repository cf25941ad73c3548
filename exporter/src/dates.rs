//! Every date and time the exporter reads from outside — configuration, the original's
//! variables, the portal's start date, Nova's timestamps — goes through this one parser.
//!
//! Accepted: a date (`2024-05-01`, midnight UTC); a date and time with `T` or a space, with
//! optional fractional seconds (`2024-05-01T12:00:00`, `2024-05-01 12:00:00.123456`), UTC
//! unless a zone is given; and RFC 3339 with `Z` or an offset (`2024-05-01T00:00:00+02:00`).
//! Times before 1970 are refused. Parsing is `chrono`'s, so no input, however malformed or
//! multi-byte, can panic here.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// Parses an absolute date or time; the error quotes the input.
pub fn parse(text: &str) -> Result<SystemTime, String> {
    let t = text.trim();
    let utc = parse_utc(t).ok_or_else(|| format!("'{text}' is not a date or an RFC 3339 time"))?;
    let secs = u64::try_from(utc.timestamp()).map_err(|_| format!("'{text}' is before 1970"))?;
    let nanos = utc.timestamp_subsec_nanos();
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(|| format!("'{text}' is out of range"))
}

fn parse_utc(t: &str) -> Option<DateTime<Utc>> {
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(date.and_time(NaiveTime::MIN).and_utc());
    }
    if let Ok(zoned) = DateTime::parse_from_rfc3339(t) {
        return Some(zoned.to_utc());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(t, format).ok())
        .map(|naive| naive.and_utc())
}

/// Parses `now`, an offset from `anchor` (`-3d`, `+2h 30m`), or an absolute time as
/// [`parse`] does. An offset that leaves the representable range is an error, not a panic.
pub fn parse_relative(text: &str, anchor: SystemTime) -> Result<SystemTime, String> {
    let t = text.trim();
    let offset = |rest: &str| {
        humantime::parse_duration(rest.trim())
            .map_err(|e| format!("invalid relative time '{text}': {e}"))
    };
    if t == "now" {
        Ok(anchor)
    } else if let Some(rest) = t.strip_prefix('-') {
        anchor
            .checked_sub(offset(rest)?)
            .filter(|at| *at >= SystemTime::UNIX_EPOCH)
            .ok_or_else(|| format!("'{text}' is before 1970"))
    } else if let Some(rest) = t.strip_prefix('+') {
        anchor
            .checked_add(offset(rest)?)
            .ok_or_else(|| format!("'{text}' is too far in the future"))
    } else {
        parse(t)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn secs(t: SystemTime) -> f64 {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    struct Case {
        input: &'static str,
        want: Result<f64, &'static str>,
    }

    #[test]
    fn absolute_forms() {
        // 2024-05-01T00:00:00Z is 1714521600.
        let cases = [
            Case {
                input: "2024-05-01",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: " 2024-05-01 ",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: "2024-05-01T00:00:00Z",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: "2024-05-01T00:00:00",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: "2024-05-01 00:00:00",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: "2024-05-01T00:00:00.500000",
                want: Ok(1_714_521_600.5),
            },
            Case {
                input: "2024-05-01T02:00:00+02:00",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: "2024-05-01T00:00:00+02:00",
                want: Ok(1_714_514_400.0),
            },
            Case {
                input: "2024-04-30T22:00:00-02:00",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: "2024-05-01 02:00:00+02:00",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: "1969-12-31",
                want: Err("before 1970"),
            },
            Case {
                input: "soon",
                want: Err("'soon' is not a date"),
            },
            Case {
                input: "2024-13-01",
                want: Err("is not a date"),
            },
            Case {
                input: "",
                want: Err("is not a date"),
            },
            // Multi-byte text around the cut where an offset would be: no panic.
            Case {
                input: "2024-05-01T00:00:00+0€:00",
                want: Err("is not a date"),
            },
            Case {
                input: "€€€€€€€€€€",
                want: Err("is not a date"),
            },
            Case {
                input: "2024-05-01T00:00:00ü",
                want: Err("is not a date"),
            },
        ];
        for case in cases {
            let got = parse(case.input).map(secs);
            match (got, case.want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{}", case.input),
                (Err(got), Err(want)) => assert!(got.contains(want), "{}: {got}", case.input),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", case.input),
            }
        }
    }

    #[test]
    fn relative_forms() {
        let anchor = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_521_600);
        let cases = [
            Case {
                input: "now",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: "-1d",
                want: Ok(1_714_435_200.0),
            },
            Case {
                input: "+2h",
                want: Ok(1_714_528_800.0),
            },
            Case {
                input: "2024-05-01",
                want: Ok(1_714_521_600.0),
            },
            Case {
                input: "+300000000000y",
                want: Err("too far in the future"),
            },
            Case {
                input: "-300000000000y",
                want: Err("before 1970"),
            },
            Case {
                input: "-60y",
                want: Err("before 1970"),
            },
            Case {
                input: "+soon",
                want: Err("invalid relative time"),
            },
        ];
        for case in cases {
            let got = parse_relative(case.input, anchor).map(secs);
            match (got, case.want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{}", case.input),
                (Err(got), Err(want)) => assert!(got.contains(want), "{}: {got}", case.input),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", case.input),
            }
        }
    }
}
