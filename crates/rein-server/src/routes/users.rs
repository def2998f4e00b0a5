//! `/v1/whoami`, `/v1/users` and personal API tokens.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rein_core::id::{TeamName, UserName};
use rein_core::user::{ApiToken, Role, User};
use rein_registry::{IssuedToken, NewToken, NewUser, UserPatch};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{parse, Authenticated, Json, Path};
use crate::AppState;

/// The authenticated caller.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WhoAmI {
    /// The user.
    user: UserName,
    /// Their global role.
    role: Role,
    /// The teams they belong to.
    teams: Vec<TeamName>,
}

/// Who the bearer token belongs to.
#[utoipa::path(get, path = "/v1/whoami", operation_id = "whoami", tag = "users",
    responses((status = 200, description = "The caller", body = WhoAmI)))]
pub(crate) async fn whoami(Authenticated(actor): Authenticated) -> axum::Json<WhoAmI> {
    axum::Json(WhoAmI {
        user: actor.user,
        role: actor.role,
        teams: actor.teams.into_iter().collect(),
    })
}

/// Creates a user (admins).
#[utoipa::path(post, path = "/v1/users", operation_id = "createUser", tag = "users", request_body = NewUser,
    responses((status = 201, description = "The new user", body = User)))]
pub(crate) async fn create(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Json(new): Json<NewUser>,
) -> Result<(StatusCode, axum::Json<User>), ApiError> {
    let user = state.registry.create_user(&actor, new).await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// Lists users.
#[utoipa::path(get, path = "/v1/users", operation_id = "listUsers", tag = "users",
    responses((status = 200, description = "Every user", body = Vec<User>)))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<User>>, ApiError> {
    Ok(axum::Json(state.registry.users(&actor).await?))
}

/// Reads a user.
#[utoipa::path(get, path = "/v1/users/{name}", operation_id = "getUser", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, description = "The user", body = User)))]
pub(crate) async fn get(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<User>, ApiError> {
    let name: UserName = parse(&name)?;
    Ok(axum::Json(state.registry.user(&actor, &name).await?))
}

/// Changes a user (admins): display name, email, role, disabled.
#[utoipa::path(patch, path = "/v1/users/{name}", operation_id = "updateUser", tag = "users", request_body = UserPatch,
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, description = "The changed user", body = User)))]
pub(crate) async fn update(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(patch): Json<UserPatch>,
) -> Result<axum::Json<User>, ApiError> {
    let name: UserName = parse(&name)?;
    Ok(axum::Json(
        state.registry.update_user(&actor, &name, patch).await?,
    ))
}

/// Issues a personal API token (the user themself, or an admin). The response is the only time
/// the token is shown.
#[utoipa::path(post, path = "/v1/users/{name}/tokens", operation_id = "issueToken", tag = "tokens", request_body = NewToken,
    params(("name" = String, Path, description = "User name")),
    responses((status = 201, description = "The token, shown once", body = IssuedToken)))]
pub(crate) async fn issue_token(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<NewToken>,
) -> Result<Response, ApiError> {
    let name: UserName = parse(&name)?;
    // The registry returns the token without its stored digest.
    let issued = state.registry.issue_token(&actor, &name, req).await?;
    let mut response = (StatusCode::CREATED, axum::Json(issued)).into_response();
    // A credential: no cache may keep it (RFC 6749, section 5.1).
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Lists a user's tokens (metadata only; never the token or its digest).
#[utoipa::path(get, path = "/v1/users/{name}/tokens", operation_id = "listTokens", tag = "tokens",
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, description = "The user's tokens", body = Vec<ApiToken>)))]
pub(crate) async fn list_tokens(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<ApiToken>>, ApiError> {
    let name: UserName = parse(&name)?;
    Ok(axum::Json(state.registry.tokens(&actor, &name).await?))
}

/// Revokes one of a user's tokens.
#[utoipa::path(delete, path = "/v1/users/{name}/tokens/{id}", operation_id = "revokeToken", tag = "tokens",
    params(
        ("name" = String, Path, description = "User name"),
        ("id" = String, Path, description = "The token's public ID"),
    ),
    responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke_token(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name: UserName = parse(&name)?;
    state.registry.revoke_token(&actor, &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
