//! Secrets for MCP upstreams: API keys and database passwords Rein stores encrypted and the
//! gateway injects into an upstream's environment or headers, so an agent never sees them.
//!
//! Rein keeps a secret as a [`StoredSecret`]: its name, the value sealed under the master key
//! (bound to the name and the version), its version (1, then one more per rotation) and who set it
//! when. What the API shows is its [`SecretMetadata`]: never the value, never the ciphertext. The
//! rules here are pure: value limits, versions, and which references a system or a deletion may
//! make.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{SystemName, UserName};
use crate::mcp::{McpUpstream, SecretName};
use crate::system::System;
use crate::DomainError;

/// The largest secret value, in bytes (64 KiB).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The version of a secret when it is first set.
pub const FIRST_SECRET_VERSION: u32 = 1;

/// Checks a value's length: 1 byte to [`MAX_SECRET_BYTES`]. Takes only the length, so the value
/// itself never reaches an error.
pub fn check_value_len(len: usize) -> Result<(), DomainError> {
    if len == 0 {
        return Err(DomainError::invalid("value", "must not be empty"));
    }
    if len > MAX_SECRET_BYTES {
        return Err(DomainError::invalid(
            "value",
            format!("must be at most {MAX_SECRET_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A secret as stored: the value sealed under the master key. Its `Debug` leaves the ciphertext
/// out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSecret {
    /// Its name.
    pub name: SecretName,
    /// The value sealed under the master key for this name and version (nonce, ciphertext and
    /// tag), base64 in JSON.
    #[serde(with = "base64_bytes")]
    pub sealed: Vec<u8>,
    /// 1 when first set, one more on every rotation.
    pub version: u32,
    /// When it was first set.
    pub created_at: DateTime<Utc>,
    /// When its value was last set.
    pub updated_at: DateTime<Utc>,
    /// Who last set its value.
    pub updated_by: UserName,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("updated_by", &self.updated_by)
            .finish_non_exhaustive()
    }
}

impl StoredSecret {
    /// A secret set for the first time by `by` at `now`, its value `sealed` for
    /// [`FIRST_SECRET_VERSION`].
    pub fn new(name: SecretName, sealed: Vec<u8>, by: UserName, now: DateTime<Utc>) -> Self {
        Self {
            name,
            sealed,
            version: FIRST_SECRET_VERSION,
            created_at: now,
            updated_at: now,
            updated_by: by,
        }
    }

    /// The version the next value is sealed for.
    pub fn next_version(&self) -> Result<u32, DomainError> {
        self.version
            .checked_add(1)
            .ok_or_else(|| DomainError::invalid("version", "the secret cannot be rotated again"))
    }

    /// Replaces the value with `sealed` (sealed for [`StoredSecret::next_version`]), set by `by`
    /// at `now`.
    pub fn rotate(
        &mut self,
        sealed: Vec<u8>,
        by: UserName,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.version = self.next_version()?;
        self.sealed = sealed;
        self.updated_at = now;
        self.updated_by = by;
        Ok(())
    }

    /// What the API shows of it.
    pub fn metadata(&self) -> SecretMetadata {
        SecretMetadata {
            name: self.name.clone(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            updated_by: self.updated_by.clone(),
        }
    }
}

/// A secret as the API shows it: everything but the value and its ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretMetadata {
    /// Its name.
    pub name: SecretName,
    /// 1 when first set, one more on every rotation.
    pub version: u32,
    /// When it was first set.
    pub created_at: DateTime<Utc>,
    /// When its value was last set.
    pub updated_at: DateTime<Utc>,
    /// Who last set its value.
    pub updated_by: UserName,
}

/// Checks that every secret `mcp` references is one of `known`: a system never names a secret
/// that is not there (invalid field `mcp`, naming the first missing one).
pub fn check_references(
    mcp: &McpUpstream,
    known: &BTreeSet<SecretName>,
) -> Result<(), DomainError> {
    match mcp.secrets().find(|name| !known.contains(*name)) {
        Some(missing) => Err(DomainError::invalid(
            "mcp",
            format!(
                "secret `{missing}` does not exist: set it first with `rein secret set {missing}`"
            ),
        )),
        None => Ok(()),
    }
}

/// The systems whose MCP configuration references `name`, by name.
pub fn systems_referencing<'a>(
    name: &SecretName,
    systems: impl IntoIterator<Item = &'a System>,
) -> Vec<SystemName> {
    systems
        .into_iter()
        .filter(|s| {
            s.mcp
                .as_ref()
                .is_some_and(|m| m.secrets().any(|r| r == name))
        })
        .map(|s| s.name.clone())
        .collect()
}

/// Checks that no system references `name` before it is deleted: a deletion never leaves a
/// system pointing at nothing ([`DomainError::InUse`] naming them).
pub fn check_deletable<'a>(
    name: &SecretName,
    systems: impl IntoIterator<Item = &'a System>,
) -> Result<(), DomainError> {
    let users = systems_referencing(name, systems);
    if users.is_empty() {
        return Ok(());
    }
    Err(DomainError::InUse {
        kind: "secret",
        key: name.to_string(),
        by: users.iter().map(|s| format!("system `{s}`")).collect(),
    })
}

/// Serde for bytes as standard base64.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn name(s: &str) -> SecretName {
        s.parse().unwrap()
    }

    fn system(json: serde_json::Value) -> System {
        let mut base = serde_json::json!({
            "name": "billing", "environment": "prod", "owner_team": "payments",
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
        });
        base["mcp"] = json;
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn values_are_one_byte_to_64_kib() {
        assert!(check_value_len(0).is_err());
        assert!(check_value_len(1).is_ok());
        assert!(check_value_len(MAX_SECRET_BYTES).is_ok());
        let e = check_value_len(MAX_SECRET_BYTES + 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid `value`: must be at most 65536 bytes"
        );
    }

    #[test]
    fn rotation_counts_versions_and_metadata_leaves_the_ciphertext_out() {
        let now = chrono::Utc::now();
        let mut s = StoredSecret::new(
            name("db-pass"),
            vec![1, 2, 3],
            "alice".parse().unwrap(),
            now,
        );
        assert_eq!(s.version, 1);
        assert_eq!(s.next_version().unwrap(), 2);
        s.rotate(vec![4, 5], "bob".parse().unwrap(), now).unwrap();
        assert_eq!((s.version, s.sealed.clone()), (2, vec![4, 5]));
        assert_eq!(s.updated_by.as_str(), "bob");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["sealed"], "BAU=");
        assert_eq!(serde_json::from_value::<StoredSecret>(json).unwrap(), s);
        let meta = serde_json::to_value(s.metadata()).unwrap();
        assert!(meta.get("sealed").is_none(), "{meta}");
        assert_eq!(meta["version"], 2);
        assert!(!format!("{s:?}").contains("sealed"));
        s.version = u32::MAX;
        assert!(s.rotate(vec![], "bob".parse().unwrap(), now).is_err());
    }

    #[test]
    fn references_must_exist_and_referenced_secrets_stay() {
        let sys = system(serde_json::json!({
            "transport": "stdio", "command": "x",
            "env": {"API_KEY": {"secret": "api-key"}, "DB_PASSWORD": {"secret": "db-pass"}}
        }));
        let mcp = sys.mcp.clone().unwrap();
        let known: BTreeSet<SecretName> = [name("api-key")].into();
        let e = check_references(&mcp, &known).unwrap_err();
        assert!(
            e.to_string().contains("`mcp`") && e.to_string().contains("db-pass"),
            "{e}"
        );
        let known: BTreeSet<SecretName> = [name("api-key"), name("db-pass")].into();
        check_references(&mcp, &known).unwrap();

        let e = check_deletable(&name("db-pass"), [&sys]).unwrap_err();
        assert_eq!(crate::ErrorCode::code(&e), "in-use");
        assert!(e.to_string().contains("system `billing`"), "{e}");
        check_deletable(&name("unused"), [&sys]).unwrap();
    }
}
