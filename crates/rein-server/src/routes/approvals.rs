//! `/v1/approvals`: step-up approval requests. Approvers list and decide them; the agent (with
//! its access token for the request's system) or the user whose call asked waits for the
//! decision with a long poll.

use std::time::Duration;

use axum::extract::State;
use rein_core::approval::{ApprovalRequest, ApprovalStatus};
use rein_registry::Verdict;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Authenticated, Caller, Json, Path, Query};
use crate::AppState;

/// Which requests to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// `pending`, `approved`, `denied`, `expired` or `used`; all when absent.
    #[param(value_type = Option<String>)]
    status: Option<ApprovalStatus>,
}

/// An approver's decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecideBody {
    /// Why (required to deny; at most 2000 bytes).
    #[serde(default)]
    comment: String,
    /// Approving: how many calls the approval covers within its window (1 to 100; default 1).
    #[serde(default)]
    uses: Option<u32>,
}

/// How long to wait.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitQuery {
    /// Seconds to wait for a decision (at most 120; default 30).
    timeout: Option<u64>,
}

/// The requests the caller may decide (admins and auditors: all), by effective status.
#[utoipa::path(get, path = "/v1/approvals", operation_id = "listApprovals", tag = "approvals", params(ListQuery),
    responses((status = 200, description = "Approval requests", body = Vec<ApprovalRequest>)))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Vec<ApprovalRequest>>, ApiError> {
    Ok(axum::Json(
        state.registry.approvals(&actor, q.status).await?,
    ))
}

/// One request: for its approvers, the user who asked, admins and auditors, or the agent it
/// is about (with an access token for its system).
#[utoipa::path(get, path = "/v1/approvals/{id}", operation_id = "getApproval", tag = "approvals",
    params(("id" = String, Path, description = "Approval ID (`apr_…`)")),
    responses((status = 200, description = "The request", body = ApprovalRequest)))]
pub(crate) async fn get(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ApprovalRequest>, ApiError> {
    Ok(axum::Json(read(&state, &caller, &id).await?))
}

/// Waits until the request is decided or expires (a long poll: the answer comes as soon as
/// it changes, or after `timeout` with the request still `pending`).
#[utoipa::path(get, path = "/v1/approvals/{id}/wait", operation_id = "waitApproval", tag = "approvals",
    params(("id" = String, Path, description = "Approval ID (`apr_…`)"), WaitQuery),
    responses((status = 200, description = "The request as it stands", body = ApprovalRequest)))]
pub(crate) async fn wait(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<axum::Json<ApprovalRequest>, ApiError> {
    // Checks the caller's right to it before waiting.
    read(&state, &caller, &id).await?;
    let timeout = Duration::from_secs(q.timeout.unwrap_or(30));
    let a = state
        .pdp
        .wait_approval(timeout, || {
            let (state, caller, id) = (&state, &caller, &id);
            async move { read(state, caller, id).await }
        })
        .await?;
    Ok(axum::Json(a))
}

/// Approves the request (one of the people it names; never the user whose call asked).
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", operation_id = "approveApproval", tag = "approvals",
    params(("id" = String, Path, description = "Approval ID (`apr_…`)")), request_body = DecideBody,
    responses((status = 200, description = "The request after the approval", body = ApprovalRequest)))]
pub(crate) async fn approve(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<DecideBody>,
) -> Result<axum::Json<ApprovalRequest>, ApiError> {
    let verdict = Verdict::Approve {
        uses: body.uses.unwrap_or(1),
    };
    Ok(axum::Json(
        state
            .registry
            .decide_approval(&actor, &id, verdict, &body.comment)
            .await?,
    ))
}

/// Denies the request; final, and reported to the waiting agent.
#[utoipa::path(post, path = "/v1/approvals/{id}/deny", operation_id = "denyApproval", tag = "approvals",
    params(("id" = String, Path, description = "Approval ID (`apr_…`)")), request_body = DecideBody,
    responses((status = 200, description = "The denied request", body = ApprovalRequest)))]
pub(crate) async fn deny(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<DecideBody>,
) -> Result<axum::Json<ApprovalRequest>, ApiError> {
    if body.uses.is_some() {
        return Err(rein_core::DomainError::invalid("uses", "only an approval has uses").into());
    }
    Ok(axum::Json(
        state
            .registry
            .decide_approval(&actor, &id, Verdict::Deny, &body.comment)
            .await?,
    ))
}

/// The webhook deliveries announcing the request, with their state (attempts, last status,
/// next attempt).
#[utoipa::path(get, path = "/v1/approvals/{id}/deliveries", operation_id = "approvalDeliveries", tag = "approvals",
    params(("id" = String, Path, description = "Approval ID (`apr_…`)")),
    responses((status = 200, description = "Deliveries, oldest first", body = Vec<Object>)))]
pub(crate) async fn deliveries(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<serde_json::Value>>, ApiError> {
    let a = state.registry.approval(&actor, &id).await?;
    let docs = state
        .registry
        .store()
        .deliveries(&a.id)
        .await
        .map_err(rein_registry::Error::from)?;
    let parsed = docs
        .iter()
        .map(|d| serde_json::from_str(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal(format!("a stored delivery does not parse: {e}")))?;
    Ok(axum::Json(parsed))
}

/// Reads request `id` with `caller`'s rights.
async fn read(state: &AppState, caller: &Caller, id: &str) -> Result<ApprovalRequest, ApiError> {
    match caller {
        Caller::User(actor) => Ok(state.registry.approval(actor, id).await?),
        Caller::Agent(token) => {
            let a = state.registry.approval_record(id).await?;
            let claims = state
                .pdp
                .verify_agent_token(
                    &state.issuer,
                    token,
                    &rein_oauth::system_audience(&a.system),
                )
                .map_err(|e| ApiError::unauthenticated(e.description()))?;
            if claims.sub != a.agent {
                return Err(rein_core::DomainError::forbidden(
                    "an agent may read only its own approval requests",
                )
                .into());
            }
            Ok(a)
        }
    }
}
