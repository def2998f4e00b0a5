//! `/v1/teams`.

use axum::extract::State;
use axum::http::StatusCode;
use rein_core::id::TeamName;
use rein_core::team::Team;
use rein_registry::{NewTeam, TeamPatch};

use crate::error::ApiError;
use crate::extract::{parse, Authenticated, Json, Path};
use crate::AppState;

/// Creates a team (admins).
#[utoipa::path(post, path = "/v1/teams", operation_id = "createTeam", tag = "teams", request_body = NewTeam,
    responses((status = 201, description = "The new team", body = Team)))]
pub(crate) async fn create(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Json(new): Json<NewTeam>,
) -> Result<(StatusCode, axum::Json<Team>), ApiError> {
    let team = state.registry.create_team(&actor, new).await?;
    Ok((StatusCode::CREATED, axum::Json(team)))
}

/// Lists teams.
#[utoipa::path(get, path = "/v1/teams", operation_id = "listTeams", tag = "teams",
    responses((status = 200, description = "Every team", body = Vec<Team>)))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<Team>>, ApiError> {
    Ok(axum::Json(state.registry.teams(&actor).await?))
}

/// Reads a team.
#[utoipa::path(get, path = "/v1/teams/{name}", operation_id = "getTeam", tag = "teams",
    params(("name" = String, Path, description = "Team name")),
    responses((status = 200, description = "The team", body = Team)))]
pub(crate) async fn get(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Team>, ApiError> {
    let name: TeamName = parse(&name)?;
    Ok(axum::Json(state.registry.team(&actor, &name).await?))
}

/// Changes a team's description or members (admins).
#[utoipa::path(patch, path = "/v1/teams/{name}", operation_id = "updateTeam", tag = "teams", request_body = TeamPatch,
    params(("name" = String, Path, description = "Team name")),
    responses((status = 200, description = "The changed team", body = Team)))]
pub(crate) async fn update(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(patch): Json<TeamPatch>,
) -> Result<axum::Json<Team>, ApiError> {
    let name: TeamName = parse(&name)?;
    Ok(axum::Json(
        state.registry.update_team(&actor, &name, patch).await?,
    ))
}
