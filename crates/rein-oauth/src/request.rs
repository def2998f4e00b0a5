//! The token request (RFC 6749 §4.4 with RFC 7523 §2.2 client authentication and RFC 8707
//! resource indicators), parsed from its `application/x-www-form-urlencoded` fields.
//!
//! | parameter | rule |
//! |---|---|
//! | `grant_type` | required, `client_credentials` (else `unsupported_grant_type`) |
//! | `client_assertion_type` | required, `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` |
//! | `client_assertion` | required, the signed JWT (see [`ClientAssertion`]) |
//! | `client_id` | optional; when present it must equal the assertion's `iss` |
//! | `client_secret` | refused (`invalid_client`): agents never use shared secrets |
//! | `resource` | required, exactly one: `rein:system:<name>` (the canonical form, an absolute URI as RFC 8707 asks) or a bare system name; both name the system `<name>`, and the token's `aud` is always `rein:system:<name>` |
//! | `scope` | required, space-separated action names of that system |
//! | `task_id` | required, 1 to 128 printable ASCII characters without spaces, `"` or `\` |
//! | `intent` | required, 1 to 1024 bytes of text without control characters |
//! | `expires_in` | optional requested token lifetime in seconds, 1 to 3600; Rein may issue a shorter one (the grants' limits), never a longer one |
//!
//! Parameters sent more than once are refused (RFC 6749 §3.2); parameters with an empty value
//! count as absent; unknown parameters are ignored (RFC 6749 §3.2). HTTP Basic client
//! authentication is not accepted either: the HTTP layer must refuse a request carrying an
//! `Authorization` header with `invalid_client`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use rein_core::grant::MAX_TOKEN_TTL_SECS;
use rein_core::id::{ActionName, SystemName};
use serde::{Deserialize, Serialize};

use crate::assertion::ClientAssertion;
use crate::error::OAuthError;

/// The only `client_assertion_type` accepted (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The only `grant_type` accepted.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// The prefix of a system's resource indicator and token audience: `rein:system:<name>`.
pub const SYSTEM_RESOURCE_PREFIX: &str = "rein:system:";

/// The longest form body [`TokenRequest::from_form_body`] reads, in bytes.
pub const MAX_FORM_LEN: usize = 16 * 1024;

/// The most actions one token may carry.
pub const MAX_SCOPE_ACTIONS: usize = 64;

/// The longest accepted `intent`, in bytes.
pub const MAX_INTENT_LEN: usize = 1024;

/// The resource indicator and token audience of a system: `rein:system:<name>`.
pub fn system_audience(system: &SystemName) -> String {
    format!("{SYSTEM_RESOURCE_PREFIX}{system}")
}

/// Parses a `resource` value: `rein:system:<name>` or a bare system name (`invalid_target`
/// otherwise).
pub fn parse_resource(resource: &str) -> Result<SystemName, OAuthError> {
    let name = resource
        .strip_prefix(SYSTEM_RESOURCE_PREFIX)
        .unwrap_or(resource);
    name.parse().map_err(|_| {
        OAuthError::InvalidTarget(
            "`resource` must be `rein:system:<name>` (or a bare system name): lowercase letters, digits, `-` and `_`".into(),
        )
    })
}

/// A task's identifier, named by the agent: 1 to 128 printable ASCII characters other than
/// space, `"` and `\`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

impl TaskId {
    /// The task ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskId {
    type Error = OAuthError;
    fn try_from(s: String) -> Result<Self, OAuthError> {
        if s.is_empty() || s.len() > 128 {
            return Err(OAuthError::InvalidRequest(
                "`task_id` must be 1 to 128 characters".into(),
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        {
            return Err(OAuthError::InvalidRequest(
                "`task_id` may contain only printable ASCII characters other than space, `\"` and `\\`".into(),
            ));
        }
        Ok(Self(s))
    }
}

impl FromStr for TaskId {
    type Err = OAuthError;
    fn from_str(s: &str) -> Result<Self, OAuthError> {
        Self::try_from(s.to_owned())
    }
}

impl From<TaskId> for String {
    fn from(v: TaskId) -> String {
        v.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a `scope` value: space-separated action names, at least one, at most 64, duplicates
/// merged (`invalid_scope` otherwise).
pub fn parse_scope(scope: &str) -> Result<BTreeSet<ActionName>, OAuthError> {
    let mut actions = BTreeSet::new();
    for part in scope.split(' ').filter(|p| !p.is_empty()) {
        let action: ActionName = part.parse().map_err(|_| {
            OAuthError::InvalidScope(
                "`scope` must be space-separated action names (ASCII letters, digits and `_ - . : /`, at most 128 each)".into(),
            )
        })?;
        actions.insert(action);
    }
    if actions.is_empty() {
        return Err(OAuthError::InvalidScope(
            "`scope` must name at least one action".into(),
        ));
    }
    if actions.len() > MAX_SCOPE_ACTIONS {
        return Err(OAuthError::InvalidScope(format!(
            "`scope` may name at most {MAX_SCOPE_ACTIONS} actions"
        )));
    }
    Ok(actions)
}

/// A parsed token request. The client is not authenticated yet: verify
/// [`TokenRequest::assertion`] with [`ClientAssertion::verify`] before anything else. `Debug`
/// never shows the assertion.
#[derive(Debug)]
pub struct TokenRequest {
    /// The client assertion, parsed but not verified.
    pub assertion: ClientAssertion,
    /// The target system named by `resource`.
    pub system: SystemName,
    /// The requested actions (`scope`).
    pub actions: BTreeSet<ActionName>,
    /// The task.
    pub task_id: TaskId,
    /// The task's stated intent (for the audit record; not put in the token).
    pub intent: String,
    /// The requested lifetime (`expires_in`), if any.
    pub requested_ttl_secs: Option<u32>,
}

const KNOWN: [&str; 10] = [
    "grant_type",
    "client_assertion_type",
    "client_assertion",
    "client_id",
    "client_secret",
    "resource",
    "scope",
    "task_id",
    "intent",
    "expires_in",
];

impl TokenRequest {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn from_form_body(body: &[u8]) -> Result<Self, OAuthError> {
        if body.len() > MAX_FORM_LEN {
            return Err(OAuthError::InvalidRequest(format!(
                "the request body is larger than {} KiB",
                MAX_FORM_LEN / 1024
            )));
        }
        Self::from_pairs(form_urlencoded::parse(body))
    }

    /// Parses already-decoded form fields, in order, duplicates included (so they can be
    /// refused).
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, OAuthError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut fields: HashMap<&'static str, String> = HashMap::new();
        let mut count = 0usize;
        for (k, v) in pairs {
            count += 1;
            if count > 64 {
                return Err(OAuthError::InvalidRequest(
                    "the request has too many parameters".into(),
                ));
            }
            let Some(name) = KNOWN.iter().find(|n| **n == k.as_ref()) else {
                continue;
            };
            let value = v.as_ref();
            if value.is_empty() {
                continue;
            }
            if fields.insert(name, value.to_owned()).is_some() {
                return Err(if *name == "resource" {
                    OAuthError::InvalidTarget(
                        "exactly one `resource` is accepted: a token is bound to one system".into(),
                    )
                } else {
                    OAuthError::InvalidRequest(format!("`{name}` is given more than once"))
                });
            }
        }
        let mut take = |name: &str| fields.remove(name);

        let grant_type = take("grant_type").ok_or_else(|| {
            OAuthError::InvalidRequest("`grant_type` is required: `client_credentials`".into())
        })?;
        if grant_type != CLIENT_CREDENTIALS {
            return Err(OAuthError::UnsupportedGrantType(
                "only `client_credentials` is supported".into(),
            ));
        }
        if take("client_secret").is_some() {
            return Err(OAuthError::InvalidClient(
                "`client_secret` is not accepted: agents authenticate with `private_key_jwt` (a JWT signed by a registered key)".into(),
            ));
        }
        let assertion_type = take("client_assertion_type").ok_or_else(|| {
            OAuthError::InvalidClient(format!(
                "client authentication is required: `client_assertion_type={JWT_BEARER_ASSERTION_TYPE}` and a signed `client_assertion`"
            ))
        })?;
        if assertion_type != JWT_BEARER_ASSERTION_TYPE {
            return Err(OAuthError::InvalidClient(format!(
                "`client_assertion_type` must be `{JWT_BEARER_ASSERTION_TYPE}`"
            )));
        }
        let raw_assertion = take("client_assertion")
            .ok_or_else(|| OAuthError::InvalidClient("`client_assertion` is required".into()))?;
        let assertion = ClientAssertion::parse(&raw_assertion)?;
        if let Some(client_id) = take("client_id") {
            if client_id != assertion.agent_id().as_str() {
                return Err(OAuthError::InvalidClient(
                    "`client_id` does not match the assertion's `iss`".into(),
                ));
            }
        }
        let resource = take("resource").ok_or_else(|| {
            OAuthError::InvalidTarget(
                "`resource` is required: the target system, `rein:system:<name>`".into(),
            )
        })?;
        let system = parse_resource(&resource)?;
        let scope = take("scope").ok_or_else(|| {
            OAuthError::InvalidScope("`scope` is required: the actions the task needs".into())
        })?;
        let actions = parse_scope(&scope)?;
        let task_id: TaskId = take("task_id")
            .ok_or_else(|| OAuthError::InvalidRequest("`task_id` is required".into()))?
            .try_into()?;
        let intent = take("intent").ok_or_else(|| {
            OAuthError::InvalidRequest("`intent` is required: what the task is for".into())
        })?;
        if intent.len() > MAX_INTENT_LEN || intent.chars().any(char::is_control) {
            return Err(OAuthError::InvalidRequest(format!(
                "`intent` must be at most {MAX_INTENT_LEN} bytes without control characters"
            )));
        }
        let requested_ttl_secs = take("expires_in").map(|v| parse_ttl(&v)).transpose()?;
        Ok(Self {
            assertion,
            system,
            actions,
            task_id,
            intent,
            requested_ttl_secs,
        })
    }
}

fn parse_ttl(value: &str) -> Result<u32, OAuthError> {
    let bad = || {
        OAuthError::InvalidRequest(format!(
            "`expires_in` must be a whole number of seconds from 1 to {MAX_TOKEN_TTL_SECS}"
        ))
    };
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: u64 = value.parse().map_err(|_| bad())?;
    if secs == 0 || secs > u64::from(MAX_TOKEN_TTL_SECS) {
        return Err(bad());
    }
    u32::try_from(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_audiences() -> Result<(), OAuthError> {
        let s = parse_resource("rein:system:billing-db")?;
        assert_eq!(s.as_str(), "billing-db");
        assert_eq!(parse_resource("billing-db")?, s);
        assert_eq!(system_audience(&s), "rein:system:billing-db");
        for bad in [
            "https://billing.example/",
            "rein:system:",
            "rein:system:Billing",
            "rein:system:a#frag",
        ] {
            assert!(matches!(
                parse_resource(bad),
                Err(OAuthError::InvalidTarget(_))
            ));
        }
        Ok(())
    }

    #[test]
    fn scopes_and_ttls() {
        assert_eq!(parse_scope("b a  a").map(|s| s.len()).ok(), Some(2));
        assert!(matches!(
            parse_scope("  "),
            Err(OAuthError::InvalidScope(_))
        ));
        assert!(matches!(
            parse_scope("a\tb"),
            Err(OAuthError::InvalidScope(_))
        ));
        let many: Vec<String> = (0..65).map(|i| format!("a{i}")).collect();
        assert!(parse_scope(&many.join(" ")).is_err());
        assert_eq!(parse_ttl("60").ok(), Some(60));
        assert_eq!(parse_ttl("3600").ok(), Some(3600));
        for bad in ["0", "3601", "-5", "+5", "1.5", "99999999999", "x"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn task_ids() {
        assert!("task-1".parse::<TaskId>().is_ok());
        assert!("jira:ABC-12/step.3".parse::<TaskId>().is_ok());
        assert!("".parse::<TaskId>().is_err());
        assert!("a b".parse::<TaskId>().is_err());
        assert!("a\"b".parse::<TaskId>().is_err());
        assert!("x".repeat(129).parse::<TaskId>().is_err());
    }
}
