//! Errors of the decision engine and of the guardrail loader, with stable codes.

use std::fmt;

use rein_core::ErrorCode;

/// Why a request could not be evaluated. [`crate::decide`] never returns it: it turns every
/// error into a `deny` with rule [`crate::Rule::Error`]. The HTTP layer calls
/// [`crate::RequestContext::validate`] to reject a malformed context with a 4xx first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A context field is out of range or malformed.
    #[error("invalid context `{field}`: {reason}")]
    InvalidContext {
        /// The field, as named on the API.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A fact the decision needs was not loaded, or does not match the request.
    #[error("missing or inconsistent fact: {what}")]
    Facts {
        /// Which fact.
        what: String,
    },
    /// Cedar could not build or evaluate the request.
    #[error("guardrail evaluation failed: {message}")]
    Evaluation {
        /// Cedar's message.
        message: String,
    },
}

impl PolicyError {
    pub(crate) fn context(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidContext {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn facts(what: impl Into<String>) -> Self {
        Self::Facts { what: what.into() }
    }

    pub(crate) fn evaluation(message: impl fmt::Display) -> Self {
        Self::Evaluation {
            message: message.to_string(),
        }
    }
}

impl ErrorCode for PolicyError {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidContext { .. } => "invalid-context",
            Self::Facts { .. } => "missing-fact",
            Self::Evaluation { .. } => "policy-evaluation",
        }
    }
}

/// One problem in one guardrail file. Lines and columns count from 1; both are 0 when the
/// problem is not tied to a place in a file (for example a duplicate file name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyFileError {
    /// The file name as given to [`crate::Guardrails::load`].
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// What is wrong, lowercase, user input in backticks.
    pub message: String,
}

impl ErrorCode for PolicyFileError {
    fn code(&self) -> &'static str {
        "invalid-policy"
    }
}
