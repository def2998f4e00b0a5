//! `/v1/systems`.

use axum::extract::State;
use axum::http::StatusCode;
use rein_core::id::SystemName;
use rein_core::system::System;
use rein_registry::{NewSystem, SystemPatch};

use crate::error::ApiError;
use crate::extract::{parse, Authenticated, Json, Path};
use crate::AppState;

/// Registers a system (admins).
#[utoipa::path(post, path = "/v1/systems", operation_id = "createSystem", tag = "systems", request_body = NewSystem,
    responses((status = 201, description = "The new system", body = System)))]
pub(crate) async fn create(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Json(new): Json<NewSystem>,
) -> Result<(StatusCode, axum::Json<System>), ApiError> {
    let system = state.registry.create_system(&actor, new).await?;
    Ok((StatusCode::CREATED, axum::Json(system)))
}

/// Lists systems.
#[utoipa::path(get, path = "/v1/systems", operation_id = "listSystems", tag = "systems",
    responses((status = 200, description = "Every system", body = Vec<System>)))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<System>>, ApiError> {
    Ok(axum::Json(state.registry.systems(&actor).await?))
}

/// Reads a system.
#[utoipa::path(get, path = "/v1/systems/{name}", operation_id = "getSystem", tag = "systems",
    params(("name" = String, Path, description = "System name")),
    responses((status = 200, description = "The system", body = System)))]
pub(crate) async fn get(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<System>, ApiError> {
    let name: SystemName = parse(&name)?;
    Ok(axum::Json(state.registry.system(&actor, &name).await?))
}

/// Changes a system: description, owner team, approvers, classification, actions (admins).
#[utoipa::path(patch, path = "/v1/systems/{name}", operation_id = "updateSystem", tag = "systems", request_body = SystemPatch,
    params(("name" = String, Path, description = "System name")),
    responses((status = 200, description = "The changed system", body = System)))]
pub(crate) async fn update(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(patch): Json<SystemPatch>,
) -> Result<axum::Json<System>, ApiError> {
    let name: SystemName = parse(&name)?;
    Ok(axum::Json(
        state.registry.update_system(&actor, &name, patch).await?,
    ))
}
