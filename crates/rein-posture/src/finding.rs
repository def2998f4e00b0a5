//! Findings and the report that lists them.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How urgent a finding is, lowest to highest (so `Ord` sorts `Critical` last).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    Info,
    /// Worth fixing.
    Low,
    /// Fix soon.
    Medium,
    /// Fix now.
    High,
    /// A broken invariant: fix before anything else.
    Critical,
}

impl Severity {
    /// Every severity, highest first.
    pub const ALL: [Severity; 5] = [
        Self::Critical,
        Self::High,
        Self::Medium,
        Self::Low,
        Self::Info,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of record a finding is about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// An agent, named by its SPIFFE ID.
    Agent,
    /// A system, named by its name.
    System,
    /// A grant, named by its ID.
    Grant,
    /// A guardrail, named by its `@id`.
    Guardrail,
}

impl EntityKind {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::System => "system",
            Self::Grant => "grant",
            Self::Guardrail => "guardrail",
        }
    }
}

/// The record a finding is about.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct Entity {
    /// Its kind.
    pub kind: EntityKind,
    /// Its identifier (SPIFFE ID, system name, grant ID or guardrail ID).
    pub id: String,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.id)
    }
}

/// Where a finding's entity is declared, e.g. a line of a YAML manifest. Filled in by the caller
/// (the manifest loader knows lines; the registry does not) and carried into SARIF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Location {
    /// The file, relative to the repository root, with `/` separators.
    pub file: String,
    /// The 1-based line.
    pub line: u32,
}

/// One problem found in the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    /// The stable rule ID, e.g. `missing-accountable-role` (see [`crate::RULES`]). Borrowed from
    /// the rule table when the report is evaluated, owned when it is deserialized; a plain string
    /// in JSON either way.
    #[schema(value_type = String)]
    pub rule: Cow<'static, str>,
    /// How urgent it is.
    pub severity: Severity,
    /// What it is about.
    pub entity: Entity,
    /// One line saying what is wrong.
    pub title: String,
    /// The facts that show it.
    pub evidence: String,
    /// The same facts, structured.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// What to do about it.
    pub fix: String,
    /// The control IDs it maps to, all in the catalog (borrowed from the rule table when
    /// evaluated, owned when deserialized; plain strings in JSON).
    #[schema(value_type = Vec<String>)]
    pub controls: Vec<Cow<'static, str>>,
    /// Where the entity is declared, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// How many findings have one severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeverityCount {
    /// The severity.
    pub severity: Severity,
    /// Findings with it.
    pub count: usize,
}

/// How many findings map to at least one control of one framework.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrameworkCount {
    /// The framework, as the catalog names it.
    pub framework: String,
    /// Findings mapped to it.
    pub count: usize,
}

/// The result of a posture evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// The evaluation time (the inventory's `now`).
    pub generated_at: DateTime<Utc>,
    /// Every finding, highest severity first, then by entity and rule.
    pub findings: Vec<Finding>,
    /// Findings per severity, every severity listed, highest first.
    pub by_severity: Vec<SeverityCount>,
    /// Findings per framework, most first (then by name); frameworks without findings omitted.
    pub by_framework: Vec<FrameworkCount>,
}

impl Report {
    /// The number of findings with `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.by_severity
            .iter()
            .find(|c| c.severity == severity)
            .map_or(0, |c| c.count)
    }

    /// The highest severity of any finding, if there is one.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}
