//! Governance sets: users, teams, systems, agents and grants declared in YAML.
//!
//! A set is a directory of `*.yaml` / `*.yml` files holding YAML documents of the form
//!
//! ```yaml
//! kind: User | Team | System | Agent | Grant
//! spec: { … }   # exactly the body of the API request that creates it
//! ```
//!
//! Unknown fields are refused at every level. Every document keeps where it is declared
//! ([`DocLocation`]: its file and the line it starts on), and every problem names `file:line`:
//! invalid YAML and unknown fields or kinds at the offending line, a rule the registry refuses
//! at the document's first line. Secrets are never declared inline: a key named like a secret
//! (`password`, `secret`, `token`, `api_key`, `private_key`, …) with a literal value, or a value
//! that looks like a private key or a well-known API key format (a PEM private key, `sk-…`,
//! `ghp_…`, `AKIA…`), is refused at its line without echoing the value.
//!
//! Parsing ([`GovernanceSet::read_dir`], [`GovernanceSet::read_dir_all`]) is separate from
//! loading ([`load`], [`load_all`]) so that `rein apply` and `rein check` can reuse it. Loading
//! goes through the [`Registry`] with its real rules: an admin creates users, teams and systems;
//! a member of the agent's team creates agents and requests their grants. Loading never approves
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
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

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
    /// Where each of the above is declared, index for index.
    pub locations: Locations,
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

/// Where a document is declared: its file (as given to the parser) and the 1-based line it
/// starts on (its first key, e.g. `kind:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocLocation {
    /// The file.
    pub file: String,
    /// The 1-based line.
    pub line: u32,
}

impl fmt::Display for DocLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The [`DocLocation`] of every document of a [`GovernanceSet`], index for index with its lists.
#[derive(Debug, Default)]
pub struct Locations {
    /// Of `users`.
    pub users: Vec<DocLocation>,
    /// Of `teams`.
    pub teams: Vec<DocLocation>,
    /// Of `systems`.
    pub systems: Vec<DocLocation>,
    /// Of `agents`.
    pub agents: Vec<DocLocation>,
    /// Of `grants`.
    pub grants: Vec<DocLocation>,
}

/// The location at `index` of `list`, or the unknown location if the set was built by hand.
fn at(list: &[DocLocation], index: usize) -> DocLocation {
    list.get(index).cloned().unwrap_or_default()
}

/// A problem with a governance set found while parsing it, at the line it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where.
    pub location: DocLocation,
    /// What is wrong; never a secret's value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl From<Problem> for anyhow::Error {
    fn from(problem: Problem) -> Self {
        Local::new("invalid-input", problem.to_string()).into()
    }
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
    #[allow(dead_code)]
    spec: IgnoredAny,
    #[serde(default)]
    dev: Option<DevHints>,
}

/// A document read again with the type of its `kind`, so errors in `spec` carry their line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed<T> {
    #[allow(dead_code)]
    kind: IgnoredAny,
    spec: T,
    #[allow(dead_code)]
    #[serde(default)]
    dev: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevHints {
    approve: bool,
}

/// Deserializes nothing: it fails at once, so the error carries the line where the document's
/// content starts.
struct Start;

impl<'de> Deserialize<'de> for Start {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Probe;
        impl<'de> Visitor<'de> for Probe {
            type Value = Start;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Start, A::Error> {
                Err(de::Error::custom("start"))
            }
        }
        deserializer.deserialize_any(Probe)
    }
}

/// The 1-based line a YAML error points at, if it has one.
fn error_line(e: &serde_yaml_ng::Error) -> Option<u32> {
    e.location().and_then(|l| u32::try_from(l.line()).ok())
}

/// A YAML error's message without the ` at line L column C` its `Display` appends.
fn error_message(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    if let Some(i) = text.rfind(" at line ") {
        let tail = &text[i + " at line ".len()..];
        let located = tail
            .split_once(" column ")
            .is_some_and(|(l, c)| is_number(l) && is_number(c));
        if located {
            return text[..i].to_owned();
        }
    }
    text
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl GovernanceSet {
    /// Reads every `*.yaml` / `*.yml` file in `dir`, in file name order; fails on the first
    /// problem (named `file:line`).
    pub fn read_dir(dir: &Path) -> anyhow::Result<Self> {
        let (set, problems) = Self::read_dir_all(dir)?;
        match problems.into_iter().next() {
            Some(problem) => Err(problem.into()),
            None => Ok(set),
        }
    }

    /// Reads every `*.yaml` / `*.yml` file in `dir`, in file name order, and returns the set
    /// with every problem found (invalid documents are left out of the set). Fails only when
    /// the directory or a file cannot be read.
    pub fn read_dir_all(dir: &Path) -> anyhow::Result<(Self, Vec<Problem>)> {
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
        let mut problems = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading `{}`", path.display()))?;
            problems.extend(set.parse_all(&path.display().to_string(), &text));
        }
        Ok((set, problems))
    }

    /// Adds the valid documents of one YAML stream and returns the problems of the others, in
    /// order of their lines; `source` names the stream in them. A document holding an inline
    /// secret is a problem and is not added.
    pub fn parse_all(&mut self, source: &str, text: &str) -> Vec<Problem> {
        let secrets = scan_secrets(source, text);
        let mut problems: Vec<Problem> = Vec::new();
        let problem = |line: Option<u32>, start: u32, message: String| Problem {
            location: DocLocation {
                file: source.to_owned(),
                line: line.unwrap_or(start),
            },
            message,
        };
        let documents = serde_yaml_ng::Deserializer::from_str(text)
            .zip(serde_yaml_ng::Deserializer::from_str(text))
            .zip(serde_yaml_ng::Deserializer::from_str(text));
        // Where the previous document ended, for documents whose start cannot be probed.
        let mut last_start = 1;
        for ((probe, raw), typed) in documents {
            let start = Start::deserialize(probe)
                .err()
                .and_then(|e| error_line(&e))
                .unwrap_or(last_start);
            last_start = start;
            let raw = match Option::<RawDocument>::deserialize(raw) {
                Ok(Some(raw)) => raw,
                Ok(None) => continue,
                Err(e) => {
                    let p = problem(error_line(&e), start, error_message(&e));
                    // A syntax error ends the stream: the parser repeats it from then on.
                    if problems.last() == Some(&p) {
                        break;
                    }
                    problems.push(p);
                    continue;
                }
            };
            let location = DocLocation {
                file: source.to_owned(),
                line: start,
            };
            if raw.dev.is_some() && !matches!(raw.kind, Kind::Grant) {
                problems.push(problem(
                    None,
                    start,
                    "`dev` is allowed only on grants".to_owned(),
                ));
                continue;
            }
            let end = next_start(text, start);
            let secret = secrets
                .iter()
                .filter(|s| s.location.line >= start && s.location.line < end)
                .cloned()
                .collect::<Vec<_>>();
            if !secret.is_empty() {
                problems.extend(secret);
                continue;
            }
            let spec = |e: serde_yaml_ng::Error| {
                problem(
                    error_line(&e),
                    start,
                    format!("{}: {}", raw.kind, error_message(&e)),
                )
            };
            let added = match raw.kind {
                Kind::User => Typed::deserialize(typed).map(|t| {
                    self.users.push(t.spec);
                    self.locations.users.push(location);
                }),
                Kind::Team => Typed::deserialize(typed).map(|t| {
                    self.teams.push(t.spec);
                    self.locations.teams.push(location);
                }),
                Kind::System => Typed::deserialize(typed).map(|t| {
                    self.systems.push(t.spec);
                    self.locations.systems.push(location);
                }),
                Kind::Agent => Typed::deserialize(typed).map(|t| {
                    self.agents.push(t.spec);
                    self.locations.agents.push(location);
                }),
                Kind::Grant => Typed::deserialize(typed).map(|t| {
                    self.grants.push(GrantDocument {
                        request: t.spec,
                        dev_approve: raw.dev.as_ref().is_none_or(|d| d.approve),
                    });
                    self.locations.grants.push(location);
                }),
            };
            if let Err(e) = added {
                problems.push(spec(e));
            }
        }
        // Secrets outside any document that parsed (e.g. in one with a syntax error).
        for s in secrets {
            if !problems.contains(&s) {
                problems.push(s);
            }
        }
        problems.sort_by_key(|p| p.location.line);
        problems
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

/// The line of the next document separator after `start` (or one past the last line).
fn next_start(text: &str, start: u32) -> u32 {
    let mut line = 0u32;
    for l in text.lines() {
        line += 1;
        if line > start && (l.starts_with("---") || l.starts_with("...")) {
            return line;
        }
    }
    line + 1
}

// === inline secrets ===

/// Key names (or `_`-separated suffixes of key names) whose literal value is a secret.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "access_key",
    "secret_key",
    "client_secret",
    "credential",
    "credentials",
];

/// Whether `key` names a secret; `jwk` when the file holds JWKs, whose `d` is the private half.
fn secret_key(key: &str, jwk: bool) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    (jwk && key == "d")
        || SECRET_KEYS
            .iter()
            .any(|s| key == *s || key.ends_with(&format!("_{s}")))
}

/// Whether a YAML value is a literal (rather than empty, null, a number, a boolean, a mapping
/// or list that references something, an alias or an environment reference).
fn literal(value: &str) -> bool {
    let v = match value.find(" #") {
        Some(i) => &value[..i],
        None => value,
    }
    .trim();
    let unquoted = v.trim_matches(|c| c == '"' || c == '\'');
    !(unquoted.is_empty()
        || matches!(v, "~" | "null" | "true" | "false")
        || v.starts_with(['{', '[', '*', '&'])
        || unquoted.starts_with("${")
        || v.parse::<f64>().is_ok())
}

/// What a value looks like, if it looks like a secret whatever its key.
fn secret_value(value: &str) -> Option<&'static str> {
    if value.contains("-----BEGIN") && value.contains("PRIVATE KEY") {
        return Some("a PEM private key");
    }
    for word in value.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
        let rest = |prefix: &str| word.strip_prefix(prefix).map_or(0, str::len);
        if rest("sk-") >= 20 {
            return Some("an API key");
        }
        if ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]
            .iter()
            .any(|p| rest(p) >= 30)
            || rest("github_pat_") >= 20
        {
            return Some("a GitHub token");
        }
        if (word.starts_with("AKIA") || word.starts_with("ASIA"))
            && word.len() == 20
            && word
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Some("an AWS access key");
        }
        if ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"]
            .iter()
            .any(|p| rest(p) >= 10)
        {
            return Some("a Slack token");
        }
    }
    None
}

/// Whether the field `path` (its last segment the key `secret`) with `value` references a stored
/// secret by name, `{secret: NAME}` in a system's `mcp.env` or `mcp.headers`, rather than holding
/// one.
fn secret_reference(path: &str, value: &str) -> bool {
    let segments: Vec<&str> = path.rsplit('.').take(4).collect();
    let name = value.trim().trim_matches(|c| c == '"' || c == '\'');
    matches!(segments.as_slice(), ["secret", _, "env" | "headers", "mcp"])
        && name.parse::<rein_core::mcp::SecretName>().is_ok()
}

/// Splits `key: value` (a plain or quoted key, then `:` and a space or the end of the line).
fn split_key(body: &str) -> Option<(&str, &str)> {
    let (key, value) = body.split_once(':')?;
    if !(value.is_empty() || value.starts_with(' ')) {
        return None;
    }
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    plain.then_some((key, value.trim()))
}

/// Every inline secret in `text`, at the line of the key holding it, named by its key path.
/// Line-based, so it also finds secrets in documents that do not parse. Never keeps a value.
fn scan_secrets(source: &str, text: &str) -> Vec<Problem> {
    let jwk = text.contains("kty");
    // The keys enclosing the current line: (indentation, key, line).
    let mut stack: Vec<(usize, String, u32)> = Vec::new();
    let mut found: Vec<Problem> = Vec::new();
    let mut report = |line: u32, field: String, what: Option<&str>| {
        let looks = what
            .map(|w| format!(" (it looks like {w})"))
            .unwrap_or_default();
        let problem = Problem {
            location: DocLocation {
                file: source.to_owned(),
                line,
            },
            message: format!("inline secret in `{field}`{looks}; reference it by name instead"),
        };
        if !found.iter().any(|p| p.location.line == line) {
            found.push(problem);
        }
    };
    for (number, raw_line) in text.lines().enumerate() {
        let line = u32::try_from(number + 1).unwrap_or(u32::MAX);
        let trimmed = raw_line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw_line.starts_with("---") || raw_line.starts_with("...") {
            stack.clear();
            continue;
        }
        let mut indent = raw_line.len() - trimmed.len();
        let mut body = trimmed;
        while let Some(rest) = body.strip_prefix('-').filter(|r| r.starts_with(' ')) {
            let item = rest.trim_start();
            indent += body.len() - item.len();
            body = item;
        }
        let path = |stack: &[(usize, String, u32)]| {
            stack
                .iter()
                .map(|(_, k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(".")
        };
        match split_key(body) {
            Some((key, value)) => {
                while stack.last().is_some_and(|(d, _, _)| *d >= indent) {
                    stack.pop();
                }
                stack.push((indent, key.to_owned(), line));
                let field = path(&stack);
                if secret_key(key, jwk) && literal(value) && !secret_reference(&field, value) {
                    report(line, field, None);
                } else if let Some(what) = secret_value(value) {
                    report(line, field, Some(what));
                } else {
                    let inner = value
                        .split(['{', '}', ',', '[', ']'])
                        .filter_map(|part| split_key(part.trim()))
                        .find(|(k, v)| {
                            secret_key(k, jwk)
                                && literal(v)
                                && !secret_reference(&format!("{field}.{k}"), v)
                        });
                    if let Some((k, _)) = inner {
                        report(line, format!("{field}.{k}"), None);
                    }
                }
            }
            None => {
                let owner = stack.iter().rposition(|(d, _, _)| *d < indent);
                let (field, at) = match owner {
                    Some(i) => (path(&stack[..=i]), stack[i].2),
                    None => ("(value)".to_owned(), line),
                };
                let inner = body
                    .split(['{', '}', ',', '[', ']'])
                    .filter_map(|part| split_key(part.trim()))
                    .find(|(k, v)| secret_key(k, jwk) && literal(v));
                if let Some((k, _)) = inner {
                    report(line, format!("{field}.{k}"), None);
                } else if let Some(what) = secret_value(body) {
                    report(at, field, Some(what));
                }
            }
        }
    }
    found
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

/// A document the registry refused while loading a set.
#[derive(Debug)]
pub struct LoadError {
    /// The document.
    pub location: DocLocation,
    /// Why, with what was being done as context.
    pub error: anyhow::Error,
}

/// Creates the set through the registry: `admin` creates users, teams and systems; a member of
/// each agent's team (not its business owner, who approves) creates the agent and requests its
/// grants. Stops at the first refusal, naming the document's `file:line`.
pub async fn load(
    registry: &Registry,
    admin: &Actor,
    set: &GovernanceSet,
) -> anyhow::Result<Loaded> {
    let (loaded, errors) = load_inner(registry, admin, set, false).await;
    match errors.into_iter().next() {
        Some(e) => Err(e.error.context(e.location.to_string())),
        None => Ok(loaded),
    }
}

/// Like [`load`], but goes on past refused documents and returns every refusal with the
/// records that were created (a refusal can make later documents fail too, e.g. the grants of
/// a refused agent).
pub async fn load_all(
    registry: &Registry,
    admin: &Actor,
    set: &GovernanceSet,
) -> (Loaded, Vec<LoadError>) {
    load_inner(registry, admin, set, true).await
}

async fn load_inner(
    registry: &Registry,
    admin: &Actor,
    set: &GovernanceSet,
    all: bool,
) -> (Loaded, Vec<LoadError>) {
    let mut loaded = Loaded::default();
    let mut errors = Vec::new();
    let at_locations = &set.locations;
    macro_rules! attempt {
        ($list:ident, $index:expr, $result:expr) => {
            match $result {
                Ok(record) => loaded.$list.push(record),
                Err(error) => {
                    errors.push(LoadError {
                        location: at(&at_locations.$list, $index),
                        error,
                    });
                    if !all {
                        return (loaded, errors);
                    }
                }
            }
        };
    }
    for (i, user) in set.users.iter().enumerate() {
        attempt!(
            users,
            i,
            registry
                .create_user(admin, user.clone())
                .await
                .with_context(|| format!("creating user `{}`", user.name))
        );
    }
    for (i, team) in set.teams.iter().enumerate() {
        attempt!(
            teams,
            i,
            registry
                .create_team(admin, team.clone())
                .await
                .with_context(|| format!("creating team `{}`", team.name))
        );
    }
    for (i, system) in set.systems.iter().enumerate() {
        attempt!(
            systems,
            i,
            registry
                .create_system(admin, system.clone())
                .await
                .with_context(|| format!("creating system `{}`", system.name))
        );
    }
    for (i, agent) in set.agents.iter().enumerate() {
        attempt!(agents, i, create_agent(registry, admin, agent).await);
    }
    for (i, doc) in set.grants.iter().enumerate() {
        attempt!(
            grants,
            i,
            request_grant(registry, admin, &doc.request).await
        );
    }
    (loaded, errors)
}

async fn create_agent(
    registry: &Registry,
    admin: &Actor,
    agent: &NewAgent,
) -> anyhow::Result<Agent> {
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
    registry
        .create_agent(&actor, agent.clone())
        .await
        .with_context(what)
}

async fn request_grant(
    registry: &Registry,
    admin: &Actor,
    req: &GrantRequest,
) -> anyhow::Result<Grant> {
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
    registry
        .request_grant(&actor, req.clone())
        .await
        .with_context(what)
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
        let problems = set.parse_all(
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
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(set.users.len(), 1);
        assert_eq!(set.teams.len(), 1);
        assert_eq!(set.grants.len(), 1);
        assert!(!set.grants[0].dev_approve);
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused_at_their_line() {
        for (doc, line, expected) in [
            (
                "kind: User\nspec: {name: alice, emial: a@b}",
                6,
                "unknown field `emial`",
            ),
            (
                "kind: User\nmetadata: {}\nspec: {name: alice}",
                6,
                "unknown field `metadata`",
            ),
            ("kind: Policy\nspec: {}", 5, "unknown variant `Policy`"),
            (
                "kind: Team\ndev: {approve: true}\nspec: {name: t}",
                5,
                "only on grants",
            ),
            ("kind: User\nspec:\n  name: Alice", 7, "invalid user name"),
            (
                "kind: User\nspec: [oops",
                7,
                "while parsing a flow sequence",
            ),
        ] {
            let problems = GovernanceSet::default().parse_all(
                "x.yaml",
                &format!("---\nkind: Team\nspec: {{name: ok}}\n---\n{doc}"),
            );
            assert_eq!(problems.len(), 1, "{problems:?}");
            let err = problems[0].to_string();
            assert!(err.starts_with(&format!("x.yaml:{line}: ")), "{err}");
            assert!(err.contains(expected), "{err} should mention {expected}");
            if !expected.contains("flow sequence") {
                assert!(!err.contains(" at line "), "{err}");
            }
        }
    }

    #[test]
    fn documents_keep_their_file_and_starting_line() {
        let mut set = GovernanceSet::default();
        let problems = set.parse_all(
            "t.yaml",
            "# a comment\n---\nkind: Team\nspec: {name: a}\n---\n# about b\n\nkind: Team\nspec:\n  name: b\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let lines: Vec<String> = set.locations.teams.iter().map(|l| l.to_string()).collect();
        assert_eq!(lines, ["t.yaml:3", "t.yaml:8"]);
    }

    #[test]
    fn inline_secrets_are_refused_at_their_line_without_their_value() {
        let cases = [
            ("spec:\n  name: a\n  password: hunter2-very-secret\n", 5, "spec.password"),
            ("spec:\n  name: a\n  api_key: \"zzzz\"\n", 5, "spec.api_key"),
            (
                "spec:\n  name: a\n  description: |\n    -----BEGIN RSA PRIVATE KEY-----\n    MIIEzzzz\n    -----END RSA PRIVATE KEY-----\n",
                5,
                "spec.description",
            ),
            (
                "spec:\n  name: a\n  description: uses sk-zzzzzzzzzzzzzzzzzzzzzzzzzz\n",
                5,
                "spec.description",
            ),
            (
                "spec:\n  name: a\n  notes: [ghp_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz]\n",
                5,
                "spec.notes",
            ),
            (
                "spec:\n  name: a\n  env:\n    - {name: X, secret: zzzz}\n",
                6,
                "secret",
            ),
            (
                "spec:\n  name: a\n  aws: AKIAZZZZZZZZZZZZZZZZ\n",
                5,
                "spec.aws",
            ),
            // Only a name is a reference: a value that is not one is still an inline secret.
            (
                "spec:\n  mcp:\n    env:\n      API_KEY: {secret: \"zzzz zzzz\"}\n",
                6,
                "spec.mcp.env.API_KEY.secret",
            ),
        ];
        for (spec, line, field) in cases {
            let text = format!("---\nkind: Team\n{spec}");
            let mut set = GovernanceSet::default();
            let problems = set.parse_all("s.yaml", &text);
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            let shown = problems[0].to_string();
            assert!(
                shown.starts_with(&format!("s.yaml:{line}: inline secret in `")),
                "{shown}"
            );
            assert!(shown.contains(field), "{shown}");
            assert!(shown.contains("reference it by name instead"), "{shown}");
            for secret in ["hunter2", "zzzz", "MIIE", "AKIAZ"] {
                assert!(!shown.contains(secret), "{shown} echoes the secret");
            }
            assert!(set.teams.is_empty(), "the document is refused");
        }
        for fine in [
            "spec:\n  name: a\n  max_token_ttl_secs: 300\n",
            "spec:\n  name: a\n  token: ~\n  password: {secret_ref: db-password}\n",
            "spec:\n  name: a\n  description: a task-scheduling assistant for risk-assessments\n",
            // A system's MCP credentials, referenced by the name of a stored secret.
            "spec:\n  mcp:\n    env:\n      API_KEY: {secret: billing-api-key}\n",
            "spec:\n  mcp:\n    headers:\n      Authorization:\n        secret: \"billing-token\"\n",
        ] {
            let problems = scan_secrets("s.yaml", fine);
            assert!(problems.is_empty(), "{fine}: {problems:?}");
        }
    }
}
