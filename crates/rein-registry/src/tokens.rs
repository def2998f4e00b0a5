//! Personal API tokens: `rein_<id>_<secret>`, stored only as a SHA-256 digest.
//!
//! The token carries 256 bits of randomness, so a fast hash is the right tool (as for GitHub's
//! and Vault's tokens): a slow password hash adds nothing against guessing and costs every
//! request. Lookup is by the public `id`; the digest comparison is constant-time.

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use rein_core::authz::Actor;
use rein_core::id::UserName;
use rein_core::user::ApiToken;
use rein_core::DomainError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use rein_audit::EventType;
use rein_store::StoreError;

use crate::{audit, Error, Registry};

const PREFIX: &str = "rein_";
const ID_HEX_LEN: usize = 16;
/// Longest lifetime of a personal API token, in days.
const MAX_TOKEN_DAYS: i64 = 366;

/// A request for a new personal API token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Lifetime in days (1 to 366); none means it lasts until revoked.
    #[serde(default)]
    pub ttl_days: Option<i64>,
}

/// A freshly issued token: the secret is shown once and never stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedToken {
    /// The stored metadata.
    pub metadata: ApiToken,
    /// The token itself; send it as `Authorization: Bearer <token>`.
    pub token: String,
}

impl IssuedToken {
    /// The token as returned to its holder: the stored digest is not part of the answer.
    pub(crate) fn without_hash(mut self) -> Self {
        self.metadata.hash.clear();
        self
    }
}

fn digest(token: &str) -> String {
    hex_encode(&Sha256::digest(token.as_bytes()))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits `rein_<id>_<secret>` into its public id, or `None` when malformed.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let id = rest.get(..ID_HEX_LEN)?;
    let secret = rest.get(ID_HEX_LEN..)?.strip_prefix('_')?;
    (id.chars().all(|c| c.is_ascii_hexdigit()) && secret.len() >= 32).then_some(id)
}

pub(crate) fn mint(
    user: &UserName,
    issued_by: &UserName,
    description: String,
    now: DateTime<Utc>,
    ttl_days: Option<i64>,
) -> IssuedToken {
    let mut rng = rand::rngs::OsRng;
    let mut id = [0u8; ID_HEX_LEN / 2];
    rng.fill_bytes(&mut id);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let id = hex_encode(&id);
    let token = format!("{PREFIX}{id}_{}", hex_encode(&secret));
    IssuedToken {
        metadata: ApiToken {
            id,
            user: user.clone(),
            issued_by: Some(issued_by.clone()),
            hash: digest(&token),
            description,
            created_at: now,
            expires_at: ttl_days.map(|d| now + Duration::days(d)),
            revoked_at: None,
        },
        token,
    }
}

impl Registry {
    /// Resolves a bearer token to its user, with the teams they belong to. Any failure is the
    /// same [`Error::Unauthenticated`], so a caller learns nothing about which tokens exist.
    pub async fn authenticate(&self, token: &str) -> Result<Actor, Error> {
        let id = token_id(token).ok_or(Error::Unauthenticated)?;
        let presented = digest(token);
        let usable = |stored: &ApiToken| -> bool {
            let matches: bool = presented.as_bytes().ct_eq(stored.hash.as_bytes()).into();
            matches && stored.is_usable(self.now())
        };
        if let Some((stored, actor)) = self.auth.get(id) {
            return if usable(&stored) {
                Ok(actor)
            } else {
                Err(Error::Unauthenticated)
            };
        }
        let generation = self.auth.generation();
        let stored = self
            .store
            .api_token(id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if !usable(&stored) {
            return Err(Error::Unauthenticated);
        }
        let actor = self.actor(&stored.user).await.map_err(|e| match e {
            Error::Store(s) => Error::Store(s),
            _ => Error::Unauthenticated,
        })?;
        self.auth.put(generation, stored, actor.clone());
        Ok(actor)
    }

    /// The actor for a user, with their teams; refuses disabled users.
    pub async fn actor(&self, user: &UserName) -> Result<Actor, Error> {
        let u = self
            .store
            .user(user)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "user",
                key: user.to_string(),
            })?
            .value;
        if u.disabled {
            return Err(DomainError::forbidden(format!("user `{user}` is disabled")).into());
        }
        let teams = self.store.teams_of(user).await?;
        Ok(Actor {
            user: u.name,
            role: u.role,
            teams: teams.into_iter().collect(),
        })
    }

    /// Issues a personal API token for `user` (themself or by an admin).
    pub async fn issue_token(
        &self,
        actor: &Actor,
        user: &UserName,
        req: NewToken,
    ) -> Result<IssuedToken, Error> {
        actor.require_self_or_admin(user)?;
        if req
            .ttl_days
            .is_some_and(|d| !(1..=MAX_TOKEN_DAYS).contains(&d))
        {
            return Err(
                DomainError::invalid("ttl_days", format!("must be 1 to {MAX_TOKEN_DAYS}")).into(),
            );
        }
        if req.description.len() > rein_core::grant::MAX_TEXT_LEN {
            return Err(DomainError::invalid("description", "too long").into());
        }
        self.store
            .user(user)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "user",
                key: user.to_string(),
            })?;
        let issued = mint(user, &actor.user, req.description, self.now(), req.ttl_days);
        self.create(
            "api_token",
            &issued.metadata.id,
            audit::token_issued(actor, &issued.metadata),
            self.store.insert_api_token(&issued.metadata),
        )
        .await?;
        Ok(issued.without_hash())
    }

    /// Lists a user's tokens (metadata only).
    pub async fn tokens(&self, actor: &Actor, user: &UserName) -> Result<Vec<ApiToken>, Error> {
        if actor.role != rein_core::user::Role::Auditor {
            actor.require_self_or_admin(user)?;
        }
        let mut tokens = self.store.api_tokens_of(user).await?;
        for t in &mut tokens {
            t.hash.clear();
        }
        Ok(tokens)
    }

    /// Revokes one of a user's tokens.
    pub async fn revoke_token(
        &self,
        actor: &Actor,
        user: &UserName,
        id: &str,
    ) -> Result<(), Error> {
        actor.require_self_or_admin(user)?;
        let token = self.store.api_token(id).await?.filter(|t| t.user == *user);
        let Some(token) = token else {
            return Err(Error::NotFound {
                kind: "token",
                key: id.to_owned(),
            });
        };
        let already = || DomainError::InvalidTransition {
            entity: "token",
            transition: "revoke",
            state: "revoked".into(),
        };
        if token.revoked_at.is_some() {
            return Err(already().into());
        }
        let mut event = audit::change(EventType::ApiTokenRevoked, actor, id);
        event.details.insert("user".into(), user.to_string());
        let store = &self.store;
        let now = self.now();
        self.create("api_token", id, event, async move {
            if store.revoke_api_token(id, now).await? {
                Ok(())
            } else {
                Err(StoreError::Conflict {
                    kind: "api_token",
                    key: id.to_owned(),
                })
            }
        })
        .await
        .map_err(|e| match e {
            Error::Contended { .. } => already().into(),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_and_hash_stably() {
        let user: UserName = "alice".parse().unwrap_or_else(|_| unreachable!());
        let issued = mint(&user, &user, String::new(), Utc::now(), None);
        assert_eq!(token_id(&issued.token), Some(issued.metadata.id.as_str()));
        assert_eq!(digest(&issued.token), issued.metadata.hash);
        assert_ne!(issued.metadata.hash, issued.token);
        assert!(token_id("rein_short").is_none());
        assert!(token_id("bearer-something-else").is_none());
    }
}
