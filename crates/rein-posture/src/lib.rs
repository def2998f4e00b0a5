//! Rein's posture report: evaluates every agent, system, grant and guardrail and lists findings,
//! each with a severity, the entity, the evidence, a fix and the framework controls it maps to.
//!
//! `rein posture` and `GET /v1/posture` are built on this crate. It is pure: no I/O besides the
//! control catalog embedded in the binary, no async, no clock (the caller passes `now`).
//!
//! # Design
//!
//! - **Input** ([`Inventory`]): plain data the caller builds from the registry (agents, systems,
//!   grants) and from the audit log ([`Usage`]: last use per agent, system and action; last
//!   activity per agent; the distinct caller contexts each identity was used from), the
//!   guardrails in force with their match counts ([`GuardrailUse`]), and the production and
//!   protected environments. Thresholds are in [`PostureConfig`].
//! - **Rules** ([`RULES`]): each has a stable ID, a description, a maximum severity and the
//!   control IDs its findings map to. [`evaluate`] runs them all in time linear in the inventory
//!   (it indexes systems, agents and usage once; each grant is one hash lookup) and returns a
//!   [`Report`]: findings sorted highest severity first, counts by severity and by framework.
//!   The rules:
//!   - `missing-accountable-role`: business owner, approvers, revokers, reviewers or review
//!     cadence missing ("over-scoped by default"); `high` in a protected or production
//!     environment, `medium` elsewhere.
//!   - `review-overdue`: last review (or creation, if never reviewed) + cadence + grace < now.
//!   - `shared-identity`: one identity used from more than one caller context.
//!   - `grant-unused`: an active grant, active for the whole window, none of whose actions was
//!     used within `unused_grant_days`.
//!   - `action-never-used`: some actions of such a grant were used within the window and others
//!     were not; the finding proposes the narrowed action set (least privilege from evidence).
//!   - `prod-mutation-without-business-owner`: an active grant with a write or admin action on a
//!     production system (the grant's `mutates_production`, or the system's current environment
//!     and action classes) without a `BusinessOwner` approval on record.
//!   - `grant-without-expiry-or-ttl-above-policy`: expiry more than `max_grant_days` ahead, or no
//!     `max_token_ttl_secs`, or one above policy.
//!   - `agent-inactive`: an active agent without activity for `inactive_agent_days` (an
//!     offboarding candidate).
//!   - `system-without-approvers`, `shadow-too-long`, `guardrail-never-matched`.
//! - **Catalog** ([`Catalog`]): `controls.toml`, a copy of `../shared/controls.toml` of the Rein
//!   specification, embedded with `include_str!`; a test checks every control a rule names is in
//!   it.
//! - **Output** ([`render`]): an aligned text table, JSON (the [`Report`] is `Serialize` and
//!   `Deserialize`, so a client can render what the server returned), SARIF 2.1.0 (validated in
//!   tests against the official schema; a finding's [`Location`], filled in by whoever knows the
//!   manifest line, becomes a physical location for code scanning), and one self-contained HTML
//!   document with inline SVG charts by severity and by framework.
//!
//! Usage is keyed by (agent, system, action), not by grant: when two active grants of one agent
//! on one system share an action, a use counts for both.

pub mod catalog;
pub mod finding;
pub mod inventory;
pub mod render;
pub mod rules;

pub use catalog::{Catalog, Control};
pub use finding::{
    Entity, EntityKind, Finding, FrameworkCount, Location, Report, Severity, SeverityCount,
};
pub use inventory::{GuardrailMode, GuardrailUse, Inventory, PostureConfig, Usage};
pub use rules::{evaluate, rule, RuleInfo, RULES};

/// Errors of the posture engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostureError {
    /// The control catalog could not be parsed.
    #[error("invalid control catalog: {0}")]
    Catalog(String),
    /// A report could not be rendered.
    #[error("cannot render the report: {0}")]
    Render(String),
}
