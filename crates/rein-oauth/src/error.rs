//! OAuth errors: one enum, each variant mapped to the error code its RFC prescribes, with a
//! description that is safe to return to the client (it never contains a token, an assertion or
//! key material).

use std::fmt;

use rein_core::id::{ActionName, SystemName};

/// The `error` codes of OAuth 2.0 (RFC 6749 §5.2), resource indicators (RFC 8707 §2) and bearer
/// token use (RFC 6750 §3.1) that Rein returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `invalid_request`: a parameter is missing, repeated, malformed or out of range.
    InvalidRequest,
    /// `invalid_client`: client authentication failed (no, unsupported or invalid assertion).
    InvalidClient,
    /// `invalid_grant`: the grant presented is invalid (not used by the client-credentials flow
    /// itself; kept for callers).
    InvalidGrant,
    /// `unauthorized_client`: the authenticated client may not obtain tokens (e.g. a suspended
    /// or retired agent, or one in production without its accountable roles).
    UnauthorizedClient,
    /// `unsupported_grant_type`: only `client_credentials` is supported.
    UnsupportedGrantType,
    /// `invalid_scope`: the scope is malformed or exceeds the agent's grants.
    InvalidScope,
    /// `invalid_target` (RFC 8707): the `resource` is missing, repeated, malformed or unknown.
    InvalidTarget,
    /// `invalid_token` (RFC 6750): an access token failed verification.
    InvalidToken,
    /// `temporarily_unavailable`: Rein cannot safely serve the request now (e.g. the replay
    /// cache is full); retry later. RFC 6749 defines it for the authorization endpoint; Rein uses
    /// it at the token endpoint too rather than fail open.
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code as sent in the `error` member.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidToken => "invalid_token",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token request, a client assertion or an access token was refused.
///
/// The `String` in each variant is the human-readable description; it is written by this crate
/// (or the caller) and never contains the token, the assertion, a signature or key material, so
/// it may be returned as `error_description` and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_request`.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// `invalid_client`.
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// `invalid_grant`.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// `unauthorized_client`.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// `unsupported_grant_type`.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// `invalid_scope`: malformed scope, or a limit that leaves no usable token.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// `invalid_scope`: no active grant of the agent covers these actions on the system now.
    #[error("invalid_scope: {}", scope_not_granted(system, uncovered))]
    ScopeNotGranted {
        /// The target system.
        system: SystemName,
        /// The requested actions that no active grant covers, in order.
        uncovered: Vec<ActionName>,
    },
    /// `invalid_target`.
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// `invalid_token`.
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// `temporarily_unavailable`.
    #[error("temporarily_unavailable: {0}")]
    Unavailable(String),
}

fn scope_not_granted(system: &SystemName, uncovered: &[ActionName]) -> String {
    let list: Vec<String> = uncovered.iter().map(|a| format!("`{a}`")).collect();
    format!(
        "no active grant of this agent covers {} on system `{system}` now; request a grant for {}",
        list.join(", "),
        if uncovered.len() == 1 { "it" } else { "them" }
    )
}

impl OAuthError {
    /// The OAuth error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::InvalidClient(_) => ErrorCode::InvalidClient,
            Self::InvalidGrant(_) => ErrorCode::InvalidGrant,
            Self::UnauthorizedClient(_) => ErrorCode::UnauthorizedClient,
            Self::UnsupportedGrantType(_) => ErrorCode::UnsupportedGrantType,
            Self::InvalidScope(_) | Self::ScopeNotGranted { .. } => ErrorCode::InvalidScope,
            Self::InvalidTarget(_) => ErrorCode::InvalidTarget,
            Self::InvalidToken(_) => ErrorCode::InvalidToken,
            Self::Unavailable(_) => ErrorCode::TemporarilyUnavailable,
        }
    }

    /// The description to send as `error_description`, restricted to the characters RFC 6749
    /// §5.2 allows there (printable ASCII without `"` and `\`; anything else becomes `?`).
    pub fn description(&self) -> String {
        let text = match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::InvalidToken(d)
            | Self::Unavailable(d) => d.clone(),
            Self::ScopeNotGranted { system, uncovered } => scope_not_granted(system, uncovered),
        };
        text.chars()
            .map(|c| {
                if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    }

    /// The RFC 6749 §5.2 error response body: `{"error": …, "error_description": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.code().as_str(),
            "error_description": self.description(),
        })
    }
}

/// Shows an untrusted short value (a `kid`, an `alg`) in a description: at most 64 printable
/// ASCII characters, otherwise a placeholder, so attacker-chosen text cannot flood logs.
pub(crate) fn shown(value: &str) -> String {
    if !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' && c != '`')
    {
        format!("`{value}`")
    } else {
        "(not shown)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_rfc6749_safe() {
        let e = OAuthError::InvalidRequest("bad \"x\" \\ é\n".into());
        assert_eq!(e.description(), "bad ?x? ? ??");
        assert_eq!(e.to_json()["error"], "invalid_request");
    }

    #[test]
    fn scope_not_granted_names_the_actions() -> Result<(), rein_core::DomainError> {
        let e = OAuthError::ScopeNotGranted {
            system: "billing-db".parse()?,
            uncovered: vec!["delete_row".parse()?, "drop".parse()?],
        };
        assert_eq!(e.code(), ErrorCode::InvalidScope);
        assert!(e.description().contains("`delete_row`, `drop`"));
        assert!(e.description().contains("`billing-db`"));
        Ok(())
    }

    #[test]
    fn untrusted_values_are_bounded() {
        assert_eq!(shown("HS256"), "`HS256`");
        assert_eq!(shown(&"a".repeat(65)), "(not shown)");
        assert_eq!(shown("a b"), "(not shown)");
        assert_eq!(shown(""), "(not shown)");
    }
}
