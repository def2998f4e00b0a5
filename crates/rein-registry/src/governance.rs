//! Governance as code: what a declared governance set would change in the registry
//! ([`Registry::plan`]), and making that change all at once ([`Registry::apply`]).
//!
//! A set declares users, teams, systems, agents and grant *requests*. The plan compares it with
//! the registry as it is: users, teams and systems are created or changed (never removed: an
//! identity or a system left out of a repository is listed as unmanaged and left alone); agents
//! are created or changed, and a live agent the set no longer declares is retired with its
//! grants; a declared request with no matching grant is requested (and waits for its human
//! approvers: applying never approves anything, so a merged change cannot grant itself
//! access); a live grant of a declared agent that no request matches is revoked. A request that
//! matches a grant which was denied, revoked or expired is not asked again.
//!
//! Every rule a single operation applies is applied here too, against the registry as the set
//! would leave it (and the stored secrets' names, read once, which systems' `mcp` configurations
//! may reference), so one bad document refuses the whole set, naming it. Applying records every
//! change write-ahead, then writes all of them in one store transaction: all or nothing. A plan
//! names the state it was computed on (a digest of every record's key and version) and the set
//! (a digest of its documents); applying with either refuses if it no longer holds, so a
//! reviewed plan is exactly what gets applied.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rein_audit::{Event, EventType, Receipt};
use rein_core::agent::{Agent, AgentStatus};
use rein_core::authz::Actor;
use rein_core::grant::{Grant, GrantRequest, GrantStatus};
use rein_core::id::{AgentId, GrantId, PrincipalRef, SystemName, TeamName, UserName};
use rein_core::mcp::SecretName;
use rein_core::secret::check_references;
use rein_core::system::System;
use rein_core::team::Team;
use rein_core::user::User;
use rein_core::DomainError;
use rein_store::{RegistryState, StoreError, Version, Versioned, Write};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::agents::check_texts;
use crate::systems::{check_fields, new_system};
use crate::teams::{check_description, team_event};
use crate::users::{new_user, user_event};
use crate::{audit, missing_principal, Error, NewAgent, NewSystem, NewTeam, NewUser, Registry};

/// A governance set: what a repository of manifests declares. Each list is in declaration
/// order; a change or problem names its document by kind and index.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GovernanceSet {
    /// Users.
    #[serde(default)]
    pub users: Vec<NewUser>,
    /// Teams.
    #[serde(default)]
    pub teams: Vec<NewTeam>,
    /// Systems.
    #[serde(default)]
    pub systems: Vec<NewSystem>,
    /// Agents.
    #[serde(default)]
    pub agents: Vec<NewAgent>,
    /// Grant requests.
    #[serde(default)]
    pub grants: Vec<GrantRequest>,
}

/// The kind of record a change or problem is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A user.
    User,
    /// A team.
    Team,
    /// A system.
    System,
    /// An agent.
    Agent,
    /// A grant.
    Grant,
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::User => "user",
            Self::Team => "team",
            Self::System => "system",
            Self::Agent => "agent",
            Self::Grant => "grant",
        })
    }
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    /// A new record (for a grant: a new request, waiting for approval).
    Create,
    /// Changed fields of a record.
    Update,
    /// A record the set no longer declares: an agent retired, a grant revoked.
    Remove,
}

/// Where in the set a change or problem comes from: the kind and index of its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subject {
    /// The record kind.
    pub kind: RecordKind,
    /// The record's key (a name, an agent's SPIFFE ID, a grant ID); for a new grant, its agent
    /// and system.
    pub key: String,
    /// The index of the declaring document among the set's documents of that kind; none for a
    /// record the set does not declare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl Subject {
    fn new(kind: RecordKind, key: &str, index: Option<usize>) -> Self {
        Self {
            kind,
            key: key.to_owned(),
            index,
        }
    }
}

/// One change of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedChange {
    /// What it does.
    pub action: ChangeAction,
    /// To what.
    #[serde(flatten)]
    pub subject: Subject,
    /// For an update, the fields that change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// A one-line description.
    pub summary: String,
    /// Whether it takes effect only once people approve it (a grant request), and who.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_approval_by: Vec<String>,
}

/// Why a set cannot be applied: one document and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanProblem {
    /// The document.
    #[serde(flatten)]
    pub subject: Subject,
    /// What is wrong.
    pub message: String,
}

/// Something the plan leaves as it is, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanNote {
    /// The record.
    #[serde(flatten)]
    pub subject: Subject,
    /// Why it is left as it is.
    pub message: String,
}

/// What applying a governance set would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    /// The registry state it was computed on: `sha256:` over every user, team, system, agent
    /// and grant's key and version.
    pub state: String,
    /// The set it was computed for: `sha256:` over its documents.
    pub set: String,
    /// The changes, in the order they are applied.
    pub changes: Vec<PlannedChange>,
    /// Why the set cannot be applied; empty when it can.
    pub problems: Vec<PlanProblem>,
    /// What is left as it is, and why.
    pub notes: Vec<PlanNote>,
}

/// What [`Registry::apply`] did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    /// The apply's ID (`apl_…`), in every audit record it wrote; none when nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The plan that was applied.
    pub plan: Plan,
}

/// What an apply expects to still hold, from the plan a person reviewed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// The plan's `state`: refused if the registry changed since.
    #[serde(default)]
    pub state: Option<String>,
    /// The plan's `set`: refused if the set differs from the planned one.
    #[serde(default)]
    pub set: Option<String>,
}

/// The body of `POST /v1/governance/apply`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The set.
    pub set: GovernanceSet,
    /// What must still hold (from a saved plan).
    #[serde(default)]
    pub expect: Expected,
}

/// A write of the plan, with its audit record and the record to tell observers about.
struct Staged {
    write: Write,
    event: Event,
}

/// The registry as the set leaves it, built up while planning.
struct Draft<'a> {
    registry: &'a Registry,
    actor: &'a Actor,
    now: DateTime<Utc>,
    users: BTreeMap<UserName, (Option<Version>, User)>,
    teams: BTreeMap<TeamName, (Option<Version>, Team)>,
    systems: BTreeMap<SystemName, (Option<Version>, System)>,
    agents: BTreeMap<AgentId, (Option<Version>, Agent)>,
    grants: Vec<Versioned<Grant>>,
    /// The names of the stored secrets, which systems' `mcp` configurations may reference.
    secrets: BTreeSet<SecretName>,
    plan: Plan,
    staged: Vec<Staged>,
    /// The keys of declared records with a problem, so that what refers to them says so.
    refused: BTreeSet<(RecordKind, String)>,
}

fn keyed<K: Ord, T>(
    records: Vec<Versioned<T>>,
    key: impl Fn(&T) -> K,
) -> BTreeMap<K, (Option<Version>, T)> {
    records
        .into_iter()
        .map(|v| (key(&v.value), (Some(v.version), v.value)))
        .collect()
}

/// `sha256:` and the hex digest of `bytes`.
fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The digest of every record's kind, key and version: changes whenever any record does.
fn state_digest(state: &RegistryState) -> String {
    let mut lines = String::new();
    let mut add = |kind: &str, key: &str, version: Version| {
        lines.push_str(&format!("{kind} {key} {version}\n"));
    };
    for u in &state.users {
        add("user", u.value.name.as_str(), u.version);
    }
    for t in &state.teams {
        add("team", t.value.name.as_str(), t.version);
    }
    for s in &state.systems {
        add("system", s.value.name.as_str(), s.version);
    }
    for a in &state.agents {
        add("agent", a.value.id.as_str(), a.version);
    }
    for g in &state.grants {
        add("grant", g.value.id.as_str(), g.version);
    }
    digest(lines.as_bytes())
}

/// The digest of a set's documents (their JSON, in declaration order).
fn set_digest(set: &GovernanceSet) -> Result<String, Error> {
    let json = serde_json::to_vec(set)
        .map_err(|e| DomainError::invalid("set", format!("cannot be encoded: {e}")))?;
    Ok(digest(&json))
}

/// Whether a grant was asked for with exactly this request.
fn same_request(grant: &Grant, req: &GrantRequest) -> bool {
    grant.agent == req.agent
        && grant.system == req.system
        && grant.actions == req.actions
        && grant.expires_at == req.expires_at
        && grant.schedule == req.schedule
        && grant.max_token_ttl_secs == req.max_token_ttl_secs
        && grant.justification == req.justification
}

fn joined<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    audit::joined(items).replace(',', ", ")
}

impl<'a> Draft<'a> {
    fn problem(
        &mut self,
        kind: RecordKind,
        key: &str,
        index: Option<usize>,
        error: impl std::fmt::Display,
    ) {
        self.refused.insert((kind, key.to_owned()));
        self.plan.problems.push(PlanProblem {
            subject: Subject::new(kind, key, index),
            message: error.to_string(),
        });
    }

    fn note(&mut self, kind: RecordKind, key: &str, index: Option<usize>, message: String) {
        self.plan.notes.push(PlanNote {
            subject: Subject::new(kind, key, index),
            message,
        });
    }

    fn change(&mut self, change: PlannedChange, write: Write, event: Event) {
        self.plan.changes.push(change);
        self.staged.push(Staged { write, event });
    }

    /// An update of the declared record `key` (document `index`) changing `fields`.
    fn update(
        &mut self,
        kind: RecordKind,
        key: &str,
        index: usize,
        fields: Vec<String>,
        write: Write,
        event: Event,
    ) {
        let summary = format!("change {kind} `{key}`: {}", fields.join(", "));
        let change = PlannedChange {
            action: ChangeAction::Update,
            subject: Subject::new(kind, key, Some(index)),
            fields,
            summary,
            needs_approval_by: Vec::new(),
        };
        self.change(change, write, event);
    }

    /// Notes for records of `kind` the set does not declare, which applying leaves alone.
    fn unmanaged(&mut self, kind: RecordKind, names: Vec<String>) {
        for name in names {
            let message = format!("not declared: left as it is (applying never removes a {kind})");
            self.note(kind, &name, None, message);
        }
    }

    fn exists(&self, p: &PrincipalRef) -> bool {
        match p {
            PrincipalRef::User(u) => self.users.contains_key(u),
            PrincipalRef::Team(t) => self.teams.contains_key(t),
        }
    }

    fn check_principals<'p>(
        &self,
        field: &'static str,
        principals: impl IntoIterator<Item = &'p PrincipalRef>,
    ) -> Result<(), Error> {
        match principals.into_iter().find(|p| !self.exists(p)) {
            Some(p) => Err(missing_principal(field, p)),
            None => Ok(()),
        }
    }

    fn users(&mut self, declared: &[NewUser]) {
        let declared_names: BTreeSet<&UserName> = declared.iter().map(|u| &u.name).collect();
        for (i, new) in declared.iter().enumerate() {
            let key = new.name.to_string();
            let user = match new_user(new.clone(), self.now) {
                Ok(user) => user,
                Err(e) => {
                    self.problem(RecordKind::User, &key, Some(i), e);
                    continue;
                }
            };
            match self.users.get(&new.name).cloned() {
                None => {
                    let event = user_event(EventType::UserCreated, self.actor, &user);
                    self.change(
                        PlannedChange {
                            action: ChangeAction::Create,
                            subject: Subject::new(RecordKind::User, &key, Some(i)),
                            fields: Vec::new(),
                            summary: format!(
                                "create user `{key}` ({})",
                                format!("{:?}", user.role).to_lowercase()
                            ),
                            needs_approval_by: Vec::new(),
                        },
                        Write::InsertUser(user.clone()),
                        event,
                    );
                    self.users.insert(new.name.clone(), (None, user));
                }
                Some((version, mut current)) => {
                    let mut fields = Vec::new();
                    if current.display_name != user.display_name {
                        fields.push("display_name".to_owned());
                        current.display_name = user.display_name;
                    }
                    if current.email != user.email {
                        fields.push("email".to_owned());
                        current.email = user.email;
                    }
                    if current.role != user.role {
                        if current.name == self.actor.user {
                            self.problem(
                                RecordKind::User,
                                &key,
                                Some(i),
                                "an admin cannot change their own role",
                            );
                            continue;
                        }
                        fields.push("role".to_owned());
                        current.role = user.role;
                    }
                    if current.disabled {
                        self.note(
                            RecordKind::User,
                            &key,
                            Some(i),
                            "disabled: left disabled (re-enable through the API)".to_owned(),
                        );
                    }
                    if fields.is_empty() {
                        continue;
                    }
                    let Some(version) = version else { continue };
                    let mut event = user_event(EventType::UserUpdated, self.actor, &current);
                    event
                        .details
                        .insert("disabled".into(), current.disabled.to_string());
                    self.update(
                        RecordKind::User,
                        &key,
                        i,
                        fields,
                        Write::UpdateUser(current.clone(), version),
                        event,
                    );
                    self.users
                        .insert(new.name.clone(), (Some(version), current));
                }
            }
        }
        let unmanaged: Vec<String> = self
            .users
            .values()
            .filter(|(_, u)| !declared_names.contains(&u.name) && u.name.as_str() != UserName::REIN)
            .map(|(_, u)| u.name.to_string())
            .collect();
        self.unmanaged(RecordKind::User, unmanaged);
    }

    fn teams(&mut self, declared: &[NewTeam]) {
        let declared_names: BTreeSet<&TeamName> = declared.iter().map(|t| &t.name).collect();
        for (i, new) in declared.iter().enumerate() {
            let key = new.name.to_string();
            let checked = check_description(&new.description).and_then(|()| {
                self.check_principals(
                    "members",
                    &new.members
                        .iter()
                        .cloned()
                        .map(PrincipalRef::User)
                        .collect::<Vec<_>>(),
                )
            });
            if let Err(e) = checked {
                self.problem(RecordKind::Team, &key, Some(i), e);
                continue;
            }
            match self.teams.get(&new.name).cloned() {
                None => {
                    let team = Team {
                        name: new.name.clone(),
                        description: new.description.clone(),
                        members: new.members.clone(),
                        created_at: self.now,
                    };
                    let event = team_event(EventType::TeamCreated, self.actor, &team);
                    self.change(
                        PlannedChange {
                            action: ChangeAction::Create,
                            subject: Subject::new(RecordKind::Team, &key, Some(i)),
                            fields: Vec::new(),
                            summary: format!("create team `{key}` with {}", joined(&team.members)),
                            needs_approval_by: Vec::new(),
                        },
                        Write::InsertTeam(team.clone()),
                        event,
                    );
                    self.teams.insert(new.name.clone(), (None, team));
                }
                Some((version, mut current)) => {
                    let mut fields = Vec::new();
                    if current.description != new.description {
                        fields.push("description".to_owned());
                        current.description.clone_from(&new.description);
                    }
                    if current.members != new.members {
                        let added: Vec<_> = new.members.difference(&current.members).collect();
                        let removed: Vec<_> = current.members.difference(&new.members).collect();
                        let mut what = Vec::new();
                        if !added.is_empty() {
                            what.push(format!("+{}", joined(added)));
                        }
                        if !removed.is_empty() {
                            what.push(format!("-{}", joined(removed)));
                        }
                        fields.push(format!("members ({})", what.join(" ")));
                        current.members.clone_from(&new.members);
                    }
                    let Some(version) = version.filter(|_| !fields.is_empty()) else {
                        continue;
                    };
                    let event = team_event(EventType::TeamUpdated, self.actor, &current);
                    self.update(
                        RecordKind::Team,
                        &key,
                        i,
                        fields,
                        Write::UpdateTeam(current.clone(), version),
                        event,
                    );
                    self.teams
                        .insert(new.name.clone(), (Some(version), current));
                }
            }
        }
        let unmanaged: Vec<String> = self
            .teams
            .keys()
            .filter(|t| !declared_names.contains(t))
            .map(ToString::to_string)
            .collect();
        self.unmanaged(RecordKind::Team, unmanaged);
    }

    fn systems(&mut self, declared: &[NewSystem]) {
        let declared_names: BTreeSet<&SystemName> = declared.iter().map(|s| &s.name).collect();
        for (i, new) in declared.iter().enumerate() {
            let key = new.name.to_string();
            let checked = self
                .registry
                .check_environment(&new.environment)
                .and_then(|()| {
                    check_fields(Some(&new.description), Some(&new.actions), new.mcp.as_ref())
                })
                .and_then(|()| match &new.mcp {
                    Some(mcp) => Ok(check_references(mcp, &self.secrets)?),
                    None => Ok(()),
                })
                .and_then(|()| {
                    self.check_principals(
                        "owner_team",
                        [&PrincipalRef::Team(new.owner_team.clone())],
                    )
                })
                .and_then(|()| self.check_principals("approvers", &new.approvers));
            if let Err(e) = checked {
                self.problem(RecordKind::System, &key, Some(i), e);
                continue;
            }
            let system = new_system(new.clone(), self.now);
            match self.systems.get(&new.name).cloned() {
                None => {
                    let event = audit::system_event(EventType::SystemCreated, self.actor, &system);
                    self.change(
                        PlannedChange {
                            action: ChangeAction::Create,
                            subject: Subject::new(RecordKind::System, &key, Some(i)),
                            fields: Vec::new(),
                            summary: format!(
                                "register system `{key}` in {} ({} actions)",
                                system.environment,
                                system.actions.len()
                            ),
                            needs_approval_by: Vec::new(),
                        },
                        Write::InsertSystem(system.clone()),
                        event,
                    );
                    self.systems.insert(new.name.clone(), (None, system));
                }
                Some((version, mut current)) => {
                    if current.environment != system.environment {
                        self.problem(
                            RecordKind::System,
                            &key,
                            Some(i),
                            format!(
                                "system `{key}` is registered in `{}`; an environment never changes: declare a system of another name",
                                current.environment
                            ),
                        );
                        continue;
                    }
                    let mut fields = Vec::new();
                    if current.description != system.description {
                        fields.push("description");
                        current.description = system.description;
                    }
                    if current.owner_team != system.owner_team {
                        fields.push("owner_team");
                        current.owner_team = system.owner_team;
                    }
                    if current.approvers != system.approvers {
                        fields.push("approvers");
                        current.approvers = system.approvers;
                    }
                    if current.classification != system.classification {
                        fields.push("classification");
                        current.classification = system.classification;
                    }
                    if current.actions != system.actions {
                        fields.push("actions");
                        current.actions = system.actions;
                    }
                    if current.mcp != system.mcp {
                        fields.push("mcp");
                        current.mcp = system.mcp;
                    }
                    let Some(version) = version.filter(|_| !fields.is_empty()) else {
                        continue;
                    };
                    current.updated_at = self.now;
                    let event = audit::system_event(EventType::SystemUpdated, self.actor, &current);
                    self.update(
                        RecordKind::System,
                        &key,
                        i,
                        fields.iter().map(|f| (*f).to_owned()).collect(),
                        Write::UpdateSystem(current.clone(), version),
                        event,
                    );
                    self.systems
                        .insert(new.name.clone(), (Some(version), current));
                }
            }
        }
        let unmanaged: Vec<String> = self
            .systems
            .keys()
            .filter(|s| !declared_names.contains(s))
            .map(ToString::to_string)
            .collect();
        self.unmanaged(RecordKind::System, unmanaged);
    }

    fn check_agent(&self, new: &NewAgent) -> Result<(), Error> {
        self.registry.check_environment(&new.environment)?;
        if !self.teams.contains_key(&new.team) {
            return Err(missing_principal(
                "team",
                &PrincipalRef::Team(new.team.clone()),
            ));
        }
        check_texts(Some(&new.description), Some(&new.use_case))?;
        let roles = &new.roles;
        roles.validate()?;
        if let Some(owner) = &roles.business_owner {
            self.check_principals("business_owner", [&PrincipalRef::User(owner.clone())])?;
        }
        self.check_principals("approvers", &roles.approvers)?;
        self.check_principals("revokers", &roles.revokers)?;
        self.check_principals("reviewers", &roles.reviewers)
    }

    fn agents(&mut self, declared: &[NewAgent]) -> BTreeSet<AgentId> {
        let mut declared_ids = BTreeSet::new();
        for (i, new) in declared.iter().enumerate() {
            let id = self.registry.agent_id(new);
            declared_ids.insert(id.clone());
            let key = id.to_string();
            if let Err(e) = self.check_agent(new) {
                self.problem(RecordKind::Agent, &key, Some(i), e);
                continue;
            }
            match self.agents.get(&id).cloned() {
                None => {
                    let agent = match self.registry.new_agent(self.actor, new.clone(), self.now) {
                        Ok(agent) => agent,
                        Err(e) => {
                            self.problem(RecordKind::Agent, &key, Some(i), e);
                            continue;
                        }
                    };
                    let event =
                        audit::agent_event(EventType::AgentCreated, self.actor, &agent, None);
                    self.change(
                        PlannedChange {
                            action: ChangeAction::Create,
                            subject: Subject::new(RecordKind::Agent, &key, Some(i)),
                            fields: Vec::new(),
                            summary: format!("create agent `{key}` ({})", agent.status.as_str()),
                            needs_approval_by: Vec::new(),
                        },
                        Write::InsertAgent(agent.clone()),
                        event,
                    );
                    self.agents.insert(id, (None, agent));
                }
                Some((version, mut current)) => {
                    if current.status == AgentStatus::Retired {
                        self.problem(
                            RecordKind::Agent,
                            &key,
                            Some(i),
                            format!("agent `{key}` is retired, and a retired identity is never used again: declare an agent of another name"),
                        );
                        continue;
                    }
                    if let Some(status) = new.status.filter(|s| *s != current.status) {
                        self.note(
                            RecordKind::Agent,
                            &key,
                            Some(i),
                            format!(
                                "is {}, declared {}: left {} (suspend and resume through the API; they are its revokers' acts)",
                                current.status.as_str(),
                                status.as_str(),
                                current.status.as_str()
                            ),
                        );
                    }
                    let mut fields = Vec::new();
                    if current.description != new.description {
                        fields.push("description");
                        current.description.clone_from(&new.description);
                    }
                    if current.use_case != new.use_case {
                        fields.push("use_case");
                        current.use_case.clone_from(&new.use_case);
                    }
                    if current.roles != new.roles {
                        fields.push("roles");
                        current.roles = new.roles.clone();
                    }
                    if current.budgets != new.budgets {
                        fields.push("budgets");
                        current.budgets = new.budgets.clone();
                    }
                    let Some(version) = version.filter(|_| !fields.is_empty()) else {
                        continue;
                    };
                    if current.status == AgentStatus::Active {
                        if let Err(e) =
                            current.check_activation(&self.registry.config.protected_environments)
                        {
                            self.problem(RecordKind::Agent, &key, Some(i), e);
                            continue;
                        }
                    }
                    current.updated_at = self.now;
                    let event =
                        audit::agent_event(EventType::AgentUpdated, self.actor, &current, None);
                    self.update(
                        RecordKind::Agent,
                        &key,
                        i,
                        fields.iter().map(|f| (*f).to_owned()).collect(),
                        Write::UpdateAgent(current.clone(), version),
                        event,
                    );
                    self.agents.insert(id, (Some(version), current));
                }
            }
        }
        let undeclared: Vec<(Version, Agent)> = self
            .agents
            .values()
            .filter(|(_, a)| !declared_ids.contains(&a.id) && a.status != AgentStatus::Retired)
            .filter_map(|(v, a)| Some(((*v)?, a.clone())))
            .collect();
        let reason = "removed from the governance set";
        for (version, mut agent) in undeclared {
            let key = agent.id.to_string();
            if let Err(e) = agent.retire(&self.actor.user, self.now, reason) {
                self.problem(RecordKind::Agent, &key, None, e);
                continue;
            }
            let event =
                audit::agent_event(EventType::AgentRetired, self.actor, &agent, Some(reason));
            self.change(
                PlannedChange {
                    action: ChangeAction::Remove,
                    subject: Subject::new(RecordKind::Agent, &key, None),
                    fields: Vec::new(),
                    summary: format!(
                        "retire agent `{key}` (not declared) and revoke its live grants"
                    ),
                    needs_approval_by: Vec::new(),
                },
                Write::UpdateAgent(agent.clone(), version),
                event,
            );
            self.agents.insert(agent.id.clone(), (Some(version), agent));
        }
        declared_ids
    }

    fn grants(&mut self, declared: &[GrantRequest], declared_agents: &BTreeSet<AgentId>) {
        let mut matched: BTreeSet<GrantId> = BTreeSet::new();
        for (i, req) in declared.iter().enumerate() {
            let key = format!("{} on {}", req.agent, req.system);
            if declared[..i].contains(req) {
                self.problem(
                    RecordKind::Grant,
                    &key,
                    Some(i),
                    "the same request is declared twice",
                );
                continue;
            }
            if !declared_agents.contains(&req.agent) {
                self.problem(
                    RecordKind::Grant,
                    &key,
                    Some(i),
                    format!("agent `{}` is not declared in the set", req.agent),
                );
                continue;
            }
            let existing = self
                .grants
                .iter()
                .find(|g| same_request(&g.value, req) && !matched.contains(&g.value.id))
                .map(|g| g.value.clone());
            if let Some(grant) = existing {
                matched.insert(grant.id.clone());
                let status = grant.status_at(self.now);
                if matches!(
                    status,
                    GrantStatus::Denied | GrantStatus::Revoked | GrantStatus::Expired
                ) {
                    self.note(
                        RecordKind::Grant,
                        grant.id.as_str(),
                        Some(i),
                        format!(
                            "was {}: not requested again (change the request to ask again)",
                            status.as_str()
                        ),
                    );
                }
                continue;
            }
            let agent = self.agents.get(&req.agent).map(|(_, a)| a.clone());
            let system = self.systems.get(&req.system).map(|(_, s)| s.clone());
            let (agent, system) = match (agent, system) {
                (Some(agent), Some(system)) => (agent, system),
                (None, _) => {
                    let message = format!("agent `{}` is not valid (see its problem)", req.agent);
                    self.problem(RecordKind::Grant, &key, Some(i), message);
                    continue;
                }
                (_, None) => {
                    let system = req.system.to_string();
                    let message = if self.refused.contains(&(RecordKind::System, system)) {
                        format!("system `{}` is not valid (see its problem)", req.system)
                    } else {
                        format!("system `{}` does not exist", req.system)
                    };
                    self.problem(RecordKind::Grant, &key, Some(i), message);
                    continue;
                }
            };
            let id = GrantId::from_bytes(*uuid::Uuid::now_v7().as_bytes());
            let production = self.registry.is_production(&system.environment);
            let grant = match Grant::request(
                id,
                req.clone(),
                &agent,
                &system,
                production,
                &self.actor.user,
                self.now,
            ) {
                Ok(grant) => grant,
                Err(e) => {
                    self.problem(RecordKind::Grant, &key, Some(i), e);
                    continue;
                }
            };
            let mut approvers: Vec<String> =
                grant.approvers.iter().map(ToString::to_string).collect();
            if let Some(owner) = &grant.business_owner_approver {
                approvers.push(format!("user:{owner} (business owner)"));
            }
            let event = audit::grant_event(EventType::GrantRequested, self.actor, &grant, None);
            self.change(
                PlannedChange {
                    action: ChangeAction::Create,
                    subject: Subject::new(RecordKind::Grant, &key, Some(i)),
                    fields: Vec::new(),
                    summary: format!(
                        "request {} on `{}` for `{}` until {}",
                        joined(&grant.actions),
                        grant.system,
                        grant.agent,
                        grant.expires_at.to_rfc3339()
                    ),
                    needs_approval_by: approvers,
                },
                Write::InsertGrant(grant),
                event,
            );
        }
        // Live grants nothing declares any more: of declared agents, and of agents retired above.
        let now = self.now;
        let live: Vec<Versioned<Grant>> = self
            .grants
            .iter()
            .filter(|g| !matched.contains(&g.value.id))
            .filter(|g| {
                matches!(
                    g.value.status_at(now),
                    GrantStatus::Requested | GrantStatus::Active
                )
            })
            .filter(|g| {
                declared_agents.contains(&g.value.agent)
                    || self
                        .agents
                        .get(&g.value.agent)
                        .is_some_and(|(_, a)| a.status == AgentStatus::Retired)
            })
            .cloned()
            .collect();
        for Versioned {
            value: mut grant,
            version,
        } in live
        {
            let key = grant.id.to_string();
            let retired = !declared_agents.contains(&grant.agent);
            let reason = if retired {
                "agent retired: removed from the governance set"
            } else {
                "removed from the governance set"
            };
            if let Err(e) = grant.revoke(&self.actor.user, reason, now) {
                self.problem(RecordKind::Grant, &key, None, e);
                continue;
            }
            let event =
                audit::grant_event(EventType::GrantRevoked, self.actor, &grant, Some(reason));
            let summary = format!(
                "revoke grant `{key}` ({} on `{}` for `{}`){}",
                joined(&grant.actions),
                grant.system,
                grant.agent,
                if retired {
                    ": its agent is retired"
                } else {
                    ": no request declares it"
                }
            );
            self.change(
                PlannedChange {
                    action: ChangeAction::Remove,
                    subject: Subject::new(RecordKind::Grant, &key, None),
                    fields: Vec::new(),
                    summary,
                    needs_approval_by: Vec::new(),
                },
                Write::UpdateGrant(grant, version),
                event,
            );
        }
    }
}

impl Registry {
    /// What applying `set` would change (admins only). Problems are part of the plan, not an
    /// error: a plan lists every one of them.
    pub async fn plan(&self, actor: &Actor, set: &GovernanceSet) -> Result<Plan, Error> {
        actor.require_admin("plan a governance set")?;
        let state = self.store.registry_state().await?;
        let secrets = self.secret_names().await?;
        Ok(self.draft(actor, set, state, secrets)?.plan)
    }

    /// The names of the stored secrets, read once per plan.
    async fn secret_names(&self) -> Result<BTreeSet<SecretName>, Error> {
        Ok(self
            .store
            .secrets()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect())
    }

    fn draft<'a>(
        &'a self,
        actor: &'a Actor,
        set: &GovernanceSet,
        state: RegistryState,
        secrets: BTreeSet<SecretName>,
    ) -> Result<Draft<'a>, Error> {
        let plan = Plan {
            state: state_digest(&state),
            set: set_digest(set)?,
            changes: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
        };
        let mut draft = Draft {
            registry: self,
            actor,
            now: self.now(),
            users: keyed(state.users, |u| u.name.clone()),
            teams: keyed(state.teams, |t| t.name.clone()),
            systems: keyed(state.systems, |s| s.name.clone()),
            agents: keyed(state.agents, |a| a.id.clone()),
            grants: state.grants,
            secrets,
            plan,
            staged: Vec::new(),
            refused: BTreeSet::new(),
        };
        duplicates(
            &mut draft,
            RecordKind::User,
            set.users.iter().map(|u| u.name.to_string()),
        );
        duplicates(
            &mut draft,
            RecordKind::Team,
            set.teams.iter().map(|t| t.name.to_string()),
        );
        duplicates(
            &mut draft,
            RecordKind::System,
            set.systems.iter().map(|s| s.name.to_string()),
        );
        duplicates(
            &mut draft,
            RecordKind::Agent,
            set.agents.iter().map(|a| self.agent_id(a).to_string()),
        );
        draft.users(&set.users);
        draft.teams(&set.teams);
        draft.systems(&set.systems);
        let agents = draft.agents(&set.agents);
        draft.grants(&set.grants, &agents);
        Ok(draft)
    }

    /// Applies `set` all at once (admins only): every change is recorded write-ahead, then all
    /// are written in one store transaction, or none. Refused with [`Error::InvalidSet`] if the
    /// plan has problems, and with [`Error::StalePlan`] if `expect` no longer holds or the
    /// registry changed while applying. Applying an applied set changes nothing and records
    /// nothing.
    pub async fn apply(
        &self,
        actor: &Actor,
        set: &GovernanceSet,
        expect: &Expected,
    ) -> Result<Applied, Error> {
        actor.require_admin("apply a governance set")?;
        // One apply at a time on this node; other writers are caught by compare-and-swap.
        let _turn = self.apply_lock.lock().await;
        let state = self.store.registry_state().await?;
        let secrets = self.secret_names().await?;
        let draft = self.draft(actor, set, state, secrets)?;
        let Draft { plan, staged, .. } = draft;
        if expect.set.as_ref().is_some_and(|s| *s != plan.set) {
            return Err(Error::StalePlan(
                "the governance set differs from the one the plan was made for".into(),
            ));
        }
        if expect.state.as_ref().is_some_and(|s| *s != plan.state) {
            return Err(Error::StalePlan(
                "the registry changed since the plan was made".into(),
            ));
        }
        if let Some(first) = plan.problems.first() {
            return Err(Error::InvalidSet(format!(
                "{} problem(s), the first: {} `{}`: {}",
                plan.problems.len(),
                first.subject.kind,
                first.subject.key,
                first.message
            )));
        }
        if staged.is_empty() {
            return Ok(Applied { id: None, plan });
        }
        let id = format!("apl_{}", uuid::Uuid::now_v7().simple());
        let (writes, mut events): (Vec<Write>, Vec<Event>) =
            staged.into_iter().map(|s| (s.write, s.event)).unzip();
        for event in &mut events {
            event.details.insert("governance_apply".into(), id.clone());
        }
        let mut summary = audit::change(EventType::GovernanceApplied, actor, &id);
        summary.details.insert("state".into(), plan.state.clone());
        summary.details.insert("set".into(), plan.set.clone());
        summary
            .details
            .insert("changes".into(), plan.changes.len().to_string());
        events.push(summary);
        let receipts = self.record_all(&events).await?;
        match self.store.write_all(&writes).await {
            Ok(versions) => {
                for (write, version) in writes.iter().zip(versions) {
                    self.written(write, version);
                }
                Ok(Applied { id: Some(id), plan })
            }
            Err(e) => {
                let why = match &e {
                    StoreError::Conflict { .. } | StoreError::AlreadyExists { .. } | StoreError::NotFound { .. } => {
                        "not applied: the registry changed while the set was applied; nothing was written"
                    }
                    _ => "not applied: the store failed; nothing was written",
                };
                for (receipt, event) in receipts.into_iter().zip(events) {
                    self.supersede(receipt, event, why).await;
                }
                self.auth.clear();
                Err(match e {
                    StoreError::Conflict { .. }
                    | StoreError::AlreadyExists { .. }
                    | StoreError::NotFound { .. } => Error::StalePlan(format!(
                        "the registry changed while applying ({e}); nothing was applied"
                    )),
                    other => other.into(),
                })
            }
        }
    }

    /// Appends every event durably, submitted together so they share commits; if one cannot be
    /// appended, the others are superseded and the whole is refused.
    async fn record_all(&self, events: &[Event]) -> Result<Vec<Receipt>, Error> {
        let appended =
            futures_util::future::join_all(events.iter().cloned().map(|e| self.record(e))).await;
        let mut receipts = Vec::with_capacity(appended.len());
        let mut failed = None;
        for result in appended {
            match result {
                Ok(r) => receipts.push(r),
                Err(e) => failed = Some(e),
            }
        }
        let Some(error) = failed else {
            return Ok(receipts);
        };
        for (receipt, event) in receipts.into_iter().zip(events.iter().cloned()) {
            self.supersede(
                receipt,
                event,
                "not applied: the audit log refused part of the set",
            )
            .await;
        }
        Err(error)
    }

    /// Tells observers, other replicas and the identity cache about one applied write.
    fn written(&self, write: &Write, version: Version) {
        match write {
            Write::InsertUser(_)
            | Write::UpdateUser(..)
            | Write::InsertTeam(_)
            | Write::UpdateTeam(..) => {
                self.auth.clear();
            }
            Write::InsertSystem(s) | Write::UpdateSystem(s, _) => self.system_written(s, version),
            Write::InsertAgent(a) | Write::UpdateAgent(a, _) => self.agent_written(a, version),
            Write::InsertGrant(g) | Write::UpdateGrant(g, _) => self.grant_written(g, version),
        }
    }
}

/// A problem for each document that repeats an earlier one's key.
fn duplicates(draft: &mut Draft<'_>, kind: RecordKind, keys: impl Iterator<Item = String>) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, key) in keys.enumerate() {
        if let Some(first) = seen.get(&key) {
            let message = format!("declared twice (first as {kind} #{})", first + 1);
            draft.problem(kind, &key, Some(i), message);
        } else {
            seen.insert(key, i);
        }
    }
}
