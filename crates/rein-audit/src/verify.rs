//! Streaming verification of a chain of records against signed checkpoints.
//!
//! Records are pushed in the order they are stored or exported. Verification stops at the first
//! problem, because nothing after a broken link can be trusted; the [`Finding`] names the record.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::record::{Hash, Record};

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// An entry could not be decoded as a record.
    Malformed {
        /// 1-based position in the input.
        position: u64,
        /// Decoder message.
        reason: String,
    },
    /// The record's content does not match its hash: it was altered.
    Altered {
        /// The record.
        seq: u64,
    },
    /// The record does not link to its predecessor: a record was inserted before it, or the
    /// predecessor was altered and re-hashed.
    BrokenLink {
        /// The record.
        seq: u64,
    },
    /// Sequence numbers jump: records were deleted.
    Gap {
        /// The sequence number expected next.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// Sequence numbers repeat or go backwards: records were reordered or duplicated.
    OutOfOrder {
        /// The sequence number expected next.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// The record at a checkpoint's sequence number has another hash: history was rewritten.
    CheckpointMismatch {
        /// The checkpoint's sequence number.
        seq: u64,
    },
    /// The chain ends before a checkpoint: records were truncated.
    Truncated {
        /// The highest checkpoint's sequence number.
        checkpoint_seq: u64,
        /// The last record present.
        last_seq: u64,
    },
    /// A checkpoint's signature does not verify.
    BadCheckpointSignature {
        /// The checkpoint's sequence number.
        seq: u64,
        /// The key it claims.
        key_id: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { position, reason } => write!(f, "entry {position} is not a valid record: {reason}"),
            Self::Altered { seq } => write!(f, "record {seq} was altered: its content does not match its hash"),
            Self::BrokenLink { seq } => {
                write!(f, "record {seq} does not link to record {}: a record was inserted or re-hashed", seq.saturating_sub(1))
            }
            Self::Gap { expected, found } => {
                write!(f, "records {expected} to {} are missing (deleted)", found.saturating_sub(1))
            }
            Self::OutOfOrder { expected, found } => {
                write!(f, "record {found} appears where record {expected} was expected (reordered or duplicated)")
            }
            Self::CheckpointMismatch { seq } => {
                write!(f, "record {seq} does not match the signed checkpoint at {seq}: history was rewritten")
            }
            Self::Truncated { checkpoint_seq, last_seq } => write!(
                f,
                "the chain ends at record {last_seq} but a signed checkpoint covers record {checkpoint_seq}: records were truncated"
            ),
            Self::BadCheckpointSignature { seq, key_id } => {
                write!(f, "the checkpoint at {seq} does not verify with key `{key_id}`")
            }
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records verified before the first problem (all of them when there is none).
    pub records: u64,
    /// The last verified record's sequence number and hash.
    pub head: Option<(u64, String)>,
    /// Checkpoints whose signature and hash were checked against the chain.
    pub checkpoints_verified: u64,
    /// The first problem, if any.
    pub problem: Option<Finding>,
}

impl Report {
    /// Whether the chain verified.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// A streaming verifier.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: u64,
    prev: Hash,
    records: u64,
    checkpoints: BTreeMap<u64, Hash>,
    checkpoints_verified: u64,
    problem: Option<Finding>,
}

impl Verifier {
    /// A verifier for a chain that starts at seq 1, with checkpoints signed by `keys` (by key
    /// ID). A checkpoint whose key is unknown or whose signature fails is itself a problem.
    pub fn new(keys: &HashMap<String, VerifyingKey>, checkpoints: &[Checkpoint]) -> Self {
        let mut v = Self {
            expected_seq: 1,
            prev: Hash::GENESIS,
            records: 0,
            checkpoints: BTreeMap::new(),
            checkpoints_verified: 0,
            problem: None,
        };
        for cp in checkpoints {
            let valid = keys.get(&cp.key_id).is_some_and(|k| cp.verify_signature(k));
            if !valid {
                v.problem = Some(Finding::BadCheckpointSignature {
                    seq: cp.seq,
                    key_id: cp.key_id.clone(),
                });
                break;
            }
            v.checkpoints.insert(cp.seq, cp.head_hash);
        }
        v
    }

    /// Whether verification already stopped at a problem.
    pub fn failed(&self) -> bool {
        self.problem.is_some()
    }

    /// Reports an entry that could not be decoded at 1-based `position`.
    pub fn malformed(&mut self, position: u64, reason: impl Into<String>) {
        if self.problem.is_none() {
            self.problem = Some(Finding::Malformed {
                position,
                reason: reason.into(),
            });
        }
    }

    /// Checks the next record. Returns false once a problem was found (stop feeding).
    pub fn push(&mut self, record: &Record) -> bool {
        self.push_checked(record, record.recompute_hash())
    }

    /// Checks a run of consecutive records, recomputing their hashes on every core (each
    /// record's hash depends only on its own content; the links are then checked in order).
    /// Returns false once a problem was found.
    pub fn push_all(&mut self, records: &[Record]) -> bool {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let chunk = records.len().div_ceil(threads).max(1024);
        let hashes: Vec<Hash> = std::thread::scope(|scope| {
            let workers: Vec<_> = records
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || part.iter().map(Record::recompute_hash).collect::<Vec<_>>())
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        if hashes.len() != records.len() {
            // A worker died: verify the rest on this thread rather than report a false result.
            return records.iter().all(|r| self.push(r));
        }
        records
            .iter()
            .zip(hashes)
            .all(|(r, h)| self.push_checked(r, h))
    }

    fn push_checked(&mut self, record: &Record, recomputed: Hash) -> bool {
        if self.problem.is_some() {
            return false;
        }
        let finding = if record.seq > self.expected_seq {
            Some(Finding::Gap {
                expected: self.expected_seq,
                found: record.seq,
            })
        } else if record.seq < self.expected_seq {
            Some(Finding::OutOfOrder {
                expected: self.expected_seq,
                found: record.seq,
            })
        } else if recomputed != record.hash {
            Some(Finding::Altered { seq: record.seq })
        } else if record.prev_hash != self.prev {
            Some(Finding::BrokenLink { seq: record.seq })
        } else if self
            .checkpoints
            .get(&record.seq)
            .is_some_and(|h| *h != record.hash)
        {
            Some(Finding::CheckpointMismatch { seq: record.seq })
        } else {
            None
        };
        if let Some(f) = finding {
            self.problem = Some(f);
            return false;
        }
        if self.checkpoints.contains_key(&record.seq) {
            self.checkpoints_verified += 1;
        }
        self.records += 1;
        self.prev = record.hash;
        self.expected_seq = record.seq + 1;
        true
    }

    /// Ends verification: checks that no checkpoint lies beyond the last record.
    pub fn finish(mut self) -> Report {
        let last_seq = self.expected_seq - 1;
        if self.problem.is_none() {
            if let Some((&cp_seq, _)) = self.checkpoints.iter().next_back() {
                if cp_seq > last_seq {
                    self.problem = Some(Finding::Truncated {
                        checkpoint_seq: cp_seq,
                        last_seq,
                    });
                }
            }
        }
        Report {
            records: self.records,
            head: (self.records > 0).then(|| (last_seq, self.prev.to_hex())),
            checkpoints_verified: self.checkpoints_verified,
            problem: self.problem,
        }
    }
}
