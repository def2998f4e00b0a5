//! Teams and their members: managed by admins.

use std::collections::BTreeSet;

use rein_core::authz::Actor;
use rein_core::id::{PrincipalRef, TeamName, UserName};
use rein_core::team::Team;
use rein_core::DomainError;
use serde::{Deserialize, Serialize};

use rein_audit::{Event, EventType};

use crate::{audit, Error, Registry};

/// A team to create.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    /// Team name.
    pub name: TeamName,
    /// What the team does.
    #[serde(default)]
    pub description: String,
    /// Initial members; each must be an existing user.
    #[serde(default)]
    pub members: BTreeSet<UserName>,
}

/// Changes to a team; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamPatch {
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// Users to add.
    #[serde(default)]
    pub add_members: BTreeSet<UserName>,
    /// Users to remove.
    #[serde(default)]
    pub remove_members: BTreeSet<UserName>,
}

/// Refuses a team description over 1024 bytes.
pub(crate) fn check_description(description: &str) -> Result<(), Error> {
    if description.len() > 1024 {
        return Err(DomainError::invalid("description", "must be at most 1024 bytes").into());
    }
    Ok(())
}

/// A team was created or changed: its members.
pub(crate) fn team_event(event_type: EventType, actor: &Actor, team: &Team) -> Event {
    let mut e = audit::change(event_type, actor, team.name.as_str());
    e.details
        .insert("members".into(), audit::joined(&team.members));
    e
}

impl Registry {
    /// Creates a team (admins only).
    pub async fn create_team(&self, actor: &Actor, new: NewTeam) -> Result<Team, Error> {
        actor.require_admin("create teams")?;
        check_description(&new.description)?;
        self.check_principals(
            "members",
            &new.members
                .iter()
                .cloned()
                .map(PrincipalRef::User)
                .collect::<Vec<_>>(),
        )
        .await?;
        let team = Team {
            name: new.name,
            description: new.description,
            members: new.members,
            created_at: self.now(),
        };
        let event = team_event(EventType::TeamCreated, actor, &team);
        self.create(
            "team",
            team.name.as_str(),
            event,
            self.store.insert_team(&team),
        )
        .await?;
        Ok(team)
    }

    /// Reads a team.
    pub async fn team(&self, _actor: &Actor, name: &TeamName) -> Result<Team, Error> {
        Ok(self
            .store
            .team(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "team",
                key: name.to_string(),
            })?
            .value)
    }

    /// Lists teams.
    pub async fn teams(&self, _actor: &Actor) -> Result<Vec<Team>, Error> {
        Ok(self.store.teams().await?)
    }

    /// Changes a team's description or membership (admins only).
    pub async fn update_team(
        &self,
        actor: &Actor,
        name: &TeamName,
        patch: TeamPatch,
    ) -> Result<Team, Error> {
        actor.require_admin("change teams")?;
        if let Some(d) = &patch.description {
            check_description(d)?;
        }
        self.check_principals(
            "add_members",
            &patch
                .add_members
                .iter()
                .cloned()
                .map(PrincipalRef::User)
                .collect::<Vec<_>>(),
        )
        .await?;
        let store = &self.store;
        self.modify(
            "team",
            name.as_str(),
            || store.team(name),
            |t, v| async move { store.update_team(&t, v).await },
            |t| {
                if let Some(d) = &patch.description {
                    t.description.clone_from(d);
                }
                t.members.extend(patch.add_members.iter().cloned());
                t.members.retain(|m| !patch.remove_members.contains(m));
                Ok(())
            },
            |t| team_event(EventType::TeamUpdated, actor, t),
        )
        .await
        .map(|w| w.value)
    }
}
