//! `/v1/grants`: requests, approvals, denials and revocations.

use axum::extract::State;
use axum::http::StatusCode;
use rein_core::grant::{Grant, GrantRequest};
use rein_core::id::GrantId;
use rein_store::GrantFilter;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{parse, parse_enum_filter, parse_filter, Authenticated, Json, Path, Query};
use crate::routes::Reason;
use crate::AppState;

/// An approver's comment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Comment {
    /// Optional; at most 4096 bytes.
    #[serde(default)]
    comment: String,
}

/// Filters for listing grants; an absent or empty parameter does not filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct GrantQuery {
    /// The agent's SPIFFE ID.
    agent: Option<String>,
    /// The target system.
    system: Option<String>,
    /// Effective status: `requested`, `active`, `denied`, `expired` or `revoked`.
    status: Option<String>,
}

/// Requests a grant for an agent (members of the agent's team).
#[utoipa::path(post, path = "/v1/grants", operation_id = "requestGrant", tag = "grants", request_body = GrantRequest,
    responses((status = 201, description = "The requested grant", body = Grant)))]
pub(crate) async fn request(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Json(req): Json<GrantRequest>,
) -> Result<(StatusCode, axum::Json<Grant>), ApiError> {
    let grant = state.registry.request_grant(&actor, req).await?;
    Ok((StatusCode::CREATED, axum::Json(grant)))
}

/// Lists grants, with their effective status.
#[utoipa::path(get, path = "/v1/grants", operation_id = "listGrants", tag = "grants", params(GrantQuery),
    responses((status = 200, description = "The matching grants", body = Vec<Grant>)))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Query(query): Query<GrantQuery>,
) -> Result<axum::Json<Vec<Grant>>, ApiError> {
    let filter = GrantFilter {
        agent: parse_filter(query.agent.as_deref())?,
        system: parse_filter(query.system.as_deref())?,
        status: parse_enum_filter("status", query.status.as_deref())?,
    };
    Ok(axum::Json(state.registry.grants(&actor, &filter).await?))
}

/// Reads a grant, with its effective status.
#[utoipa::path(get, path = "/v1/grants/{id}", operation_id = "getGrant", tag = "grants",
    params(("id" = String, Path, description = "Grant ID")),
    responses((status = 200, description = "The grant", body = Grant)))]
pub(crate) async fn get(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Grant>, ApiError> {
    let id: GrantId = parse(&id)?;
    Ok(axum::Json(state.registry.grant(&actor, &id).await?))
}

/// Approves a requested grant, as an approver of the target system or as the agent's business
/// owner; the grant turns active with its last required approval.
#[utoipa::path(post, path = "/v1/grants/{id}/approve", operation_id = "approveGrant", tag = "grants", request_body = Comment,
    params(("id" = String, Path, description = "Grant ID")),
    responses((status = 200, description = "The grant with the approval recorded", body = Grant)))]
pub(crate) async fn approve(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Comment>,
) -> Result<axum::Json<Grant>, ApiError> {
    let id: GrantId = parse(&id)?;
    Ok(axum::Json(
        state
            .registry
            .approve_grant(&actor, &id, &body.comment)
            .await?,
    ))
}

/// Denies a requested grant; final.
#[utoipa::path(post, path = "/v1/grants/{id}/deny", operation_id = "denyGrant", tag = "grants", request_body = Reason,
    params(("id" = String, Path, description = "Grant ID")),
    responses((status = 200, description = "The denied grant", body = Grant)))]
pub(crate) async fn deny(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Reason>,
) -> Result<axum::Json<Grant>, ApiError> {
    let id: GrantId = parse(&id)?;
    Ok(axum::Json(
        state.registry.deny_grant(&actor, &id, &body.reason).await?,
    ))
}

/// Revokes a requested or active grant (the agent's revokers, the system's approvers or an
/// admin); final.
#[utoipa::path(post, path = "/v1/grants/{id}/revoke", operation_id = "revokeGrant", tag = "grants", request_body = Reason,
    params(("id" = String, Path, description = "Grant ID")),
    responses((status = 200, description = "The revoked grant", body = Grant)))]
pub(crate) async fn revoke(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Reason>,
) -> Result<axum::Json<Grant>, ApiError> {
    let id: GrantId = parse(&id)?;
    Ok(axum::Json(
        state
            .registry
            .revoke_grant(&actor, &id, &body.reason)
            .await?,
    ))
}
