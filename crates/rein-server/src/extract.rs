//! Extractors: authentication, and axum's JSON, path and query extractors with their rejections
//! turned into problem responses.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use rein_core::authz::Actor;
use rein_core::DomainError;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::AppState;

/// The caller, authenticated from `Authorization: Bearer <token>`. Every `/v1` management
/// handler takes this as its first argument, so it runs before anything reads the path or body,
/// and there is no way to reach the registry without an [`Actor`].
pub(crate) struct Authenticated(pub(crate) Actor);

/// The token of an `Authorization: Bearer <token>` header, if there is exactly one such header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(rein_registry::Error::Unauthenticated)?;
        Ok(Self(state.registry.authenticate(token).await?))
    }
}

/// Who calls `/v1/authorize`: a user with a personal API token, or an agent with the access
/// token Rein issued it (verified by the handler, which knows the system the call is for).
pub(crate) enum Caller {
    /// A user, authenticated.
    User(Actor),
    /// An agent's bearer access token, not yet verified.
    Agent(String),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(rein_registry::Error::Unauthenticated)?;
        if token.bytes().filter(|b| *b == b'.').count() == 2 {
            return Ok(Self::Agent(token.to_owned()));
        }
        Ok(Self::User(state.registry.authenticate(token).await?))
    }
}

/// A JSON request body; malformed bodies become `malformed-request`, a wrong content type
/// `unsupported-media-type`, and a body over the limit `payload-too-large`.
pub(crate) struct Json<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// Path parameters as raw strings; handlers parse them with the domain's parsers ([`parse`]), so
/// a malformed identifier is `invalid-id`, as it is anywhere else.
pub(crate) struct Path<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Query parameters; unknown parameters are `malformed-request`.
pub(crate) struct Query<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Parses an identifier from a path segment or query parameter.
pub(crate) fn parse<T: std::str::FromStr<Err = DomainError>>(value: &str) -> Result<T, ApiError> {
    Ok(value.parse()?)
}

/// Parses an optional query filter; an absent or empty parameter does not filter.
pub(crate) fn parse_filter<T: std::str::FromStr<Err = DomainError>>(
    value: Option<&str>,
) -> Result<Option<T>, ApiError> {
    value.filter(|v| !v.is_empty()).map(parse).transpose()
}

/// Parses an optional query filter whose values are a lowercase serde enum (a status); an absent
/// or empty parameter does not filter.
pub(crate) fn parse_enum_filter<T: DeserializeOwned>(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map(Some)
        .map_err(|_| DomainError::invalid(field, format!("unknown value `{value}`")).into())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_one_well_formed_bearer_header_yields_a_token() {
        assert_eq!(bearer_token(&headers(&["Bearer abc"])), Some("abc"));
        assert_eq!(bearer_token(&headers(&["bearer abc"])), Some("abc"));
        assert_eq!(bearer_token(&headers(&[])), None);
        assert_eq!(bearer_token(&headers(&["Basic abc"])), None);
        assert_eq!(bearer_token(&headers(&["Bearer"])), None);
        assert_eq!(bearer_token(&headers(&["Bearer  "])), None);
        assert_eq!(bearer_token(&headers(&["Bearer a", "Bearer b"])), None);
    }
}
