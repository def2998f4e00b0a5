//! Loading guardrail files into a validated, indexed policy set, and evaluating it for a call.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    AuthorizationError, Authorizer, Effect, Policy, PolicyId, PolicySet, Schema, ValidationMode,
    Validator,
};
use miette::Diagnostic;
use rein_core::agent::AgentStatus;
use rein_core::id::{ActionName, AgentId, Environment, SystemName, TeamName, UserName};
use rein_core::system::{ActionClass, Classification};
use sha2::{Digest, Sha256};

use crate::cedar::{Call, ContextUse, Names, SCHEMA};
use crate::decision::{Arguments, Facts};
use crate::prefilter::{self, Check};
use crate::request::Request;
use crate::slice::{self, Bits, Index};
use crate::{PolicyError, PolicyFileError};

/// Most approvers `@step_up("N")` may ask for.
pub const MAX_STEP_UP_APPROVERS: u32 = 9;

/// Most sliced policy sets kept; past it a slice is built for the request and dropped.
const MAX_CACHED_SLICES: usize = 4096;

/// Most (agent, system, action) entity stores kept; the cache starts over when full.
const MAX_CACHED_BASES: usize = 8192;

/// The annotations a guardrail may carry.
const KNOWN_ANNOTATIONS: [&str; 6] = ["id", "reason", "step_up", "shadow", "description", "owner"];

/// Whether a guardrail changes decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A match denies, or asks for step-up.
    Enforce,
    /// `@shadow`: a match is only reported in [`crate::Decision::shadow`].
    Shadow,
}

/// One loaded guardrail: a `forbid` policy and what its annotations say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Guardrail {
    /// Its `@id`, unique across files; decisions name it.
    pub id: String,
    /// The file it came from.
    pub file: String,
    /// Where it starts in the file (1-based line).
    pub line: u32,
    /// Where it starts in the file (1-based column).
    pub column: u32,
    /// `@shadow` or not.
    pub mode: Mode,
    /// `@step_up` (1 approver) or `@step_up("N")`: approvers needed instead of a denial.
    pub step_up: Option<u32>,
    /// `@reason("…")`: the human message used in decisions.
    pub reason: Option<String>,
}

/// A loaded, validated guardrail set. Immutable; load a new one to change it (the caller keeps
/// the previous set in force when a load fails). Share it behind an `Arc`: it keeps two
/// bounded caches that make later requests cheaper (policy sets per slice, at most 4,096;
/// Cedar entities per (agent, system, action), at most 8,192, checked against the facts on
/// every use), which never change what a decision says.
#[derive(Debug)]
pub struct Guardrails {
    version: String,
    schema: Schema,
    full: Slice,
    policies: Vec<Guardrail>,
    cedar: Vec<Policy>,
    uses: Vec<ContextUse>,
    checks: Vec<Vec<Check>>,
    by_id: HashMap<String, usize>,
    index: Index,
    all: Bits,
    slices: RwLock<HashMap<Bits, Slice>>,
    bases: RwLock<HashMap<u64, Base>>,
    names: Names,
    authorizer: Authorizer,
}

/// The policy set for one set of candidate policies, and the context attributes they read.
#[derive(Debug, Clone)]
struct Slice {
    set: Arc<PolicySet>,
    uses: ContextUse,
}

/// A cached entity store for one (agent, system, action), with the facts it was built from.
#[derive(Debug)]
struct Base {
    facts: BaseFacts,
    entities: cedar_policy::Entities,
}

/// Every fact the base entities are built from; a cached store is used only when they all
/// still hold.
#[derive(Debug, PartialEq)]
struct BaseFacts {
    agent: AgentId,
    status: AgentStatus,
    use_case: String,
    business_owner: Option<UserName>,
    has_roles: bool,
    cadence: Option<u32>,
    system: SystemName,
    environment: Environment,
    classification: Classification,
    owner_team: TeamName,
    action: ActionName,
    class: ActionClass,
}

impl BaseFacts {
    fn of(call: &Call<'_>) -> Self {
        let (a, s) = (call.agent, call.system);
        Self {
            agent: a.id.clone(),
            status: a.status,
            use_case: a.use_case.clone(),
            business_owner: a.roles.business_owner.clone(),
            has_roles: a.roles.missing().is_empty(),
            cadence: a.roles.review_cadence_days,
            system: s.name.clone(),
            environment: s.environment.clone(),
            classification: s.classification,
            owner_team: s.owner_team.clone(),
            action: call.req.action.clone(),
            class: call.class,
        }
    }

    fn holds_for(&self, call: &Call<'_>) -> bool {
        let (a, s) = (call.agent, call.system);
        self.agent == a.id
            && self.status == a.status
            && self.use_case == a.use_case
            && self.business_owner == a.roles.business_owner
            && self.has_roles == a.roles.missing().is_empty()
            && self.cadence == a.roles.review_cadence_days
            && self.system == s.name
            && self.environment == s.environment
            && self.classification == s.classification
            && self.owner_team == s.owner_team
            && self.action == call.req.action
            && self.class == call.class
    }
}

/// What the guardrails said about one call.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Evaluation {
    /// Indexes of the satisfied policies, ascending.
    pub(crate) satisfied: Vec<usize>,
    /// Indexes of the policies that raised an error, with the message, ascending.
    pub(crate) errors: Vec<(usize, String)>,
}

impl Guardrails {
    /// Parses, checks and validates guardrail files, given as (file name, text) pairs.
    ///
    /// Every policy must be a `forbid` (grants are the only permits) with an `@id("…")` unique
    /// across the files (1–128 ASCII letters, digits, `-`, `_` or `.`, starting with a letter
    /// or digit), may carry `@reason("…")`, `@step_up` or `@step_up("N")` (N from 1 to
    /// [`MAX_STEP_UP_APPROVERS`]), `@shadow`, `@description("…")` and `@owner("…")`, and must
    /// validate against `schema/rein.cedarschema` in strict mode. Templates are refused. Any
    /// problem rejects the whole set; every problem found is returned.
    pub fn load(files: &[(String, String)]) -> Result<Self, Vec<PolicyFileError>> {
        let schema_error = |message: String| {
            vec![PolicyFileError {
                file: "rein.cedarschema".to_owned(),
                line: 0,
                column: 0,
                message,
            }]
        };
        let schema = Schema::from_cedarschema_str(SCHEMA)
            .map_err(|e| schema_error(format!("the built-in schema is invalid: {e}")))?
            .0;
        let names = Names::new().map_err(|e| schema_error(e.to_string()))?;

        let mut errors = Vec::new();
        let mut seen_files: BTreeMap<&str, ()> = BTreeMap::new();
        let mut policies: Vec<Guardrail> = Vec::new();
        let mut cedar: Vec<Policy> = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (file, text) in files {
            if seen_files.insert(file.as_str(), ()).is_some() {
                errors.push(PolicyFileError {
                    file: file.clone(),
                    line: 0,
                    column: 0,
                    message: "the file name is given twice".to_owned(),
                });
                continue;
            }
            let parsed = match PolicySet::from_str(text) {
                Ok(p) => p,
                Err(e) => {
                    for err in e.iter() {
                        errors.push(diagnostic_error(file, text, err));
                    }
                    continue;
                }
            };
            for template in parsed.templates() {
                let (line, column) = locate(text, 0, &template.to_cedar()).1;
                errors.push(PolicyFileError {
                    file: file.clone(),
                    line,
                    column,
                    message: "templates (`?principal`, `?resource`) are not supported; write a `forbid` policy".to_owned(),
                });
            }
            // Parsed ids are `policy0`, `policy1`, … in file order.
            let mut in_order: Vec<(usize, &Policy)> = parsed
                .policies()
                .map(|p| {
                    let n = id_str(p.id())
                        .strip_prefix("policy")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(usize::MAX);
                    (n, p)
                })
                .collect();
            in_order.sort_by_key(|(n, _)| *n);
            let mut cursor = 0;
            for (_, policy) in in_order {
                let source = policy.to_cedar().unwrap_or_default();
                let (next, (line, column)) = locate(text, cursor, &source);
                cursor = next;
                let at = |message: String| PolicyFileError {
                    file: file.clone(),
                    line,
                    column,
                    message,
                };
                match check_policy(policy) {
                    Err(messages) => errors.extend(messages.into_iter().map(at)),
                    Ok(meta) => {
                        if let Some(&other) = by_id.get(&meta.id) {
                            let first = policies.get(other).map_or_else(String::new, |g| {
                                format!(" (first in `{}` at {}:{})", g.file, g.line, g.column)
                            });
                            errors.push(at(format!("duplicate `@id(\"{}\")`{first}", meta.id)));
                            continue;
                        }
                        by_id.insert(meta.id.clone(), policies.len());
                        cedar.push(policy.new_id(PolicyId::new(&meta.id)));
                        policies.push(Guardrail {
                            id: meta.id,
                            file: file.clone(),
                            line,
                            column,
                            mode: meta.mode,
                            step_up: meta.step_up,
                            reason: meta.reason,
                        });
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let set = PolicySet::from_policies(cedar.iter().cloned()).map_err(|e| {
            vec![PolicyFileError {
                file: String::new(),
                line: 0,
                column: 0,
                message: e.to_string(),
            }]
        })?;
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        let texts: HashMap<&str, &str> = files
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        for err in result.validation_errors() {
            let Some(meta) = by_id
                .get(id_str(err.policy_id()))
                .and_then(|&i| policies.get(i))
            else {
                continue;
            };
            let text = texts.get(meta.file.as_str()).copied().unwrap_or_default();
            let mut e = diagnostic_error(&meta.file, text, err);
            if e.line == 0 {
                e.line = meta.line;
                e.column = meta.column;
            }
            if !e.message.contains(&format!("`{}`", meta.id)) {
                e.message = format!("policy `{}`: {}", meta.id, e.message);
            }
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let analysed: Vec<((slice::Pins, Vec<Check>), ContextUse)> = cedar
            .iter()
            .map(|p| {
                p.to_pst()
                    .map(|pst| (slice::analyse(pst.body()), slice::context_use(pst.body())))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| {
                vec![PolicyFileError {
                    file: String::new(),
                    line: 0,
                    column: 0,
                    message: e.to_string(),
                }]
            })?;
        let (analysis, uses): (Vec<(slice::Pins, Vec<Check>)>, Vec<ContextUse>) =
            analysed.into_iter().unzip();
        let (pins, checks): (Vec<slice::Pins>, Vec<Vec<Check>>) = analysis.into_iter().unzip();
        let index = Index::new(&pins);
        let full = Slice {
            set: Arc::new(set),
            uses: uses
                .iter()
                .fold(ContextUse::default(), |acc, u| acc.union(*u)),
        };
        Ok(Self {
            version: version(files),
            schema,
            full,
            policies,
            cedar,
            uses,
            checks,
            by_id,
            all: index.all(),
            index,
            slices: RwLock::new(HashMap::new()),
            bases: RwLock::new(HashMap::new()),
            names,
            authorizer: Authorizer::new(),
        })
    }

    /// `sha256:<hex>`: SHA-256 over the files sorted by name, each written as the name's
    /// length (u64 big-endian), the name, the text's length (u64 big-endian) and the text.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The loaded guardrails, in file order.
    pub fn guardrails(&self) -> &[Guardrail] {
        &self.policies
    }

    /// The whole Cedar policy set, policies named by their `@id` (for analysis tooling).
    pub fn policy_set(&self) -> &PolicySet {
        &self.full.set
    }

    /// The Cedar schema the set was validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The metadata of the policy at `index`.
    pub(crate) fn guardrail(&self, index: usize) -> Option<&Guardrail> {
        self.policies.get(index)
    }

    /// The Cedar request and entity store the guardrails see for `req`, for tooling (explain,
    /// analysis, benchmarks). Needs the agent and system facts and a valid context; does not
    /// check the agent, grant or budget steps.
    pub fn cedar_inputs(
        &self,
        req: &Request,
        facts: &Facts<'_>,
    ) -> Result<(cedar_policy::Request, cedar_policy::Entities), PolicyError> {
        let arguments = Arguments::of(req)?;
        let agent = facts
            .agent
            .ok_or_else(|| PolicyError::facts(format!("agent `{}` was not loaded", req.agent)))?;
        let system = facts
            .system
            .ok_or_else(|| PolicyError::facts(format!("system `{}` was not loaded", req.system)))?;
        let class = system
            .class_of(&req.action)
            .map_err(|e| PolicyError::facts(e.to_string()))?;
        let call = arguments.call(req, agent, system, class);
        call.to_cedar(
            &self.names,
            call.base_entities(&self.names)?,
            ContextUse::ALL,
        )
    }

    /// The policies the index keeps for `call`: those whose scope and leading equalities the
    /// call does not contradict.
    fn candidate_bits(&self, call: &Call<'_>) -> Bits {
        let tool_id = call.tool_id();
        self.index.candidates(&call.subject(&tool_id))
    }

    /// The indexes of the policies the index keeps for `call`, ascending (for explain).
    pub(crate) fn index_candidates(&self, call: &Call<'_>) -> BTreeSet<usize> {
        slice::members(&self.candidate_bits(call)).collect()
    }

    /// Whether the pre-filter drops the policy at `index` for `call`: one of its leading
    /// conditions that cannot raise an error is false.
    pub(crate) fn prefiltered(&self, index: usize, call: &Call<'_>) -> bool {
        let checks = self.checks.get(index).map_or(&[][..], Vec::as_slice);
        checks.iter().any(|c| prefilter::is_false(c, call))
    }

    /// Evaluates the guardrails that can match `call` (all of them when `sliced` is false).
    pub(crate) fn evaluate(
        &self,
        call: &Call<'_>,
        sliced: bool,
    ) -> Result<Evaluation, PolicyError> {
        let bits = if sliced {
            let mut bits = self.candidate_bits(call);
            let members: Vec<usize> = slice::members(&bits).collect();
            for i in members {
                if self.prefiltered(i, call) {
                    slice::clear_bit(&mut bits, i);
                }
            }
            bits
        } else {
            self.all.clone()
        };
        if bits.iter().all(|w| *w == 0) {
            return Ok(Evaluation::default());
        }
        let slice = self.slice(bits)?;
        let base = self.base_entities(call)?;
        let (request, entities) = call.to_cedar(&self.names, base, slice.uses)?;
        let response = self
            .authorizer
            .is_authorized(&request, &slice.set, &entities);
        let index_of = |id: &PolicyId| {
            self.by_id
                .get(id_str(id))
                .copied()
                .ok_or_else(|| PolicyError::evaluation(format!("unknown policy `{id}`")))
        };
        let mut satisfied = response
            .diagnostics()
            .reason()
            .map(index_of)
            .collect::<Result<Vec<_>, _>>()?;
        satisfied.sort_unstable();
        let mut errors = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                AuthorizationError::PolicyEvaluationError(pe) => {
                    index_of(pe.policy_id()).map(|i| (i, pe.to_string()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        errors.sort_unstable();
        Ok(Evaluation { satisfied, errors })
    }

    /// The slice of the policies in `bits`, from the cache when it was built before.
    fn slice(&self, bits: Bits) -> Result<Slice, PolicyError> {
        if bits == self.all {
            return Ok(self.full.clone());
        }
        if let Ok(cache) = self.slices.read() {
            if let Some(slice) = cache.get(&bits) {
                return Ok(slice.clone());
            }
        }
        let members: Vec<usize> = slice::members(&bits).collect();
        let slice = Slice {
            set: Arc::new(
                PolicySet::from_policies(
                    members.iter().filter_map(|&i| self.cedar.get(i).cloned()),
                )
                .map_err(PolicyError::evaluation)?,
            ),
            uses: members
                .iter()
                .filter_map(|&i| self.uses.get(i))
                .fold(ContextUse::default(), |acc, u| acc.union(*u)),
        };
        if let Ok(mut cache) = self.slices.write() {
            if cache.len() < MAX_CACHED_SLICES {
                cache.insert(bits, slice.clone());
            }
        }
        Ok(slice)
    }

    /// The agent, system and tool entities of a call, from the cache when the facts they were
    /// built from are unchanged.
    fn base_entities(&self, call: &Call<'_>) -> Result<cedar_policy::Entities, PolicyError> {
        let key = {
            let mut h = DefaultHasher::new();
            call.agent.id.as_str().hash(&mut h);
            call.system.name.as_str().hash(&mut h);
            call.req.action.as_str().hash(&mut h);
            h.finish()
        };
        if let Ok(cache) = self.bases.read() {
            if let Some(base) = cache.get(&key).filter(|b| b.facts.holds_for(call)) {
                return Ok(base.entities.clone());
            }
        }
        let entities = call.base_entities(&self.names)?;
        if let Ok(mut cache) = self.bases.write() {
            if cache.len() >= MAX_CACHED_BASES {
                cache.clear();
            }
            cache.insert(
                key,
                Base {
                    facts: BaseFacts::of(call),
                    entities: entities.clone(),
                },
            );
        }
        Ok(entities)
    }
}

/// What a policy's annotations say.
struct Meta {
    id: String,
    mode: Mode,
    step_up: Option<u32>,
    reason: Option<String>,
}

fn check_policy(policy: &Policy) -> Result<Meta, Vec<String>> {
    let mut problems = Vec::new();
    if policy.effect() == Effect::Permit {
        problems.push(
            "`permit` is not allowed: grants are what permit; guardrails only `forbid`".to_owned(),
        );
    }
    for (key, _) in policy.annotations() {
        if !KNOWN_ANNOTATIONS.contains(&key) {
            problems.push(format!(
                "unknown annotation `@{key}`; known: {}",
                KNOWN_ANNOTATIONS.map(|k| format!("`@{k}`")).join(", ")
            ));
        }
    }
    let id = match policy.annotation("id") {
        None => {
            problems.push("missing `@id(\"…\")`: every guardrail needs a stable id".to_owned());
            String::new()
        }
        Some(id) if !valid_id(id) => {
            problems.push(format!(
                "invalid `@id(\"{id}\")`: use 1 to 128 ASCII letters, digits, `-`, `_` or `.`, starting with a letter or digit"
            ));
            String::new()
        }
        Some(id) => id.to_owned(),
    };
    let step_up = match policy.annotation("step_up") {
        None => None,
        Some("") => Some(1),
        Some(n) => match n.parse::<u32>() {
            Ok(n) if (1..=MAX_STEP_UP_APPROVERS).contains(&n) => Some(n),
            _ => {
                problems.push(format!(
                    "invalid `@step_up(\"{n}\")`: give the number of approvers, 1 to {MAX_STEP_UP_APPROVERS}"
                ));
                None
            }
        },
    };
    let mode = match policy.annotation("shadow") {
        None => Mode::Enforce,
        Some("") => Mode::Shadow,
        Some(v) => {
            problems.push(format!(
                "invalid `@shadow(\"{v}\")`: write `@shadow` without a value"
            ));
            Mode::Shadow
        }
    };
    let reason = policy.annotation("reason").map(str::to_owned);
    if problems.is_empty() {
        Ok(Meta {
            id,
            mode,
            step_up,
            reason,
        })
    } else {
        Err(problems)
    }
}

fn id_str(id: &PolicyId) -> &str {
    AsRef::<str>::as_ref(id)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A Cedar diagnostic as a file error, at its first labelled span.
fn diagnostic_error(file: &str, text: &str, d: &(impl Diagnostic + ?Sized)) -> PolicyFileError {
    let offset = d
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset());
    let (line, column) = offset.map_or((0, 0), |o| line_column(text, o));
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message.push_str("; ");
        message.push_str(&help.to_string());
    }
    PolicyFileError {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}

/// Finds `source` in `text` at or after `from`: the offset past it and its (line, column).
fn locate(text: &str, from: usize, source: &str) -> (usize, (u32, u32)) {
    let found = text
        .get(from..)
        .and_then(|rest| rest.find(source))
        .map(|i| from + i);
    match found {
        Some(start) if !source.is_empty() => (start + source.len(), line_column(text, start)),
        _ => (from, (0, 0)),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

fn version(files: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = Sha256::new();
    for (name, text) in sorted {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}
