//! Rein's domain model, free of I/O.
//!
//! Everything here is a value or a pure function: identities ([`id`]), the humans who operate Rein
//! ([`user`]), agents with their accountable roles ([`agent`]), the systems they act on
//! ([`system`]), grants and their approval path ([`grant`]), access reviews ([`review`]), schedules
//! ([`schedule`]), public keys ([`key`]), secrets for MCP upstreams ([`secret`]) and who may do
//! what on Rein itself ([`authz`]). The store loads facts, these functions
//! decide, the store writes the result.

pub mod agent;
pub mod approval;
pub mod authz;
pub mod error;
pub mod grant;
pub mod id;
pub mod key;
pub mod mcp;
pub mod review;
pub mod revocation;
pub mod schedule;
pub mod secret;
pub mod system;
pub mod team;
pub mod user;

pub use error::{DomainError, ErrorCode};

/// Points in time are UTC instants everywhere in Rein.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
