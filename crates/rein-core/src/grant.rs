//! Grants: an agent's access to some actions of one system, and their approval path.
//!
//! Lifecycle: `requested → active | denied`, `active → expired | revoked`, `requested →
//! revoked | expired`. A grant becomes `active` the moment its last required approval lands:
//! one from an approver of the target system, and, when any action is `write` or `admin` on a
//! production system, one from the agent's business owner, a second and distinct person. The
//! requester never approves their own request. `denied`, `expired` and `revoked` are final.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentStatus, StatusChange};
use crate::authz::Actor;
use crate::id::{ActionName, AgentId, GrantId, PrincipalRef, SystemName, UserName};
use crate::schedule::Schedule;
use crate::system::System;
use crate::{DomainError, Timestamp};

/// The hard cap on any token's lifetime, in seconds (one hour).
pub const MAX_TOKEN_TTL_SECS: u32 = 3600;

/// Longest accepted free-text field (justification, reason, comment), in bytes.
pub const MAX_TEXT_LEN: usize = 4096;

/// A grant's state. Stored states are `requested`, `active`, `denied` and `revoked`; `expired`
/// is also derived at read time from `expires_at` (see [`Grant::status_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GrantStatus {
    /// Waiting for approvals.
    Requested,
    /// Approved and usable until `expires_at`.
    Active,
    /// Refused by an approver; final.
    Denied,
    /// Past `expires_at`; final.
    Expired,
    /// Revoked; final.
    Revoked,
}

impl GrantStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Active => "active",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// In which capacity someone approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalRole {
    /// An approver of the target system.
    SystemApprover,
    /// The agent's business owner (prod mutations).
    BusinessOwner,
}

/// One recorded approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Who approved.
    pub by: UserName,
    /// In which capacity.
    pub role: ApprovalRole,
    /// When.
    pub at: DateTime<Utc>,
    /// Their comment.
    #[serde(default)]
    pub comment: String,
}

/// What a requester asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The agent's SPIFFE ID.
    pub agent: AgentId,
    /// The target system.
    pub system: SystemName,
    /// The actions, each declared by the system.
    pub actions: BTreeSet<ActionName>,
    /// When the grant ends; required and in the future.
    pub expires_at: DateTime<Utc>,
    /// Optional time windows in which the grant may be used.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Longest lifetime of a token minted under this grant, 1 to 3600 seconds.
    #[serde(default)]
    pub max_token_ttl_secs: Option<u32>,
    /// Why the agent needs this access.
    pub justification: String,
}

/// An agent's access to actions of one system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Grant ID.
    pub id: GrantId,
    /// The agent.
    pub agent: AgentId,
    /// The target system.
    pub system: SystemName,
    /// The granted actions.
    pub actions: BTreeSet<ActionName>,
    /// When the grant ends.
    pub expires_at: DateTime<Utc>,
    /// When it may be used, if restricted.
    pub schedule: Option<Schedule>,
    /// Longest token lifetime under this grant.
    pub max_token_ttl_secs: Option<u32>,
    /// Why it was requested.
    pub justification: String,
    /// Who requested it.
    pub requested_by: UserName,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// Stored state; read [`Grant::status_at`] for the effective one.
    pub status: GrantStatus,
    /// Whether any action is `write` or `admin` on a production system.
    pub mutates_production: bool,
    /// Who may give the system approval (the system's approvers when requested).
    pub approvers: Vec<PrincipalRef>,
    /// The business owner whose approval is also required, if any.
    pub business_owner_approver: Option<UserName>,
    /// Approvals given so far.
    pub approvals: Vec<Approval>,
    /// Who may revoke it besides admins: the agent's revokers and the system's approvers.
    pub revokers: Vec<PrincipalRef>,
    /// The denial or revocation, with who and why.
    pub closed: Option<StatusChange>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

fn check_text(field: &'static str, value: &str, required: bool) -> Result<(), DomainError> {
    if required && value.trim().is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    if value.len() > MAX_TEXT_LEN {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {MAX_TEXT_LEN} bytes"),
        ));
    }
    Ok(())
}

impl Grant {
    /// Creates a `requested` grant after checking the request against the agent and system.
    /// `production` says whether the system's environment counts as production.
    pub fn request(
        id: GrantId,
        req: GrantRequest,
        agent: &Agent,
        system: &System,
        production: bool,
        requested_by: &UserName,
        now: Timestamp,
    ) -> Result<Self, DomainError> {
        if agent.id != req.agent || system.name != req.system {
            return Err(DomainError::invalid(
                "agent",
                "facts do not match the request",
            ));
        }
        if agent.status == AgentStatus::Retired {
            return Err(DomainError::InvalidTransition {
                entity: "agent",
                transition: "request a grant for",
                state: agent.status.as_str().to_owned(),
            });
        }
        if agent.environment() != &system.environment {
            return Err(DomainError::invalid(
                "system",
                format!(
                    "agent in `{}` cannot be granted access to a system in `{}`; use an identity per environment",
                    agent.environment(),
                    system.environment
                ),
            ));
        }
        if req.actions.is_empty() {
            return Err(DomainError::invalid(
                "actions",
                "at least one action is required",
            ));
        }
        let mut mutating = false;
        for action in &req.actions {
            mutating |= system.class_of(action)?.is_mutating();
        }
        if req.expires_at <= now {
            return Err(DomainError::invalid("expires_at", "must be in the future"));
        }
        if let Some(schedule) = &req.schedule {
            schedule.validate()?;
        }
        if req
            .max_token_ttl_secs
            .is_some_and(|t| t == 0 || t > MAX_TOKEN_TTL_SECS)
        {
            return Err(DomainError::invalid(
                "max_token_ttl_secs",
                format!("must be 1 to {MAX_TOKEN_TTL_SECS} seconds"),
            ));
        }
        check_text("justification", &req.justification, true)?;
        if system.approvers.is_empty() {
            return Err(DomainError::invalid(
                "system",
                format!("system `{}` has no approvers", system.name),
            ));
        }
        let mutates_production = mutating && production;
        let business_owner_approver = if mutates_production {
            Some(agent.roles.business_owner.clone().ok_or_else(|| {
                DomainError::invalid("agent", "a write or admin grant in production needs the agent's business owner, and none is set")
            })?)
        } else {
            None
        };
        if business_owner_approver.as_ref() == Some(requested_by) {
            return Err(DomainError::forbidden(
                "the agent's business owner must approve this production write grant, so another member of the team must request it",
            ));
        }
        let mut revokers: Vec<PrincipalRef> = agent.roles.revokers.clone();
        for p in &system.approvers {
            if !revokers.contains(p) {
                revokers.push(p.clone());
            }
        }
        Ok(Self {
            id,
            agent: req.agent,
            system: req.system,
            actions: req.actions,
            expires_at: req.expires_at,
            schedule: req.schedule,
            max_token_ttl_secs: req.max_token_ttl_secs,
            justification: req.justification,
            requested_by: requested_by.clone(),
            requested_at: now,
            status: GrantStatus::Requested,
            mutates_production,
            approvers: system.approvers.clone(),
            business_owner_approver,
            approvals: Vec::new(),
            revokers,
            closed: None,
            updated_at: now,
        })
    }

    /// The effective state at `now`: a requested or active grant past `expires_at` is expired.
    pub fn status_at(&self, now: Timestamp) -> GrantStatus {
        match self.status {
            GrantStatus::Requested | GrantStatus::Active if now >= self.expires_at => {
                GrantStatus::Expired
            }
            s => s,
        }
    }

    fn has(&self, role: ApprovalRole) -> bool {
        self.approvals.iter().any(|a| a.role == role)
    }

    /// Whether every required approval is on record.
    pub fn fully_approved(&self) -> bool {
        self.has(ApprovalRole::SystemApprover)
            && (self.business_owner_approver.is_none() || self.has(ApprovalRole::BusinessOwner))
    }

    fn require_pending(&self, transition: &'static str, now: Timestamp) -> Result<(), DomainError> {
        match self.status_at(now) {
            GrantStatus::Requested => Ok(()),
            s => Err(DomainError::InvalidTransition {
                entity: "grant",
                transition,
                state: s.as_str().to_owned(),
            }),
        }
    }

    /// Records `actor`'s approval; the grant turns `active` when it was the last one required.
    /// `system_approvers` are the target system's current approvers. Returns the capacity in
    /// which the actor approved.
    pub fn approve(
        &mut self,
        actor: &Actor,
        system_approvers: &[PrincipalRef],
        comment: &str,
        now: Timestamp,
    ) -> Result<ApprovalRole, DomainError> {
        self.require_pending("approve", now)?;
        check_text("comment", comment, false)?;
        if actor.role == crate::user::Role::Auditor {
            return Err(DomainError::forbidden("auditors are read-only"));
        }
        if actor.user == self.requested_by {
            return Err(DomainError::SelfApproval);
        }
        if self.approvals.iter().any(|a| a.by == actor.user) {
            return Err(DomainError::AlreadyApproved {
                user: actor.user.to_string(),
            });
        }
        let as_owner = self.business_owner_approver.as_ref() == Some(&actor.user);
        let as_approver = actor.is_any(system_approvers);
        // The business owner is one person; fill that slot when the actor is them, so the system
        // approval stays open for someone else.
        let role = if as_owner && !self.has(ApprovalRole::BusinessOwner) {
            ApprovalRole::BusinessOwner
        } else if as_approver && !self.has(ApprovalRole::SystemApprover) {
            ApprovalRole::SystemApprover
        } else if as_owner || as_approver {
            return Err(DomainError::forbidden(
                "the approval you could give is already on record; the remaining approval must come from someone else",
            ));
        } else {
            return Err(DomainError::forbidden(
                "only an approver of the target system, or the agent's business owner for a production write, may approve",
            ));
        };
        self.approvals.push(Approval {
            by: actor.user.clone(),
            role,
            at: now,
            comment: comment.to_owned(),
        });
        if self.fully_approved() {
            self.status = GrantStatus::Active;
        }
        self.updated_at = now;
        Ok(role)
    }

    /// Refuses the request; final. Any approver who could approve may deny.
    pub fn deny(
        &mut self,
        actor: &Actor,
        system_approvers: &[PrincipalRef],
        reason: &str,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        self.require_pending("deny", now)?;
        check_text("reason", reason, true)?;
        if actor.role == crate::user::Role::Auditor {
            return Err(DomainError::forbidden("auditors are read-only"));
        }
        let as_owner = self.business_owner_approver.as_ref() == Some(&actor.user);
        if !as_owner && !actor.is_any(system_approvers) {
            return Err(DomainError::forbidden(
                "only an approver of the target system, or the agent's business owner for a production write, may deny",
            ));
        }
        self.status = GrantStatus::Denied;
        self.closed = Some(StatusChange {
            by: actor.user.clone(),
            at: now,
            reason: reason.to_owned(),
        });
        self.updated_at = now;
        Ok(())
    }

    /// Revokes a requested or active grant; final. The caller checks who may revoke
    /// ([`Actor::require_grant_revoker`]).
    pub fn revoke(
        &mut self,
        by: &UserName,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        match self.status_at(now) {
            GrantStatus::Requested | GrantStatus::Active => {}
            s => {
                return Err(DomainError::InvalidTransition {
                    entity: "grant",
                    transition: "revoke",
                    state: s.as_str().to_owned(),
                })
            }
        }
        check_text("reason", reason, true)?;
        self.status = GrantStatus::Revoked;
        self.closed = Some(StatusChange {
            by: by.clone(),
            at: now,
            reason: reason.to_owned(),
        });
        self.updated_at = now;
        Ok(())
    }

    /// Persists an expiry that [`Grant::status_at`] already reports: a requested or active
    /// grant past `expires_at` becomes `expired`.
    pub fn expire(&mut self, now: Timestamp) -> Result<(), DomainError> {
        if self.status_at(now) != GrantStatus::Expired || self.status == GrantStatus::Expired {
            return Err(DomainError::InvalidTransition {
                entity: "grant",
                transition: "expire",
                state: self.status_at(now).as_str().to_owned(),
            });
        }
        self.status = GrantStatus::Expired;
        self.updated_at = now;
        Ok(())
    }

    /// Whether the grant lets its agent perform `action` at `now`: active, not expired, the
    /// action granted, and inside the schedule if there is one.
    pub fn covers(&self, action: &ActionName, now: Timestamp) -> bool {
        self.status_at(now) == GrantStatus::Active
            && self.actions.contains(action)
            && self.schedule.as_ref().is_none_or(|s| s.contains(now))
    }
}

#[cfg(test)]
mod tests;
