//! Slicing: which guardrails can possibly match a request, decided before Cedar runs.
//!
//! Cedar evaluates every policy it is given, so each request gets only the policies that could
//! match it. At load, every policy is reduced to *pins*: conditions of the form "this attribute
//! of the request must be one of these values", each of which is a **necessary** condition for
//! the policy to be satisfied *or to raise an error*. A request is given every policy none of
//! whose pins it violates. The pins come from:
//!
//! - the scope: `principal == Agent::"…"`, `principal in Team::"…"`, `resource == Tool::"…"`,
//!   `resource in System::"…"` (and the `is … in …` forms);
//! - top-level conjuncts of the `when` clauses that compare one of the indexed attributes with
//!   literals: `resource.class == "admin"`, `resource.system.environment == "prod"`,
//!   `principal.environment == "prod"`, `principal.team == Team::"…"`, `principal in
//!   Team::"…"`, `resource.name == "…"`, `resource.system.classification == "restricted"`,
//!   `["write", "admin"].contains(resource.class)`, and `||` of such pins on one attribute.
//!
//! Why skipping a policy cannot fail open: Cedar evaluates a policy as `scope && when₁ && …`
//! left to right and stops at the first `false`. Pins are collected from the scope and from
//! the conjuncts *up to the first conjunct that might raise an error*; after a strictly
//! validated policy, only integer arithmetic, extension functions and reads of entities that
//! are not in the request's entity store can raise one (every entity reachable from
//! `principal`, `resource` and `context` through attributes is in the store; see
//! [`error_free`]). So when a pin is violated, the unsliced evaluation returns `false` before
//! anything that could err, exactly what skipping the policy means. Anything the extractor does
//! not recognise is simply not a pin: the policy is then evaluated for more requests, never
//! fewer. A property test checks sliced against unsliced evaluation on random requests.
//!
//! The other conjuncts of that same error-free prefix are compiled into pre-filter checks
//! ([`crate::prefilter`]), which drop the candidates the index kept but whose leading
//! conditions are false for the request.

use std::collections::{BTreeSet, HashMap};

use cedar_policy::pst::{
    BinaryOp, Clause, EntityOrSlot, EntityUID, Expr, Literal, PrincipalConstraint,
    ResourceConstraint, Template, UnaryOp, Var,
};

use crate::cedar::{ContextUse, AGENT, SYSTEM, TEAM, TOOL};
use crate::prefilter::{self, Check};

/// The request attributes policies are indexed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dim {
    /// The agent's SPIFFE ID (`principal`).
    Agent,
    /// The agent's owner team (`principal.team`, `principal in Team::"…"`).
    AgentTeam,
    /// `principal.environment`.
    AgentEnv,
    /// The system name (`resource.system`, `resource.system.name`, `resource in System::"…"`).
    System,
    /// `resource.system.environment`.
    SystemEnv,
    /// `resource.system.classification`.
    Classification,
    /// The tool's entity id, `<system>/<action>` (`resource`).
    Tool,
    /// `resource.name`.
    ToolName,
    /// `resource.class`.
    ToolClass,
}

/// Number of [`Dim`]s.
pub(crate) const DIMS: usize = 9;

impl Dim {
    fn index(self) -> usize {
        self as usize
    }
}

/// The value of each [`Dim`] for one request, indexed by `Dim as usize`. Built from the same
/// strings as the Cedar entities, so index and evaluation agree.
pub(crate) type Subject<'a> = [&'a str; DIMS];

/// Pins of one policy: per dimension, `None` (unconstrained) or the allowed values.
pub(crate) type Pins = [Option<BTreeSet<String>>; DIMS];

/// Extracts the pins of one policy (see the module documentation), and compiles the other
/// conjuncts of its error-free prefix into pre-filter checks ([`crate::prefilter`]).
pub(crate) fn analyse(template: &Template) -> (Pins, Vec<Check>) {
    let mut checks = Vec::new();
    let mut pins: Pins = Default::default();
    let mut add = |(dim, values): (Dim, BTreeSet<String>)| {
        let slot = &mut pins[dim.index()];
        *slot = Some(match slot.take() {
            None => values,
            Some(old) => old.intersection(&values).cloned().collect(),
        });
    };
    if let Some(pin) = principal_pin(&template.principal) {
        add(pin);
    }
    if let Some(pin) = resource_pin(&template.resource) {
        add(pin);
    }
    // Cedar's order of evaluation: scope, then each clause in order; `unless { e }` is `!e`.
    let mut conjuncts: Vec<Conjunct<'_>> = Vec::new();
    for clause in template.clauses() {
        match clause {
            Clause::When(e) => flatten_and(e, &mut conjuncts),
            Clause::Unless(e) => conjuncts.push(Conjunct::Not(e)),
        }
    }
    for conjunct in conjuncts {
        let (pin, safe) = match conjunct {
            Conjunct::Is(e) => (expr_pin(e), error_free(e)),
            Conjunct::Not(e) => (None, error_free(e)),
        };
        match pin {
            Some(pin) => add(pin),
            // Pins after a conjunct that might err would skip that error: stop here.
            None if !safe => break,
            None => {
                let check = match conjunct {
                    Conjunct::Is(e) => prefilter::compile(e),
                    Conjunct::Not(e) => Check::Not(Box::new(prefilter::compile(e))),
                };
                if prefilter::decidable(&check) {
                    checks.push(check);
                }
            }
        }
    }
    (pins, checks)
}

/// One conjunct of a policy's condition: `e`, or `!e` from an `unless` clause.
#[derive(Clone, Copy)]
enum Conjunct<'a> {
    Is(&'a Expr),
    Not(&'a Expr),
}

fn flatten_and<'a>(e: &'a Expr, out: &mut Vec<Conjunct<'a>>) {
    match e {
        Expr::BinaryOp {
            op: BinaryOp::And,
            left,
            right,
        } => {
            flatten_and(left, out);
            flatten_and(right, out);
        }
        other => out.push(Conjunct::Is(other)),
    }
}

fn one(dim: Dim, value: &str) -> (Dim, BTreeSet<String>) {
    (dim, BTreeSet::from([value.to_owned()]))
}

fn entity_of<'a>(e: &'a EntityOrSlot, ty: &str) -> Option<&'a str> {
    match e {
        EntityOrSlot::Entity(uid) => uid_of(uid, ty),
        EntityOrSlot::Slot(_) => None,
    }
}

fn uid_of<'a>(uid: &'a EntityUID, ty: &str) -> Option<&'a str> {
    (uid.ty.0.namespace.is_empty() && uid.ty.0.id.as_ref() == ty).then_some(uid.eid.as_str())
}

fn principal_pin(c: &PrincipalConstraint) -> Option<(Dim, BTreeSet<String>)> {
    match c {
        PrincipalConstraint::Eq(e) => entity_of(e, AGENT).map(|id| one(Dim::Agent, id)),
        PrincipalConstraint::In(e) | PrincipalConstraint::IsIn(_, e) => principal_in(e),
        PrincipalConstraint::Any | PrincipalConstraint::Is(_) => None,
    }
}

fn principal_in(e: &EntityOrSlot) -> Option<(Dim, BTreeSet<String>)> {
    // An agent's only ancestor is its owner team.
    if let Some(team) = entity_of(e, TEAM) {
        return Some(one(Dim::AgentTeam, team));
    }
    entity_of(e, AGENT).map(|id| one(Dim::Agent, id))
}

fn resource_pin(c: &ResourceConstraint) -> Option<(Dim, BTreeSet<String>)> {
    match c {
        ResourceConstraint::Eq(e) => entity_of(e, TOOL).map(|id| one(Dim::Tool, id)),
        ResourceConstraint::In(e) | ResourceConstraint::IsIn(_, e) => resource_in(e),
        ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
    }
}

fn resource_in(e: &EntityOrSlot) -> Option<(Dim, BTreeSet<String>)> {
    // A tool's only ancestor is its system.
    if let Some(system) = entity_of(e, SYSTEM) {
        return Some(one(Dim::System, system));
    }
    entity_of(e, TOOL).map(|id| one(Dim::Tool, id))
}

/// What an indexed attribute path compares against: a string, or an entity of a given type.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Entity(&'static str),
}

/// Recognises the attribute paths that are dimensions.
fn path_dim(e: &Expr) -> Option<(Dim, Kind)> {
    let mut attrs: Vec<&str> = Vec::new();
    let mut cur = e;
    let var = loop {
        match cur {
            Expr::GetAttr { expr, attr } => {
                attrs.push(attr.as_str());
                cur = expr;
            }
            Expr::Var(v) => break v,
            _ => return None,
        }
    };
    attrs.reverse();
    let pin = match (var, attrs.as_slice()) {
        (Var::Principal, []) => (Dim::Agent, Kind::Entity(AGENT)),
        (Var::Principal, ["team"]) => (Dim::AgentTeam, Kind::Entity(TEAM)),
        (Var::Principal, ["environment"]) => (Dim::AgentEnv, Kind::Str),
        (Var::Resource, []) => (Dim::Tool, Kind::Entity(TOOL)),
        (Var::Resource, ["name"]) => (Dim::ToolName, Kind::Str),
        (Var::Resource, ["class"]) => (Dim::ToolClass, Kind::Str),
        (Var::Resource, ["system"]) => (Dim::System, Kind::Entity(SYSTEM)),
        (Var::Resource, ["system", "name"]) => (Dim::System, Kind::Str),
        (Var::Resource, ["system", "environment"]) => (Dim::SystemEnv, Kind::Str),
        (Var::Resource, ["system", "classification"]) => (Dim::Classification, Kind::Str),
        _ => return None,
    };
    Some(pin)
}

fn literal_value(e: &Expr, kind: Kind) -> Option<&str> {
    match (e, kind) {
        (Expr::Literal(Literal::String(s)), Kind::Str) => Some(s.as_str()),
        (Expr::Literal(Literal::EntityUID(uid)), Kind::Entity(ty)) => uid_of(uid, ty),
        _ => None,
    }
}

/// A conjunct that is a pin, if it is one. Every form recognised here is also error-free.
fn expr_pin(e: &Expr) -> Option<(Dim, BTreeSet<String>)> {
    let Expr::BinaryOp { op, left, right } = e else {
        return None;
    };
    match op {
        BinaryOp::Eq => {
            let (path, lit) = if path_dim(left).is_some() {
                (left, right)
            } else {
                (right, left)
            };
            let (dim, kind) = path_dim(path)?;
            literal_value(lit, kind).map(|v| one(dim, v))
        }
        BinaryOp::Contains => {
            let (dim, kind) = path_dim(right)?;
            let Expr::Set(items) = left.as_ref() else {
                return None;
            };
            let values = items
                .iter()
                .map(|i| literal_value(i, kind).map(str::to_owned))
                .collect::<Option<BTreeSet<String>>>()?;
            Some((dim, values))
        }
        BinaryOp::In => {
            let (dim, kind) = match left.as_ref() {
                Expr::Var(Var::Principal) => (Dim::AgentTeam, Kind::Entity(TEAM)),
                Expr::Var(Var::Resource) => (Dim::System, Kind::Entity(SYSTEM)),
                _ => return None,
            };
            let values = match right.as_ref() {
                Expr::Set(items) => items
                    .iter()
                    .map(|i| literal_value(i, kind).map(str::to_owned))
                    .collect::<Option<BTreeSet<String>>>()?,
                single => BTreeSet::from([literal_value(single, kind)?.to_owned()]),
            };
            Some((dim, values))
        }
        BinaryOp::Or => {
            let (d1, mut v1) = expr_pin(left)?;
            let (d2, v2) = expr_pin(right)?;
            if d1 != d2 {
                return None;
            }
            v1.extend(v2);
            Some((d1, v1))
        }
        _ => None,
    }
}

/// Whether evaluating `e` can never raise an error, for a strictly validated policy and a
/// request whose entity store holds every entity reachable from `principal`, `resource` and
/// `context` through attributes (Rein builds it so). Conservative: `false` when unsure.
///
/// Under strict validation Cedar's type soundness leaves three runtime errors: integer
/// overflow (`+ - *`, negation), extension function errors, and reading an entity that does
/// not exist. Attribute and tag reads are therefore error-free only on paths rooted at a
/// request variable; `has`, `in` and `hasTag` do not err on missing entities.
pub(crate) fn error_free(e: &Expr) -> bool {
    match e {
        Expr::Literal(_) => true,
        Expr::Var(_) => true,
        Expr::UnaryOp { op, expr } => {
            matches!(op, UnaryOp::Not | UnaryOp::IsEmpty) && error_free(expr)
        }
        Expr::BinaryOp { op, left, right } => {
            let plain = matches!(
                op,
                BinaryOp::Eq
                    | BinaryOp::NotEq
                    | BinaryOp::Less
                    | BinaryOp::LessEq
                    | BinaryOp::Greater
                    | BinaryOp::GreaterEq
                    | BinaryOp::And
                    | BinaryOp::Or
                    | BinaryOp::In
                    | BinaryOp::Contains
                    | BinaryOp::ContainsAll
                    | BinaryOp::ContainsAny
                    | BinaryOp::HasTag
            );
            let tag_read = matches!(op, BinaryOp::GetTag) && rooted(left);
            (plain || tag_read) && error_free(left) && error_free(right)
        }
        Expr::GetAttr { expr, .. } => rooted(expr),
        Expr::HasAttr { expr, .. } => error_free(expr),
        Expr::Like { expr, .. } => error_free(expr),
        Expr::Is { expr, in_expr, .. } => {
            error_free(expr) && in_expr.as_ref().is_none_or(|i| error_free(i))
        }
        Expr::IfThenElse {
            cond,
            then_expr,
            else_expr,
        } => error_free(cond) && error_free(then_expr) && error_free(else_expr),
        Expr::Set(items) => items.iter().all(|i| error_free(i)),
        Expr::Record(items) => items.values().all(|i| error_free(i)),
        _ => false,
    }
}

/// A path of attribute reads from `principal`, `resource` or `context`: every value on it is
/// a record or an entity present in the store.
fn rooted(e: &Expr) -> bool {
    match e {
        Expr::Var(Var::Principal | Var::Resource | Var::Context) => true,
        Expr::GetAttr { expr, .. } => rooted(expr),
        _ => false,
    }
}

/// The context attributes a policy reads anywhere in its conditions.
pub(crate) fn context_use(template: &Template) -> ContextUse {
    template
        .clauses()
        .iter()
        .map(|c| match c {
            Clause::When(e) | Clause::Unless(e) => expr_context_use(e),
        })
        .fold(ContextUse::default(), ContextUse::union)
}

fn expr_context_use(e: &Expr) -> ContextUse {
    let all = |items: &mut dyn Iterator<Item = &Expr>| {
        items.fold(ContextUse::default(), |acc, i| {
            acc.union(expr_context_use(i))
        })
    };
    match e {
        Expr::GetAttr { expr, attr } if matches!(expr.as_ref(), Expr::Var(Var::Context)) => {
            ContextUse::of_attr(attr)
        }
        Expr::HasAttr { expr, attrs } if matches!(expr.as_ref(), Expr::Var(Var::Context)) => {
            ContextUse::of_attr(attrs.first())
        }
        Expr::Var(Var::Context) => ContextUse::ALL,
        Expr::Literal(_) | Expr::Var(_) => ContextUse::default(),
        Expr::UnaryOp { expr, .. }
        | Expr::GetAttr { expr, .. }
        | Expr::HasAttr { expr, .. }
        | Expr::Like { expr, .. } => expr_context_use(expr),
        Expr::BinaryOp { left, right, .. } => expr_context_use(left).union(expr_context_use(right)),
        Expr::Is { expr, in_expr, .. } => all(&mut [Some(expr), in_expr.as_ref()]
            .into_iter()
            .flatten()
            .map(|e| e.as_ref())),
        Expr::IfThenElse {
            cond,
            then_expr,
            else_expr,
        } => all(&mut [cond, then_expr, else_expr].into_iter().map(|e| e.as_ref())),
        Expr::Set(items) => all(&mut items.iter().map(|e| e.as_ref())),
        Expr::Record(items) => all(&mut items.values().map(|e| e.as_ref())),
        _ => ContextUse::ALL,
    }
}

/// A fixed-width set of policy indexes.
pub(crate) type Bits = Box<[u64]>;

fn empty_bits(n: usize) -> Bits {
    vec![0u64; n.div_ceil(64)].into_boxed_slice()
}

fn set_bit(bits: &mut [u64], i: usize) {
    if let Some(word) = bits.get_mut(i / 64) {
        *word |= 1u64 << (i % 64);
    }
}

/// Removes policy `i` from `bits`.
pub(crate) fn clear_bit(bits: &mut [u64], i: usize) {
    if let Some(word) = bits.get_mut(i / 64) {
        *word &= !(1u64 << (i % 64));
    }
}

/// The index over every loaded policy: per dimension, the policies not pinned on it and, per
/// value, the policies pinned to a set containing it.
#[derive(Debug)]
pub(crate) struct Index {
    len: usize,
    free: Vec<Bits>,
    pinned: Vec<HashMap<String, Bits>>,
}

impl Index {
    /// Builds the index; `pins[i]` are the pins of policy `i`.
    pub(crate) fn new(pins: &[Pins]) -> Self {
        let len = pins.len();
        let mut free = vec![empty_bits(len); DIMS];
        let mut pinned: Vec<HashMap<String, Bits>> = vec![HashMap::new(); DIMS];
        for (i, p) in pins.iter().enumerate() {
            for (d, slot) in p.iter().enumerate() {
                match slot {
                    None => {
                        if let Some(bits) = free.get_mut(d) {
                            set_bit(bits, i);
                        }
                    }
                    Some(values) => {
                        if let Some(map) = pinned.get_mut(d) {
                            for v in values {
                                set_bit(map.entry(v.clone()).or_insert_with(|| empty_bits(len)), i);
                            }
                        }
                    }
                }
            }
        }
        Self { len, free, pinned }
    }

    /// The policies that can match a request with these dimension values.
    pub(crate) fn candidates(&self, subject: &Subject<'_>) -> Bits {
        let mut out = vec![u64::MAX; self.len.div_ceil(64)].into_boxed_slice();
        for ((free, pinned), value) in self.free.iter().zip(&self.pinned).zip(subject) {
            let hit = pinned.get(*value);
            for (w, word) in out.iter_mut().enumerate() {
                let f = free.get(w).copied().unwrap_or(0);
                let h = hit.and_then(|b| b.get(w)).copied().unwrap_or(0);
                *word &= f | h;
            }
        }
        out
    }

    /// Every policy.
    pub(crate) fn all(&self) -> Bits {
        let mut out = empty_bits(self.len);
        for i in 0..self.len {
            set_bit(&mut out, i);
        }
        out
    }
}

/// The indexes of the set bits.
pub(crate) fn members(bits: &[u64]) -> impl Iterator<Item = usize> + '_ {
    bits.iter().enumerate().flat_map(|(w, word)| {
        (0..64).filter_map(move |b| (word & (1u64 << b) != 0).then_some(w * 64 + b))
    })
}
