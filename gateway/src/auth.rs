//! Bearer-token authentication: exactly one `Authorization: Bearer <token>` header, compared
//! in constant time against every client's token.
//!
//! Every configured token is compared (no early exit), so the time taken does not tell which
//! client, or how much of a token, matched. Tokens are never logged or returned in errors.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq;

/// Why a request is not authenticated. None of these carries the presented token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    Missing,
    #[error("more than one Authorization header")]
    Multiple,
    #[error("Authorization is not a Bearer token")]
    NotBearer,
    #[error("unknown token")]
    Unknown,
}

/// Returns the index of the client whose token the request carries.
pub fn authenticate<T: AsRef<[u8]>>(headers: &HeaderMap, tokens: &[T]) -> Result<usize, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    if values.next().is_some() {
        return Err(AuthError::Multiple);
    }
    let presented = bearer(value.as_bytes()).ok_or(AuthError::NotBearer)?;
    let mut found: Option<usize> = None;
    for (i, token) in tokens.iter().enumerate() {
        let token = token.as_ref();
        // Lengths are compared in the clear by `ct_eq`; configured tokens' lengths are not
        // secret enough to matter, their bytes are.
        if bool::from(presented.ct_eq(token)) && found.is_none() {
            found = Some(i);
        }
    }
    found.ok_or(AuthError::Unknown)
}

/// The token of a `Bearer` credential: scheme case-insensitive, one or more spaces, then a
/// non-empty token without spaces.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let rest = value.get(6..)?;
    let token_start = rest.iter().position(|b| *b != b' ')?;
    if token_start == 0 {
        return None;
    }
    let token = &rest[token_start..];
    (!token.is_empty() && !token.iter().any(|b| b.is_ascii_whitespace())).then_some(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn table() {
        let tokens = ["s3cret-portal", "s3cret-other"];
        let cases: &[(&str, &[&str], Result<usize, AuthError>)] = &[
            ("first client", &["Bearer s3cret-portal"], Ok(0)),
            ("second client", &["Bearer s3cret-other"], Ok(1)),
            ("scheme in any case", &["bEaReR s3cret-other"], Ok(1)),
            ("several spaces", &["Bearer   s3cret-portal"], Ok(0)),
            ("no header", &[], Err(AuthError::Missing)),
            (
                "two headers",
                &["Bearer s3cret-portal", "Bearer s3cret-portal"],
                Err(AuthError::Multiple),
            ),
            (
                "basic auth",
                &["Basic czNjcmV0LXBvcnRhbDo="],
                Err(AuthError::NotBearer),
            ),
            (
                "no space",
                &["Bearers3cret-portal"],
                Err(AuthError::NotBearer),
            ),
            ("empty token", &["Bearer "], Err(AuthError::NotBearer)),
            ("scheme only", &["Bearer"], Err(AuthError::NotBearer)),
            (
                "trailing space",
                &["Bearer s3cret-portal "],
                Err(AuthError::NotBearer),
            ),
            (
                "token with a tab",
                &["Bearer s3cret\tportal"],
                Err(AuthError::NotBearer),
            ),
            (
                "wrong token",
                &["Bearer s3cret-portaL"],
                Err(AuthError::Unknown),
            ),
            (
                "prefix of a token",
                &["Bearer s3cret"],
                Err(AuthError::Unknown),
            ),
            (
                "token plus more",
                &["Bearer s3cret-portal-and-more"],
                Err(AuthError::Unknown),
            ),
        ];
        for (name, values, want) in cases {
            assert_eq!(
                authenticate(&headers(values), &tokens),
                *want,
                "case: {name}"
            );
        }
        assert_eq!(
            authenticate(&headers(&["Bearer x"]), &[] as &[&str]),
            Err(AuthError::Unknown)
        );
    }
}
