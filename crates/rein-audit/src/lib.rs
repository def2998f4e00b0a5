//! Rein's tamper-evident audit log.
//!
//! - [`record`]: what is recorded ([`Event`]), the chained [`Record`] and its canonical
//!   encoding, the one thing every verifier must agree on.
//! - [`checkpoint`]: Ed25519-signed statements "the chain had head `H` at sequence `N`", kept
//!   elsewhere to detect truncation and rewrites.
//! - [`verify`]: a streaming verifier that names the first record that was altered, inserted,
//!   deleted or reordered, and detects truncation against checkpoints.
//! - [`log`]: the appender. Appends are batched (group commit) so many concurrent writers share
//!   one durable write, and an append returns only once its record is durable. If the sink
//!   fails, the append fails, and the caller must refuse the action it was recording.

pub mod checkpoint;
mod encode;
pub mod log;
pub mod ocsf;
pub mod record;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointSigner};
pub use log::{AppendError, AuditLog, AuditSink, LogConfig, Receipt, SinkError};
pub use record::{Actor, ActorKind, Event, EventType, Hash, Record};
pub use verify::{Finding, Report, Verifier};
