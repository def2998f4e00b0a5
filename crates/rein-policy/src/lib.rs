//! Rein's decision engine: one pure function from a request, the facts the caller loaded and
//! a loaded guardrail set to a decision (SPEC.md, "Decision semantics"). No I/O, no async, no
//! clock: the caller passes the time in the request.
//!
//! - [`decide`] runs the steps in order: agent, grant, budgets, guardrails, allow; any error
//!   denies.
//! - [`Guardrails::load`] parses Cedar guardrail files (every policy a `forbid` with a unique
//!   `@id`; `@step_up`, `@step_up("N")`, `@shadow`, `@reason`), validates them strictly
//!   against `schema/rein.cedarschema`, and indexes them so that each request is evaluated
//!   against only the guardrails that can match it.
//!
//! How one request reaches Cedar cheaply (a bare `Authorizer::is_authorized` costs about
//! 1.7 µs per policy in the set): the index drops every guardrail whose scope or leading
//! equalities (`resource.class == "admin"`, `principal in Team::"…"`, …) the request
//! contradicts (`slice.rs`); the pre-filter drops those whose other leading conditions
//! (`context.risk >= 70`, `context.arguments_text like "*DROP *"`, …) are false for it
//! (`prefilter.rs`); only the rest go to Cedar, and when none is left Cedar is not called at
//! all. Both only ever use conditions that Cedar evaluates before anything in the policy can
//! raise an error, so a dropped guardrail is one Cedar would have found unsatisfied without
//! error: slicing cannot fail open. Property tests compare sliced with unsliced evaluation.
//! When Cedar runs, it gets a policy set built once per distinct slice, a context holding
//! only the attributes the slice reads, and the agent, system and tool entities cached per
//! (agent, system, action) as long as the facts they came from are unchanged.
//! - [`explain`] says why: every step with what it looked at, and every guardrail of the set
//!   (evaluated without slicing) with what happened to it; it agrees with [`decide`].
//! - [`RequestContext::validate`] and [`canonical_json`] define what a valid context is and
//!   the canonical form of a call's arguments, whose SHA-256 an approval is bound to.
//!
//! What guardrails see (the schema documents every attribute): `principal` is the agent
//! (`Agent::"spiffe://…"`, in its owner `Team`), `action` is always `Action::"call"`,
//! `resource` is the called tool (`Tool::"<system>/<action>"`, in its `System`), and `context`
//! has `task_id`, `intent`, `risk` (0–100) and `confidence_pct` (0–100, `floor(confidence ×
//! 100)`, Cedar having no floats) when given, `time` (UTC `epoch`, `day_of_week` 1 = Monday,
//! `hour`, `minute`, `minute_of_day`), `arguments` (one tag per top-level key),
//! `arguments_text` (canonical JSON), `argument_digest` and `approval_attached`.

mod cedar;
mod decision;
mod error;
mod explain;
mod guardrails;
mod prefilter;
mod request;
mod slice;

pub use decision::{
    check_access, decide, ApprovalEvidence, BudgetUsage, Decision, Facts, Outcome, Rule,
    ShadowEffect, ShadowVerdict, StepUp,
};
pub use error::{PolicyError, PolicyFileError};
pub use explain::{
    explain, Explanation, GuardrailExplanation, GuardrailStatus, SkippedBy, Step, StepExplanation,
    StepStatus,
};
pub use guardrails::{Guardrail, Guardrails, Mode, MAX_STEP_UP_APPROVERS};
pub use request::{
    argument_digest, canonical_json, Request, RequestContext, MAX_ARGUMENTS_BYTES,
    MAX_ARGUMENTS_DEPTH, MAX_ID_LEN, MAX_INTENT_LEN,
};

/// The Cedar schema guardrails are validated against (`schema/rein.cedarschema`).
pub const SCHEMA: &str = cedar::SCHEMA;

#[cfg(test)]
mod tests;
