//! `/v1/authorize` and `/v1/policies`: decisions, and the guardrail set in force.

use axum::extract::State;
use rein_pdp::{Authorization, AuthorizeRequest, PolicyStatus};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{Authenticated, Caller, Json};
use crate::AppState;

/// Many requests to decide at once (at most 100).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRequest {
    /// The requests, decided independently.
    requests: Vec<AuthorizeRequest>,
}

/// The decisions of a batch, in the order of its requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BatchResponse {
    /// One decision per request.
    decisions: Vec<Authorization>,
}

/// Decides whether an agent may call an action on a system (admins and members of the agent's
/// team). Any failure after the request is accepted is a `deny` with rule `error`; every
/// decision is in the audit log before it is returned.
#[utoipa::path(post, path = "/v1/authorize", operation_id = "authorize", tag = "decisions", request_body = AuthorizeRequest,
    responses((status = 200, description = "The decision", body = Authorization)))]
pub(crate) async fn authorize(
    caller: Caller,
    State(state): State<AppState>,
    Json(req): Json<AuthorizeRequest>,
) -> Result<axum::Json<Authorization>, ApiError> {
    let decision = match caller {
        Caller::User(actor) => state.pdp.authorize(&actor, req).await?,
        Caller::Agent(token) => {
            let claims = agent_token(&state, &token, &req.system)?;
            state.pdp.authorize_for_token(&claims, req).await?
        }
    };
    state.metrics.decided(decision.decision.as_str());
    Ok(axum::Json(decision))
}

/// Decides up to 100 requests in one call. A malformed entry refuses the whole batch before
/// anything is decided.
#[utoipa::path(post, path = "/v1/authorize/batch", operation_id = "authorizeBatch", tag = "decisions", request_body = BatchRequest,
    responses((status = 200, description = "The decisions, in request order", body = BatchResponse)))]
pub(crate) async fn authorize_batch(
    caller: Caller,
    State(state): State<AppState>,
    Json(batch): Json<BatchRequest>,
) -> Result<axum::Json<BatchResponse>, ApiError> {
    let decisions = match caller {
        Caller::User(actor) => state.pdp.authorize_batch(&actor, batch.requests).await?,
        Caller::Agent(token) => {
            rein_pdp::check_batch(batch.requests.len())?;
            let mut checked = Vec::with_capacity(batch.requests.len());
            for req in batch.requests {
                checked.push((agent_token(&state, &token, &req.system)?, req));
            }
            let mut decisions = Vec::with_capacity(checked.len());
            for (claims, req) in checked {
                decisions.push(state.pdp.authorize_for_token(&claims, req).await?);
            }
            decisions
        }
    };
    for d in &decisions {
        state.metrics.decided(d.decision.as_str());
    }
    Ok(axum::Json(BatchResponse { decisions }))
}

/// Verifies an agent's access token for a call on `system`; any failure is `unauthenticated`.
fn agent_token(
    state: &AppState,
    token: &str,
    system: &rein_core::id::SystemName,
) -> Result<rein_oauth::AccessTokenClaims, ApiError> {
    state
        .pdp
        .verify_agent_token(&state.issuer, token, &rein_oauth::system_audience(system))
        .map_err(|e| ApiError::unauthenticated(e.description()))
}

/// The guardrail set in force: its version and guardrails.
#[utoipa::path(get, path = "/v1/policies", operation_id = "policies", tag = "decisions",
    responses((status = 200, description = "The guardrail set in force", body = PolicyStatus)))]
pub(crate) async fn policies(
    Authenticated(_actor): Authenticated,
    State(state): State<AppState>,
) -> axum::Json<PolicyStatus> {
    axum::Json(state.pdp.policy_status())
}

/// Reloads the guardrails from their directory (admins). An invalid set is refused with every
/// error as `file:line:column: message`, and the previous set stays in force.
#[utoipa::path(post, path = "/v1/policies/reload", operation_id = "reloadPolicies", tag = "decisions",
    responses((status = 200, description = "The guardrail set now in force", body = PolicyStatus)))]
pub(crate) async fn reload(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<PolicyStatus>, ApiError> {
    Ok(axum::Json(state.pdp.reload_policies(Some(&actor)).await?))
}
