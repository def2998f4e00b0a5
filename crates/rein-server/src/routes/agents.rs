//! `/v1/agents`: agent identities, their lifecycle and their public keys.

use axum::extract::State;
use axum::http::StatusCode;
use rein_core::agent::Agent;
use rein_core::id::AgentId;
use rein_core::key::{AgentKey, Jwk};
use rein_registry::{AgentPatch, NewAgent};
use rein_store::AgentFilter;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{parse, parse_enum_filter, parse_filter, Authenticated, Json, Path, Query};
use crate::routes::Reason;
use crate::AppState;

/// Filters for listing agents; an absent or empty parameter does not filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AgentQuery {
    /// Owner team.
    team: Option<String>,
    /// Environment.
    environment: Option<String>,
    /// `active`, `suspended` or `retired`.
    status: Option<String>,
}

/// The agent named by a path, `/v1/agents/{team}/{name}/{environment}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct AgentPath {
    /// Owner team.
    pub(crate) team: String,
    /// Agent name.
    pub(crate) name: String,
    /// Environment.
    pub(crate) environment: String,
}

impl AgentPath {
    /// The agent's SPIFFE ID, in the configured trust domain.
    pub(crate) fn agent_id(&self, state: &AppState) -> Result<AgentId, ApiError> {
        Ok(AgentId::new(
            &state.registry.config().trust_domain,
            parse(&self.team)?,
            parse(&self.name)?,
            parse(&self.environment)?,
        ))
    }
}

/// One of an agent's keys, `/v1/agents/{team}/{name}/{environment}/keys/{kid}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct KeyPath {
    /// Owner team.
    team: String,
    /// Agent name.
    name: String,
    /// Environment.
    environment: String,
    /// Key ID.
    kid: String,
}

/// Creates an agent (members of its team). Active agents in protected environments need every
/// accountable role.
#[utoipa::path(post, path = "/v1/agents", operation_id = "createAgent", tag = "agents", request_body = NewAgent,
    responses((status = 201, description = "The new agent", body = Agent)))]
pub(crate) async fn create(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Json(new): Json<NewAgent>,
) -> Result<(StatusCode, axum::Json<Agent>), ApiError> {
    let agent = state.registry.create_agent(&actor, new).await?;
    Ok((StatusCode::CREATED, axum::Json(agent)))
}

/// Lists agents.
#[utoipa::path(get, path = "/v1/agents", operation_id = "listAgents", tag = "agents", params(AgentQuery),
    responses((status = 200, description = "The matching agents", body = Vec<Agent>)))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Query(query): Query<AgentQuery>,
) -> Result<axum::Json<Vec<Agent>>, ApiError> {
    let filter = AgentFilter {
        team: parse_filter(query.team.as_deref())?,
        environment: parse_filter(query.environment.as_deref())?,
        status: parse_enum_filter("status", query.status.as_deref())?,
    };
    Ok(axum::Json(state.registry.agents(&actor, &filter).await?))
}

/// Reads an agent.
#[utoipa::path(get, path = "/v1/agents/{team}/{name}/{environment}", operation_id = "getAgent", tag = "agents",
    params(AgentPath),
    responses((status = 200, description = "The agent", body = Agent)))]
pub(crate) async fn get(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(path): Path<AgentPath>,
) -> Result<axum::Json<Agent>, ApiError> {
    let id = path.agent_id(&state)?;
    Ok(axum::Json(state.registry.agent(&actor, &id).await?))
}

/// Changes an agent (members of its team).
#[utoipa::path(patch, path = "/v1/agents/{team}/{name}/{environment}", operation_id = "updateAgent", tag = "agents",
    request_body = AgentPatch,
    params(AgentPath),
    responses((status = 200, description = "The changed agent", body = Agent)))]
pub(crate) async fn update(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(path): Path<AgentPath>,
    Json(patch): Json<AgentPatch>,
) -> Result<axum::Json<Agent>, ApiError> {
    let id = path.agent_id(&state)?;
    Ok(axum::Json(
        state.registry.update_agent(&actor, &id, patch).await?,
    ))
}

/// Suspends an agent (its revokers or an admin).
#[utoipa::path(post, path = "/v1/agents/{team}/{name}/{environment}/suspend", operation_id = "suspendAgent", tag = "agents",
    request_body = Reason,
    params(AgentPath),
    responses((status = 200, description = "The suspended agent", body = Agent)))]
pub(crate) async fn suspend(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(path): Path<AgentPath>,
    Json(body): Json<Reason>,
) -> Result<axum::Json<Agent>, ApiError> {
    let id = path.agent_id(&state)?;
    Ok(axum::Json(
        state
            .registry
            .suspend_agent(&actor, &id, &body.reason)
            .await?,
    ))
}

/// Resumes a suspended agent (its revokers or an admin), if its roles allow activation.
#[utoipa::path(post, path = "/v1/agents/{team}/{name}/{environment}/resume", operation_id = "resumeAgent", tag = "agents",
    request_body = Reason,
    params(AgentPath),
    responses((status = 200, description = "The resumed agent", body = Agent)))]
pub(crate) async fn resume(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(path): Path<AgentPath>,
    Json(body): Json<Reason>,
) -> Result<axum::Json<Agent>, ApiError> {
    let id = path.agent_id(&state)?;
    Ok(axum::Json(
        state
            .registry
            .resume_agent(&actor, &id, &body.reason)
            .await?,
    ))
}

/// Retires an agent for good (its team, its revokers or an admin).
#[utoipa::path(post, path = "/v1/agents/{team}/{name}/{environment}/retire", operation_id = "retireAgent", tag = "agents",
    request_body = Reason,
    params(AgentPath),
    responses((status = 200, description = "The retired agent", body = Agent)))]
pub(crate) async fn retire(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(path): Path<AgentPath>,
    Json(body): Json<Reason>,
) -> Result<axum::Json<Agent>, ApiError> {
    let id = path.agent_id(&state)?;
    Ok(axum::Json(
        state
            .registry
            .retire_agent(&actor, &id, &body.reason)
            .await?,
    ))
}

/// Registers a public key (a JWK, Ed25519 or P-256) for an agent (members of its team). Private
/// key material is refused.
#[utoipa::path(post, path = "/v1/agents/{team}/{name}/{environment}/keys", operation_id = "addAgentKey", tag = "agents",
    request_body = Jwk,
    params(AgentPath),
    responses((status = 201, description = "The registered key", body = AgentKey)))]
pub(crate) async fn add_key(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(path): Path<AgentPath>,
    Json(jwk): Json<Jwk>,
) -> Result<(StatusCode, axum::Json<AgentKey>), ApiError> {
    let id = path.agent_id(&state)?;
    let key = state.registry.add_agent_key(&actor, &id, jwk).await?;
    Ok((StatusCode::CREATED, axum::Json(key)))
}

/// Removes a public key (its team, its revokers or an admin).
#[utoipa::path(delete, path = "/v1/agents/{team}/{name}/{environment}/keys/{kid}", operation_id = "removeAgentKey", tag = "agents",
    params(KeyPath),
    responses((status = 200, description = "The agent without the key", body = Agent)))]
pub(crate) async fn remove_key(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(path): Path<KeyPath>,
) -> Result<axum::Json<Agent>, ApiError> {
    let agent = AgentPath {
        team: path.team,
        name: path.name,
        environment: path.environment,
    };
    let id = agent.agent_id(&state)?;
    Ok(axum::Json(
        state
            .registry
            .remove_agent_key(&actor, &id, &path.kid)
            .await?,
    ))
}
