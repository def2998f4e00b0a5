//! Teams: groups of users that own agents and systems.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{TeamName, UserName};

/// A team and its members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Team {
    /// Unique team name.
    pub name: TeamName,
    /// What the team does.
    #[serde(default)]
    pub description: String,
    /// Its members.
    #[serde(default)]
    pub members: BTreeSet<UserName>,
    /// When the team was created.
    pub created_at: DateTime<Utc>,
}
