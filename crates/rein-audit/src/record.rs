//! Audit records and their canonical encoding.
//!
//! # Canonical encoding (version 1)
//!
//! A record's hash is `SHA-256("rein.audit.v1" || 0x00 || C)` where `C` is the UTF-8 JSON text
//! of the object `{"seq":…,"time":…,"prev_hash":…,"event":{…}}` produced by serialising these
//! types with `serde_json` (no whitespace, fields in declaration order, map keys sorted, absent
//! optional fields omitted, empty lists omitted, no floating-point numbers anywhere). `time` is
//! RFC 3339 UTC with exactly six fractional digits and a `Z`. `prev_hash` of the first record
//! (seq 1) is 64 zeros. Hashes are lowercase hex. Golden vectors in `tests/vectors/` pin this;
//! changing the encoding is a new version, never an edit. The bytes are written directly (the
//! private `encode` module, tested against `serde_json`) rather than through serde, for speed.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encode;

/// Domain-separation prefix of record hashes.
const RECORD_DOMAIN: &[u8] = b"rein.audit.v1\0";

/// A SHA-256 digest, shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash that precedes the first record.
    pub const GENESIS: Hash = Hash([0; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Hex on the stack: this runs twice per record on the verify path.
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0, &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lowercase hex digits"))
    }
}

macro_rules! event_types {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What happened. The string forms are stable and appear in exports and filters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum EventType {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl EventType {
            /// Every event type, in declaration order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The stable string form, e.g. `grant.approved`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }
        }

        impl std::str::FromStr for EventType {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok(EventType::$variant),)*
                    other => Err(format!("unknown event type `{other}`")),
                }
            }
        }
    };
}

event_types! {
    /// A policy decision (allow, deny, step-up).
    Decision = "decision",
    /// An access token was minted.
    TokenIssued = "token.issued",
    /// A token request was refused.
    TokenRefused = "token.refused",
    /// A step-up approval was requested.
    ApprovalRequested = "approval.requested",
    /// A step-up approval was granted.
    ApprovalGranted = "approval.granted",
    /// A step-up approval was denied.
    ApprovalDenied = "approval.denied",
    /// A step-up approval expired undecided.
    ApprovalExpired = "approval.expired",
    /// An approved step-up was used by a decision.
    ApprovalUsed = "approval.used",
    /// A grant was requested.
    GrantRequested = "grant.requested",
    /// A grant received an approval (it may need another).
    GrantApproved = "grant.approved",
    /// A grant was denied.
    GrantDenied = "grant.denied",
    /// A grant was revoked.
    GrantRevoked = "grant.revoked",
    /// A grant reached its expiry.
    GrantExpired = "grant.expired",
    /// An agent was created.
    AgentCreated = "agent.created",
    /// An agent's description, roles or budgets changed.
    AgentUpdated = "agent.updated",
    /// An agent was suspended.
    AgentSuspended = "agent.suspended",
    /// An agent was resumed.
    AgentResumed = "agent.resumed",
    /// An agent was retired.
    AgentRetired = "agent.retired",
    /// A public key was registered for an agent.
    AgentKeyAdded = "agent.key_added",
    /// A public key was removed from an agent.
    AgentKeyRemoved = "agent.key_removed",
    /// An agent's access review was completed: its `last_review` moved to that time.
    AgentReviewed = "agent.reviewed",
    /// An access review campaign was opened.
    ReviewOpened = "review.opened",
    /// A reviewer decided one grant of an access review (keep or revoke), or certified an
    /// agent without grants.
    ReviewDecided = "review.decided",
    /// An access review campaign was closed.
    ReviewClosed = "review.closed",
    /// A user was created.
    UserCreated = "user.created",
    /// A user was changed (role, disabled, contact).
    UserUpdated = "user.updated",
    /// A team was created.
    TeamCreated = "team.created",
    /// A team's description or members changed.
    TeamUpdated = "team.updated",
    /// A system was registered.
    SystemCreated = "system.created",
    /// A system was changed.
    SystemUpdated = "system.updated",
    /// A personal API token was issued.
    ApiTokenIssued = "api_token.issued",
    /// A personal API token was revoked.
    ApiTokenRevoked = "api_token.revoked",
    /// A credential, task, agent, team, environment or time-based revocation.
    Revocation = "revocation",
    /// A policy set was loaded.
    PolicySetLoaded = "policy_set.loaded",
    /// One of Rein's signing keys was replaced by a new one.
    KeyRotated = "key.rotated",
    /// A call proxied by the gateway.
    GatewayCall = "gateway.call",
    /// A governance set was applied (its changes carry the apply's ID).
    GovernanceApplied = "governance.applied",
    /// A secret for MCP upstreams was set or rotated (its name and version, never its value).
    SecretSet = "secret.set",
    /// A secret was deleted, with its ciphertext.
    SecretDeleted = "secret.deleted",
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A human user of Rein.
    User,
    /// An agent (by SPIFFE ID).
    Agent,
    /// Rein itself (expiry sweeps, circuit breakers).
    Rein,
}

/// The actor of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// User, agent or Rein.
    pub kind: ActorKind,
    /// User name, SPIFFE ID, or `rein`.
    pub id: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One event as submitted to the log. Never carries secrets or raw arguments: arguments are
/// represented by their digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Who did it.
    pub actor: Actor,
    /// What it was about, e.g. a grant ID, a token `jti`, an approval ID, a user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The agent concerned (SPIFFE ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The target system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The action (tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `allow`, `deny` or `step_up` for decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// What determined the decision: grant IDs, policy IDs, rule names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub determined_by: Vec<String>,
    /// Policy-set version in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// Who approved the grant or approval that enabled the action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// Who may revoke it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revokers: Vec<String>,
    /// SHA-256 of the canonical arguments, never the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argument_digest: Option<String>,
    /// `success`, `failure`, `denied`, … .
    pub outcome: String,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long the action took, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Further string fields (sorted by key). Values are strings so the encoding has no floats.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// Set on events Rein recorded about itself in a dev/test setting; never in production.
    #[serde(default, skip_serializing_if = "is_false")]
    pub synthetic: bool,
}

impl Event {
    /// A new event with only the required fields set.
    pub fn new(event_type: EventType, actor: Actor, outcome: impl Into<String>) -> Self {
        Self {
            event_type,
            actor,
            subject: None,
            agent: None,
            task_id: None,
            system: None,
            action: None,
            decision: None,
            determined_by: Vec::new(),
            policy_version: None,
            approvers: Vec::new(),
            revokers: Vec::new(),
            argument_digest: None,
            outcome: outcome.into(),
            reason: None,
            latency_us: None,
            details: BTreeMap::new(),
            synthetic: false,
        }
    }
}

/// A chained audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Sequence number: 1, 2, 3, … without gaps.
    pub seq: u64,
    /// When it was appended (RFC 3339, microseconds, UTC).
    #[serde(with = "micros")]
    #[schema(value_type = String)]
    pub time: DateTime<Utc>,
    /// Hash of the previous record (zeros for seq 1).
    #[schema(value_type = String)]
    pub prev_hash: Hash,
    /// This record's hash over its canonical encoding.
    #[schema(value_type = String)]
    pub hash: Hash,
    /// The event.
    pub event: Event,
}

impl Record {
    /// Builds the record that follows `prev_hash` at `seq`, computing its hash.
    pub fn chain(seq: u64, time: DateTime<Utc>, prev_hash: Hash, event: Event) -> Self {
        let time = truncate_micros(time);
        let hash = Self::compute_hash(seq, &time, &prev_hash, &event);
        Self {
            seq,
            time,
            prev_hash,
            hash,
            event,
        }
    }

    /// The canonical bytes the hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        encode::write_record(
            &mut out,
            self.seq,
            &self.time,
            &self.prev_hash,
            None,
            &self.event,
        );
        out
    }

    /// The record as stored and exported: its JSON document, the same bytes as
    /// `serde_json::to_vec(&record)` (the canonical fields plus `hash`), written without serde.
    pub fn write_document(&self, out: &mut Vec<u8>) {
        // Every field named: a new one does not compile until it is encoded.
        let Record {
            seq,
            time,
            prev_hash,
            hash,
            event,
        } = self;
        encode::write_record(out, *seq, time, prev_hash, Some(hash), event);
    }

    /// Recomputes the hash from the content (what a verifier does).
    pub fn recompute_hash(&self) -> Hash {
        Self::compute_hash(self.seq, &self.time, &self.prev_hash, &self.event)
    }

    fn compute_hash(seq: u64, time: &DateTime<Utc>, prev_hash: &Hash, event: &Event) -> Hash {
        thread_local! {
            // One encoding buffer per thread, reused: the verify path hashes millions of records.
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(2048));
        }
        BUF.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend_from_slice(RECORD_DOMAIN);
            encode::write_record(buf, seq, time, prev_hash, None, event);
            Hash(Sha256::digest(buf.as_slice()).into())
        })
    }
}

/// Drops sub-microsecond precision so that a record read back from text hashes the same.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

mod micros {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        let t = DateTime::parse_from_rfc3339(&s)
            .map_err(serde::de::Error::custom)?
            .with_timezone(&Utc);
        if t.to_rfc3339_opts(SecondsFormat::Micros, true) != s {
            return Err(serde::de::Error::custom(
                "time is not in canonical form (RFC 3339 UTC, 6 fractional digits, `Z`)",
            ));
        }
        Ok(t)
    }
}
