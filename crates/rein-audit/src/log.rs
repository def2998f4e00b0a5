//! The appender: group commit over an [`AuditSink`].
//!
//! One writer task owns the chain head. Callers send events over a channel and wait; the writer
//! chains what is queued (up to `max_batch`) and hands the batch to the sink in one atomic,
//! durable write, so N concurrent appenders share one fsync. While that write runs, the writer
//! already chains the events arriving into the next batch (pipelining; see `Writer` for how a
//! failed write re-chains it). Each caller is answered only after the sink confirmed durability
//! of its batch. When the sink fails, every caller in the batch gets an error and the head does
//! not move: nothing is acknowledged that is not stored.
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
        let writer = Writer::new(sink, Arc::clone(&signer), head, config);
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

/// A caller waiting for its record's receipt.
type Reply = oneshot::Sender<Result<Receipt, AppendError>>;

/// Records chained in order and the callers waiting for them (one per record, same order).
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    replies: Vec<Reply>,
}

impl Batch {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The head the batch was chained onto.
    fn base(&self) -> Option<(u64, Hash)> {
        self.records
            .first()
            .map(|r| (r.seq.saturating_sub(1), r.prev_hash))
    }
}

/// What a commit task hands back: the batch's records as last attempted (re-chained if the
/// task lost races to other replicas), the outcome, and the sink's head as the task last knew it
/// (`None`: unknown, e.g. the sink could not be read after a failure).
struct Committed {
    records: Vec<Record>,
    outcome: Result<(), AppendError>,
    head: Option<(u64, Hash)>,
}

/// Chains `events` onto `head`, all stamped `now`.
fn chain(head: (u64, Hash), events: impl IntoIterator<Item = Event>) -> Vec<Record> {
    let now = Utc::now();
    let (mut seq, mut prev) = head;
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

/// One durable write of a chained batch, run as its own task so that the writer can chain the
/// next batch meanwhile. A lost race ([`SinkError::Conflict`]) re-reads the head and re-chains
/// the batch onto it, within [`CONFLICT_BUDGET`]; any other error ends the attempt.
async fn commit(sink: Arc<dyn AuditSink>, mut records: Vec<Record>) -> Committed {
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    while started.elapsed() < CONFLICT_BUDGET {
        attempt += 1;
        match sink.append(&records).await {
            Ok(()) => {
                let head = records.last().map(|r| (r.seq, r.hash));
                return Committed {
                    records,
                    outcome: Ok(()),
                    head,
                };
            }
            Err(SinkError::Conflict) => {
                tokio::time::sleep(backoff(attempt)).await;
                match sink.head().await {
                    Ok(head) => {
                        let head = head.unwrap_or((0, Hash::GENESIS));
                        records = chain(head, records.into_iter().map(|r| r.event));
                    }
                    Err(e) => {
                        return Committed {
                            records,
                            outcome: Err(AppendError::Unavailable(e.to_string())),
                            head: None,
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "audit append failed; refusing the actions it recorded");
                // The sink may have been repaired, or another replica may have moved on.
                let head = sink
                    .head()
                    .await
                    .ok()
                    .map(|h| h.unwrap_or((0, Hash::GENESIS)));
                return Committed {
                    records,
                    outcome: Err(AppendError::Unavailable(e.to_string())),
                    head,
                };
            }
        }
    }
    Committed {
        records,
        outcome: Err(AppendError::Unavailable("conflicting writers".into())),
        head: None,
    }
}

/// The single owner of the chain head.
///
/// Pipelined: while batch N is being committed (its own task), the records arriving meanwhile
/// are chained at once into batch N+1, onto N's last hash, so chaining overlaps the commit.
/// That chain is speculative until N's outcome is known. When N committed, N+1 follows the head
/// that landed and is written next. When N failed (or landed re-chained after a lost race), N+1
/// was chained onto a hash that is not the head, so it is re-chained onto the head the sink
/// reports before it is written: a batch is only ever written onto the head the writer knows
/// landed, and the sink checks that again inside its transaction. Only N's callers see N's
/// failure; each caller is answered exactly once, after its own batch's outcome.
///
/// Sink calls never overlap: one append at a time, checkpoints only between appends.
struct Writer {
    sink: Arc<dyn AuditSink>,
    signer: Arc<CheckpointSigner>,
    /// The head as far as the writer knows it landed.
    head: (u64, Hash),
    /// The last record chained so far (in flight or in `next`): where the next record goes.
    tip: (u64, Hash),
    /// Chained, waiting for the commit in flight to finish.
    next: Batch,
    last_checkpoint: u64,
    checkpoint_due: bool,
    config: LogConfig,
}

impl Writer {
    fn new(
        sink: Arc<dyn AuditSink>,
        signer: Arc<CheckpointSigner>,
        head: Option<(u64, Hash)>,
        config: LogConfig,
    ) -> Self {
        let start = head.unwrap_or((0, Hash::GENESIS));
        Self {
            sink,
            signer,
            head: start,
            tip: start,
            next: Batch::default(),
            last_checkpoint: start.0,
            checkpoint_due: false,
            config,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        let mut ticker = tokio::time::interval(self.config.checkpoint_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_batch = self.config.max_batch.max(1);
        let mut in_flight: Option<(tokio::task::JoinHandle<Committed>, Vec<Reply>)> = None;
        let mut open = true;
        loop {
            if in_flight.is_none() && !self.next.is_empty() {
                let batch = std::mem::take(&mut self.next);
                let task = tokio::spawn(commit(Arc::clone(&self.sink), batch.records));
                in_flight = Some((task, batch.replies));
            }
            if !open && in_flight.is_none() {
                break;
            }
            tokio::select! {
                done = async {
                    match in_flight.as_mut() {
                        Some((task, _)) => task.await,
                        None => std::future::pending().await,
                    }
                }, if in_flight.is_some() => {
                    let replies = in_flight.take().map(|(_, r)| r).unwrap_or_default();
                    let committed = match done {
                        Ok(committed) => committed,
                        // The task died (it does not panic; this is defence): nothing is known
                        // about the batch, so fail it and ask the sink where the head is.
                        Err(e) => Committed {
                            records: Vec::new(),
                            outcome: Err(AppendError::Unavailable(format!("audit commit task failed: {e}"))),
                            head: self.sink.head().await.ok().map(|h| h.unwrap_or((0, Hash::GENESIS))),
                        },
                    };
                    self.finish(committed, replies);
                    if self.checkpoint_due
                        || self.head.0.saturating_sub(self.last_checkpoint) >= self.config.checkpoint_every_records
                    {
                        self.checkpoint().await;
                    }
                }
                first = rx.recv(), if open && self.next.len() < max_batch => {
                    match first {
                        Some(first) => {
                            let mut events = vec![first];
                            while self.next.len() + events.len() < max_batch {
                                match rx.try_recv() {
                                    Ok(p) => events.push(p),
                                    Err(_) => break,
                                }
                            }
                            self.push(events);
                        }
                        None => open = false,
                    }
                }
                _ = ticker.tick() => {
                    if in_flight.is_some() {
                        self.checkpoint_due = true;
                    } else {
                        self.checkpoint().await;
                    }
                }
            }
        }
        self.checkpoint().await;
    }

    /// Chains arriving events onto the tip, into the next batch.
    fn push(&mut self, pending: Vec<Pending>) {
        let (events, replies): (Vec<Event>, Vec<Reply>) =
            pending.into_iter().map(|p| (p.event, p.reply)).unzip();
        let records = chain(self.tip, events);
        if let Some(last) = records.last() {
            self.tip = (last.seq, last.hash);
        }
        self.next.records.extend(records);
        self.next.replies.extend(replies);
    }

    /// Answers a finished batch's callers, moves the head, and re-chains the next batch if it
    /// no longer follows the head.
    fn finish(&mut self, committed: Committed, replies: Vec<Reply>) {
        match committed.outcome {
            Ok(()) => {
                for (r, reply) in committed.records.iter().zip(replies) {
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
        if let Some(head) = committed.head {
            self.head = head;
        }
        if self.next.base().is_some_and(|base| base != self.head) {
            let records = std::mem::take(&mut self.next.records);
            self.next.records = chain(self.head, records.into_iter().map(|r| r.event));
        }
        self.tip = self
            .next
            .records
            .last()
            .map_or(self.head, |r| (r.seq, r.hash));
    }

    /// Signs and stores a checkpoint of the head, if it moved since the last one.
    async fn checkpoint(&mut self) {
        self.checkpoint_due = false;
        if self.head.0 <= self.last_checkpoint {
            return;
        }
        let cp = self.signer.sign(self.head.0, self.head.1, Utc::now());
        match self.sink.append_checkpoint(&cp).await {
            Ok(()) => self.last_checkpoint = cp.seq,
            Err(e) => {
                tracing::error!(error = %e, seq = cp.seq, "audit checkpoint could not be stored")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Actor, ActorKind, EventType};

    /// A sink the writer under test never calls: these tests drive its state machine directly.
    struct Unused;

    #[async_trait]
    impl AuditSink for Unused {
        async fn head(&self) -> Result<Option<(u64, Hash)>, SinkError> {
            Err(SinkError::Unavailable("unused".into()))
        }
        async fn append(&self, _: &[Record]) -> Result<(), SinkError> {
            Err(SinkError::Unavailable("unused".into()))
        }
        async fn append_checkpoint(&self, _: &Checkpoint) -> Result<(), SinkError> {
            Err(SinkError::Unavailable("unused".into()))
        }
    }

    fn writer(head: Option<(u64, Hash)>) -> Writer {
        let signer = CheckpointSigner::new("k", ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        Writer::new(
            Arc::new(Unused),
            Arc::new(signer),
            head,
            LogConfig::default(),
        )
    }

    type Answer = oneshot::Receiver<Result<Receipt, AppendError>>;

    fn pending(n: usize) -> (Vec<Pending>, Vec<Answer>) {
        (0..n)
            .map(|i| {
                let (reply, answer) = oneshot::channel();
                let event = Event::new(
                    EventType::Decision,
                    Actor {
                        kind: ActorKind::User,
                        id: format!("u{i}"),
                    },
                    "success",
                );
                (Pending { event, reply }, answer)
            })
            .unzip()
    }

    /// What the run loop does when it starts a commit: the next batch goes in flight.
    fn start_commit(w: &mut Writer) -> Batch {
        std::mem::take(&mut w.next)
    }

    /// Whether `records` follow `head` as one chain.
    fn follows(head: (u64, Hash), records: &[Record]) -> bool {
        let mut at = head;
        records.iter().all(|r| {
            let ok = r.seq == at.0 + 1 && r.prev_hash == at.1 && r.recompute_hash() == r.hash;
            at = (r.seq, r.hash);
            ok
        })
    }

    #[test]
    fn next_batch_is_chained_onto_the_batch_in_flight() {
        let mut w = writer(None);
        let (first, _answers) = pending(2);
        w.push(first);
        let in_flight = start_commit(&mut w);
        let (second, _answers) = pending(3);
        w.push(second);
        assert!(follows((0, Hash::GENESIS), &in_flight.records));
        let tail = in_flight.records.last().map(|r| (r.seq, r.hash));
        assert_eq!(w.next.base(), tail);
        assert_eq!(w.tip.0, 5);
    }

    #[test]
    fn after_a_commit_the_next_batch_keeps_its_chain_and_callers_get_receipts() {
        let mut w = writer(None);
        let (first, mut answers) = pending(2);
        w.push(first);
        let in_flight = start_commit(&mut w);
        let (second, _) = pending(3);
        w.push(second);
        let speculative = w.next.records.clone();
        let head = in_flight.records.last().map(|r| (r.seq, r.hash));
        w.finish(
            Committed {
                records: in_flight.records.clone(),
                outcome: Ok(()),
                head,
            },
            in_flight.replies,
        );
        assert_eq!(Some(w.head), head);
        assert_eq!(w.next.records, speculative, "nothing re-chained");
        for (answer, record) in answers.iter_mut().zip(&in_flight.records) {
            assert_eq!(
                answer.try_recv().ok(),
                Some(Ok(Receipt {
                    seq: record.seq,
                    hash: record.hash
                }))
            );
        }
    }

    /// Batch N failed: N+1 was chained onto a hash that never landed, so it is re-chained onto
    /// the head before it is written, and only N's callers are told of the failure.
    #[test]
    fn when_the_batch_in_flight_fails_the_next_is_rechained_onto_the_head() {
        for known_head in [true, false] {
            let stored = Record::chain(
                7,
                Utc::now(),
                Hash([3; 32]),
                Event::new(
                    EventType::Decision,
                    Actor {
                        kind: ActorKind::Rein,
                        id: "rein".into(),
                    },
                    "success",
                ),
            );
            let head = (stored.seq, stored.hash);
            let mut w = writer(Some(head));
            let (first, mut failed) = pending(2);
            w.push(first);
            let in_flight = start_commit(&mut w);
            let (second, mut waiting) = pending(3);
            w.push(second);
            assert_ne!(w.next.base(), Some(head));
            w.finish(
                Committed {
                    records: in_flight.records,
                    outcome: Err(AppendError::Unavailable("disk full".into())),
                    head: known_head.then_some(head),
                },
                in_flight.replies,
            );
            assert_eq!(w.head, head);
            assert_eq!(w.next.len(), 3);
            assert!(follows(head, &w.next.records), "re-chained onto the head");
            assert_eq!(
                w.tip,
                w.next.records.last().map_or(head, |r| (r.seq, r.hash))
            );
            for answer in &mut failed {
                assert!(matches!(
                    answer.try_recv(),
                    Ok(Err(AppendError::Unavailable(_)))
                ));
            }
            for answer in &mut waiting {
                assert!(answer.try_recv().is_err(), "not answered yet");
            }
        }
    }

    /// Batch N landed, but re-chained after another replica's records: N+1 follows where N
    /// actually landed.
    #[test]
    fn when_the_batch_in_flight_landed_elsewhere_the_next_follows_it() {
        let mut w = writer(None);
        let (first, _) = pending(2);
        w.push(first);
        let in_flight = start_commit(&mut w);
        let (second, _) = pending(3);
        w.push(second);
        // Another replica wrote records 1–4; N was re-chained and landed as 5–6.
        let other = chain(
            (0, Hash::GENESIS),
            pending(4).0.into_iter().map(|p| p.event),
        );
        let other_head = other.last().map_or((0, Hash::GENESIS), |r| (r.seq, r.hash));
        let landed = chain(other_head, in_flight.records.into_iter().map(|r| r.event));
        let head = landed.last().map(|r| (r.seq, r.hash));
        w.finish(
            Committed {
                records: landed,
                outcome: Ok(()),
                head,
            },
            in_flight.replies,
        );
        assert_eq!(Some(w.head), head);
        assert!(follows(w.head, &w.next.records));
        assert_eq!(w.next.records.first().map(|r| r.seq), Some(7));
    }

    #[test]
    fn an_empty_next_batch_leaves_the_tip_at_the_head() {
        let mut w = writer(None);
        let (first, _) = pending(1);
        w.push(first);
        let in_flight = start_commit(&mut w);
        w.finish(
            Committed {
                records: in_flight.records,
                outcome: Err(AppendError::Unavailable("down".into())),
                head: None,
            },
            in_flight.replies,
        );
        assert_eq!(w.head, (0, Hash::GENESIS));
        assert_eq!(w.tip, (0, Hash::GENESIS));
        let (again, _) = pending(1);
        w.push(again);
        assert!(follows((0, Hash::GENESIS), &w.next.records));
    }
}
