//! The one error type of the domain rules, with stable codes.

use crate::id::IdKind;

/// A stable, machine-readable code for every error Rein reports. The HTTP layer maps each code to
/// a status and an RFC 9457 problem `type`; the CLI prints it. Codes never change meaning.
pub trait ErrorCode {
    /// The stable code, lowercase and dash-separated, e.g. `self-approval`.
    fn code(&self) -> &'static str;
}

/// Why a domain rule refused an input or a transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// An identifier is malformed.
    #[error("invalid {kind} `{value}`: {reason}")]
    InvalidId {
        /// What kind of identifier.
        kind: IdKind,
        /// The offending input.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field value is out of range or inconsistent.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// The field name as it appears on the API.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An agent lacks accountable roles required for activation in its environment.
    #[error("agent `{agent}` cannot be active in `{environment}`: missing {}", missing.join(", "))]
    MissingRoles {
        /// The agent's SPIFFE ID.
        agent: String,
        /// Its environment.
        environment: String,
        /// The roles that are not set.
        missing: Vec<&'static str>,
    },
    /// A lifecycle transition is not allowed from the current state.
    #[error("cannot {transition} {entity} in state `{state}`")]
    InvalidTransition {
        /// The kind of entity (agent, grant).
        entity: &'static str,
        /// What was attempted.
        transition: &'static str,
        /// The current state.
        state: String,
    },
    /// The requester of a grant tried to approve it.
    #[error("the requester of a grant may not approve it")]
    SelfApproval,
    /// The same person tried to fill both required approvals.
    #[error("`{user}` already approved this request; the next approval must come from a distinct person")]
    AlreadyApproved {
        /// Who approved already.
        user: String,
    },
    /// The actor is not allowed to perform the operation.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Which rule refused it.
        reason: String,
    },
    /// A grant names an action the system does not declare.
    #[error("system `{system}` has no action `{action}`")]
    UnknownAction {
        /// The system.
        system: String,
        /// The undeclared action.
        action: String,
    },
    /// A record cannot be deleted while others reference it.
    #[error("{kind} `{key}` is still referenced by {}: remove those references first", by.join(", "))]
    InUse {
        /// The kind of record (`secret`).
        kind: &'static str,
        /// Its key.
        key: String,
        /// What references it, e.g. ``system `billing` ``.
        by: Vec<String>,
    },
    /// A public key is unusable.
    #[error("invalid public key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },
}

impl DomainError {
    /// Shorthand for [`DomainError::Forbidden`].
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::Forbidden {
            reason: reason.into(),
        }
    }

    /// Shorthand for [`DomainError::InvalidField`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

impl ErrorCode for DomainError {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidId { .. } => "invalid-id",
            Self::InvalidField { .. } => "invalid-field",
            Self::MissingRoles { .. } => "missing-accountable-roles",
            Self::InvalidTransition { .. } => "invalid-transition",
            Self::SelfApproval => "self-approval",
            Self::AlreadyApproved { .. } => "already-approved",
            Self::Forbidden { .. } => "forbidden",
            Self::UnknownAction { .. } => "unknown-action",
            Self::InvalidKey { .. } => "invalid-key",
            Self::InUse { .. } => "in-use",
        }
    }
}
