//! The registry's error type.

use rein_core::{DomainError, ErrorCode};
use rein_store::StoreError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A domain rule refused it (bad input, forbidden, invalid transition).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The caller could not be authenticated. Deliberately says nothing about why.
    #[error("missing, invalid, expired or revoked API token")]
    Unauthenticated,
    /// The named record does not exist.
    #[error("{kind} `{key}` not found")]
    NotFound {
        /// Record kind.
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// A record with that key exists already.
    #[error("{kind} `{key}` already exists")]
    AlreadyExists {
        /// Record kind.
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// Concurrent writers kept winning the race for this record; nothing was changed.
    #[error("{kind} `{key}` is being changed concurrently; retry")]
    Contended {
        /// Record kind.
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// The audit log could not record the operation durably, so it was refused (fail closed).
    #[error("refused: the audit log is unavailable")]
    AuditUnavailable(String),
    /// Rein's own key material could not be opened (wrong master key or tampered record).
    #[error("signing key unavailable: {0}")]
    Keys(String),
    /// A stored secret could not be sealed or opened (wrong master key, or a record altered
    /// outside Rein). Carries no part of the value.
    #[error(transparent)]
    Secret(#[from] rein_keys::SecretError),
    /// A governance set has problems; nothing was applied (the plan lists them all).
    #[error("the governance set cannot be applied: {0}; run `rein plan` for every problem")]
    InvalidSet(String),
    /// What a saved plan was made against no longer holds; nothing was applied.
    #[error("stale plan: {0}; plan again")]
    StalePlan(String),
    /// The store failed; nothing is known to have changed.
    #[error("store unavailable")]
    Store(#[source] StoreError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { kind, key } => Self::AlreadyExists { kind, key },
            StoreError::NotFound { kind, key } => Self::NotFound { kind, key },
            StoreError::Conflict { kind, key } => Self::Contended { kind, key },
            other => Self::Store(other),
        }
    }
}

impl ErrorCode for Error {
    fn code(&self) -> &'static str {
        match self {
            Self::Domain(d) => d.code(),
            Self::Unauthenticated => "unauthenticated",
            Self::NotFound { .. } => "not-found",
            Self::AlreadyExists { .. } => "already-exists",
            Self::Contended { .. } => "conflict",
            Self::InvalidSet(_) => "invalid-governance-set",
            Self::StalePlan(_) => "stale-plan",
            Self::Store(_) => "store-unavailable",
            Self::AuditUnavailable(_) => "audit-unavailable",
            Self::Keys(_) => "keys-unavailable",
            Self::Secret(_) => "secret-unavailable",
        }
    }
}
