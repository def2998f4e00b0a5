//! RFC 9457 problem responses, and the one map from an error code to an HTTP status.
//!
//! Every error the API returns is an [`ApiError`]: a stable code (the registry's and the
//! domain's [`ErrorCode`]s, plus the transport codes below) and a human-readable detail.
//! [`classify`] decides the status and title for each code; nothing else picks a status. Details
//! of server errors (5xx) are logged and replaced by a generic sentence, so internal causes never
//! reach the client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rein_core::{DomainError, ErrorCode};
use serde::{Deserialize, Serialize};

/// The request could not be read: malformed JSON, a body that does not match the schema, unknown
/// fields or query parameters, undecodable path segments.
const MALFORMED_REQUEST: &str = "malformed-request";
/// The body is not `application/json`.
const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported-media-type";
/// The body is larger than the limit.
const PAYLOAD_TOO_LARGE: &str = "payload-too-large";
/// No route has this path.
pub(crate) const ROUTE_NOT_FOUND: &str = "route-not-found";
/// The route exists, but not with this method.
pub(crate) const METHOD_NOT_ALLOWED: &str = "method-not-allowed";
/// A bug: a handler panicked, or a code has no status yet.
const INTERNAL_ERROR: &str = "internal-error";

/// Prefix of a problem's `type` URI; the code follows it.
const TYPE_PREFIX: &str = "urn:rein:problem:";

/// The media type of problem responses (RFC 9457, section 3).
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The detail returned for server errors; the real cause goes to the log.
const SERVER_ERROR_DETAIL: &str =
    "the server could not complete the request; the cause has been logged";

/// The status and title of every error code. The only place a code becomes a status.
fn classify(code: &str) -> (StatusCode, &'static str) {
    match code {
        MALFORMED_REQUEST => (StatusCode::BAD_REQUEST, "Malformed request"),
        "unauthenticated" => (StatusCode::UNAUTHORIZED, "Authentication required"),
        "forbidden" => (StatusCode::FORBIDDEN, "Forbidden"),
        "self-approval" => (StatusCode::FORBIDDEN, "Self-approval is not allowed"),
        "not-found" => (StatusCode::NOT_FOUND, "Not found"),
        ROUTE_NOT_FOUND => (StatusCode::NOT_FOUND, "No such route"),
        METHOD_NOT_ALLOWED => (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
        "already-approved" => (StatusCode::CONFLICT, "Already approved"),
        "invalid-transition" => (StatusCode::CONFLICT, "Invalid state transition"),
        "already-exists" => (StatusCode::CONFLICT, "Already exists"),
        "conflict" => (StatusCode::CONFLICT, "Concurrent modification"),
        "stale-plan" => (StatusCode::CONFLICT, "Stale plan"),
        "in-use" => (StatusCode::CONFLICT, "Still referenced"),
        PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large"),
        UNSUPPORTED_MEDIA_TYPE => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type"),
        "invalid-id" => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid identifier"),
        "invalid-field" => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid field"),
        "missing-accountable-roles" => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Missing accountable roles",
        ),
        "invalid-governance-set" => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid governance set"),
        "unknown-action" => (StatusCode::UNPROCESSABLE_ENTITY, "Unknown action"),
        "invalid-key" => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid key"),
        "invalid-policy" => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid policy set"),
        "policies-unreadable" => (StatusCode::INTERNAL_SERVER_ERROR, "Policies unreadable"),
        "store-unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "Store unavailable"),
        "audit-unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "Audit log unavailable"),
        "keys-unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "Signing keys unavailable"),
        "secret-unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "Secret unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
    }
}

/// An RFC 9457 problem document, the body of every error response
/// (`Content-Type: application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:rein:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary of the problem type; the same for every occurrence of a code.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// The stable, machine-readable error code, e.g. `self-approval`.
    pub code: String,
}

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: &'static str,
    detail: String,
}

impl ApiError {
    fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// No route matches the path.
    pub(crate) fn route_not_found(path: &str) -> Self {
        Self::new(ROUTE_NOT_FOUND, format!("no route `{path}`"))
    }

    /// The route exists but not with this method.
    pub(crate) fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            METHOD_NOT_ALLOWED,
            format!("`{method}` is not allowed on `{path}`"),
        )
    }

    /// A bearer credential that does not authenticate, with why (never the credential).
    pub(crate) fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new("unauthenticated", detail)
    }

    /// A bug; `detail` is logged, not returned.
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, detail)
    }

    /// The HTTP status of this error.
    #[cfg(test)]
    fn status(&self) -> StatusCode {
        classify(self.code).0
    }
}

impl From<rein_registry::Error> for ApiError {
    fn from(e: rein_registry::Error) -> Self {
        let detail = match &e {
            // Keep the cause for the log; a 5xx detail never reaches the client.
            rein_registry::Error::Store(cause) => format!("{e}: {cause}"),
            rein_registry::Error::AuditUnavailable(cause) => format!("{e}: {cause}"),
            other => other.to_string(),
        };
        Self::new(e.code(), detail)
    }
}

impl From<rein_pdp::Error> for ApiError {
    fn from(e: rein_pdp::Error) -> Self {
        match e {
            rein_pdp::Error::Registry(e) => e.into(),
            other => Self::new(other.code(), other.to_string()),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let code = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => UNSUPPORTED_MEDIA_TYPE,
            // Syntax errors, unknown or missing fields, wrong types, unparseable identifiers: the
            // body does not match the schema.
            _ => MALFORMED_REQUEST,
        };
        Self::new(code, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(MALFORMED_REQUEST, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(MALFORMED_REQUEST, rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, title) = classify(self.code);
        let detail = if status.is_server_error() {
            tracing::error!(code = self.code, cause = %self.detail, "request failed");
            SERVER_ERROR_DETAIL.to_owned()
        } else {
            tracing::debug!(
                code = self.code,
                status = status.as_u16(),
                "request refused"
            );
            self.detail
        };
        let problem = Problem {
            type_: format!("{TYPE_PREFIX}{}", self.code),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code: self.code.to_owned(),
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="rein""#),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stable_code_has_a_deliberate_status() {
        let expected = [
            ("invalid-id", 422),
            ("invalid-field", 422),
            ("missing-accountable-roles", 422),
            ("invalid-transition", 409),
            ("self-approval", 403),
            ("already-approved", 409),
            ("forbidden", 403),
            ("unknown-action", 422),
            ("invalid-key", 422),
            ("unauthenticated", 401),
            ("not-found", 404),
            ("already-exists", 409),
            ("conflict", 409),
            ("store-unavailable", 503),
            ("audit-unavailable", 503),
            ("keys-unavailable", 503),
            ("secret-unavailable", 503),
            ("in-use", 409),
            (MALFORMED_REQUEST, 400),
            (UNSUPPORTED_MEDIA_TYPE, 415),
            (PAYLOAD_TOO_LARGE, 413),
            (ROUTE_NOT_FOUND, 404),
            (METHOD_NOT_ALLOWED, 405),
            (INTERNAL_ERROR, 500),
        ];
        for (code, status) in expected {
            assert_eq!(classify(code).0.as_u16(), status, "{code}");
        }
    }

    #[tokio::test]
    async fn store_failures_keep_their_cause_out_of_the_response() {
        let err = ApiError::from(rein_registry::Error::Store(
            rein_store::StoreError::Database("connection refused to 10.0.0.7".into()),
        ));
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = err.into_response();
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(PROBLEM_JSON))
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let problem: Problem =
            serde_json::from_slice(&body).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(problem.code, "store-unavailable");
        assert_eq!(problem.status, 503);
        assert_eq!(problem.detail, SERVER_ERROR_DETAIL);
    }
}
