//! Pre-filtering: dropping a candidate guardrail when one of its leading conditions is false
//! for the request, so that Cedar never sees it.
//!
//! The index ([`crate::slice`]) only knows equalities. Guardrails also start with conditions
//! such as `context has risk && context.risk >= 70`, `context.time.day_of_week > 5`,
//! `context.arguments_text like "*DROP *"` or `context.arguments.hasTag("sql")`. At load, the
//! conjuncts of the error-free prefix of a policy (the same prefix the pins come from, see
//! [`crate::slice`]) are compiled into [`Check`]s over request attributes Rein computes
//! itself, with Cedar's semantics for the small subset involved: literals, the attributes
//! below, `has` on the context, `hasTag`/`getTag` on the arguments, `! && ||`, `== !=` on
//! equal kinds, `< <= > >=` on longs, `like`, `if-then-else` and `[…].contains(…)`. Anything
//! else is *unknown*. A check that evaluates to `false` drops the policy; `true` or unknown
//! leaves it to Cedar. Because every conjunct up to and including the check cannot raise an
//! error, Cedar would have answered `false` without an error too: dropping it changes nothing.
//! The property test in `tests.rs` compares the result with unsliced evaluation.

use std::borrow::Cow;

use cedar_policy::pst::{BinaryOp, Expr, Literal, PatternElem, UnaryOp, Var};
use chrono::{Datelike, Timelike};
use serde_json::Value;

use crate::cedar::{class_str, classification_str, Call};
use crate::request::canonical_json;

/// A request attribute the pre-filter knows, with the value Rein also gives Cedar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    AgentName,
    AgentEnvironment,
    AgentStatus,
    AgentUseCase,
    AgentHasRoles,
    ToolName,
    ToolClass,
    ToolMutating,
    SystemName,
    SystemEnvironment,
    SystemClassification,
    TaskId,
    Intent,
    Risk,
    ConfidencePct,
    Epoch,
    DayOfWeek,
    Hour,
    Minute,
    MinuteOfDay,
    ArgumentsText,
    ArgumentDigest,
    ApprovalAttached,
}

impl Attr {
    /// The attribute at a path of attribute reads from a variable.
    fn of_path(var: &Var, path: &[&str]) -> Option<Self> {
        Some(match (var, path) {
            (Var::Principal, ["name"]) => Self::AgentName,
            (Var::Principal, ["environment"]) => Self::AgentEnvironment,
            (Var::Principal, ["status"]) => Self::AgentStatus,
            (Var::Principal, ["use_case"]) => Self::AgentUseCase,
            (Var::Principal, ["has_accountable_roles"]) => Self::AgentHasRoles,
            (Var::Resource, ["name"]) => Self::ToolName,
            (Var::Resource, ["class"]) => Self::ToolClass,
            (Var::Resource, ["mutating"]) => Self::ToolMutating,
            (Var::Resource, ["system", "name"]) => Self::SystemName,
            (Var::Resource, ["system", "environment"]) => Self::SystemEnvironment,
            (Var::Resource, ["system", "classification"]) => Self::SystemClassification,
            (Var::Context, ["task_id"]) => Self::TaskId,
            (Var::Context, ["intent"]) => Self::Intent,
            (Var::Context, ["risk"]) => Self::Risk,
            (Var::Context, ["confidence_pct"]) => Self::ConfidencePct,
            (Var::Context, ["time", "epoch"]) => Self::Epoch,
            (Var::Context, ["time", "day_of_week"]) => Self::DayOfWeek,
            (Var::Context, ["time", "hour"]) => Self::Hour,
            (Var::Context, ["time", "minute"]) => Self::Minute,
            (Var::Context, ["time", "minute_of_day"]) => Self::MinuteOfDay,
            (Var::Context, ["arguments_text"]) => Self::ArgumentsText,
            (Var::Context, ["argument_digest"]) => Self::ArgumentDigest,
            (Var::Context, ["approval_attached"]) => Self::ApprovalAttached,
            _ => return None,
        })
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lit {
    Bool(bool),
    Long(i64),
    Str(String),
}

/// A compiled condition (or value) over the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    Lit(Lit),
    Attr(Attr),
    /// `context has <optional attribute>`.
    HasContext(Attr),
    /// `context.arguments.hasTag("…")`.
    HasTag(String),
    /// `context.arguments.getTag("…")`.
    GetTag(String),
    Not(Box<Check>),
    And(Box<Check>, Box<Check>),
    Or(Box<Check>, Box<Check>),
    Cmp(Cmp, Box<Check>, Box<Check>),
    /// `like`: the literal segments between `*`s, and whether the pattern starts and ends
    /// with a `*`.
    Like(Box<Check>, Pattern),
    If(Box<Check>, Box<Check>, Box<Check>),
    /// `[literals].contains(x)`.
    OneOf(Vec<Lit>, Box<Check>),
    Unknown,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A `like` pattern as literal segments separated by `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    segments: Vec<String>,
    wildcard: bool,
}

impl Pattern {
    pub(crate) fn new(elems: &[PatternElem]) -> Self {
        let mut segments = vec![String::new()];
        let mut wildcard = false;
        for e in elems {
            match e {
                PatternElem::Char(c) => {
                    if let Some(last) = segments.last_mut() {
                        last.push(*c);
                    }
                }
                PatternElem::Wildcard => {
                    wildcard = true;
                    segments.push(String::new());
                }
            }
        }
        Self { segments, wildcard }
    }

    /// Cedar's `like`: `*` matches any sequence of characters, everything else itself.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let (Some(first), Some(last)) = (self.segments.first(), self.segments.last()) else {
            return false;
        };
        if !self.wildcard {
            return text == first;
        }
        if text.len() < first.len() + last.len()
            || !text.starts_with(first.as_str())
            || !text.ends_with(last.as_str())
        {
            return false;
        }
        let Some(mut rest) = text.get(first.len()..text.len() - last.len()) else {
            return false;
        };
        let middle = self
            .segments
            .get(1..self.segments.len().saturating_sub(1))
            .unwrap_or_default();
        for segment in middle {
            match rest.find(segment.as_str()) {
                Some(at) => rest = rest.get(at + segment.len()..).unwrap_or_default(),
                None => return false,
            }
        }
        true
    }
}

/// Compiles one error-free expression; parts outside the subset become [`Check::Unknown`].
pub(crate) fn compile(e: &Expr) -> Check {
    let boxed = |e: &Expr| Box::new(compile(e));
    match e {
        Expr::Literal(Literal::Bool(b)) => Check::Lit(Lit::Bool(*b)),
        Expr::Literal(Literal::Long(n)) => Check::Lit(Lit::Long(*n)),
        Expr::Literal(Literal::String(s)) => Check::Lit(Lit::Str(s.to_string())),
        Expr::GetAttr { .. } => path(e).map_or(Check::Unknown, Check::Attr),
        Expr::HasAttr { expr, attrs } => match (expr.as_ref(), attrs.len()) {
            (Expr::Var(Var::Context), 1) => {
                match Attr::of_path(&Var::Context, &[attrs.first().as_str()]) {
                    Some(a) => Check::HasContext(a),
                    None => Check::Unknown,
                }
            }
            _ => Check::Unknown,
        },
        Expr::UnaryOp {
            op: UnaryOp::Not,
            expr,
        } => Check::Not(boxed(expr)),
        Expr::BinaryOp { op, left, right } => {
            let cmp = |c| Check::Cmp(c, boxed(left), boxed(right));
            match op {
                BinaryOp::And => Check::And(boxed(left), boxed(right)),
                BinaryOp::Or => Check::Or(boxed(left), boxed(right)),
                BinaryOp::Eq => cmp(Cmp::Eq),
                BinaryOp::NotEq => cmp(Cmp::Ne),
                BinaryOp::Less => cmp(Cmp::Lt),
                BinaryOp::LessEq => cmp(Cmp::Le),
                BinaryOp::Greater => cmp(Cmp::Gt),
                BinaryOp::GreaterEq => cmp(Cmp::Ge),
                BinaryOp::HasTag | BinaryOp::GetTag => match (arguments(left), right.as_ref()) {
                    (true, Expr::Literal(Literal::String(k))) => {
                        if matches!(op, BinaryOp::HasTag) {
                            Check::HasTag(k.to_string())
                        } else {
                            Check::GetTag(k.to_string())
                        }
                    }
                    _ => Check::Unknown,
                },
                BinaryOp::Contains => match left.as_ref() {
                    Expr::Set(items) => {
                        let lits: Option<Vec<Lit>> = items
                            .iter()
                            .map(|i| match compile(i) {
                                Check::Lit(l) => Some(l),
                                _ => None,
                            })
                            .collect();
                        lits.map_or(Check::Unknown, |l| Check::OneOf(l, boxed(right)))
                    }
                    _ => Check::Unknown,
                },
                _ => Check::Unknown,
            }
        }
        Expr::Like { expr, pattern } => Check::Like(boxed(expr), Pattern::new(pattern)),
        Expr::IfThenElse {
            cond,
            then_expr,
            else_expr,
        } => Check::If(boxed(cond), boxed(then_expr), boxed(else_expr)),
        _ => Check::Unknown,
    }
}

fn path(e: &Expr) -> Option<Attr> {
    let mut attrs: Vec<&str> = Vec::new();
    let mut cur = e;
    loop {
        match cur {
            Expr::GetAttr { expr, attr } => {
                attrs.push(attr.as_str());
                cur = expr;
            }
            Expr::Var(v) => {
                attrs.reverse();
                return Attr::of_path(v, &attrs);
            }
            _ => return None,
        }
    }
}

/// `context.arguments`.
fn arguments(e: &Expr) -> bool {
    matches!(e, Expr::GetAttr { expr, attr }
        if attr.as_str() == "arguments" && matches!(expr.as_ref(), Expr::Var(Var::Context)))
}

/// Whether a check can ever be decided (not entirely unknown).
pub(crate) fn decidable(c: &Check) -> bool {
    !matches!(c, Check::Unknown)
}

/// A value during evaluation; `None` is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val<'a> {
    Bool(bool),
    Long(i64),
    Str(Cow<'a, str>),
}

impl Val<'_> {
    fn of(l: &Lit) -> Val<'_> {
        match l {
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Long(n) => Val::Long(*n),
            Lit::Str(s) => Val::Str(Cow::Borrowed(s)),
        }
    }
}

/// Whether a check is known to be `false` for `call`.
pub(crate) fn is_false(check: &Check, call: &Call<'_>) -> bool {
    truth(check, call) == Some(false)
}

/// The truth of a check for `call`, when the pre-filter can tell.
pub(crate) fn truth(check: &Check, call: &Call<'_>) -> Option<bool> {
    match eval(check, call)? {
        Val::Bool(b) => Some(b),
        _ => None,
    }
}

fn eval<'a>(c: &'a Check, call: &Call<'a>) -> Option<Val<'a>> {
    let boolean = |c: &'a Check| match eval(c, call) {
        Some(Val::Bool(b)) => Some(b),
        _ => None,
    };
    match c {
        Check::Lit(l) => Some(Val::of(l)),
        Check::Attr(a) => attr(*a, call),
        Check::HasContext(a) => Some(Val::Bool(attr(*a, call).is_some())),
        Check::HasTag(k) => Some(Val::Bool(tag(k, call).is_some())),
        Check::GetTag(k) => tag(k, call).map(Val::Str),
        Check::Not(x) => boolean(x).map(|b| Val::Bool(!b)),
        // The operands cannot err (the conjunct is error-free), so `false` on either side of
        // `&&` decides it, whatever the other side is; likewise `true` for `||`.
        Check::And(l, r) => match (boolean(l), boolean(r)) {
            (Some(false), _) | (_, Some(false)) => Some(Val::Bool(false)),
            (Some(true), Some(true)) => Some(Val::Bool(true)),
            _ => None,
        },
        Check::Or(l, r) => match (boolean(l), boolean(r)) {
            (Some(true), _) | (_, Some(true)) => Some(Val::Bool(true)),
            (Some(false), Some(false)) => Some(Val::Bool(false)),
            _ => None,
        },
        Check::Cmp(op, l, r) => {
            let (l, r) = (eval(l, call)?, eval(r, call)?);
            let b = match (op, &l, &r) {
                (Cmp::Eq, _, _) if same_kind(&l, &r) => l == r,
                (Cmp::Ne, _, _) if same_kind(&l, &r) => l != r,
                (Cmp::Lt, Val::Long(a), Val::Long(b)) => a < b,
                (Cmp::Le, Val::Long(a), Val::Long(b)) => a <= b,
                (Cmp::Gt, Val::Long(a), Val::Long(b)) => a > b,
                (Cmp::Ge, Val::Long(a), Val::Long(b)) => a >= b,
                _ => return None,
            };
            Some(Val::Bool(b))
        }
        Check::Like(x, pattern) => match eval(x, call)? {
            Val::Str(s) => Some(Val::Bool(pattern.matches(&s))),
            _ => None,
        },
        Check::If(cond, then, otherwise) => match boolean(cond) {
            Some(true) => eval(then, call),
            Some(false) => eval(otherwise, call),
            None => match (eval(then, call), eval(otherwise, call)) {
                (Some(a), Some(b)) if a == b => Some(a),
                _ => None,
            },
        },
        Check::OneOf(items, x) => {
            let v = eval(x, call)?;
            if items.iter().any(|i| !same_kind(&Val::of(i), &v)) {
                return None;
            }
            Some(Val::Bool(items.iter().any(|i| Val::of(i) == v)))
        }
        Check::Unknown => None,
    }
}

fn same_kind(a: &Val<'_>, b: &Val<'_>) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The value Rein gives Cedar for `a` (see `cedar.rs`); `None` when the optional context
/// attribute is absent.
fn attr<'a>(a: Attr, call: &Call<'a>) -> Option<Val<'a>> {
    let s = |v: &'a str| Some(Val::Str(Cow::Borrowed(v)));
    let long = |v: u32| Some(Val::Long(i64::from(v)));
    let ctx = &call.req.context;
    let now = call.req.now;
    match a {
        Attr::AgentName => s(call.agent.id.name().as_str()),
        Attr::AgentEnvironment => s(call.agent.environment().as_str()),
        Attr::AgentStatus => s(call.agent.status.as_str()),
        Attr::AgentUseCase => s(&call.agent.use_case),
        Attr::AgentHasRoles => Some(Val::Bool(call.agent.roles.missing().is_empty())),
        Attr::ToolName => s(call.req.action.as_str()),
        Attr::ToolClass => s(class_str(call.class)),
        Attr::ToolMutating => Some(Val::Bool(call.class.is_mutating())),
        Attr::SystemName => s(call.system.name.as_str()),
        Attr::SystemEnvironment => s(call.system.environment.as_str()),
        Attr::SystemClassification => s(classification_str(call.system.classification)),
        Attr::TaskId => ctx.task_id.as_deref().and_then(s),
        Attr::Intent => ctx.intent.as_deref().and_then(s),
        Attr::Risk => ctx.risk.map(|r| Val::Long(i64::from(r))),
        Attr::ConfidencePct => ctx.confidence_pct().map(Val::Long),
        Attr::Epoch => Some(Val::Long(now.timestamp())),
        Attr::DayOfWeek => long(now.weekday().number_from_monday()),
        Attr::Hour => long(now.hour()),
        Attr::Minute => long(now.minute()),
        Attr::MinuteOfDay => long(now.hour() * 60 + now.minute()),
        Attr::ArgumentsText => s(call.arguments_text),
        Attr::ArgumentDigest => s(call.digest),
        Attr::ApprovalAttached => Some(Val::Bool(ctx.approval_id.is_some())),
    }
}

/// The tag Rein gives Cedar for an argument: strings as given, other values as canonical JSON.
fn tag<'a>(key: &str, call: &Call<'a>) -> Option<Cow<'a, str>> {
    match call.req.context.arguments.get(key)? {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        other => canonical_json(other).ok().map(Cow::Owned),
    }
}
