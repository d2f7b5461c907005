//! The one error type of the HTTP API: every failure becomes
//! `{"error": "<snake_case_code>", "message": "<text>"}` with a fitting status, so a client
//! can branch on `error` and show `message`. Bad input is always a 4xx, never a 500.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::{EngineError, Reject, RejectClass};
use serde::Serialize;
use std::borrow::Cow;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
}

/// The JSON body of every error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code, e.g. `bad_address`, `double_spend`, `stale_job`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

impl AppError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        AppError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn dev_only(what: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "dev_mode_only",
            format!("dev mode only: {what} is available only on a node started with --dev"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code.to_string(),
            message: self.message.clone(),
        }
    }
}

/// The status for a rule the input broke, decided by its class alone (one mapping for
/// every route, the peer routes included). 400: malformed or never valid; 422: well-formed
/// but breaks a ledger rule given the state, or this node's fee policy; 409: conflicts with
/// the current state (may change as the chain moves); 503: no room right now, retry.
pub fn reject_status(r: &Reject) -> StatusCode {
    match r.class() {
        RejectClass::Malformed => StatusCode::BAD_REQUEST,
        RejectClass::Invalid | RejectClass::PolicyRule => StatusCode::UNPROCESSABLE_ENTITY,
        RejectClass::Conflict => StatusCode::CONFLICT,
        RejectClass::PolicyCapacity => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Rejected(r) => AppError::new(reject_status(&r), r.code(), r.to_string()),
            EngineError::Closed => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the node is shutting down",
            ),
            // Storage trouble is the node's, not the client's: 503 so clients retry.
            other => {
                tracing::error!(error = %other, "storage failure");
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_error",
                    other.to_string(),
                )
            }
        }
    }
}

impl From<JsonRejection> for AppError {
    /// A body of the wrong shape (missing or unknown field, wrong type) is a malformed
    /// request: 400 like every other route's body check, not axum's 422, which this API
    /// keeps for well-formed input that breaks a ledger rule.
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let (status, code) = match &r {
            JsonRejection::MissingJsonContentType(_) => (status, "unsupported_media_type"),
            JsonRejection::JsonSyntaxError(_) => (status, "malformed_json"),
            JsonRejection::JsonDataError(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => (status, "body_too_large"),
            _ => (status, "bad_body"),
        };
        AppError::new(status, code, r.body_text())
    }
}

impl From<BytesRejection> for AppError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        AppError::new(status, code, r.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::bad_request("bad_query", r.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        AppError::bad_request("bad_path", r.body_text())
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "background task failed");
        AppError::unavailable("a background task failed; try again")
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 7235: a 401 names the scheme the client should use.
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Hash256;

    /// Regression: the peer routes had their own mapping, which disagreed with this one
    /// (fee too low 409 vs 422, mempool full 409 vs 503, unknown parent 400 vs 409). Now
    /// there is one, decided by the refusal's class.
    #[test]
    fn one_status_per_refusal_class_on_every_route() {
        let cases = [
            (Reject::FeeTooLow { rate: 1, min: 2 }, 422),
            (Reject::MempoolFull, 503),
            (Reject::UnknownParent(Hash256::ZERO), 409),
            (Reject::HighHash, 400),
            (
                Reject::CoinbaseTooLarge {
                    paid: 2,
                    allowed: 1,
                },
                422,
            ),
            (Reject::MissingInput(0, Hash256::ZERO, 0), 409),
        ];
        for (r, status) in cases {
            assert_eq!(reject_status(&r).as_u16(), status, "{r}");
            let e = AppError::from(EngineError::Rejected(r.clone()));
            assert_eq!(e.status.as_u16(), status, "{r}");
            assert_eq!(e.code, r.code());
        }
    }

    #[test]
    fn policy_refusals_are_not_consensus() {
        assert!(!Reject::FeeTooLow { rate: 1, min: 2 }.is_consensus());
        assert!(!Reject::MempoolFull.is_consensus());
        assert!(Reject::HighHash.is_consensus());
        assert!(Reject::UnknownParent(Hash256::ZERO).is_consensus());
    }
}
