//! The humans who operate Rein.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::UserName;
use crate::Timestamp;

/// A user's global role. Everything beyond it follows from team membership and the accountable
/// roles named on agents and systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages users, teams, systems and configuration; may revoke anything. Not an approver
    /// unless named as one.
    Admin,
    /// Acts through team membership and the roles named on agents and systems.
    #[default]
    Member,
    /// Reads everything, changes nothing.
    Auditor,
}

/// A user of Rein.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Unique login name.
    pub name: UserName,
    /// Human-readable name.
    #[serde(default)]
    pub display_name: String,
    /// Contact address for notifications.
    #[serde(default)]
    pub email: String,
    /// Global role.
    pub role: Role,
    /// A disabled user's tokens are refused.
    #[serde(default)]
    pub disabled: bool,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

/// A personal API token's stored form: never the token itself, only its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    /// Public identifier, the part of the token before the secret; safe to log.
    pub id: String,
    /// The owner.
    pub user: UserName,
    /// Who issued it: the owner, or an admin on their behalf (visible, since an admin-issued
    /// token lets the admin act as that user).
    #[serde(default)]
    pub issued_by: Option<UserName>,
    /// Hex SHA-256 of the whole token.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    #[schema(ignore)]
    pub hash: String,
    /// What the token is for.
    #[serde(default)]
    pub description: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// Whether the token may authenticate at `now`.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}
