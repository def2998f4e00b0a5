//! Target systems and their classified actions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{ActionName, Environment, PrincipalRef, SystemName, TeamName};
use crate::mcp::McpUpstream;
use crate::DomainError;

/// How much an action can change. An action declared without a class is treated as `write`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ActionClass {
    /// Observes without changing state.
    Read,
    /// Changes state.
    Write,
    /// Changes configuration, permissions or structure.
    Admin,
}

impl ActionClass {
    /// Whether the action mutates the target (`write` or `admin`).
    pub fn is_mutating(self) -> bool {
        !matches!(self, Self::Read)
    }
}

/// The data classification of a system, lowest to highest.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    /// Public data.
    Public,
    /// Internal data.
    #[default]
    Internal,
    /// Confidential data.
    Confidential,
    /// Restricted data (regulated, secrets, personal data).
    Restricted,
}

/// One action (tool) a system offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Its class; absent means `write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<ActionClass>,
    /// What it does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl ActionSpec {
    /// The effective class: an unclassified action is treated as `write`.
    pub fn effective_class(&self) -> ActionClass {
        self.class.unwrap_or(ActionClass::Write)
    }
}

/// A production target: a database, an API, an MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// Unique system name.
    pub name: SystemName,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// The environment it runs in.
    pub environment: Environment,
    /// The team that owns it.
    pub owner_team: TeamName,
    /// Who approves grants and step-up requests for it.
    #[serde(default)]
    pub approvers: Vec<PrincipalRef>,
    /// Its data classification.
    #[serde(default)]
    pub classification: Classification,
    /// Its actions, by name.
    #[serde(default)]
    pub actions: BTreeMap<ActionName, ActionSpec>,
    /// For an MCP server: how the gateway reaches it (`/mcp/{name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpUpstream>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl System {
    /// The effective class of `action`, or an error if the system does not declare it.
    pub fn class_of(&self, action: &ActionName) -> Result<ActionClass, DomainError> {
        self.actions
            .get(action)
            .map(ActionSpec::effective_class)
            .ok_or_else(|| DomainError::UnknownAction {
                system: self.name.to_string(),
                action: action.to_string(),
            })
    }
}
