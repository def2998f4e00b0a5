//! `/v1/posture`: the posture report, as JSON, SARIF 2.1.0 or a self-contained HTML page.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use rein_posture::PostureConfig;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Authenticated, Query};
use crate::AppState;

/// The report's format and the rules' thresholds (defaults where absent).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PostureQuery {
    /// `json` (default), `sarif` or `html`.
    format: Option<String>,
    /// An active grant unused this many days is a finding (default 30).
    unused_grant_days: Option<u32>,
    /// An agent with no activity this many days is an offboarding candidate (default 60).
    inactive_agent_days: Option<u32>,
}

/// Evaluates every agent, system, grant and guardrail and lists the findings, each with its
/// severity, evidence, fix and framework control IDs (admins and auditors).
#[utoipa::path(get, path = "/v1/posture", operation_id = "posture", tag = "posture", params(PostureQuery),
    responses((status = 200, description = "The report (JSON unless another format was asked for)", body = Object)))]
pub(crate) async fn posture(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Query(q): Query<PostureQuery>,
) -> Result<Response, ApiError> {
    let mut config = PostureConfig {
        review_grace_days: state.registry.config().review_grace_days,
        ..PostureConfig::default()
    };
    if let Some(days) = q.unused_grant_days {
        config.unused_grant_days = days;
    }
    if let Some(days) = q.inactive_agent_days {
        config.inactive_agent_days = days;
    }
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "sarif" | "html") {
        return Err(
            rein_core::DomainError::invalid("format", "must be `json`, `sarif` or `html`").into(),
        );
    }
    let catalog = rein_posture::Catalog::embedded()
        .map_err(|e| ApiError::internal(format!("the control catalog: {e}")))?;
    let report = state.pdp.posture(&actor, &config, &catalog).await?;
    Ok(match format {
        "sarif" => axum::Json(rein_posture::render::sarif(&report, &catalog)).into_response(),
        "html" => (
            [(CONTENT_TYPE, "text/html; charset=utf-8")],
            rein_posture::render::html(&report, &catalog),
        )
            .into_response(),
        _ => axum::Json(report).into_response(),
    })
}
