//! Governance sets: users, teams, systems, agents and grants declared in YAML.
//!
//! A set is a directory of `*.yaml` / `*.yml` files holding YAML documents of the form
//!
//! ```yaml
//! kind: User | Team | System | Agent | Grant
//! spec: { … }   # exactly the body of the API request that creates it
//! ```
//!
//! Unknown fields are refused at every level. Parsing ([`GovernanceSet::read_dir`]) is separate
//! from loading ([`load`]) so that `rein apply` and `rein check` can reuse it. Loading goes
//! through the [`Registry`] with its real rules: an admin creates users, teams and systems; a
//! member of the agent's team creates agents and requests their grants. Loading never approves
//! anything: that is a human decision (`rein server --dev` does it on the example approvers'
//! behalf, in `crate::dev`).

use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use rein_core::agent::Agent;
use rein_core::authz::Actor;
use rein_core::grant::{Grant, GrantRequest};
use rein_core::id::{TeamName, UserName};
use rein_core::system::System;
use rein_core::team::Team;
use rein_core::user::User;
use rein_registry::{NewAgent, NewSystem, NewTeam, NewUser, Registry};
use serde::Deserialize;

use crate::client::Local;

/// Everything a governance set declares, in the order it must be created.
#[derive(Debug, Default)]
pub struct GovernanceSet {
    /// Users.
    pub users: Vec<NewUser>,
    /// Teams.
    pub teams: Vec<NewTeam>,
    /// Systems.
    pub systems: Vec<NewSystem>,
    /// Agents.
    pub agents: Vec<NewAgent>,
    /// Grant requests.
    pub grants: Vec<GrantDocument>,
}

/// A grant request and how `rein server --dev` treats it.
#[derive(Debug)]
pub struct GrantDocument {
    /// The request.
    pub request: GrantRequest,
    /// Whether `rein server --dev` approves it on the approvers' behalf (`dev: {approve: …}`,
    /// default true); ignored everywhere else.
    pub dev_approve: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
enum Kind {
    User,
    Team,
    System,
    Agent,
    Grant,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    kind: Kind,
    spec: serde_yaml_ng::Value,
    #[serde(default)]
    dev: Option<DevHints>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevHints {
    approve: bool,
}

fn invalid(source: &str, index: usize, reason: impl fmt::Display) -> anyhow::Error {
    Local::new(
        "invalid-input",
        format!("{source}, document {}: {reason}", index + 1),
    )
    .into()
}

impl GovernanceSet {
    /// Reads every `*.yaml` / `*.yml` file in `dir`, in file name order.
    pub fn read_dir(dir: &Path) -> anyhow::Result<Self> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading the governance set `{}`", dir.display()))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading `{}`", dir.display()))?
                .path();
            let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            if yaml && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut set = Self::default();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading `{}`", path.display()))?;
            set.parse(&path.display().to_string(), &text)?;
        }
        Ok(set)
    }

    /// Adds the documents of one YAML stream; `source` names it in errors.
    pub fn parse(&mut self, source: &str, text: &str) -> anyhow::Result<()> {
        for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let raw = Option::<RawDocument>::deserialize(document)
                .map_err(|e| invalid(source, index, e))?;
            let Some(raw) = raw else { continue };
            let spec =
                |e: serde_yaml_ng::Error| invalid(source, index, format!("{}: {e}", raw.kind));
            if raw.dev.is_some() && !matches!(raw.kind, Kind::Grant) {
                return Err(invalid(source, index, "`dev` is allowed only on grants"));
            }
            match raw.kind {
                Kind::User => self
                    .users
                    .push(serde_yaml_ng::from_value(raw.spec.clone()).map_err(spec)?),
                Kind::Team => self
                    .teams
                    .push(serde_yaml_ng::from_value(raw.spec.clone()).map_err(spec)?),
                Kind::System => self
                    .systems
                    .push(serde_yaml_ng::from_value(raw.spec.clone()).map_err(spec)?),
                Kind::Agent => self
                    .agents
                    .push(serde_yaml_ng::from_value(raw.spec.clone()).map_err(spec)?),
                Kind::Grant => self.grants.push(GrantDocument {
                    request: serde_yaml_ng::from_value(raw.spec.clone()).map_err(spec)?,
                    dev_approve: raw.dev.as_ref().is_none_or(|d| d.approve),
                }),
            }
        }
        Ok(())
    }

    /// How many documents of each kind, for messages.
    pub fn summary(&self) -> String {
        format!(
            "{} users, {} teams, {} systems, {} agents, {} grants",
            self.users.len(),
            self.teams.len(),
            self.systems.len(),
            self.agents.len(),
            self.grants.len()
        )
    }
}

/// What [`load`] created, in the order of the set.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Users.
    pub users: Vec<User>,
    /// Teams.
    pub teams: Vec<Team>,
    /// Systems.
    pub systems: Vec<System>,
    /// Agents.
    pub agents: Vec<Agent>,
    /// Grants, all `requested`.
    pub grants: Vec<Grant>,
}

/// Creates the set through the registry: `admin` creates users, teams and systems; a member of
/// each agent's team (not its business owner, who approves) creates the agent and requests its
/// grants.
pub async fn load(
    registry: &Registry,
    admin: &Actor,
    set: &GovernanceSet,
) -> anyhow::Result<Loaded> {
    let mut loaded = Loaded::default();
    for user in &set.users {
        loaded.users.push(
            registry
                .create_user(admin, user.clone())
                .await
                .with_context(|| format!("creating user `{}`", user.name))?,
        );
    }
    for team in &set.teams {
        loaded.teams.push(
            registry
                .create_team(admin, team.clone())
                .await
                .with_context(|| format!("creating team `{}`", team.name))?,
        );
    }
    for system in &set.systems {
        loaded.systems.push(
            registry
                .create_system(admin, system.clone())
                .await
                .with_context(|| format!("creating system `{}`", system.name))?,
        );
    }
    for agent in &set.agents {
        let what = || {
            format!(
                "creating agent `{}/{}/{}`",
                agent.team, agent.name, agent.environment
            )
        };
        let actor = team_member(
            registry,
            admin,
            &agent.team,
            agent.roles.business_owner.as_ref(),
        )
        .await
        .with_context(what)?;
        loaded.agents.push(
            registry
                .create_agent(&actor, agent.clone())
                .await
                .with_context(what)?,
        );
    }
    for doc in &set.grants {
        let req = &doc.request;
        let what = || format!("requesting a grant on `{}` for `{}`", req.system, req.agent);
        let agent = registry.agent(admin, &req.agent).await.with_context(what)?;
        let actor = team_member(
            registry,
            admin,
            req.agent.team(),
            agent.roles.business_owner.as_ref(),
        )
        .await
        .with_context(what)?;
        loaded.grants.push(
            registry
                .request_grant(&actor, req.clone())
                .await
                .with_context(what)?,
        );
    }
    Ok(loaded)
}

/// The first member of `team` by name, preferring anyone but `avoid`.
async fn team_member(
    registry: &Registry,
    admin: &Actor,
    team: &TeamName,
    avoid: Option<&UserName>,
) -> anyhow::Result<Actor> {
    let members = registry.team(admin, team).await?.members;
    let member = members
        .iter()
        .find(|m| Some(*m) != avoid)
        .or_else(|| members.iter().next())
        .ok_or_else(|| {
            Local::new(
                "invalid-input",
                format!("team `{team}` has no members to act for it"),
            )
        })?;
    Ok(registry.actor(member).await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn documents_of_every_kind_parse_and_empty_documents_are_skipped() {
        let mut set = GovernanceSet::default();
        set.parse(
            "t.yaml",
            r#"
---
kind: User
spec: {name: alice, role: member}
---
---
kind: Team
spec: {name: payments, members: [alice]}
---
kind: Grant
dev: {approve: false}
spec:
  agent: spiffe://rein.local/agent/payments/bot/prod
  system: db
  actions: [select]
  expires_at: "2099-01-01T00:00:00Z"
  justification: reports
"#,
        )
        .unwrap();
        assert_eq!(set.users.len(), 1);
        assert_eq!(set.teams.len(), 1);
        assert_eq!(set.grants.len(), 1);
        assert!(!set.grants[0].dev_approve);
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused_with_their_location() {
        for (doc, expected) in [
            (
                "kind: User\nspec: {name: alice, emial: a@b}",
                "unknown field `emial`",
            ),
            (
                "kind: User\nmetadata: {}\nspec: {name: alice}",
                "unknown field `metadata`",
            ),
            ("kind: Policy\nspec: {}", "unknown variant `Policy`"),
            (
                "kind: Team\ndev: {approve: true}\nspec: {name: t}",
                "only on grants",
            ),
            ("kind: User\nspec: {name: Alice}", "invalid user name"),
        ] {
            let err = GovernanceSet::default()
                .parse(
                    "x.yaml",
                    &format!("---\nkind: Team\nspec: {{name: ok}}\n---\n{doc}"),
                )
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("x.yaml, document 2"), "{err}");
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }
}
