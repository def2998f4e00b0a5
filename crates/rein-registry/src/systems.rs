//! Systems: the production targets agents act on. Registered and changed by admins.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rein_core::authz::Actor;
use rein_core::id::{ActionName, Environment, PrincipalRef, SystemName, TeamName};
use rein_core::mcp::McpUpstream;
use rein_core::system::{ActionSpec, Classification, System};
use rein_core::DomainError;
use serde::{Deserialize, Serialize};

use rein_audit::EventType;
use rein_store::INITIAL_VERSION;

use crate::{audit, Error, Registry};

/// Most actions one system may declare.
const MAX_ACTIONS: usize = 1024;

/// A system to register.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSystem {
    /// System name.
    pub name: SystemName,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Its environment (one of the configured ones).
    pub environment: Environment,
    /// The owning team (must exist).
    pub owner_team: TeamName,
    /// Who approves access to it (existing users or teams).
    #[serde(default)]
    pub approvers: Vec<PrincipalRef>,
    /// Data classification.
    #[serde(default)]
    pub classification: Classification,
    /// Its actions and their classes.
    #[serde(default)]
    pub actions: BTreeMap<ActionName, ActionSpec>,
    /// For an MCP server: how the gateway reaches it. Credentials are referenced by the name
    /// of a stored secret, never written here.
    #[serde(default)]
    pub mcp: Option<McpUpstream>,
}

/// Changes to a system; absent fields stay as they are. Its name and environment are fixed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemPatch {
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New owning team.
    #[serde(default)]
    pub owner_team: Option<TeamName>,
    /// New approver list (replaces the old one).
    #[serde(default)]
    pub approvers: Option<Vec<PrincipalRef>>,
    /// New classification.
    #[serde(default)]
    pub classification: Option<Classification>,
    /// New action list (replaces the old one).
    #[serde(default)]
    pub actions: Option<BTreeMap<ActionName, ActionSpec>>,
    /// New MCP upstream configuration (replaces the old one).
    #[serde(default)]
    pub mcp: Option<McpUpstream>,
}

pub(crate) fn check_fields(
    description: Option<&String>,
    actions: Option<&BTreeMap<ActionName, ActionSpec>>,
    mcp: Option<&McpUpstream>,
) -> Result<(), Error> {
    if let Some(mcp) = mcp {
        mcp.validate()?;
    }
    if description.is_some_and(|d| d.len() > 1024) {
        return Err(DomainError::invalid("description", "must be at most 1024 bytes").into());
    }
    if actions.is_some_and(|a| a.len() > MAX_ACTIONS) {
        return Err(
            DomainError::invalid("actions", format!("at most {MAX_ACTIONS} actions")).into(),
        );
    }
    Ok(())
}

/// The system `new` describes, registered at `now` (its fields checked by the caller).
pub(crate) fn new_system(new: NewSystem, now: DateTime<Utc>) -> System {
    System {
        name: new.name,
        description: new.description,
        environment: new.environment,
        owner_team: new.owner_team,
        approvers: new.approvers,
        classification: new.classification,
        actions: new.actions,
        created_at: now,
        updated_at: now,
        mcp: new.mcp,
    }
}

impl Registry {
    async fn check_team_exists(&self, team: &TeamName) -> Result<(), Error> {
        self.check_principals("owner_team", [&PrincipalRef::Team(team.clone())])
            .await
    }

    /// Registers a system (admins only).
    pub async fn create_system(&self, actor: &Actor, new: NewSystem) -> Result<System, Error> {
        actor.require_admin("register systems")?;
        self.check_environment(&new.environment)?;
        check_fields(Some(&new.description), Some(&new.actions), new.mcp.as_ref())?;
        self.check_secret_references(new.mcp.as_ref()).await?;
        self.check_team_exists(&new.owner_team).await?;
        self.check_principals("approvers", &new.approvers).await?;
        let system = new_system(new, self.now());
        let event = audit::system_event(EventType::SystemCreated, actor, &system);
        self.create(
            "system",
            system.name.as_str(),
            event,
            self.store.insert_system(&system),
        )
        .await?;
        self.system_written(&system, INITIAL_VERSION);
        Ok(system)
    }

    /// Reads a system.
    pub async fn system(&self, _actor: &Actor, name: &SystemName) -> Result<System, Error> {
        Ok(self
            .store
            .system(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "system",
                key: name.to_string(),
            })?
            .value)
    }

    /// Lists systems.
    pub async fn systems(&self, _actor: &Actor) -> Result<Vec<System>, Error> {
        Ok(self.store.systems().await?)
    }

    /// Changes a system (admins only). Grants already issued keep the actions they name; a
    /// removed action simply stops matching new requests.
    pub async fn update_system(
        &self,
        actor: &Actor,
        name: &SystemName,
        patch: SystemPatch,
    ) -> Result<System, Error> {
        actor.require_admin("change systems")?;
        check_fields(
            patch.description.as_ref(),
            patch.actions.as_ref(),
            patch.mcp.as_ref(),
        )?;
        self.check_secret_references(patch.mcp.as_ref()).await?;
        if let Some(team) = &patch.owner_team {
            self.check_team_exists(team).await?;
        }
        if let Some(approvers) = &patch.approvers {
            self.check_principals("approvers", approvers).await?;
        }
        let now = self.now();
        self.modify_system(
            name,
            |s| {
                if let Some(d) = &patch.description {
                    s.description.clone_from(d);
                }
                if let Some(t) = &patch.owner_team {
                    s.owner_team = t.clone();
                }
                if let Some(a) = &patch.approvers {
                    s.approvers.clone_from(a);
                }
                if let Some(c) = patch.classification {
                    s.classification = c;
                }
                if let Some(a) = &patch.actions {
                    s.actions.clone_from(a);
                }
                if let Some(m) = &patch.mcp {
                    s.mcp = Some(m.clone());
                }
                s.updated_at = now;
                Ok(())
            },
            |s| audit::system_event(EventType::SystemUpdated, actor, s),
        )
        .await
    }
}
