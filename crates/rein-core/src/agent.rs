//! Agents: workload identities with a named owner and accountable roles.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{AgentId, Environment, PrincipalRef, TeamName, UserName};
use crate::key::AgentKey;
use crate::{DomainError, Timestamp};

/// An agent's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// May be granted access and act.
    Active,
    /// Stopped; may be resumed by its revokers or an admin.
    Suspended,
    /// Final; the record and its history are kept.
    Retired,
}

impl AgentStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Retired => "retired",
        }
    }
}

/// Who is accountable for an agent besides its owner team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AccountableRoles {
    /// The user who owns the business outcome; second approver for prod mutations.
    #[serde(default)]
    pub business_owner: Option<UserName>,
    /// Who approves this agent's access requests beside the target system's approvers.
    #[serde(default)]
    pub approvers: Vec<PrincipalRef>,
    /// Who may suspend the agent and revoke its grants and tokens.
    #[serde(default)]
    pub revokers: Vec<PrincipalRef>,
    /// Who re-certifies its access on the review cadence.
    #[serde(default)]
    pub reviewers: Vec<PrincipalRef>,
    /// Days between access reviews.
    #[serde(default)]
    pub review_cadence_days: Option<u32>,
}

impl AccountableRoles {
    /// The accountable roles that are not set, by their API field name.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.business_owner.is_none() {
            missing.push("business_owner");
        }
        if self.approvers.is_empty() {
            missing.push("approvers");
        }
        if self.revokers.is_empty() {
            missing.push("revokers");
        }
        if self.reviewers.is_empty() {
            missing.push("reviewers");
        }
        if self.review_cadence_days.is_none() {
            missing.push("review_cadence_days");
        }
        missing
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.review_cadence_days.is_some_and(|d| d == 0 || d > 366) {
            return Err(DomainError::invalid(
                "review_cadence_days",
                "must be 1 to 366",
            ));
        }
        Ok(())
    }
}

/// Per-agent and per-task limits enforced at decision time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Decisions allowed per minute for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_minute: Option<u32>,
    /// Mutating (write/admin) actions allowed per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutations_per_task: Option<u32>,
    /// Distinct systems one task may touch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systems_per_task: Option<u32>,
    /// Suspend the agent when a budget is breached (circuit breaker).
    #[serde(default)]
    pub suspend_on_breach: bool,
}

/// An agent identity. Its owner team and environment are the ones in its SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// SPIFFE ID: `spiffe://<trust-domain>/agent/<team>/<name>/<environment>`.
    pub id: AgentId,
    /// What the agent does.
    #[serde(default)]
    pub description: String,
    /// The one use case this identity serves.
    pub use_case: String,
    /// Accountable roles.
    #[serde(default)]
    pub roles: AccountableRoles,
    /// When its access was last reviewed.
    #[serde(default)]
    pub last_review: Option<DateTime<Utc>>,
    /// Lifecycle state.
    pub status: AgentStatus,
    /// Why the state last changed, and who changed it.
    #[serde(default)]
    pub status_reason: Option<StatusChange>,
    /// Registered public keys.
    #[serde(default)]
    pub keys: Vec<AgentKey>,
    /// Budgets.
    #[serde(default)]
    pub budgets: Budgets,
    /// Who created it.
    pub created_by: UserName,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A recorded lifecycle change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// Who made it.
    pub by: UserName,
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

impl Agent {
    /// The owner team (from the SPIFFE ID).
    pub fn owner_team(&self) -> &TeamName {
        self.id.team()
    }

    /// The environment (from the SPIFFE ID).
    pub fn environment(&self) -> &Environment {
        self.id.environment()
    }

    /// Checks that the agent may be `active` given which environments require every accountable
    /// role. Agents elsewhere (e.g. `dev`) may be active with roles missing.
    pub fn check_activation(
        &self,
        protected_environments: &[Environment],
    ) -> Result<(), DomainError> {
        if !protected_environments.contains(self.environment()) {
            return Ok(());
        }
        let missing = self.roles.missing();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DomainError::MissingRoles {
                agent: self.id.to_string(),
                environment: self.environment().to_string(),
                missing,
            })
        }
    }

    fn transition(&mut self, to: AgentStatus, by: &UserName, at: Timestamp, reason: &str) {
        self.status = to;
        self.status_reason = Some(StatusChange {
            by: by.clone(),
            at,
            reason: reason.to_owned(),
        });
        self.updated_at = at;
    }

    /// `active → suspended`.
    pub fn suspend(
        &mut self,
        by: &UserName,
        at: Timestamp,
        reason: &str,
    ) -> Result<(), DomainError> {
        if self.status != AgentStatus::Active {
            return Err(self.invalid("suspend"));
        }
        self.transition(AgentStatus::Suspended, by, at, reason);
        Ok(())
    }

    /// `suspended → active`, only if the accountable roles allow activation.
    pub fn resume(
        &mut self,
        by: &UserName,
        at: Timestamp,
        reason: &str,
        protected_environments: &[Environment],
    ) -> Result<(), DomainError> {
        if self.status != AgentStatus::Suspended {
            return Err(self.invalid("resume"));
        }
        self.check_activation(protected_environments)?;
        self.transition(AgentStatus::Active, by, at, reason);
        Ok(())
    }

    /// `active | suspended → retired`; final.
    pub fn retire(
        &mut self,
        by: &UserName,
        at: Timestamp,
        reason: &str,
    ) -> Result<(), DomainError> {
        if self.status == AgentStatus::Retired {
            return Err(self.invalid("retire"));
        }
        self.transition(AgentStatus::Retired, by, at, reason);
        Ok(())
    }

    fn invalid(&self, transition: &'static str) -> DomainError {
        DomainError::InvalidTransition {
            entity: "agent",
            transition,
            state: self.status.as_str().to_owned(),
        }
    }

    /// Registers a validated public key; `kid`s are unique per agent.
    pub fn add_key(&mut self, key: AgentKey) -> Result<(), DomainError> {
        if self.status == AgentStatus::Retired {
            return Err(self.invalid("add a key to"));
        }
        if self.keys.iter().any(|k| k.kid == key.kid) {
            return Err(DomainError::invalid(
                "kid",
                format!("agent already has a key `{}`", key.kid),
            ));
        }
        if self.keys.len() >= 16 {
            return Err(DomainError::invalid(
                "keys",
                "an agent may have at most 16 keys",
            ));
        }
        self.updated_at = key.added_at;
        self.keys.push(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(env: &str, roles: AccountableRoles) -> Agent {
        let td = "rein.local".parse().unwrap_or_else(|_| unreachable!());
        let id = AgentId::new(
            &td,
            "payments".parse().unwrap_or_else(|_| unreachable!()),
            "bot".parse().unwrap_or_else(|_| unreachable!()),
            env.parse().unwrap_or_else(|_| unreachable!()),
        );
        Agent {
            id,
            description: String::new(),
            use_case: "invoices".into(),
            roles,
            last_review: None,
            status: AgentStatus::Active,
            status_reason: None,
            keys: vec![],
            budgets: Budgets::default(),
            created_by: "alice".parse().unwrap_or_else(|_| unreachable!()),
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
        }
    }

    fn protected() -> Vec<Environment> {
        ["prod", "staging"]
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect()
    }

    #[test]
    fn dev_agents_may_be_active_without_roles_but_prod_agents_may_not() {
        assert!(agent("dev", AccountableRoles::default())
            .check_activation(&protected())
            .is_ok());
        let err = agent("prod", AccountableRoles::default()).check_activation(&protected());
        let Err(DomainError::MissingRoles { missing, .. }) = err else {
            unreachable!("expected missing roles, got {err:?}")
        };
        assert_eq!(
            missing,
            vec![
                "business_owner",
                "approvers",
                "revokers",
                "reviewers",
                "review_cadence_days"
            ]
        );
    }

    #[test]
    fn retiring_is_final() {
        let who: UserName = "bob".parse().unwrap_or_else(|_| unreachable!());
        let mut a = agent("dev", AccountableRoles::default());
        assert!(a.suspend(&who, Timestamp::default(), "incident").is_ok());
        assert!(a.suspend(&who, Timestamp::default(), "again").is_err());
        assert!(a
            .retire(&who, Timestamp::default(), "decommissioned")
            .is_ok());
        assert!(a
            .resume(&who, Timestamp::default(), "oops", &protected())
            .is_err());
        assert!(a.retire(&who, Timestamp::default(), "twice").is_err());
        assert_eq!(a.status, AgentStatus::Retired);
    }
}
