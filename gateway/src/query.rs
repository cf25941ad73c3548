//! The `/federate` query string: only `match[]` parameters, each a series selector.
//!
//! Pairs are separated by `&` alone (`;` is data, as in Go since 1.17); keys and values are
//! form-decoded (`%XX`, `+` as space) as Prometheus decodes them; every key must decode to
//! exactly `match[]`; there must be at least one and at most the configured number. Nothing
//! here knows about HTTP: errors are typed and mapped to responses in `error`.

use percent_encoding::percent_decode_str;

use crate::selectors::{ParseError, Selector};

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no match[] parameter")]
    Missing,
    #[error("too many match[] parameters: {count}, at most {max}")]
    TooMany { count: usize, max: usize },
    #[error("parameter {key:?} is not allowed: only match[]")]
    OtherParameter { key: String },
    #[error("parameter is not valid percent-encoded UTF-8")]
    Encoding,
    #[error("match[] {selector:?}: {source}")]
    Selector {
        selector: String,
        source: ParseError,
    },
}

/// Decodes one form-encoded component.
fn decode(raw: &str) -> Result<String, QueryError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| QueryError::Encoding)
}

/// Parses the raw query (without `?`) into its selectors, in request order.
pub fn parse(raw: Option<&str>, max: usize) -> Result<Vec<Selector>, QueryError> {
    let raw = raw.unwrap_or("");
    if raw.is_empty() {
        return Err(QueryError::Missing);
    }
    let pairs: Vec<&str> = raw.split('&').collect();
    if pairs.len() > max {
        return Err(QueryError::TooMany {
            count: pairs.len(),
            max,
        });
    }
    let mut selectors = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key)?;
        if key != "match[]" {
            return Err(QueryError::OtherParameter { key });
        }
        let value = decode(value)?;
        let selector = Selector::parse(&value).map_err(|source| QueryError::Selector {
            selector: value.clone(),
            source,
        })?;
        selectors.push(selector);
    }
    Ok(selectors)
}

/// The canonical query forwarded upstream: each selector re-encoded, percent-encoded.
pub fn encode(selectors: &[Selector]) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    selectors
        .iter()
        .map(|s| {
            format!(
                "match%5B%5D={}",
                percent_encoding::utf8_percent_encode(&s.to_string(), SET)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ORIGINAL: &str =
        "match%5B%5D=%7Bjob%3D%22project_usages%22%2C__name__%3D~%22project_.%2A_usage%22%7D";

    #[test]
    fn accepts_match_parameters_in_any_encoding() {
        let cases = [
            ("the original portal's request", ORIGINAL),
            ("unencoded brackets and braces", "match[]={job=\"project_usages\",__name__=~\"project_.*_usage\"}"),
            ("plus as space", "match%5B%5D=%7Bjob%3D%22project_usages%22%2C+__name__%3D~%22project_.%2A_usage%22%7D"),
            ("encoded key letters", "%6datch%5b%5d=%7Bjob%3D%22project_usages%22%2C__name__%3D~%22project_.%2A_usage%22%7D"),
        ];
        let want = "{__name__=~\"project_.*_usage\",job=\"project_usages\"}";
        for (name, raw) in cases {
            let got = parse(Some(raw), 8).unwrap();
            assert_eq!(got.len(), 1, "{name}");
            assert_eq!(got[0].to_string(), want, "{name}");
        }
        let two = parse(Some(&format!("{ORIGINAL}&match[]=up")), 8).unwrap();
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn refuses_everything_else() {
        let cases: Vec<(&str, Option<String>, QueryError)> = vec![
            ("no query", None, QueryError::Missing),
            ("empty query", Some(String::new()), QueryError::Missing),
            (
                "another parameter",
                Some(format!("{ORIGINAL}&token=abc")),
                QueryError::OtherParameter {
                    key: "token".into(),
                },
            ),
            (
                "empty pair",
                Some(format!("{ORIGINAL}&")),
                QueryError::OtherParameter { key: String::new() },
            ),
            (
                "match without brackets",
                Some("match=up".into()),
                QueryError::OtherParameter {
                    key: "match".into(),
                },
            ),
            (
                "bad encoding",
                Some("match[]=%ff".into()),
                QueryError::Encoding,
            ),
            (
                "too many",
                Some(["match[]=up"; 3].join("&")),
                QueryError::TooMany { count: 3, max: 2 },
            ),
        ];
        for (name, raw, want) in cases {
            assert_eq!(parse(raw.as_deref(), 2).unwrap_err(), want, "{name}");
        }
        // `;` does not separate: the value then is not a selector.
        let err = parse(Some("match[]=up;match[]={__name__=~\".+\"}"), 8).unwrap_err();
        assert!(matches!(err, QueryError::Selector { .. }), "{err:?}");
        let err = parse(Some("match[]="), 8).unwrap_err();
        assert!(matches!(err, QueryError::Selector { .. }), "{err:?}");
    }

    #[test]
    fn forwarded_query_round_trips() {
        let selectors = parse(
            Some(&format!("{ORIGINAL}&match[]=up{{a=%22x%26y%3Dz%2B%20%22}}")),
            8,
        )
        .unwrap();
        let encoded = encode(&selectors);
        assert!(!encoded.contains('{') && !encoded.contains('"') && !encoded.contains(' '));
        assert_eq!(parse(Some(&encoded), 8).unwrap(), selectors);
    }
}
