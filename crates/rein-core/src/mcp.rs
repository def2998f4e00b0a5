//! How Rein's gateway reaches a system that is an MCP server: a local process over stdio, or a
//! remote server over Streamable HTTP. Credentials the upstream needs (API keys, database
//! passwords) are never written into the configuration: a value is either a literal that is not
//! secret-looking, or a reference to a secret Rein stores encrypted, by name, resolved only
//! when the gateway starts the upstream session.
//!
//! Tools, resources and prompts are governed as the system's actions: a tool is the action of
//! the same name, reading a resource is [`RESOURCES_READ`], getting a prompt is [`PROMPTS_GET`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The action that reading (or subscribing to) an MCP resource is decided as.
pub const RESOURCES_READ: &str = "resources/read";
/// The action that getting an MCP prompt is decided as.
pub const PROMPTS_GET: &str = "prompts/get";

/// Most arguments, environment variables or headers one upstream may declare.
const MAX_ENTRIES: usize = 64;
/// Longest command, argument, URL or value.
const MAX_VALUE_LEN: usize = 4096;

/// The name of a secret stored in Rein: 1 to 63 lowercase letters, digits, `-` and `_`,
/// starting with a letter or digit.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "billing-api-key")]
pub struct SecretName(String);

impl SecretName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretName {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(Self(s))
        } else {
            Err(DomainError::invalid(
                "secret",
                "a secret name is 1 to 63 lowercase letters, digits, `-` and `_`, starting with a letter or digit",
            ))
        }
    }
}

impl FromStr for SecretName {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::try_from(s.to_owned())
    }
}

impl From<SecretName> for String {
    fn from(v: SecretName) -> String {
        v.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A configuration value: a literal, or a stored secret by name (`{secret: NAME}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A literal that is not a secret (refused for secret-looking names, see
    /// [`McpUpstream::validate`]).
    Literal(String),
    /// A secret Rein stores encrypted; the gateway resolves it when it starts the upstream.
    Secret {
        /// The secret's name.
        secret: SecretName,
    },
}

impl ConfigValue {
    /// The secret referenced, if any.
    pub fn secret(&self) -> Option<&SecretName> {
        match self {
            Self::Literal(_) => None,
            Self::Secret { secret } => Some(secret),
        }
    }
}

/// How the gateway reaches the upstream MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "transport", rename_all = "snake_case", deny_unknown_fields)]
pub enum McpUpstream {
    /// A local process the gateway starts for each session, speaking JSON-RPC on stdin/stdout.
    Stdio {
        /// The program (a path, or a name looked up in `PATH`).
        command: String,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Its environment, on top of a minimal one (`PATH`, `HOME`, `LANG`); nothing else of
        /// Rein's environment is passed on.
        #[serde(default)]
        env: BTreeMap<String, ConfigValue>,
    },
    /// A remote server speaking MCP Streamable HTTP.
    StreamableHttp {
        /// Its MCP endpoint (`http://` or `https://`).
        url: String,
        /// Headers sent with every request (e.g. `Authorization` from a secret).
        #[serde(default)]
        headers: BTreeMap<String, ConfigValue>,
    },
}

/// Name fragments that make a literal value look like a credential.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "private_key",
    "credential",
    "authorization",
    "cookie",
    "access_key",
];

/// Whether a variable or header named `name` holds a credential.
fn secret_looking(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w)) || lower.ends_with("_key") || lower == "key"
}

fn check_len(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(DomainError::invalid(
            field,
            format!("at most {MAX_VALUE_LEN} bytes"),
        ));
    }
    Ok(())
}

fn check_values(
    field: &'static str,
    values: &BTreeMap<String, ConfigValue>,
    valid_name: impl Fn(&str) -> bool,
) -> Result<(), DomainError> {
    if values.len() > MAX_ENTRIES {
        return Err(DomainError::invalid(
            field,
            format!("at most {MAX_ENTRIES} entries"),
        ));
    }
    for (name, value) in values {
        if !valid_name(name) {
            return Err(DomainError::invalid(
                field,
                format!("`{name}` is not a valid name"),
            ));
        }
        if let ConfigValue::Literal(v) = value {
            check_len(field, v)?;
            if secret_looking(name) && !v.is_empty() {
                return Err(DomainError::invalid(
                    field,
                    format!(
                        "`{name}` holds a credential: reference a stored secret (`{{secret: NAME}}`) instead of a literal"
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl McpUpstream {
    /// Checks the configuration: a command or an `http(s)` URL without credentials in it,
    /// bounded sizes, valid variable and header names, and no literal credential.
    pub fn validate(&self) -> Result<(), DomainError> {
        match self {
            Self::Stdio { command, args, env } => {
                if command.trim().is_empty() {
                    return Err(DomainError::invalid("mcp.command", "is required"));
                }
                check_len("mcp.command", command)?;
                if args.len() > MAX_ENTRIES {
                    return Err(DomainError::invalid(
                        "mcp.args",
                        format!("at most {MAX_ENTRIES} arguments"),
                    ));
                }
                for a in args {
                    check_len("mcp.args", a)?;
                }
                check_values("mcp.env", env, |n| {
                    !n.is_empty()
                        && !n.starts_with(|c: char| c.is_ascii_digit())
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            }
            Self::StreamableHttp { url, headers } => {
                check_len("mcp.url", url)?;
                let rest = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"))
                    .ok_or_else(|| {
                        DomainError::invalid("mcp.url", "must be http:// or https://")
                    })?;
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                if authority.is_empty() {
                    return Err(DomainError::invalid("mcp.url", "has no host"));
                }
                if authority.contains('@') {
                    return Err(DomainError::invalid(
                        "mcp.url",
                        "must not carry credentials: put them in a header from a stored secret",
                    ));
                }
                check_values("mcp.headers", headers, |n| {
                    !n.is_empty()
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                })
            }
        }
    }

    /// Every secret the configuration references.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretName> {
        let values = match self {
            Self::Stdio { env, .. } => env.values(),
            Self::StreamableHttp { headers, .. } => headers.values(),
        };
        values.filter_map(ConfigValue::secret)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse(json: serde_json::Value) -> McpUpstream {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn upstreams_parse_and_name_their_secrets() {
        let stdio = parse(serde_json::json!({
            "transport": "stdio", "command": "uvx", "args": ["mcp-server-time"],
            "env": {"API_KEY": {"secret": "time-key"}, "LOG_LEVEL": "info"}
        }));
        stdio.validate().unwrap();
        let names: Vec<&str> = stdio.secrets().map(SecretName::as_str).collect();
        assert_eq!(names, ["time-key"]);
        let http = parse(serde_json::json!({
            "transport": "streamable_http", "url": "https://mcp.example.com/mcp",
            "headers": {"Authorization": {"secret": "billing-token"}}
        }));
        http.validate().unwrap();
        assert_eq!(http.secrets().count(), 1);
    }

    #[test]
    fn literal_credentials_and_bad_configurations_are_refused() {
        for (json, field) in [
            (
                serde_json::json!({"transport": "stdio", "command": "x", "env": {"DB_PASSWORD": "hunter2"}}),
                "reference a stored secret",
            ),
            (
                serde_json::json!({"transport": "streamable_http", "url": "https://h/mcp", "headers": {"Authorization": "Bearer abc"}}),
                "reference a stored secret",
            ),
            (
                serde_json::json!({"transport": "streamable_http", "url": "https://u:p@h/mcp"}),
                "must not carry credentials",
            ),
            (
                serde_json::json!({"transport": "streamable_http", "url": "ftp://h/mcp"}),
                "http://",
            ),
            (
                serde_json::json!({"transport": "stdio", "command": " "}),
                "is required",
            ),
            (
                serde_json::json!({"transport": "stdio", "command": "x", "env": {"BAD NAME": "1"}}),
                "not a valid name",
            ),
        ] {
            let e = parse(json.clone()).validate().unwrap_err().to_string();
            assert!(e.contains(field), "{json}: {e}");
            assert!(!e.contains("hunter2") && !e.contains("abc"), "{e}");
        }
        assert!(serde_json::from_value::<McpUpstream>(
            serde_json::json!({"transport": "stdio", "command": "x", "secret": "y"})
        )
        .is_err());
        assert!("Bad".parse::<SecretName>().is_err());
        assert!("billing-token_2".parse::<SecretName>().is_ok());
    }
}
