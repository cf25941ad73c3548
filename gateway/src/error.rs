//! Every way a request can end, and the one mapping from a failure to an HTTP response.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::auth::AuthError;
use crate::query::QueryError;
use crate::ratelimit::retry_after_secs;

/// The `outcome` label of `federation_gateway_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Allowed,
    Unauthorized,
    Forbidden,
    BadRequest,
    RateLimited,
    NotFound,
    UpstreamError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::BadRequest => "bad_request",
            Self::RateLimited => "rate_limited",
            Self::NotFound => "not_found",
            Self::UpstreamError => "upstream_error",
        }
    }
}

/// Why a request was not forwarded, or failed upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request target too long")]
    UriTooLong,
    #[error("only origin-form request targets are accepted")]
    AbsoluteTarget,
    #[error("a federate request has no body")]
    UnexpectedBody,
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] AuthError),
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    #[error("bad request: {0}")]
    BadQuery(#[from] QueryError),
    #[error("forbidden: match[] {selector} is not allowed for this client")]
    Forbidden { selector: String },
    #[error("upstream unreachable: {0}")]
    UpstreamConnect(String),
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
}

impl GatewayError {
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::NotFound | Self::MethodNotAllowed => Outcome::NotFound,
            Self::UriTooLong | Self::AbsoluteTarget | Self::UnexpectedBody | Self::BadQuery(_) => {
                Outcome::BadRequest
            }
            Self::Unauthorized(_) => Outcome::Unauthorized,
            Self::RateLimited { .. } => Outcome::RateLimited,
            Self::Forbidden { .. } => Outcome::Forbidden,
            Self::UpstreamConnect(_) | Self::UpstreamTimeout(_) => Outcome::UpstreamError,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::AbsoluteTarget | Self::UnexpectedBody | Self::BadQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::UpstreamConnect(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The response: status, a one-line text body, and the headers the status calls for.
    /// Unauthorized requests learn nothing about why; the others are told what to fix.
    pub fn response(&self) -> Response<Bytes> {
        let body = match self {
            Self::Unauthorized(_) => "unauthorized\n".to_string(),
            Self::UpstreamConnect(_) => "upstream unreachable\n".to_string(),
            other => format!("{other}\n"),
        };
        let mut resp = Response::new(Bytes::from(body));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            Self::Unauthorized(_) => {
                h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after } => {
                h.insert(
                    RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            Self::MethodNotAllowed => {
                h.insert(http::header::ALLOW, HeaderValue::from_static("GET"));
            }
            _ => {}
        }
        resp
    }
}
