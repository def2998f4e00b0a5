//! `/v1/reviews`: access review campaigns. Admins (or a team, for its own agents) open them;
//! each agent's reviewers read their items and decide each grant, keep or revoke; overdue
//! reviews are listed.

use axum::extract::State;
use axum::http::StatusCode;
use rein_core::review::{ReviewCampaign, ReviewItem, ReviewScope};
use rein_registry::{CampaignView, Overdue, ReviewDecisions};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Authenticated, Json, Path};
use crate::routes::agents::AgentPath;
use crate::AppState;

/// One agent's item in a campaign, `/v1/reviews/{id}/agents/{team}/{name}/{environment}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ItemPath {
    /// Campaign ID (`rvw_…`).
    id: String,
    /// The agent's owner team.
    team: String,
    /// The agent's name.
    name: String,
    /// The agent's environment.
    environment: String,
}

impl ItemPath {
    /// The campaign ID and the agent's SPIFFE ID.
    fn split(self, state: &AppState) -> Result<(String, rein_core::id::AgentId), ApiError> {
        let agent = AgentPath {
            team: self.team,
            name: self.name,
            environment: self.environment,
        }
        .agent_id(state)?;
        Ok((self.id, agent))
    }
}

/// Why an admin closes a campaign early.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CloseBody {
    /// Optional; at most 2000 bytes.
    #[serde(default)]
    reason: String,
}

/// Opens a campaign over the agents due for review (`all`: also those not yet due), every
/// team's (admins) or one team's (admins and its members). Agents under review in another open
/// campaign are left out; nobody due is a 422.
#[utoipa::path(post, path = "/v1/reviews", operation_id = "openReview", tag = "reviews", request_body = ReviewScope,
    responses((status = 201, description = "The campaign with every item", body = CampaignView)))]
pub(crate) async fn open(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Json(scope): Json<ReviewScope>,
) -> Result<(StatusCode, axum::Json<CampaignView>), ApiError> {
    let view = state.registry.open_review(&actor, scope).await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// The campaigns the caller may see: those they opened or whose agents they review (admins
/// and auditors: all), oldest first.
#[utoipa::path(get, path = "/v1/reviews", operation_id = "listReviews", tag = "reviews",
    responses((status = 200, description = "Campaigns", body = Vec<ReviewCampaign>)))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<ReviewCampaign>>, ApiError> {
    Ok(axum::Json(state.registry.reviews(&actor).await?))
}

/// One campaign with the items the caller may see: each agent's grants, their use in the
/// period reviewed and the decisions so far.
#[utoipa::path(get, path = "/v1/reviews/{id}", operation_id = "getReview", tag = "reviews",
    params(("id" = String, Path, description = "Campaign ID (`rvw_…`)")),
    responses((status = 200, description = "The campaign and its items", body = CampaignView)))]
pub(crate) async fn get(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, ApiError> {
    Ok(axum::Json(state.registry.review(&actor, &id).await?))
}

/// Closes a campaign before every item is complete (admins); its incomplete agents stay due.
#[utoipa::path(post, path = "/v1/reviews/{id}/close", operation_id = "closeReview", tag = "reviews",
    params(("id" = String, Path, description = "Campaign ID (`rvw_…`)")), request_body = CloseBody,
    responses((status = 200, description = "The closed campaign", body = CampaignView)))]
pub(crate) async fn close(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<CloseBody>,
) -> Result<axum::Json<CampaignView>, ApiError> {
    Ok(axum::Json(
        state
            .registry
            .close_review(&actor, &id, &body.reason)
            .await?,
    ))
}

/// One agent's item: for its reviewers, whoever opened the campaign, admins and auditors.
#[utoipa::path(get, path = "/v1/reviews/{id}/agents/{team}/{name}/{environment}", operation_id = "getReviewItem", tag = "reviews",
    params(ItemPath),
    responses((status = 200, description = "The item", body = ReviewItem)))]
pub(crate) async fn item(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(path): Path<ItemPath>,
) -> Result<axum::Json<ReviewItem>, ApiError> {
    let (id, agent) = path.split(&state)?;
    Ok(axum::Json(
        state.registry.review_item(&actor, &id, &agent).await?,
    ))
}

/// Decides grants of one agent's item (its reviewers): `keep` re-certifies a grant, `revoke`
/// revokes it at once. A decided grant is final (409); a grant not under review is a 422. An
/// agent without grants is certified with empty `decisions`.
#[utoipa::path(post, path = "/v1/reviews/{id}/agents/{team}/{name}/{environment}/decide", operation_id = "decideReviewItem", tag = "reviews",
    params(ItemPath), request_body = ReviewDecisions,
    responses((status = 200, description = "The item after the decisions", body = ReviewItem)))]
pub(crate) async fn decide(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(path): Path<ItemPath>,
    Json(body): Json<ReviewDecisions>,
) -> Result<axum::Json<ReviewItem>, ApiError> {
    let (id, agent) = path.split(&state)?;
    Ok(axum::Json(
        state
            .registry
            .decide_review(&actor, &id, &agent, &body)
            .await?,
    ))
}

/// The agents whose access review is overdue beyond the grace period, most overdue first.
#[utoipa::path(get, path = "/v1/reviews/overdue", operation_id = "overdueReviews", tag = "reviews",
    responses((status = 200, description = "Overdue agents", body = Vec<Overdue>)))]
pub(crate) async fn overdue(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<Overdue>>, ApiError> {
    Ok(axum::Json(state.registry.overdue_reviews(&actor).await?))
}
