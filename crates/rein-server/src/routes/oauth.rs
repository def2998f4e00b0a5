//! Rein as an OAuth authorization server for agents: the token endpoint (RFC 6749
//! `client_credentials` with `private_key_jwt`, RFC 7523), its JWKS (RFC 7517) and metadata
//! (RFC 8414). Errors here are OAuth error responses (RFC 6749 §5.2), not problem documents:
//! OAuth clients read `error` and `error_description`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rein_oauth::{ErrorCode, OAuthError};

use crate::AppState;

/// `POST /oauth2/token`: a task-scoped access token for an agent that proves who it is with a
/// JWT signed by one of its registered keys. Public: the assertion is the authentication.
pub(crate) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        return oauth_error(&OAuthError::InvalidClient(
            "agents authenticate with private_key_jwt only; an Authorization header is not accepted"
                .into(),
        ));
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return oauth_error(&OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        ));
    }
    match state.pdp.issue_token(&state.issuer, &body).await {
        Ok(minted) => {
            state.metrics.token_issued();
            no_store((StatusCode::OK, axum::Json(minted.response_body())).into_response())
        }
        Err(e) => oauth_error(&e),
    }
}

/// `GET /.well-known/jwks.json`: the public keys access tokens are signed with.
pub(crate) async fn jwks(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(state.issuer.jwks())
}

/// `GET /.well-known/oauth-authorization-server`: where the endpoints are and what they accept.
pub(crate) async fn metadata(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(state.issuer.metadata())
}

/// An RFC 6749 §5.2 error response: 401 for a client that failed to authenticate, 503 when
/// Rein cannot answer now, 400 otherwise; never cached.
fn oauth_error(e: &OAuthError) -> Response {
    let status = match e.code() {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    tracing::debug!(error = e.code().as_str(), "token request refused");
    no_store((status, axum::Json(e.to_json())).into_response())
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
