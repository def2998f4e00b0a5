//! `/v1/keys/rotate`: replacing Rein's token signing key.

use axum::extract::State;
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::AppState;

/// The outcome of a rotation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Rotated {
    /// The key new tokens are signed with.
    kid: String,
    /// The key it replaced, still published until the tokens it signed have expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    retired_kid: Option<String>,
}

/// Rotates the access-token signing key (admins). New tokens are signed with a new key at
/// once; the old key stays in the JWKS until every token it signed has expired (an hour).
#[utoipa::path(post, path = "/v1/keys/rotate", operation_id = "rotateKeys", tag = "keys",
    responses((status = 200, description = "The new key and the one it retired", body = Rotated)))]
pub(crate) async fn rotate(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Rotated>, ApiError> {
    let (kid, retired_kid) = state
        .issuer
        .rotate(&state.registry, &actor)
        .await
        .map_err(ApiError::from)?;
    Ok(axum::Json(Rotated { kid, retired_kid }))
}
