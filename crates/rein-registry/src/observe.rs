//! Observers of the records decisions depend on: agents, systems, grants and revocations.
//!
//! The decision path never reads the store (a read costs 0.1–0.3 ms, the decision budget is
//! 50 µs); it reads an in-memory copy of these records. The registry tells that copy about every
//! agent, system and grant it wrote, with the record's new version, right after the write
//! committed and before the operation returns, so a suspension or a revocation made on this node
//! is seen by the very next decision. Versions grow by one on every write, so an observer can
//! ignore a notification older than what it holds, whatever order concurrent writers' calls
//! reach it in.

use rein_core::agent::Agent;
use rein_core::approval::ApprovalRequest;
use rein_core::grant::Grant;
use rein_core::revocation::Revocation;
use rein_core::system::System;
use rein_store::Version;

/// Told about every agent, system and grant the registry wrote. Called synchronously after the
/// store committed and before the registry operation returns; implementations must not block.
pub trait Observer: Send + Sync + 'static {
    /// `agent` was created or changed and is now at `version`.
    fn agent_written(&self, agent: &Agent, version: Version);
    /// `system` was created or changed and is now at `version`.
    fn system_written(&self, system: &System, version: Version);
    /// `grant` was created or changed and is now at `version`.
    fn grant_written(&self, grant: &Grant, version: Version);
    /// `revocation` was recorded or lifted and is now at `version`.
    fn revocation_written(&self, revocation: &Revocation, version: Version);
    /// A step-up approval request was opened or changed and is now at `version` (for waiters
    /// and notifications; decisions read approvals from the store).
    fn approval_written(&self, _approval: &ApprovalRequest, _version: Version) {}
}
