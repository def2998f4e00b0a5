//! The policy test case format: a YAML file with a registry `fixture` and `cases`, each a
//! request and what the decision must be. Documented in `examples/policies/README.md`.
//!
//! The fixture is terse (defaults for everything a case does not care about) but is built into
//! real `rein_core` values through their domain rules: an agent is activated with
//! [`Agent::check_activation`] and suspended or retired through its transitions; a grant is
//! requested with [`Grant::request`], approved by the people its approval path requires, and
//! revoked or denied through its transitions. A fixture describing an impossible state (an
//! active prod agent without roles, a grant across environments or on an undeclared action, an
//! expiry before the request) is refused with the file and what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
use rein_core::authz::Actor;
use rein_core::grant::{Grant, GrantRequest};
use rein_core::id::{
    ActionName, AgentId, Environment, GrantId, PrincipalRef, SystemName, TeamName, UserName,
};
use rein_core::schedule::Schedule;
use rein_core::system::{ActionClass, ActionSpec, Classification, System};
use rein_core::user::Role;
use rein_policy::{
    ApprovalEvidence, BudgetUsage, Decision, Facts, Outcome, Request, RequestContext, Rule,
};
use rein_registry::RegistryConfig;
use serde::Deserialize;
use serde_json::Value;

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The time of every case that does not give its own (RFC 3339).
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    /// Context fields every case of the file starts from; a case's own fields replace them.
    #[serde(default)]
    context: ContextSpec,
    /// The registry the cases run against.
    #[serde(default)]
    pub fixture: Fixture,
    /// The cases.
    pub cases: Vec<Case>,
}

/// The registry facts: agents, systems, grants.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    agents: Vec<AgentFixture>,
    #[serde(default)]
    systems: Vec<SystemFixture>,
    #[serde(default)]
    grants: Vec<GrantFixture>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFixture {
    /// `team/name/environment` or a SPIFFE ID.
    id: String,
    #[serde(default)]
    use_case: Option<String>,
    /// Replaces the default roles (every one set) when given.
    #[serde(default)]
    roles: Option<AccountableRoles>,
    #[serde(default)]
    status: Option<AgentStatus>,
    #[serde(default)]
    budgets: Budgets,
    /// Why a revocation (of the agent, its team or its environment) covers it.
    #[serde(default)]
    revoked: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFixture {
    name: SystemName,
    #[serde(default)]
    environment: Option<Environment>,
    #[serde(default)]
    owner_team: Option<TeamName>,
    #[serde(default)]
    approvers: Option<Vec<PrincipalRef>>,
    #[serde(default)]
    classification: Classification,
    /// Action name → class (`read`, `write`, `admin`, or null for unclassified).
    actions: BTreeMap<ActionName, Option<ActionClass>>,
}

/// A grant's state in the fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum GrantState {
    #[default]
    Active,
    Requested,
    Denied,
    Revoked,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFixture {
    /// A label; expectations may name the grant `grant:<name>`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    system: Option<SystemName>,
    /// Default: every action the system declares.
    #[serde(default)]
    actions: Option<BTreeSet<ActionName>>,
    #[serde(default)]
    requested_at: Option<DateTime<Utc>>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    schedule: Option<Schedule>,
    #[serde(default)]
    status: GrantState,
}

/// One case: a request and what must come of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique within the file.
    pub name: String,
    request: RequestSpec,
    #[serde(default)]
    usage: Option<Usage>,
    /// An approval the request attaches and the caller found valid for it.
    #[serde(default)]
    approval: Option<ApprovalSpec>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    system: Option<SystemName>,
    action: ActionName,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
    #[serde(default)]
    context: ContextSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextSpec {
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    risk: Option<u8>,
    #[serde(default)]
    confidence: Option<f64>,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default)]
    approval_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Usage {
    #[serde(default)]
    calls_last_minute: u32,
    #[serde(default)]
    task_mutations: u32,
    #[serde(default = "one")]
    task_systems: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalSpec {
    id: String,
    approvers: Vec<String>,
}

/// What the decision must be; every field but `decision` is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    decision: Outcome,
    #[serde(default)]
    rule: Option<Rule>,
    /// Exactly these, in the decision's order; `grant:<name>` names a fixture grant.
    #[serde(default)]
    determined_by: Option<Vec<String>>,
    /// Exactly these `@shadow` guardrails reported (`[]` for none).
    #[serde(default)]
    shadow: Option<Vec<String>>,
    /// A substring of the decision's reason.
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    approvers_required: Option<u32>,
    #[serde(default)]
    trip_breaker: Option<bool>,
}

impl Case {
    /// What the decision must be.
    pub fn expect(&self) -> &Expect {
        &self.expect
    }
}

/// A case file whose fixture is built: the facts every case of it runs against.
pub struct Built {
    /// The agents.
    agents: Vec<(Agent, Option<String>)>,
    /// The systems.
    systems: Vec<System>,
    /// The grants, with their names.
    grants: Vec<(String, Grant)>,
}

/// One case, ready to decide.
pub struct Ready {
    /// The request.
    pub request: Request,
    agent: Option<Agent>,
    system: Option<System>,
    grants: Vec<Grant>,
    revoked: Option<String>,
    usage: BudgetUsage,
    approval: ApprovalEvidence,
}

impl Ready {
    /// The facts the engine is given, as the server would load them.
    pub fn facts(&self) -> Facts<'_> {
        Facts {
            agent: self.agent.as_ref(),
            system: self.system.as_ref(),
            grants: &self.grants,
            revoked: self.revoked.as_deref(),
            usage: self.usage,
            approval: self.approval.clone(),
        }
    }
}

/// The file name and a message: what is wrong with a case file.
pub type Problem = String;

/// Reads and parses a case file: `file:line:column: message` when it is not valid YAML of the
/// format.
pub fn read(path: &Path) -> Result<CaseFile, Problem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(path, &text)
}

/// Parses the text of a case file named `path`.
pub fn parse(path: &Path, text: &str) -> Result<CaseFile, Problem> {
    let file: CaseFile = serde_yaml_ng::from_str(text).map_err(|e| {
        let message = e.to_string();
        match e.location() {
            Some(at) => {
                // serde_yaml_ng appends " at line L column C"; the prefix says it already.
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_owned();
                format!(
                    "{}:{}:{}: {message}",
                    path.display(),
                    at.line(),
                    at.column()
                )
            }
            None => format!("{}: {message}", path.display()),
        }
    })?;
    let mut names = BTreeSet::new();
    for case in &file.cases {
        if case.name.trim().is_empty() {
            return Err(format!("{}: a case has an empty `name`", path.display()));
        }
        if !names.insert(case.name.as_str()) {
            return Err(format!(
                "{}: two cases are named `{}`",
                path.display(),
                case.name
            ));
        }
    }
    if file.cases.is_empty() {
        return Err(format!("{}: `cases` is empty", path.display()));
    }
    Ok(file)
}

/// The agent named `s`: `team/name/environment` or a SPIFFE ID, in the default trust domain.
fn agent_id(s: &str) -> Result<AgentId, String> {
    if s.starts_with("spiffe://") {
        return s.parse().map_err(|e| format!("agent `{s}`: {e}"));
    }
    let parts: Vec<&str> = s.split('/').collect();
    let [team, name, environment] = parts.as_slice() else {
        return Err(format!(
            "agent `{s}` is neither a SPIFFE ID nor `team/name/environment`"
        ));
    };
    let config = RegistryConfig::default();
    Ok(AgentId::new(
        &config.trust_domain,
        team.parse().map_err(|e| format!("agent `{s}`: {e}"))?,
        name.parse().map_err(|e| format!("agent `{s}`: {e}"))?,
        environment
            .parse()
            .map_err(|e| format!("agent `{s}`: {e}"))?,
    ))
}

fn user(s: &str) -> Result<UserName, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// When the fixture's records were created, unless a grant says otherwise.
fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default() // 2026-01-01T00:00:00Z
}

/// The default grant expiry: far in the future.
fn far_future() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(4_102_444_800, 0).unwrap_or_default() // 2100-01-01T00:00:00Z
}

/// The grant ID of the fixture's `n`th grant (from 0): `grt_000…0<n+1>`, so that among grants
/// that all cover a call, the first listed is the one a decision names.
fn grant_id(n: usize) -> GrantId {
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes
        .iter_mut()
        .rev()
        .zip((n as u64 + 1).to_be_bytes().iter().rev())
    {
        *slot = *byte;
    }
    GrantId::from_bytes(bytes)
}

/// An actor who is `principal`: the user, or a member of the team.
fn actor_for(principal: &PrincipalRef) -> Result<Actor, String> {
    Ok(match principal {
        PrincipalRef::User(u) => Actor {
            user: u.clone(),
            role: Role::Member,
            teams: BTreeSet::new(),
        },
        PrincipalRef::Team(t) => Actor {
            user: user(&format!("{t}-approver"))?,
            role: Role::Member,
            teams: [t.clone()].into_iter().collect(),
        },
    })
}

impl Fixture {
    /// Builds the fixture through the domain rules.
    pub fn build(&self) -> Result<Built, String> {
        let config = RegistryConfig::default();
        let creator = user("fixture")?;
        let mut agents: Vec<(Agent, Option<String>)> = Vec::new();
        for a in &self.agents {
            let id = agent_id(&a.id)?;
            if agents.iter().any(|(x, _)| x.id == id) {
                return Err(format!("agent `{id}` is given twice"));
            }
            let roles = match &a.roles {
                Some(r) => r.clone(),
                None => AccountableRoles {
                    business_owner: Some(user("owner")?),
                    approvers: vec![PrincipalRef::User(user("approver")?)],
                    revokers: vec![PrincipalRef::User(user("revoker")?)],
                    reviewers: vec![PrincipalRef::User(user("reviewer")?)],
                    review_cadence_days: Some(90),
                },
            };
            roles.validate().map_err(|e| format!("agent `{id}`: {e}"))?;
            let agent = Agent {
                id: id.clone(),
                description: String::new(),
                use_case: a.use_case.clone().unwrap_or_else(|| "tests".to_owned()),
                roles,
                last_review: None,
                status: AgentStatus::Active,
                status_reason: None,
                keys: Vec::new(),
                budgets: a.budgets.clone(),
                created_by: creator.clone(),
                created_at: epoch(),
                updated_at: epoch(),
            };
            // Every agent starts active (its grants are requested and approved then), so it
            // needs its roles where they are required; its status is applied at the end.
            agent
                .check_activation(&config.protected_environments)
                .map_err(|e| format!("agent `{id}` cannot be active: {e}"))?;
            agents.push((agent, a.revoked.clone()));
        }

        let mut systems: Vec<System> = Vec::new();
        for s in &self.systems {
            if systems.iter().any(|x| x.name == s.name) {
                return Err(format!("system `{}` is given twice", s.name));
            }
            if s.actions.is_empty() {
                return Err(format!("system `{}` declares no action", s.name));
            }
            let owner_team = match &s.owner_team {
                Some(t) => t.clone(),
                None => "platform"
                    .parse()
                    .map_err(|e| format!("system `{}`: {e}", s.name))?,
            };
            let environment = match &s.environment {
                Some(e) => e.clone(),
                None => "prod"
                    .parse()
                    .map_err(|e| format!("system `{}`: {e}", s.name))?,
            };
            let approvers = s
                .approvers
                .clone()
                .unwrap_or_else(|| vec![PrincipalRef::Team(owner_team.clone())]);
            systems.push(System {
                name: s.name.clone(),
                description: String::new(),
                environment,
                owner_team,
                approvers,
                classification: s.classification,
                actions: s
                    .actions
                    .iter()
                    .map(|(name, class)| {
                        (
                            name.clone(),
                            ActionSpec {
                                class: *class,
                                description: String::new(),
                            },
                        )
                    })
                    .collect(),
                created_at: epoch(),
                updated_at: epoch(),
                mcp: None,
            });
        }

        let mut grants: Vec<(String, Grant)> = Vec::new();
        for (i, g) in self.grants.iter().enumerate() {
            let name = g.name.clone().unwrap_or_else(|| format!("grant-{}", i + 1));
            if grants.iter().any(|(n, _)| *n == name) {
                return Err(format!("two grants are named `{name}`"));
            }
            let at = |m: String| format!("grant `{name}`: {m}");
            let agent = match &g.agent {
                Some(a) => {
                    let id = agent_id(a).map_err(at)?;
                    agents
                        .iter()
                        .map(|(x, _)| x)
                        .find(|x| x.id == id)
                        .ok_or_else(|| at(format!("agent `{id}` is not in the fixture")))?
                }
                None => only(agents.iter().map(|(x, _)| x), "agent").map_err(at)?,
            };
            let system = match &g.system {
                Some(s) => systems
                    .iter()
                    .find(|x| x.name == *s)
                    .ok_or_else(|| at(format!("system `{s}` is not in the fixture")))?,
                None => only(systems.iter(), "system").map_err(at)?,
            };
            let expires_at = g.expires_at.unwrap_or_else(far_future);
            let requested_at = g.requested_at.unwrap_or_else(|| {
                if expires_at > epoch() {
                    epoch()
                } else {
                    expires_at - Duration::days(30)
                }
            });
            let actions = g
                .actions
                .clone()
                .unwrap_or_else(|| system.actions.keys().cloned().collect());
            let request = GrantRequest {
                agent: agent.id.clone(),
                system: system.name.clone(),
                actions,
                expires_at,
                schedule: g.schedule.clone(),
                max_token_ttl_secs: None,
                justification: "policy test fixture".to_owned(),
            };
            let production = config.production_environments.contains(&system.environment);
            let requester = user("requester")?;
            let mut grant = Grant::request(
                grant_id(i),
                request,
                agent,
                system,
                production,
                &requester,
                requested_at,
            )
            .map_err(|e| at(e.to_string()))?;
            let approver = system
                .approvers
                .first()
                .ok_or_else(|| at(format!("system `{}` has no approvers", system.name)))
                .and_then(|p| actor_for(p).map_err(at))?;
            match g.status {
                GrantState::Requested => {}
                GrantState::Denied => grant
                    .deny(
                        &approver,
                        &system.approvers,
                        "policy test fixture",
                        requested_at,
                    )
                    .map_err(|e| at(e.to_string()))?,
                GrantState::Active | GrantState::Revoked => {
                    grant
                        .approve(&approver, &system.approvers, "", requested_at)
                        .map_err(|e| at(e.to_string()))?;
                    if let Some(owner) = grant.business_owner_approver.clone() {
                        let owner = Actor {
                            user: owner,
                            role: Role::Member,
                            teams: BTreeSet::new(),
                        };
                        grant
                            .approve(&owner, &system.approvers, "", requested_at)
                            .map_err(|e| at(e.to_string()))?;
                    }
                    if g.status == GrantState::Revoked {
                        grant
                            .revoke(&approver.user, "policy test fixture", requested_at)
                            .map_err(|e| at(e.to_string()))?;
                    }
                }
            }
            grants.push((name, grant));
        }
        // Then the agents' lifecycle: suspended or retired after their grants were made.
        let reason = "policy test fixture";
        for ((agent, _), spec) in agents.iter_mut().zip(&self.agents) {
            match spec.status.unwrap_or(AgentStatus::Active) {
                AgentStatus::Active => Ok(()),
                AgentStatus::Suspended => agent.suspend(&creator, epoch(), reason),
                AgentStatus::Retired => agent.retire(&creator, epoch(), reason),
            }
            .map_err(|e| format!("agent `{}`: {e}", agent.id))?;
        }
        Ok(Built {
            agents,
            systems,
            grants,
        })
    }
}

/// The only item, when there is exactly one.
fn only<'a, T>(items: impl Iterator<Item = &'a T>, what: &str) -> Result<&'a T, String>
where
    T: 'a,
{
    let all: Vec<&T> = items.collect();
    match all.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no {what} in the fixture")),
        _ => Err(format!("the fixture has several {what}s: name the {what}")),
    }
}

impl Built {
    /// The case's request and the facts the server would load for it.
    pub fn ready(&self, file: &CaseFile, case: &Case) -> Result<Ready, String> {
        let file_time = file.time;
        let r = &case.request;
        let (c, d) = (&r.context, &file.context);
        let agent_id = match &r.agent {
            Some(a) => agent_id(a)?,
            None => only(self.agents.iter().map(|(a, _)| a), "agent")?
                .id
                .clone(),
        };
        let system_name = match &r.system {
            Some(s) => s.clone(),
            None => only(self.systems.iter(), "system")?.name.clone(),
        };
        let now = r.time.or(file_time).ok_or_else(|| {
            "no `time`: give the request's `time` (RFC 3339), or a file-level `time`".to_owned()
        })?;
        let known = self.agents.iter().find(|(a, _)| a.id == agent_id);
        let system = self.systems.iter().find(|s| s.name == system_name).cloned();
        if system.is_none() {
            return Err(format!("system `{system_name}` is not in the fixture"));
        }
        let approval_id = c
            .approval_id
            .clone()
            .or_else(|| case.approval.as_ref().map(|a| a.id.clone()))
            .or_else(|| d.approval_id.clone());
        let request = Request {
            agent: agent_id.clone(),
            system: system_name.clone(),
            action: r.action.clone(),
            context: RequestContext {
                task_id: c.task_id.clone().or_else(|| d.task_id.clone()),
                intent: c.intent.clone().or_else(|| d.intent.clone()),
                risk: c.risk.or(d.risk),
                confidence: c.confidence.or(d.confidence),
                arguments: c
                    .arguments
                    .clone()
                    .or_else(|| d.arguments.clone())
                    .unwrap_or(Value::Object(serde_json::Map::new())),
                approval_id,
            },
            now,
        };
        let usage = case.usage.as_ref().map_or(
            BudgetUsage {
                calls_last_minute: 0,
                task_mutations: 0,
                task_systems: 1,
            },
            |u| BudgetUsage {
                calls_last_minute: u.calls_last_minute,
                task_mutations: u.task_mutations,
                task_systems: u.task_systems,
            },
        );
        let approval =
            case.approval
                .as_ref()
                .map_or(ApprovalEvidence::None, |a| ApprovalEvidence::ValidFor {
                    approval_id: a.id.clone(),
                    approvers: a.approvers.clone(),
                });
        Ok(Ready {
            request,
            agent: known.map(|(a, _)| a.clone()),
            system,
            grants: self
                .grants
                .iter()
                .filter(|(_, g)| g.agent == agent_id && g.system == system_name)
                .map(|(_, g)| g.clone())
                .collect(),
            revoked: known.and_then(|(_, r)| r.clone()),
            usage,
            approval,
        })
    }

    /// `grant:<name>` for a fixture grant's ID; anything else as is.
    pub fn label(&self, id: &str) -> String {
        self.grants
            .iter()
            .find(|(_, g)| g.id.as_str() == id)
            .map_or_else(|| id.to_owned(), |(name, _)| format!("grant:{name}"))
    }

    /// `text` with every fixture grant's ID replaced by `grant:<name>`.
    pub fn label_text(&self, text: &str) -> String {
        self.grants.iter().fold(text.to_owned(), |t, (name, g)| {
            t.replace(g.id.as_str(), &format!("grant:{name}"))
        })
    }

    /// The decision's `determined_by` with fixture grants named `grant:<name>`.
    pub fn labels(&self, ids: &[String]) -> Vec<String> {
        ids.iter().map(|id| self.label(id)).collect()
    }
}

/// What differs between the expectation and the decision, one line each; empty when the case
/// passes.
pub fn check(expect: &Expect, decision: &Decision, built: &Built) -> Vec<String> {
    let mut diff = Vec::new();
    if decision.outcome != expect.decision {
        diff.push(format!(
            "decision: expected {}, got {}",
            expect.decision.as_str(),
            decision.outcome.as_str()
        ));
    }
    if let Some(rule) = expect.rule {
        if rule != decision.rule {
            diff.push(format!(
                "rule: expected {}, got {}",
                rule.as_str(),
                decision.rule.as_str()
            ));
        }
    }
    if let Some(by) = &expect.determined_by {
        let want = built.labels(by);
        let got = built.labels(&decision.determined_by);
        if want != got {
            diff.push(format!(
                "determined_by: expected [{}], got [{}]",
                want.join(", "),
                got.join(", ")
            ));
        }
    }
    if let Some(shadow) = &expect.shadow {
        let got: Vec<&str> = decision.shadow.iter().map(|s| s.policy.as_str()).collect();
        let mut want: Vec<&str> = shadow.iter().map(String::as_str).collect();
        want.sort_unstable();
        if want != got {
            diff.push(format!(
                "shadow: expected [{}], got [{}]",
                want.join(", "),
                got.join(", ")
            ));
        }
    }
    if let Some(reason) = &expect.reason {
        let labelled = built.label_text(&decision.reason);
        if !decision.reason.contains(reason.as_str()) && !labelled.contains(reason.as_str()) {
            diff.push(format!(
                "reason: expected it to contain `{reason}`, got `{labelled}`"
            ));
        }
    }
    if let Some(n) = expect.approvers_required {
        let got = decision.step_up.as_ref().map(|s| s.approvers_required);
        if got != Some(n) {
            diff.push(format!(
                "approvers_required: expected {n}, got {}",
                got.map_or_else(|| "none (no step-up)".to_owned(), |g| g.to_string())
            ));
        }
    }
    if let Some(trip) = expect.trip_breaker {
        if trip != decision.trip_breaker {
            diff.push(format!(
                "trip_breaker: expected {trip}, got {}",
                decision.trip_breaker
            ));
        }
    }
    diff
}

/// Every `*.yaml` / `*.yml` file under `dir`, recursively, sorted.
pub fn find(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse_str(text: &str) -> Result<CaseFile, Problem> {
        parse(Path::new("t.yaml"), text)
    }

    const BASE: &str = "\
time: 2026-01-07T10:00:00Z
fixture:
  agents:
    - id: payments/bot/prod
  systems:
    - name: db
      actions: {read_rows: read, write_rows: write}
  grants:
    - name: rw
";

    #[test]
    fn a_terse_fixture_builds_real_records() {
        let file = parse_str(&format!(
            "{BASE}cases:\n  - name: a\n    request: {{action: read_rows}}\n    expect: {{decision: allow}}\n"
        ))
        .unwrap();
        let built = file.fixture.build().unwrap();
        let ready = built.ready(&file, &file.cases[0]).unwrap();
        assert_eq!(
            ready.request.agent.as_str(),
            "spiffe://rein.local/agent/payments/bot/prod"
        );
        let (name, grant) = &built.grants[0];
        assert_eq!(name, "rw");
        assert_eq!(grant.status, rein_core::grant::GrantStatus::Active);
        // A prod write grant went through both approvals.
        assert!(grant.mutates_production);
        assert_eq!(grant.approvals.len(), 2);
        assert_eq!(built.label(grant.id.as_str()), "grant:rw");
    }

    #[test]
    fn impossible_fixtures_and_unknown_fields_are_refused() {
        let err = parse_str(&format!(
            "{BASE}cases:\n  - name: a\n    request: {{action: read_rows, colour: red}}\n    expect: {{decision: allow}}\n"
        ))
        .err()
        .unwrap();
        assert!(err.starts_with("t.yaml:12:"), "{err}");
        assert!(err.contains("unknown field `colour`"), "{err}");

        // An active prod agent without its roles.
        let file = parse_str(
            "fixture:\n  agents:\n    - id: payments/bot/prod\n      roles: {business_owner: carol}\ncases:\n  - name: a\n    request: {action: x}\n    expect: {decision: deny}\n",
        )
        .unwrap();
        let err = file.fixture.build().err().unwrap();
        assert!(err.contains("cannot be active"), "{err}");

        // A grant across environments.
        let file = parse_str(
            "fixture:\n  agents:\n    - id: payments/bot/dev\n  systems:\n    - name: db\n      actions: {r: read}\n  grants:\n    - {}\ncases:\n  - name: a\n    request: {action: r}\n    expect: {decision: deny}\n",
        )
        .unwrap();
        let err = file.fixture.build().err().unwrap();
        assert!(err.contains("grant `grant-1`"), "{err}");
        assert!(err.contains("use an identity per environment"), "{err}");
    }
}
