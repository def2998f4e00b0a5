//! `/v1/secrets`: secrets for MCP upstreams (admins). A value goes in and never comes back out:
//! every response carries the secret's metadata only, and the value is neither logged nor
//! audited. Only the gateway opens a secret, inside the process.

use axum::extract::State;
use axum::http::StatusCode;
use rein_core::mcp::SecretName;
use rein_core::secret::SecretMetadata;
use rein_keys::SecretValue;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{parse, Authenticated, Json, Path};
use crate::AppState;

/// The body of `PUT /v1/secrets/{name}`. Deliberately without `Debug`: the value must not be
/// printable.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretBody {
    /// The value: 1 byte to 64 KiB. Stored sealed under the master key; never returned, logged
    /// or audited.
    value: String,
}

/// Sets a secret (admins): creates it, or rotates it to a new version. Returns its metadata,
/// never the value.
#[utoipa::path(put, path = "/v1/secrets/{name}", operation_id = "setSecret", tag = "secrets", request_body = SecretBody,
    params(("name" = String, Path, description = "Secret name")),
    responses(
        (status = 201, description = "Created: the secret's metadata", body = SecretMetadata),
        (status = 200, description = "Rotated: the secret's metadata, with its new version", body = SecretMetadata),
    ))]
pub(crate) async fn set(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<SecretBody>,
) -> Result<(StatusCode, axum::Json<SecretMetadata>), ApiError> {
    // Moved, not copied: the buffer is zeroed when the value is dropped.
    let value = SecretValue::from(body.value);
    let name: SecretName = parse(&name)?;
    let set = state
        .registry
        .set_secret(&actor, &name, value, &state.master)
        .await?;
    let status = if set.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(set.metadata)))
}

/// Lists secrets (admins): metadata only.
#[utoipa::path(get, path = "/v1/secrets", operation_id = "listSecrets", tag = "secrets",
    responses((status = 200, description = "Every secret's metadata", body = Vec<SecretMetadata>)))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<SecretMetadata>>, ApiError> {
    Ok(axum::Json(state.registry.secrets(&actor).await?))
}

/// Reads a secret's metadata (admins), never its value.
#[utoipa::path(get, path = "/v1/secrets/{name}", operation_id = "getSecret", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 200, description = "The secret's metadata", body = SecretMetadata)))]
pub(crate) async fn get(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<SecretMetadata>, ApiError> {
    let name: SecretName = parse(&name)?;
    Ok(axum::Json(state.registry.secret(&actor, &name).await?))
}

/// Deletes a secret and its ciphertext (admins); refused (409 `in-use`) while a system's `mcp`
/// configuration references it.
#[utoipa::path(delete, path = "/v1/secrets/{name}", operation_id = "deleteSecret", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: SecretName = parse(&name)?;
    state.registry.delete_secret(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
