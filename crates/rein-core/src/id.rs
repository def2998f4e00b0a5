//! Identifiers: validated newtypes, parsed once at the edge ("parse, don't validate").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The kinds of identifier, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A user name.
    User,
    /// A team name.
    Team,
    /// An agent's short name.
    AgentName,
    /// An environment name.
    Environment,
    /// A system name.
    System,
    /// An action (tool) name.
    Action,
    /// A SPIFFE trust domain.
    TrustDomain,
    /// An agent SPIFFE ID.
    AgentId,
    /// A principal reference (`user:NAME` or `team:NAME`).
    Principal,
    /// A grant ID.
    Grant,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::User => "user name",
            Self::Team => "team name",
            Self::AgentName => "agent name",
            Self::Environment => "environment",
            Self::System => "system name",
            Self::Action => "action name",
            Self::TrustDomain => "trust domain",
            Self::AgentId => "agent SPIFFE ID",
            Self::Principal => "principal",
            Self::Grant => "grant ID",
        })
    }
}

fn bad(kind: IdKind, value: &str, reason: &'static str) -> DomainError {
    DomainError::InvalidId {
        kind,
        value: value.to_owned(),
        reason,
    }
}

/// A slug: 1 to 63 characters of lowercase ASCII letters, digits, `-` and `_`, starting with a
/// letter or digit. Slugs are SPIFFE path segments and URL path segments without escaping.
fn check_slug(kind: IdKind, value: &str) -> Result<(), DomainError> {
    if value.is_empty() || value.len() > 63 {
        return Err(bad(kind, value, "must be 1 to 63 characters"));
    }
    if !value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(bad(
            kind,
            value,
            "must start with a lowercase letter or a digit",
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(bad(
            kind,
            value,
            "may contain only lowercase letters, digits, `-` and `_`",
        ));
    }
    Ok(())
}

macro_rules! slug_newtype {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, DomainError> {
                check_slug($kind, s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(s: String) -> Result<Self, DomainError> {
                check_slug($kind, &s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_newtype!(
    /// A user of Rein (a human operator), e.g. `alice`.
    UserName,
    IdKind::User
);
impl UserName {
    /// The name Rein itself acts under (circuit breakers, expiry sweeps). Reserved: no human
    /// user may have it, so a record naming `rein` was always made by Rein.
    pub const REIN: &'static str = "rein";

    /// Rein itself, see [`UserName::REIN`].
    pub fn rein() -> Self {
        Self(Self::REIN.to_owned())
    }

    /// Refuses the reserved name for a human user.
    pub fn check_human(&self) -> Result<(), DomainError> {
        if self.0 == Self::REIN {
            Err(bad(IdKind::User, &self.0, "is reserved for Rein itself"))
        } else {
            Ok(())
        }
    }
}

slug_newtype!(
    /// A team, e.g. `payments`.
    TeamName,
    IdKind::Team
);
slug_newtype!(
    /// An agent's short name within its team, e.g. `invoice-bot`.
    AgentName,
    IdKind::AgentName
);
slug_newtype!(
    /// An environment, e.g. `prod`, `staging`, `dev`.
    Environment,
    IdKind::Environment
);
slug_newtype!(
    /// A target system, e.g. `billing-db`.
    SystemName,
    IdKind::System
);

/// An action (an MCP tool, an API operation) of a system: 1 to 128 characters of ASCII letters,
/// digits and `_ - . : /`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct ActionName(String);

impl ActionName {
    /// The action as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ActionName {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        if s.is_empty() || s.len() > 128 {
            return Err(bad(IdKind::Action, &s, "must be 1 to 128 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
        {
            return Err(bad(
                IdKind::Action,
                &s,
                "may contain only ASCII letters, digits and `_ - . : /`",
            ));
        }
        Ok(Self(s))
    }
}

impl FromStr for ActionName {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::try_from(s.to_owned())
    }
}

impl From<ActionName> for String {
    fn from(v: ActionName) -> String {
        v.0
    }
}

impl fmt::Display for ActionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SPIFFE trust domain, e.g. `rein.local`: lowercase letters, digits, `.`, `-` and `_`, at most
/// 255 characters (SPIFFE ID specification, section 2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustDomain(String);

impl TrustDomain {
    /// The trust domain as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TrustDomain {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        if s.is_empty() || s.len() > 255 {
            return Err(bad(IdKind::TrustDomain, &s, "must be 1 to 255 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c))
        {
            return Err(bad(
                IdKind::TrustDomain,
                &s,
                "may contain only lowercase letters, digits, `.`, `-` and `_`",
            ));
        }
        Ok(Self(s))
    }
}

impl FromStr for TrustDomain {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::try_from(s.to_owned())
    }
}

impl From<TrustDomain> for String {
    fn from(v: TrustDomain) -> String {
        v.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent's workload identity: `spiffe://<trust-domain>/agent/<team>/<name>/<environment>`.
/// One identity per team, name and environment; the team segment is the owner team.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId {
    uri: String,
    trust_domain_len: usize,
    team: TeamName,
    name: AgentName,
    environment: Environment,
}

impl AgentId {
    /// Builds the SPIFFE ID of an agent from its parts.
    pub fn new(
        trust_domain: &TrustDomain,
        team: TeamName,
        name: AgentName,
        environment: Environment,
    ) -> Self {
        let uri = format!("spiffe://{trust_domain}/agent/{team}/{name}/{environment}");
        Self {
            uri,
            trust_domain_len: trust_domain.as_str().len(),
            team,
            name,
            environment,
        }
    }

    /// The full `spiffe://` URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain part.
    pub fn trust_domain(&self) -> &str {
        let start = "spiffe://".len();
        self.uri
            .get(start..start + self.trust_domain_len)
            .unwrap_or_default()
    }

    /// The owner team.
    pub fn team(&self) -> &TeamName {
        &self.team
    }

    /// The agent's short name.
    pub fn name(&self) -> &AgentName {
        &self.name
    }

    /// The environment the identity is for.
    pub fn environment(&self) -> &Environment {
        &self.environment
    }
}

impl TryFrom<String> for AgentId {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad(IdKind::AgentId, &s, "must start with `spiffe://`"))?;
        if s.len() > 2048 {
            return Err(bad(IdKind::AgentId, &s, "must be at most 2048 bytes"));
        }
        let (domain, path) = rest
            .split_once('/')
            .ok_or_else(|| bad(IdKind::AgentId, &s, "must have a path"))?;
        let trust_domain = TrustDomain::try_from(domain.to_owned())
            .map_err(|_| bad(IdKind::AgentId, &s, "has an invalid trust domain"))?;
        let segments: Vec<&str> = path.split('/').collect();
        let [kind, team, name, env] = segments.as_slice() else {
            return Err(bad(
                IdKind::AgentId,
                &s,
                "path must be `/agent/<team>/<name>/<environment>`",
            ));
        };
        if *kind != "agent" {
            return Err(bad(
                IdKind::AgentId,
                &s,
                "path must be `/agent/<team>/<name>/<environment>`",
            ));
        }
        let team: TeamName = team.parse()?;
        let name: AgentName = name.parse()?;
        let environment: Environment = env.parse()?;
        Ok(Self::new(&trust_domain, team, name, environment))
    }
}

impl FromStr for AgentId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::try_from(s.to_owned())
    }
}

impl From<AgentId> for String {
    fn from(v: AgentId) -> String {
        v.uri
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// A reference to a user or to every member of a team, written `user:<name>` or `team:<name>`.
/// Approvers, revokers and reviewers are lists of these.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PrincipalRef {
    /// One user.
    User(UserName),
    /// Every member of a team.
    Team(TeamName),
}

impl TryFrom<String> for PrincipalRef {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        if let Some(user) = s.strip_prefix("user:") {
            Ok(Self::User(user.parse()?))
        } else if let Some(team) = s.strip_prefix("team:") {
            Ok(Self::Team(team.parse()?))
        } else {
            Err(bad(
                IdKind::Principal,
                &s,
                "must be `user:<name>` or `team:<name>`",
            ))
        }
    }
}

impl FromStr for PrincipalRef {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::try_from(s.to_owned())
    }
}

impl From<PrincipalRef> for String {
    fn from(v: PrincipalRef) -> String {
        v.to_string()
    }
}

impl fmt::Display for PrincipalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(u) => write!(f, "user:{u}"),
            Self::Team(t) => write!(f, "team:{t}"),
        }
    }
}

/// A grant's identifier: `grt_` followed by 32 lowercase hex digits.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "grt_0190f5a1c2d34e5f8a6b7c8d9e0f1a2b")]
pub struct GrantId(String);

impl GrantId {
    /// Wraps 16 random (or time-ordered) bytes as a grant ID.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut s = String::with_capacity(36);
        s.push_str("grt_");
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Self(s)
    }

    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GrantId {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        let ok = s.strip_prefix("grt_").is_some_and(|hex| {
            hex.len() == 32
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        });
        if ok {
            Ok(Self(s))
        } else {
            Err(bad(
                IdKind::Grant,
                &s,
                "must be `grt_` followed by 32 lowercase hex digits",
            ))
        }
    }
}

impl FromStr for GrantId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::try_from(s.to_owned())
    }
}

impl From<GrantId> for String {
    fn from(v: GrantId) -> String {
        v.0
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifiers that travel as plain strings get a string schema in the OpenAPI document.
macro_rules! string_schema {
    ($name:ident, $description:expr, $example:expr) => {
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($description))
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

string_schema!(
    AgentId,
    "SPIFFE ID `spiffe://<trust-domain>/agent/<team>/<name>/<environment>`",
    "spiffe://rein.local/agent/payments/invoice-bot/prod"
);
string_schema!(
    PrincipalRef,
    "`user:<name>` or `team:<name>`",
    "team:payments-oncall"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_id_round_trips_and_exposes_parts() -> Result<(), DomainError> {
        let id: AgentId = "spiffe://rein.local/agent/payments/invoice-bot/prod".parse()?;
        assert_eq!(id.trust_domain(), "rein.local");
        assert_eq!(id.team().as_str(), "payments");
        assert_eq!(id.name().as_str(), "invoice-bot");
        assert_eq!(id.environment().as_str(), "prod");
        assert_eq!(
            id.to_string(),
            "spiffe://rein.local/agent/payments/invoice-bot/prod"
        );
        Ok(())
    }

    #[test]
    fn malformed_spiffe_ids_are_rejected() {
        for bad in [
            "",
            "http://rein.local/agent/a/b/prod",
            "spiffe://rein.local",
            "spiffe://Rein.local/agent/a/b/prod",
            "spiffe://rein.local/agent/a/b",
            "spiffe://rein.local/agent/a/b/prod/extra",
            "spiffe://rein.local/workload/a/b/prod",
            "spiffe://rein.local/agent/a//prod",
            "spiffe://rein.local/agent/../b/prod",
            "spiffe://rein.local/agent/A/b/prod",
            "spiffe://user@rein.local/agent/a/b/prod",
            "spiffe://rein.local:443/agent/a/b/prod",
        ] {
            assert!(bad.parse::<AgentId>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn principals_need_a_kind_prefix() -> Result<(), DomainError> {
        assert_eq!(
            "user:alice".parse::<PrincipalRef>()?,
            PrincipalRef::User("alice".parse()?)
        );
        assert_eq!(
            "team:ops".parse::<PrincipalRef>()?,
            PrincipalRef::Team("ops".parse()?)
        );
        assert!("alice".parse::<PrincipalRef>().is_err());
        assert!("group:ops".parse::<PrincipalRef>().is_err());
        Ok(())
    }

    #[test]
    fn slugs_reject_uppercase_spaces_and_length() {
        assert!("Alice".parse::<UserName>().is_err());
        assert!("a b".parse::<UserName>().is_err());
        assert!("-a".parse::<UserName>().is_err());
        assert!("a".repeat(64).parse::<UserName>().is_err());
        assert!("a".repeat(63).parse::<UserName>().is_ok());
    }

    #[test]
    fn grant_ids_have_a_fixed_shape() {
        let id = GrantId::from_bytes([0xab; 16]);
        assert_eq!(id.as_str().len(), 36);
        assert!(id.as_str().parse::<GrantId>().is_ok());
        assert!("grt_XYZ".parse::<GrantId>().is_err());
    }
}
