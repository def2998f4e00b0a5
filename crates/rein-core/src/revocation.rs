//! Revocations beyond a grant's or an agent's own state: one access token, a task, a whole team,
//! a whole environment (the kill switch), or every token issued before a time.
//!
//! A grant is revoked on the grant and an agent is suspended on the agent; both already stop
//! decisions and kill the tokens minted under them. The records here cover what has no record
//! of its own. A revocation takes effect on the next check and stays until it is lifted (team
//! and environment, by an admin) or until everything it could cover has expired (a token at its
//! `exp`; tokens issued before a time an hour after it).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::StatusChange;
use crate::authz::Actor;
use crate::id::{AgentId, Environment, TeamName, UserName};
use crate::DomainError;

/// Longest lifetime of an access token, in seconds: tokens issued before a cut-off are all
/// expired this long after it.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 3600;

/// Longest `jti` or `task_id`, in bytes.
const MAX_ID_LEN: usize = 256;

/// What a revocation covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RevocationTarget {
    /// One access token, by its `jti`.
    Token {
        /// The agent the token was issued to.
        #[schema(value_type = String)]
        agent: AgentId,
        /// The token's `jti`.
        jti: String,
        /// The token's `exp`, after which the revocation is moot; at most an hour from now
        /// when unknown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// A task: every token issued for it, and every further call in it.
    Task {
        /// The agent whose task it is.
        #[schema(value_type = String)]
        agent: AgentId,
        /// The task.
        task_id: String,
    },
    /// Every agent of a team: its tokens die and its calls are denied.
    Team {
        /// The team.
        #[schema(value_type = String)]
        team: TeamName,
    },
    /// Every agent in an environment (the kill switch, e.g. all of `prod`).
    Environment {
        /// The environment.
        #[schema(value_type = String)]
        environment: Environment,
    },
    /// Every access token issued before a time.
    IssuedBefore {
        /// The cut-off.
        before: DateTime<Utc>,
    },
}

/// A recorded revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// `rev_` and 32 hex digits.
    pub id: String,
    /// What it covers.
    pub target: RevocationTarget,
    /// Why.
    pub reason: String,
    /// Who revoked.
    #[schema(value_type = String)]
    pub by: UserName,
    /// When.
    pub at: DateTime<Utc>,
    /// Who lifted it, when and why, if it was lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted: Option<StatusChange>,
}

impl RevocationTarget {
    /// Checks the target's fields and who may revoke it: tokens and tasks are the agent's
    /// revokers' or an admin's call (the caller checks that against the agent record); a team
    /// its members' or an admin's; an environment and a cut-off only an admin's.
    pub fn check(&self, actor: &Actor) -> Result<(), DomainError> {
        let id = |field: &'static str, v: &str| {
            if v.is_empty() || v.len() > MAX_ID_LEN {
                Err(DomainError::invalid(
                    field,
                    format!("must be 1 to {MAX_ID_LEN} bytes"),
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Self::Token { jti, .. } => id("jti", jti),
            Self::Task { task_id, .. } => id("task_id", task_id),
            Self::Team { team } => {
                if actor.is_admin() || actor.teams.contains(team) {
                    Ok(())
                } else {
                    Err(DomainError::forbidden(format!(
                        "only admins and members of team `{team}` may revoke it"
                    )))
                }
            }
            Self::Environment { .. } => actor.require_admin("revoke a whole environment"),
            Self::IssuedBefore { .. } => {
                actor.require_admin("revoke every token issued before a time")
            }
        }
    }

    /// The agent whose revokers decide, for token and task revocations.
    pub fn agent(&self) -> Option<&AgentId> {
        match self {
            Self::Token { agent, .. } | Self::Task { agent, .. } => Some(agent),
            _ => None,
        }
    }
}

impl Revocation {
    /// A new revocation of `target` by `by` at `at`; `id` is `rev_` and 32 hex digits.
    pub fn new(
        id: [u8; 16],
        target: RevocationTarget,
        reason: &str,
        by: UserName,
        at: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        check_reason(reason)?;
        let target = match target {
            RevocationTarget::Token {
                agent,
                jti,
                expires_at,
            } => RevocationTarget::Token {
                agent,
                jti,
                expires_at: Some(
                    expires_at.unwrap_or(at + Duration::seconds(MAX_TOKEN_LIFETIME_SECS)),
                ),
            },
            other => other,
        };
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            id: format!("rev_{hex}"),
            target,
            reason: reason.to_owned(),
            by,
            at,
            lifted: None,
        })
    }

    /// When everything it can cover has expired, if it ever does (team, environment and task
    /// revocations stay until lifted).
    pub fn moot_after(&self) -> Option<DateTime<Utc>> {
        match &self.target {
            RevocationTarget::Token { expires_at, .. } => *expires_at,
            RevocationTarget::IssuedBefore { before } => {
                Some(*before + Duration::seconds(MAX_TOKEN_LIFETIME_SECS))
            }
            _ => None,
        }
    }

    /// Whether it is in force at `now`: not lifted and not moot.
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.lifted.is_none() && self.moot_after().is_none_or(|t| now < t)
    }

    /// Lifts it (admins only); final.
    pub fn lift(
        &mut self,
        actor: &Actor,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        actor.require_admin("lift a revocation")?;
        check_reason(reason)?;
        if self.lifted.is_some() {
            return Err(DomainError::InvalidTransition {
                entity: "revocation",
                transition: "lift",
                state: "lifted".into(),
            });
        }
        self.lifted = Some(StatusChange {
            by: actor.user.clone(),
            at,
            reason: reason.to_owned(),
        });
        Ok(())
    }
}

fn check_reason(reason: &str) -> Result<(), DomainError> {
    if reason.trim().is_empty() || reason.len() > 4096 {
        Err(DomainError::invalid("reason", "must be 1 to 4096 bytes"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;
    use crate::user::Role;

    fn actor(role: Role, teams: &[&str]) -> Actor {
        Actor {
            user: "alice".parse().unwrap(),
            role,
            teams: teams
                .iter()
                .map(|t| t.parse().unwrap())
                .collect::<BTreeSet<_>>(),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn who_may_revoke_what() {
        let member = actor(Role::Member, &["payments"]);
        let admin = actor(Role::Admin, &[]);
        let team = RevocationTarget::Team {
            team: "payments".parse().unwrap(),
        };
        assert!(team.check(&member).is_ok());
        assert!(RevocationTarget::Team {
            team: "other".parse().unwrap()
        }
        .check(&member)
        .is_err());
        let prod = RevocationTarget::Environment {
            environment: "prod".parse().unwrap(),
        };
        assert!(prod.check(&member).is_err());
        assert!(prod.check(&admin).is_ok());
        assert!(RevocationTarget::IssuedBefore { before: at(0) }
            .check(&member)
            .is_err());
    }

    #[test]
    fn token_revocations_become_moot_and_lifting_is_final() {
        let agent: AgentId = "spiffe://rein.local/agent/payments/bot/prod"
            .parse()
            .unwrap();
        let target = RevocationTarget::Token {
            agent,
            jti: "j".into(),
            expires_at: None,
        };
        let mut r =
            Revocation::new([1; 16], target, "leaked", "alice".parse().unwrap(), at(0)).unwrap();
        assert!(r.id.starts_with("rev_"));
        assert!(r.in_force(at(3599)));
        assert!(
            !r.in_force(at(3600)),
            "an unknown exp is at most an hour away"
        );
        assert!(r.lift(&actor(Role::Member, &[]), "x", at(1)).is_err());
        r.lift(&actor(Role::Admin, &[]), "mistake", at(1)).unwrap();
        assert!(!r.in_force(at(2)));
        assert!(r.lift(&actor(Role::Admin, &[]), "again", at(3)).is_err());
        assert!(Revocation::new(
            [2; 16],
            RevocationTarget::IssuedBefore { before: at(0) },
            " ",
            "alice".parse().unwrap(),
            at(0)
        )
        .is_err());
    }
}
