//! How each domain record maps onto its table: the key, the JSON document and the index columns.
//!
//! The document is the record's serde JSON and the only source of truth; the index columns are
//! copies of a few fields, written in the same statement as the document, so that lookups and
//! filters run on indexes instead of decoding every row.

use rein_core::agent::Agent;
use rein_core::approval::ApprovalRequest;
use rein_core::grant::Grant;
use rein_core::review::{ReviewCampaign, ReviewItem};
use rein_core::revocation::{Revocation, RevocationTarget};
use rein_core::secret::StoredSecret;
use rein_core::system::System;
use rein_core::team::Team;
use rein_core::user::{ApiToken, User};
use rein_keys::SealedKey;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::StoreError;

/// A table holding one record kind. All names are compile-time constants; no SQL text is ever
/// built from input.
pub(crate) struct Table {
    /// Record kind for error messages (`agent`).
    pub(crate) kind: &'static str,
    /// Table name (`agents`).
    pub(crate) name: &'static str,
    /// Primary-key column (`id`).
    pub(crate) key: &'static str,
    /// Index columns, in the order [`Record::columns`] yields their values.
    pub(crate) columns: &'static [&'static str],
}

/// A value for an index column or a filter.
pub(crate) enum Value {
    /// A text column.
    Text(String),
    /// A BIGINT column (unix milliseconds, counts).
    Int(i64),
    /// A nullable BIGINT column.
    NullableInt(Option<i64>),
}

/// A domain record stored as a JSON document plus index columns.
pub(crate) trait Record: Serialize + DeserializeOwned + Send + Sync {
    /// Its table.
    const TABLE: Table;
    /// The `ORDER BY` of lists (constant SQL): by key unless the kind says otherwise.
    const ORDER_BY: &'static str = Self::TABLE.key;
    /// Its key.
    fn key(&self) -> &str;
    /// Its index column values, in [`Table::columns`] order.
    fn columns(&self) -> Vec<Value>;

    /// The JSON document.
    fn encode(&self) -> Result<String, StoreError> {
        serde_json::to_string(self).map_err(|e| {
            StoreError::Database(format!(
                "cannot encode {} `{}`: {e}",
                Self::TABLE.kind,
                self.key()
            ))
        })
    }

    /// Decodes a stored document; a document that does not decode, or that belongs to another
    /// key than the row's, is corrupt.
    fn decode(key: &str, doc: &str) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            kind: Self::TABLE.kind,
            key: key.to_owned(),
            reason,
        };
        let record: Self = serde_json::from_str(doc).map_err(|e| corrupt(e.to_string()))?;
        if record.key() != key {
            return Err(corrupt(format!("the document is for `{}`", record.key())));
        }
        Ok(record)
    }
}

fn millis(at: chrono::DateTime<chrono::Utc>) -> Value {
    Value::Int(at.timestamp_millis())
}

fn nullable_millis(at: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    Value::NullableInt(at.map(|t| t.timestamp_millis()))
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl Record for User {
    const TABLE: Table = Table {
        kind: "user",
        name: "users",
        key: "name",
        columns: &["created_at"],
    };
    fn key(&self) -> &str {
        self.name.as_str()
    }
    fn columns(&self) -> Vec<Value> {
        vec![millis(self.created_at)]
    }
}

impl Record for ApiToken {
    const TABLE: Table = Table {
        kind: "api token",
        name: "api_tokens",
        key: "id",
        columns: &["user_name", "created_at", "expires_at", "revoked_at"],
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<Value> {
        vec![
            text(self.user.as_str()),
            millis(self.created_at),
            nullable_millis(self.expires_at),
            nullable_millis(self.revoked_at),
        ]
    }
}

impl Record for Revocation {
    const TABLE: Table = Table {
        kind: "revocation",
        name: "revocations",
        key: "id",
        columns: &["kind", "at_ms", "moot_ms"],
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<Value> {
        let kind = match self.target {
            RevocationTarget::Token { .. } => "token",
            RevocationTarget::Task { .. } => "task",
            RevocationTarget::Team { .. } => "team",
            RevocationTarget::Environment { .. } => "environment",
            RevocationTarget::IssuedBefore { .. } => "issued_before",
        };
        vec![
            text(kind),
            millis(self.at),
            nullable_millis(self.moot_after()),
        ]
    }
}

impl Record for ApprovalRequest {
    const TABLE: Table = Table {
        kind: "approval request",
        name: "approvals",
        key: "id",
        columns: &["status", "binding", "expires_ms"],
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<Value> {
        vec![
            text(self.status.as_str()),
            text(&self.binding_key()),
            millis(self.expires_at),
        ]
    }
}

impl Record for ReviewCampaign {
    const TABLE: Table = Table {
        kind: "review campaign",
        name: "review_campaigns",
        key: "id",
        columns: &["status", "opened_ms"],
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<Value> {
        vec![text(self.status.as_str()), millis(self.opened_at)]
    }
}

impl Record for ReviewItem {
    const TABLE: Table = Table {
        kind: "review item",
        name: "review_items",
        key: "id",
        columns: &["campaign", "agent_id", "state"],
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<Value> {
        let state = if self.is_complete() {
            "complete"
        } else {
            "pending"
        };
        vec![text(&self.campaign), text(self.agent.as_str()), text(state)]
    }
}

impl Record for Team {
    const TABLE: Table = Table {
        kind: "team",
        name: "teams",
        key: "name",
        columns: &["created_at"],
    };
    fn key(&self) -> &str {
        self.name.as_str()
    }
    fn columns(&self) -> Vec<Value> {
        vec![millis(self.created_at)]
    }
}

impl Record for System {
    const TABLE: Table = Table {
        kind: "system",
        name: "systems",
        key: "name",
        columns: &["environment", "owner_team", "created_at", "updated_at"],
    };
    fn key(&self) -> &str {
        self.name.as_str()
    }
    fn columns(&self) -> Vec<Value> {
        vec![
            text(self.environment.as_str()),
            text(self.owner_team.as_str()),
            millis(self.created_at),
            millis(self.updated_at),
        ]
    }
}

impl Record for Agent {
    const TABLE: Table = Table {
        kind: "agent",
        name: "agents",
        key: "id",
        columns: &["team", "environment", "status", "created_at", "updated_at"],
    };
    fn key(&self) -> &str {
        self.id.as_str()
    }
    fn columns(&self) -> Vec<Value> {
        vec![
            text(self.owner_team().as_str()),
            text(self.environment().as_str()),
            text(self.status.as_str()),
            millis(self.created_at),
            millis(self.updated_at),
        ]
    }
}

impl Record for Grant {
    const TABLE: Table = Table {
        kind: "grant",
        name: "grants",
        key: "id",
        columns: &["agent_id", "system", "status", "expires_at", "updated_at"],
    };
    fn key(&self) -> &str {
        self.id.as_str()
    }
    fn columns(&self) -> Vec<Value> {
        vec![
            text(self.agent.as_str()),
            text(self.system.as_str()),
            text(self.status.as_str()),
            millis(self.expires_at),
            millis(self.updated_at),
        ]
    }
}

impl Record for SealedKey {
    const TABLE: Table = Table {
        kind: "signing key",
        name: "signing_keys",
        key: "kid",
        columns: &["purpose", "created_at_ms"],
    };
    const ORDER_BY: &'static str = "created_at_ms, kid";
    fn key(&self) -> &str {
        &self.kid
    }
    fn columns(&self) -> Vec<Value> {
        vec![text(self.purpose.as_str()), millis(self.created_at)]
    }
}

impl Record for StoredSecret {
    const TABLE: Table = Table {
        kind: "secret",
        name: "secrets",
        key: "name",
        columns: &[],
    };
    fn key(&self) -> &str {
        self.name.as_str()
    }
    fn columns(&self) -> Vec<Value> {
        Vec::new()
    }
}
