//! The appender: group commit over an [`AuditSink`].
//!
//! One writer task owns the chain head. Callers send events over a channel and wait; the writer
//! takes everything queued (up to `max_batch`), chains it, and hands the batch to the sink in one
//! atomic, durable write, so N concurrent appenders share one fsync. Each caller is answered only
//! after the sink confirmed durability. When the sink fails, every caller in the batch gets an
//! error and the head does not move: nothing is acknowledged that is not stored.
//!
//! Several Rein replicas may share one PostgreSQL sink: a sink that finds its head moved reports
//! [`SinkError::Conflict`], and the writer re-reads the head and re-chains the batch.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::record::{Event, Hash, Record};

/// Why a sink operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Another writer appended first; re-read the head and retry.
    #[error("another writer appended to the audit log first")]
    Conflict,
    /// The sink is unavailable or the write was not durable.
    #[error("audit store unavailable: {0}")]
    Unavailable(String),
    /// A stored record or checkpoint cannot be decoded.
    #[error("audit store corrupt: {0}")]
    Corrupt(String),
}

/// Durable storage for records and checkpoints.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// The last record's sequence number and hash, if any.
    async fn head(&self) -> Result<Option<(u64, Hash)>, SinkError>;
    /// Appends consecutive records, the first following the current head, atomically and
    /// durably: all of them or none. [`SinkError::Conflict`] if the head moved.
    async fn append(&self, records: &[Record]) -> Result<(), SinkError>;
    /// Stores a signed checkpoint.
    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), SinkError>;
}

/// Appender settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Most records per durable write.
    pub max_batch: usize,
    /// Queue length before appenders wait for room (back-pressure, never dropping).
    pub queue: usize,
    /// Sign a checkpoint after this many records…
    pub checkpoint_every_records: u64,
    /// …or after this long, whichever comes first (only if the head moved).
    pub checkpoint_every: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_batch: 2048,
            queue: 65_536,
            checkpoint_every_records: 10_000,
            checkpoint_every: Duration::from_secs(60),
        }
    }
}

/// Proof that a record is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: Hash,
}

/// Why an append failed. The caller must refuse the action it was recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The record could not be written durably.
    #[error("audit record could not be written durably: {0}")]
    Unavailable(String),
    /// The log is shut down.
    #[error("audit log is closed")]
    Closed,
}

struct Pending {
    event: Event,
    reply: oneshot::Sender<Result<Receipt, AppendError>>,
}

/// The audit log handle; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    signer: Arc<CheckpointSigner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

/// How long a batch keeps re-chaining after losing races to other replicas before its
/// appenders are told it could not be written. Each lost race means another replica's batch
/// landed, so the log as a whole is making progress; only a writer starved for this long fails.
const CONFLICT_BUDGET: Duration = Duration::from_secs(5);

/// A short, jittered pause after a lost race, so two replicas stop colliding in lockstep.
fn backoff(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let cap_us = 200u64.saturating_mul(u64::from(attempt.min(10)) + 1);
    Duration::from_micros(u64::from(nanos) % cap_us)
}

impl AuditLog {
    /// Opens the log over `sink` and starts its writer task.
    pub async fn open(
        sink: Arc<dyn AuditSink>,
        signer: CheckpointSigner,
        config: LogConfig,
    ) -> Result<Self, SinkError> {
        let head = sink.head().await?;
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let signer = Arc::new(signer);
        let writer = Writer {
            sink,
            signer: Arc::clone(&signer),
            head: head.unwrap_or((0, Hash::GENESIS)),
            last_checkpoint: head.map_or(0, |h| h.0),
            config,
        };
        tokio::spawn(writer.run(rx));
        Ok(Self { tx, signer })
    }

    /// Appends an event; returns once it is durable.
    pub async fn append(&self, event: Event) -> Result<Receipt, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { event, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// The checkpoint signer's key ID and public key.
    pub fn checkpoint_key(&self) -> (&str, ed25519_dalek::VerifyingKey) {
        (self.signer.key_id(), self.signer.verifying_key())
    }
}

struct Writer {
    sink: Arc<dyn AuditSink>,
    signer: Arc<CheckpointSigner>,
    head: (u64, Hash),
    last_checkpoint: u64,
    config: LogConfig,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        let mut ticker = tokio::time::interval(self.config.checkpoint_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                first = rx.recv() => {
                    let Some(first) = first else { break };
                    let mut batch = vec![first];
                    while batch.len() < self.config.max_batch {
                        match rx.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    self.commit(batch).await;
                    if self.head.0 - self.last_checkpoint >= self.config.checkpoint_every_records {
                        self.checkpoint().await;
                    }
                }
                _ = ticker.tick() => {
                    if self.head.0 > self.last_checkpoint {
                        self.checkpoint().await;
                    }
                }
            }
        }
        if self.head.0 > self.last_checkpoint {
            self.checkpoint().await;
        }
    }

    fn chain(&self, events: Vec<Event>) -> Vec<Record> {
        let now = Utc::now();
        let (mut seq, mut prev) = self.head;
        events
            .into_iter()
            .map(|e| {
                seq += 1;
                let r = Record::chain(seq, now, prev, e);
                prev = r.hash;
                r
            })
            .collect()
    }

    async fn commit(&mut self, batch: Vec<Pending>) {
        let (events, replies): (Vec<Event>, Vec<_>) =
            batch.into_iter().map(|p| (p.event, p.reply)).unzip();
        let mut records = self.chain(events);
        let mut outcome = Err(AppendError::Unavailable("conflicting writers".into()));
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        while started.elapsed() < CONFLICT_BUDGET {
            attempt += 1;
            match self.sink.append(&records).await {
                Ok(()) => {
                    outcome = Ok(());
                    break;
                }
                Err(SinkError::Conflict) => match self.sink_head_after(backoff(attempt)).await {
                    Ok(head) => {
                        self.head = head.unwrap_or((0, Hash::GENESIS));
                        records = self.chain(records.into_iter().map(|r| r.event).collect());
                    }
                    Err(e) => {
                        outcome = Err(AppendError::Unavailable(e.to_string()));
                        break;
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, records = records.len(), "audit append failed; refusing the actions it recorded");
                    outcome = Err(AppendError::Unavailable(e.to_string()));
                    // The sink may have been repaired or another replica may have moved on.
                    if let Ok(head) = self.sink.head().await {
                        self.head = head.unwrap_or((0, Hash::GENESIS));
                    }
                    break;
                }
            }
        }
        match outcome {
            Ok(()) => {
                if let Some(last) = records.last() {
                    self.head = (last.seq, last.hash);
                }
                for (r, reply) in records.iter().zip(replies) {
                    let _ = reply.send(Ok(Receipt {
                        seq: r.seq,
                        hash: r.hash,
                    }));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Re-reads the head after a short pause (another replica just appended).
    async fn sink_head_after(&self, pause: Duration) -> Result<Option<(u64, Hash)>, SinkError> {
        tokio::time::sleep(pause).await;
        self.sink.head().await
    }

    async fn checkpoint(&mut self) {
        let cp = self.signer.sign(self.head.0, self.head.1, Utc::now());
        match self.sink.append_checkpoint(&cp).await {
            Ok(()) => self.last_checkpoint = cp.seq,
            Err(e) => {
                tracing::error!(error = %e, seq = cp.seq, "audit checkpoint could not be stored")
            }
        }
    }
}
