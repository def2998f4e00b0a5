//! The HTTP handlers, one module per resource, plus health, the OpenAPI document and the
//! fallbacks.

use axum::extract::{OriginalUri, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::AppState;

pub(crate) mod agents;
pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod decisions;
pub(crate) mod governance;
pub(crate) mod grants;
pub(crate) mod keys;
pub(crate) mod oauth;
pub(crate) mod posture;
pub(crate) mod reviews;
pub(crate) mod revocations;
pub(crate) mod secrets;
pub(crate) mod systems;
pub(crate) mod teams;
pub(crate) mod users;

/// Why an agent's or a grant's state changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reason {
    /// Required; at most 4096 bytes.
    pub(crate) reason: String,
}

/// `GET /healthz`: the process is up (liveness).
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store answers (readiness).
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.registry.store().ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => ApiError::from(rein_registry::Error::from(e)).into_response(),
    }
}

/// The OpenAPI document of this API. Public: it describes the API, it grants nothing.
#[utoipa::path(get, path = "/v1/openapi.json", operation_id = "openapi", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(crate::openapi())
}

/// Requests no route matches.
pub(crate) async fn route_not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::route_not_found(uri.path())
}

/// Requests whose route exists but not with this method.
pub(crate) async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}
