//! Rein as an OAuth authorization server for agents: the token endpoint (RFC 6749
//! `client_credentials` with `private_key_jwt`, RFC 7523), its JWKS (RFC 7517) and metadata
//! (RFC 8414). Errors here are OAuth error responses (RFC 6749 §5.2), not problem documents:
//! OAuth clients read `error` and `error_description`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rein_oauth::{ErrorCode, OAuthError};

use crate::extract::Authenticated;
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

/// `POST /oauth2/introspect` (RFC 7662), for resource servers and the gateway, authenticated
/// with a Rein API token: whether an agent's access token is active now (signature, lifetime,
/// and its agent and grants still active), and its claims when it is.
pub(crate) async fn introspect(
    Authenticated(_caller): Authenticated,
    State(state): State<AppState>,
    body: Bytes,
) -> Response {
    let token = match form_token(&body) {
        Ok(token) => token,
        Err(e) => return oauth_error(&e),
    };
    let inactive = || no_store(axum::Json(serde_json::json!({"active": false})).into_response());
    // The audience is the one the token names; its signature, issuer and lifetime are checked.
    let Some(audience) = unverified_audience(&token) else {
        return inactive();
    };
    match state
        .pdp
        .verify_agent_token(&state.issuer, &token, &audience)
    {
        Ok(claims) => {
            let mut body = serde_json::to_value(&claims).unwrap_or_default();
            if let Some(map) = body.as_object_mut() {
                map.insert("active".into(), true.into());
                map.insert("token_type".into(), "Bearer".into());
            }
            no_store(axum::Json(body).into_response())
        }
        Err(_) => inactive(),
    }
}

/// `POST /oauth2/revoke` (RFC 7009), authenticated with a Rein API token of one of the
/// agent's revokers (or an admin): revokes one access token by its `jti` until it expires.
/// As the RFC asks, a token that is not one of Rein's (or not a token at all) is answered 200
/// with nothing to do.
pub(crate) async fn revoke(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    body: Bytes,
) -> Response {
    let token = match form_token(&body) {
        Ok(token) => token,
        Err(e) => return oauth_error(&e),
    };
    let Some(claims) = unverified_claims(&token) else {
        return StatusCode::OK.into_response();
    };
    let (Some(sub), Some(jti)) = (
        claims.get("sub").and_then(|v| v.as_str()),
        claims.get("jti").and_then(|v| v.as_str()),
    ) else {
        return StatusCode::OK.into_response();
    };
    let Ok(agent) = sub.parse() else {
        return StatusCode::OK.into_response();
    };
    let expires_at = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .and_then(|e| chrono::DateTime::from_timestamp(e, 0));
    let new = rein_registry::NewRevocation {
        target: rein_core::revocation::RevocationTarget::Token {
            agent,
            jti: jti.to_owned(),
            expires_at,
        },
        reason: "revoked through the OAuth revocation endpoint (RFC 7009)".into(),
    };
    match state.registry.revoke(&actor, new).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(rein_registry::Error::NotFound { .. }) => StatusCode::OK.into_response(),
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}

/// The one `token` parameter of an introspection or revocation form (RFC 7662, RFC 7009).
fn form_token(body: &[u8]) -> Result<String, OAuthError> {
    let mut token = None;
    for (k, v) in form_urlencoded::parse(body) {
        if k == "token" {
            if token.is_some() {
                return Err(OAuthError::InvalidRequest("`token` appears twice".into()));
            }
            token = Some(v.into_owned());
        }
    }
    token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::InvalidRequest("`token` is required".into()))
}

/// The claims of a compact JWT, read without verifying anything.
fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `aud` claim of a compact JWT, read without verifying anything.
fn unverified_audience(token: &str) -> Option<String> {
    unverified_claims(token)?
        .get("aud")?
        .as_str()
        .map(str::to_owned)
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
