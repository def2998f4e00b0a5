//! Agents: created and changed by their team, suspended by their revokers, retired for good.

use chrono::{DateTime, Utc};
use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
use rein_core::authz::Actor;
use rein_core::grant::GrantStatus;
use rein_core::id::{AgentId, AgentName, Environment, PrincipalRef, TeamName, UserName};
use rein_core::key::{AgentKey, Jwk};
use rein_core::DomainError;
use rein_store::AgentFilter;
use rein_store::INITIAL_VERSION;
use serde::{Deserialize, Serialize};

use rein_audit::EventType;

use crate::{audit, Error, Registry};

/// An agent to create. Its SPIFFE ID is built from team, name and environment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// The owner team.
    pub team: TeamName,
    /// Short name, unique within the team and environment.
    pub name: AgentName,
    /// The environment this identity is for.
    pub environment: Environment,
    /// What the agent does.
    #[serde(default)]
    pub description: String,
    /// The one use case this identity serves.
    pub use_case: String,
    /// Accountable roles.
    #[serde(default)]
    pub roles: AccountableRoles,
    /// Budgets.
    #[serde(default)]
    pub budgets: Budgets,
    /// `active` (default) or `suspended`. Active agents in protected environments need every
    /// accountable role.
    #[serde(default)]
    pub status: Option<AgentStatus>,
}

/// Changes to an agent; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New use case.
    #[serde(default)]
    pub use_case: Option<String>,
    /// New accountable roles (replace the old ones).
    #[serde(default)]
    pub roles: Option<AccountableRoles>,
    /// New budgets.
    #[serde(default)]
    pub budgets: Option<Budgets>,
}

pub(crate) fn check_texts(
    description: Option<&String>,
    use_case: Option<&String>,
) -> Result<(), Error> {
    if description.is_some_and(|d| d.len() > 1024) {
        return Err(DomainError::invalid("description", "must be at most 1024 bytes").into());
    }
    if let Some(u) = use_case {
        if u.trim().is_empty() || u.len() > 256 {
            return Err(DomainError::invalid("use_case", "is required, at most 256 bytes").into());
        }
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<(), Error> {
    if reason.trim().is_empty() || reason.len() > rein_core::grant::MAX_TEXT_LEN {
        return Err(DomainError::invalid("reason", "is required, at most 4096 bytes").into());
    }
    Ok(())
}

impl Registry {
    async fn check_roles(&self, roles: &AccountableRoles) -> Result<(), Error> {
        roles.validate()?;
        if let Some(owner) = &roles.business_owner {
            self.check_principals("business_owner", [&PrincipalRef::User(owner.clone())])
                .await?;
        }
        self.check_principals("approvers", &roles.approvers).await?;
        self.check_principals("revokers", &roles.revokers).await?;
        self.check_principals("reviewers", &roles.reviewers).await?;
        Ok(())
    }

    fn agent_not_found(id: &AgentId) -> Error {
        Error::NotFound {
            kind: "agent",
            key: id.to_string(),
        }
    }

    pub(crate) async fn load_agent(&self, id: &AgentId) -> Result<Agent, Error> {
        Ok(self
            .store
            .agent(id)
            .await?
            .ok_or_else(|| Self::agent_not_found(id))?
            .value)
    }

    /// The agent `new` describes, created by `actor` at `now`: its status checked (and its
    /// accountable roles, if it is active in a protected environment). Texts, environment and
    /// the roles' principals are checked by the caller.
    pub(crate) fn new_agent(
        &self,
        actor: &Actor,
        new: NewAgent,
        now: DateTime<Utc>,
    ) -> Result<Agent, Error> {
        let status = new.status.unwrap_or(AgentStatus::Active);
        if status == AgentStatus::Retired {
            return Err(
                DomainError::invalid("status", "a new agent is `active` or `suspended`").into(),
            );
        }
        let agent = Agent {
            id: self.agent_id(&new),
            description: new.description,
            use_case: new.use_case,
            roles: new.roles,
            last_review: None,
            status,
            status_reason: None,
            keys: Vec::new(),
            budgets: new.budgets,
            created_by: actor.user.clone(),
            created_at: now,
            updated_at: now,
        };
        if status == AgentStatus::Active {
            agent.check_activation(&self.config.protected_environments)?;
        }
        Ok(agent)
    }

    /// The SPIFFE ID of the agent `new` describes.
    pub(crate) fn agent_id(&self, new: &NewAgent) -> AgentId {
        AgentId::new(
            &self.config.trust_domain,
            new.team.clone(),
            new.name.clone(),
            new.environment.clone(),
        )
    }

    /// Creates an agent (members of its team).
    pub async fn create_agent(&self, actor: &Actor, new: NewAgent) -> Result<Agent, Error> {
        actor.require_team_member(&new.team, "create its agents")?;
        self.check_environment(&new.environment)?;
        check_texts(Some(&new.description), Some(&new.use_case))?;
        self.check_roles(&new.roles).await?;
        let agent = self.new_agent(actor, new, self.now())?;
        let event = audit::agent_event(EventType::AgentCreated, actor, &agent, None);
        self.create(
            "agent",
            agent.id.as_str(),
            event,
            self.store.insert_agent(&agent),
        )
        .await?;
        self.agent_written(&agent, INITIAL_VERSION);
        Ok(agent)
    }

    /// Reads an agent.
    pub async fn agent(&self, _actor: &Actor, id: &AgentId) -> Result<Agent, Error> {
        self.load_agent(id).await
    }

    /// Lists agents.
    pub async fn agents(&self, _actor: &Actor, filter: &AgentFilter) -> Result<Vec<Agent>, Error> {
        Ok(self.store.agents(filter).await?)
    }

    /// Changes an agent. Description, use case and budgets: members of its team. Accountable
    /// roles: see [`Actor::require_role_editor`]. An active agent in a protected environment
    /// must keep every accountable role.
    pub async fn update_agent(
        &self,
        actor: &Actor,
        id: &AgentId,
        patch: AgentPatch,
    ) -> Result<Agent, Error> {
        check_texts(patch.description.as_ref(), patch.use_case.as_ref())?;
        if let Some(roles) = &patch.roles {
            self.check_roles(roles).await?;
        }
        let now = self.now();
        let protected = &self.config.protected_environments;
        self.modify_agent(
            id,
            |a| {
                if patch.description.is_some()
                    || patch.use_case.is_some()
                    || patch.budgets.is_some()
                {
                    actor.require_team_member(id.team(), "change its agents")?;
                }
                if patch.roles.is_some() {
                    actor.require_role_editor(a)?;
                }
                if a.status == AgentStatus::Retired {
                    return Err(DomainError::InvalidTransition {
                        entity: "agent",
                        transition: "change",
                        state: "retired".into(),
                    }
                    .into());
                }
                if let Some(d) = &patch.description {
                    a.description.clone_from(d);
                }
                if let Some(u) = &patch.use_case {
                    a.use_case.clone_from(u);
                }
                if let Some(r) = &patch.roles {
                    a.roles = r.clone();
                }
                if let Some(b) = &patch.budgets {
                    a.budgets = b.clone();
                }
                if a.status == AgentStatus::Active {
                    a.check_activation(protected)?;
                }
                a.updated_at = now;
                Ok(())
            },
            |a| audit::agent_event(EventType::AgentUpdated, actor, a, None),
        )
        .await
    }

    /// Suspends an agent (its revokers or an admin).
    pub async fn suspend_agent(
        &self,
        actor: &Actor,
        id: &AgentId,
        reason: &str,
    ) -> Result<Agent, Error> {
        check_reason(reason)?;
        let now = self.now();
        self.modify_agent(
            id,
            |a| {
                actor.require_agent_revoker(a, "suspend it")?;
                Ok(a.suspend(&actor.user, now, reason)?)
            },
            |a| audit::agent_event(EventType::AgentSuspended, actor, a, Some(reason)),
        )
        .await
    }

    /// Suspends an agent on Rein's own authority: its budget was breached and its budgets ask
    /// for the circuit breaker, or (the review sweep) its access review is overdue and the
    /// configuration asks for suspension. Recorded with Rein as the actor and `reason`. An agent
    /// that is no longer active is left as it is.
    pub async fn trip_breaker(&self, id: &AgentId, reason: &str) -> Result<Agent, Error> {
        check_reason(reason)?;
        let now = self.now();
        let rein = UserName::rein();
        self.modify_agent(
            id,
            |a| {
                if a.status == AgentStatus::Active {
                    a.suspend(&rein, now, reason)?;
                }
                Ok(())
            },
            |a| audit::agent_event_by_rein(EventType::AgentSuspended, a, Some(reason)),
        )
        .await
    }

    /// Resumes a suspended agent (its revokers or an admin), if its roles allow activation.
    pub async fn resume_agent(
        &self,
        actor: &Actor,
        id: &AgentId,
        reason: &str,
    ) -> Result<Agent, Error> {
        check_reason(reason)?;
        let now = self.now();
        let protected = &self.config.protected_environments;
        self.modify_agent(
            id,
            |a| {
                actor.require_agent_revoker(a, "resume it")?;
                Ok(a.resume(&actor.user, now, reason, protected)?)
            },
            |a| audit::agent_event(EventType::AgentResumed, actor, a, Some(reason)),
        )
        .await
    }

    /// Retires an agent for good (its team, its revokers or an admin). The record stays; its
    /// requested and active grants are revoked with it, since nothing may use them again.
    pub async fn retire_agent(
        &self,
        actor: &Actor,
        id: &AgentId,
        reason: &str,
    ) -> Result<Agent, Error> {
        check_reason(reason)?;
        let now = self.now();
        let store = &self.store;
        let agent = self
            .modify_agent(
                id,
                |a| {
                    actor.require_agent_retirer(a)?;
                    Ok(a.retire(&actor.user, now, reason)?)
                },
                |a| audit::agent_event(EventType::AgentRetired, actor, a, Some(reason)),
            )
            .await?;
        let grants = store
            .grants(&rein_store::GrantFilter {
                agent: Some(id.clone()),
                ..Default::default()
            })
            .await?;
        let why = format!("agent retired: {reason}");
        for g in grants.iter().filter(|g| {
            matches!(
                g.status_at(now),
                GrantStatus::Requested | GrantStatus::Active
            )
        }) {
            self.modify_grant(
                &g.id,
                |g| match g.status_at(now) {
                    GrantStatus::Requested | GrantStatus::Active => {
                        Ok(g.revoke(&actor.user, &why, now)?)
                    }
                    _ => Ok(()),
                },
                |g| audit::grant_event(EventType::GrantRevoked, actor, g, Some(&why)),
            )
            .await?;
        }
        Ok(agent)
    }

    /// Registers a public key for an agent (members of its team).
    pub async fn add_agent_key(
        &self,
        actor: &Actor,
        id: &AgentId,
        jwk: Jwk,
    ) -> Result<AgentKey, Error> {
        actor.require_team_member(id.team(), "register its agents' keys")?;
        let (jwk, alg) = jwk.validate()?;
        let kid = jwk.kid.clone().unwrap_or_default();
        let key = AgentKey {
            kid,
            alg,
            jwk,
            added_at: self.now(),
            added_by: actor.user.clone(),
        };
        self.modify_agent(
            id,
            |a| Ok(a.add_key(key.clone())?),
            |a| {
                let mut e = audit::agent_event(EventType::AgentKeyAdded, actor, a, None);
                e.details.insert("kid".into(), key.kid.clone());
                e
            },
        )
        .await?;
        Ok(key)
    }

    /// Removes a public key (its team, its revokers or an admin: removing a key only takes
    /// access away).
    pub async fn remove_agent_key(
        &self,
        actor: &Actor,
        id: &AgentId,
        kid: &str,
    ) -> Result<Agent, Error> {
        let agent = self.load_agent(id).await?;
        if actor.require_team_member(id.team(), "remove keys").is_err() {
            actor.require_agent_revoker(&agent, "remove its keys")?;
        }
        let now = self.now();
        self.modify_agent(
            id,
            |a| {
                let before = a.keys.len();
                a.keys.retain(|k| k.kid != kid);
                if a.keys.len() == before {
                    return Err(Error::NotFound {
                        kind: "key",
                        key: kid.to_owned(),
                    });
                }
                a.updated_at = now;
                Ok(())
            },
            |a| {
                let mut e = audit::agent_event(EventType::AgentKeyRemoved, actor, a, None);
                e.details.insert("kid".into(), kid.to_owned());
                e
            },
        )
        .await
    }
}
