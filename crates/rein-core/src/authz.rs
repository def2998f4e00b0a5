//! Who may do what on Rein itself. Pure checks over the actor and the facts the store loaded.
//!
//! The rules (SPEC.md, "Who may do what on Rein itself"):
//! - `admin` manages users, teams and systems and may revoke anything; it approves nothing
//!   unless named as an approver;
//! - a team's members create and change the team's agents, register their keys and request
//!   grants for them;
//! - an agent's revokers suspend it and revoke its grants; suspended agents are resumed by the
//!   same people who may suspend them, and once an agent has revokers only they (or an admin)
//!   change its accountable roles, so a team cannot undo or route around its revokers;
//! - a system's approvers approve, deny and revoke grants on it;
//! - `auditor` reads everything and changes nothing; every authenticated user may read the
//!   registry, but only admins and auditors read the audit log.

use std::collections::BTreeSet;

use crate::agent::Agent;
use crate::id::{AgentId, PrincipalRef, TeamName, UserName};
use crate::system::System;
use crate::user::Role;
use crate::DomainError;

/// The authenticated human behind a request, with the facts authorization needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user: UserName,
    /// Their global role.
    pub role: Role,
    /// The teams they belong to.
    pub teams: BTreeSet<TeamName>,
}

impl Actor {
    /// Whether `principal` names this actor, directly or through a team.
    pub fn is(&self, principal: &PrincipalRef) -> bool {
        match principal {
            PrincipalRef::User(u) => *u == self.user,
            PrincipalRef::Team(t) => self.teams.contains(t),
        }
    }

    /// Whether any of `principals` names this actor.
    pub fn is_any(&self, principals: &[PrincipalRef]) -> bool {
        principals.iter().any(|p| self.is(p))
    }

    /// Whether the actor is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses auditors, who change nothing.
    fn writer(&self) -> Result<(), DomainError> {
        if self.role == Role::Auditor {
            Err(DomainError::forbidden("auditors are read-only"))
        } else {
            Ok(())
        }
    }

    /// Reading the audit log: admins and auditors only (it names everyone's approvals and
    /// revocations).
    pub fn require_audit_reader(&self) -> Result<(), DomainError> {
        if matches!(self.role, Role::Admin | Role::Auditor) {
            Ok(())
        } else {
            Err(DomainError::forbidden(
                "only admins and auditors may read the audit log",
            ))
        }
    }

    /// Managing users, teams, memberships and systems.
    pub fn require_admin(&self, what: &str) -> Result<(), DomainError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(DomainError::forbidden(format!("only an admin may {what}")))
        }
    }

    /// Creating and changing a team's agents, registering their keys, requesting grants.
    pub fn require_team_member(&self, team: &TeamName, what: &str) -> Result<(), DomainError> {
        self.writer()?;
        if self.teams.contains(team) {
            Ok(())
        } else {
            Err(DomainError::forbidden(format!(
                "only members of team `{team}` may {what}"
            )))
        }
    }

    /// Asking for a decision on an agent's call: an admin, or a member of the agent's owner
    /// team (the team is part of the agent's ID, so this holds for unknown agents too).
    /// Auditors change nothing, and a decision counts against budgets.
    pub fn require_decision_requester(&self, agent: &AgentId) -> Result<(), DomainError> {
        self.writer()?;
        if self.is_admin() || self.teams.contains(agent.team()) {
            Ok(())
        } else {
            Err(DomainError::forbidden(format!(
                "only admins and members of team `{}` may ask for decisions on its agents",
                agent.team()
            )))
        }
    }

    /// Suspending or resuming an agent: its revokers or an admin.
    pub fn require_agent_revoker(&self, agent: &Agent, what: &str) -> Result<(), DomainError> {
        self.writer()?;
        if self.is_admin() || self.is_any(&agent.roles.revokers) {
            Ok(())
        } else {
            Err(DomainError::forbidden(format!(
                "only the agent's revokers or an admin may {what}"
            )))
        }
    }

    /// Changing an agent's accountable roles. Its revokers are the check on its team, so once
    /// an agent has revokers, or while it is suspended, only those revokers or an admin may
    /// change who is accountable for it; the team alone may set roles only on an agent that
    /// has none yet.
    pub fn require_role_editor(&self, agent: &Agent) -> Result<(), DomainError> {
        self.writer()?;
        if self.is_admin() || self.is_any(&agent.roles.revokers) {
            return Ok(());
        }
        let unchecked =
            agent.roles.revokers.is_empty() && agent.status == crate::agent::AgentStatus::Active;
        if unchecked && self.teams.contains(agent.owner_team()) {
            Ok(())
        } else {
            Err(DomainError::forbidden(
                "only the agent's revokers or an admin may change its accountable roles once it has revokers or is suspended",
            ))
        }
    }

    /// Retiring an agent: its team, its revokers or an admin.
    pub fn require_agent_retirer(&self, agent: &Agent) -> Result<(), DomainError> {
        self.writer()?;
        if self.is_admin()
            || self.is_any(&agent.roles.revokers)
            || self.teams.contains(agent.owner_team())
        {
            Ok(())
        } else {
            Err(DomainError::forbidden(
                "only the agent's team, its revokers or an admin may retire it",
            ))
        }
    }

    /// Revoking a grant: the agent's revokers, the system's approvers, anyone recorded as a
    /// revoker on the grant, or an admin.
    pub fn require_grant_revoker(
        &self,
        agent: &Agent,
        system: &System,
        recorded: &[PrincipalRef],
    ) -> Result<(), DomainError> {
        self.writer()?;
        if self.is_admin()
            || self.is_any(&agent.roles.revokers)
            || self.is_any(&system.approvers)
            || self.is_any(recorded)
        {
            Ok(())
        } else {
            Err(DomainError::forbidden(
                "only the agent's revokers, the system's approvers or an admin may revoke this grant",
            ))
        }
    }

    /// Issuing a personal API token: for oneself, or by an admin for anyone.
    pub fn require_self_or_admin(&self, user: &UserName) -> Result<(), DomainError> {
        self.writer()?;
        if self.is_admin() || self.user == *user {
            Ok(())
        } else {
            Err(DomainError::forbidden(
                "only the user themself or an admin may manage their tokens",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(user: &str, role: Role, teams: &[&str]) -> Actor {
        Actor {
            user: user.parse().unwrap_or_else(|_| unreachable!()),
            role,
            teams: teams.iter().filter_map(|t| t.parse().ok()).collect(),
        }
    }

    #[test]
    fn team_principals_match_members() {
        let a = actor("alice", Role::Member, &["payments"]);
        assert!(a.is(&"team:payments".parse().unwrap_or_else(|_| unreachable!())));
        assert!(!a.is(&"team:ops".parse().unwrap_or_else(|_| unreachable!())));
        assert!(a.is(&"user:alice".parse().unwrap_or_else(|_| unreachable!())));
    }

    #[test]
    fn a_team_cannot_replace_the_revokers_that_check_it() {
        use crate::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
        let mut agent = Agent {
            id: "spiffe://rein.local/agent/payments/bot/prod"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            description: String::new(),
            use_case: "x".into(),
            roles: AccountableRoles::default(),
            last_review: None,
            status: AgentStatus::Active,
            status_reason: None,
            keys: vec![],
            budgets: Budgets::default(),
            created_by: "dave".parse().unwrap_or_else(|_| unreachable!()),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        let member = actor("dave", Role::Member, &["payments"]);
        let revoker = actor("sec", Role::Member, &["secops"]);
        assert!(
            member.require_role_editor(&agent).is_ok(),
            "no revokers yet: the team sets them"
        );
        agent.roles.revokers = vec!["team:secops".parse().unwrap_or_else(|_| unreachable!())];
        assert!(member.require_role_editor(&agent).is_err());
        assert!(revoker.require_role_editor(&agent).is_ok());
        agent.roles.revokers.clear();
        agent.status = AgentStatus::Suspended;
        assert!(
            member.require_role_editor(&agent).is_err(),
            "a suspended agent's roles are frozen for its team"
        );
    }

    #[test]
    fn auditors_change_nothing_even_as_team_members() {
        let a = actor("eve", Role::Auditor, &["payments"]);
        let team: TeamName = "payments".parse().unwrap_or_else(|_| unreachable!());
        assert!(a.require_team_member(&team, "create agents").is_err());
        assert!(a.require_admin("create users").is_err());
    }
}
