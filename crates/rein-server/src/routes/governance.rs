//! `/v1/governance`: governance sets planned and applied (admins).

use axum::extract::State;
use rein_registry::{Applied, ApplyRequest, GovernanceSet, Plan};

use crate::error::ApiError;
use crate::extract::{Authenticated, Json};
use crate::AppState;

/// What applying a governance set would change: creations, changes and removals, who must
/// approve each grant request, and every problem that would refuse it (admins).
#[utoipa::path(post, path = "/v1/governance/plan", operation_id = "planGovernance", tag = "governance",
    request_body = GovernanceSet,
    responses((status = 200, description = "The plan; `problems` lists why it cannot be applied", body = Plan)))]
pub(crate) async fn plan(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Json(set): Json<GovernanceSet>,
) -> Result<axum::Json<Plan>, ApiError> {
    Ok(axum::Json(state.registry.plan(&actor, &set).await?))
}

/// Applies a governance set all or nothing (admins). Never approves a grant: requests wait for
/// their approvers. With `expect` from a saved plan, refused (409 `stale-plan`) if the registry
/// or the set changed since.
#[utoipa::path(post, path = "/v1/governance/apply", operation_id = "applyGovernance", tag = "governance",
    request_body = ApplyRequest,
    responses((status = 200, description = "What was applied", body = Applied)))]
pub(crate) async fn apply(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Json(request): Json<ApplyRequest>,
) -> Result<axum::Json<Applied>, ApiError> {
    Ok(axum::Json(
        state
            .registry
            .apply(&actor, &request.set, &request.expect)
            .await?,
    ))
}
