//! `/v1/revocations`: revoking a token, a task, a team, an environment or every token issued
//! before a time, and lifting such a revocation. Takes effect on this node before the call
//! returns.

use axum::extract::State;
use axum::http::StatusCode;
use rein_core::revocation::Revocation;
use rein_registry::NewRevocation;

use crate::error::ApiError;
use crate::extract::{Authenticated, Json, Path};
use crate::routes::Reason;
use crate::AppState;

/// Records a revocation: a token or task (the agent's revokers, admins), a team (its members,
/// admins), an environment or a cut-off time (admins).
#[utoipa::path(post, path = "/v1/revocations", operation_id = "revoke", tag = "revocations", request_body = NewRevocation,
    responses((status = 201, description = "The revocation, in force", body = Revocation)))]
pub(crate) async fn create(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Json(new): Json<NewRevocation>,
) -> Result<(StatusCode, axum::Json<Revocation>), ApiError> {
    let r = state.registry.revoke(&actor, new).await?;
    Ok((StatusCode::CREATED, axum::Json(r)))
}

/// Lists every revocation, lifted or not.
#[utoipa::path(get, path = "/v1/revocations", operation_id = "listRevocations", tag = "revocations",
    responses((status = 200, description = "Every revocation", body = Vec<Revocation>)))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<Revocation>>, ApiError> {
    Ok(axum::Json(state.registry.revocations(&actor).await?))
}

/// Lifts a revocation (admins only); final.
#[utoipa::path(post, path = "/v1/revocations/{id}/lift", operation_id = "liftRevocation", tag = "revocations",
    params(("id" = String, Path, description = "Revocation ID (`rev_…`)")), request_body = Reason,
    responses((status = 200, description = "The lifted revocation", body = Revocation)))]
pub(crate) async fn lift(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(reason): Json<Reason>,
) -> Result<axum::Json<Revocation>, ApiError> {
    Ok(axum::Json(
        state
            .registry
            .lift_revocation(&actor, &id, &reason.reason)
            .await?,
    ))
}
