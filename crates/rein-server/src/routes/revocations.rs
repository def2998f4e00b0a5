//! `/v1/revocations`: revoking a token, a task, a team, an environment or every token issued
//! before a time, and lifting such a revocation. Takes effect on this node before the call
//! returns.

use axum::extract::State;
use axum::http::StatusCode;
use rein_core::error::DomainError;
use rein_core::revocation::Revocation;
use rein_pdp::Propagation;
use rein_registry::NewRevocation;

use crate::error::ApiError;
use crate::extract::{Authenticated, Json, Path, Query};
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

/// The longest a propagation query may wait, in seconds.
const MAX_WAIT_SECS: u64 = 60;

/// How long to wait for every running replica to apply the revocation.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitQuery {
    /// Seconds to wait (at most 60) until every running replica has applied it; 0 or absent:
    /// answer at once.
    #[serde(default)]
    wait: u64,
}

/// Which running replicas have applied a revocation to their decision index, and when; with
/// `wait`, answers as soon as all have (or when the wait is over, `complete: false`).
#[utoipa::path(get, path = "/v1/revocations/{id}/propagation", operation_id = "revocationPropagation", tag = "revocations",
    params(("id" = String, Path, description = "Revocation ID (`rev_…`)"), WaitQuery),
    responses((status = 200, description = "The replicas and when each applied it", body = Propagation)))]
pub(crate) async fn propagation(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<axum::Json<Propagation>, ApiError> {
    if query.wait > MAX_WAIT_SECS {
        return Err(
            DomainError::invalid("wait", format!("at most {MAX_WAIT_SECS} seconds")).into(),
        );
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(query.wait);
    // Acknowledgements arrive in the shared store from every replica; it is read again every
    // 20 ms until they are all in or the wait is over.
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(20));
    loop {
        poll.tick().await;
        let p = state.pdp.revocation_propagation(&actor, &id).await?;
        if p.complete || tokio::time::Instant::now() >= deadline {
            return Ok(axum::Json(p));
        }
    }
}
