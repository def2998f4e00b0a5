//! Why a request to the decision point was refused before any decision was made.
//!
//! Once a request is well-formed and its caller allowed, every failure (facts, policy
//! evaluation, audit) is a **deny** decision, not an error.

use rein_core::{DomainError, ErrorCode};

use crate::LoadError;

/// Refusals of the decision point.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller may not do this.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A field is out of range or malformed.
    #[error("`{field}` {message}")]
    Invalid {
        /// The field, e.g. `context.risk` or `requests[3].context.risk`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The context failed the engine's validation.
    #[error("{0}")]
    Context(rein_policy::PolicyError),
    /// The guardrails could not be loaded; the previous set stays in force.
    #[error(transparent)]
    Policies(LoadError),
    /// The audit log refused the record, so the change was not made.
    #[error("the audit log is unavailable: {0}")]
    AuditUnavailable(String),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] rein_registry::Error),
}

impl Error {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The same refusal, naming the batch entry it came from.
    pub(crate) fn at_index(self, i: usize) -> Self {
        match self {
            Self::Invalid { field, message } => Self::Invalid {
                field: format!("requests[{i}].{field}"),
                message,
            },
            Self::Context(e) => Self::Invalid {
                field: format!("requests[{i}]"),
                message: e.to_string(),
            },
            other => other,
        }
    }
}

impl ErrorCode for Error {
    fn code(&self) -> &'static str {
        match self {
            Self::Domain(e) => e.code(),
            Self::Invalid { .. } | Self::Context(_) => "invalid-field",
            Self::Policies(LoadError::Invalid(_)) => "invalid-policy",
            Self::Policies(LoadError::Io { .. }) => "policies-unreadable",
            Self::AuditUnavailable(_) => "audit-unavailable",
            Self::Registry(e) => e.code(),
        }
    }
}
