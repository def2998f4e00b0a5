//! Audit log: durable appends through the group-commit writer (`rein_audit::AuditLog`) on both
//! stores, and verification speed on 1,000,000 records.
//!
//! ```sh
//! cargo bench -p rein-store --bench audit
//! ```
//!
//! A custom harness that prints its figures and is bounded in time (about eight minutes on a
//! 2-core VM, most of it storing 1,000,000 records in SQLite for the last row):
//!
//! - **appends**: 1, 8, 64 and 512 writer tasks each append decision events in a loop for
//!   `REIN_BENCH_SECS` seconds (default 3), three runs per row; figures are durable appends per
//!   second (every append returned only after its batch committed: SQLite `synchronous=FULL`,
//!   PostgreSQL a normal commit). A counting wrapper around the store reports the mean batch size
//!   and the mean time of one sink append (the transaction, including the commit's fsync).
//!   After each run, the records the store's indexer had not indexed yet (agent, task, system and
//!   actor keys are indexed after the commit) and the time `audit_index` took to finish them.
//!   Diagnostic rows "no indexes" repeat 64 and 512 writers with the synchronous filter indexes of
//!   `audit_records` dropped, to show what they cost on the durable path.
//! - **verification**: `REIN_BENCH_RECORDS` records (default 1,000,000) built in memory with
//!   `Record::chain`, then verified with `Verifier`; same-run baselines: SHA-256 alone over each
//!   record's precomputed canonical bytes, canonical encoding + SHA-256 (`recompute_hash`), and
//!   JSON decoding alone. Then the same records stored in SQLite and verified from the database
//!   through `audit_scan` (decode included).
//!
//! `REIN_BENCH_ONLY=append` or `REIN_BENCH_ONLY=verify` runs one half.
//!
//! The PostgreSQL rows need a server at `REIN_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); without one they are skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use rein_audit::{
    Actor, ActorKind, AuditLog, AuditSink, Checkpoint, CheckpointSigner, Event, EventType, Hash,
    LogConfig, Record, SinkError, Verifier,
};
use rein_store::{AuditStore, PgStore, SqliteStore, Store};
use sha2::{Digest, Sha256};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::runtime::Runtime;

/// Concurrent writer tasks per row: the SPEC's 1, 8 and 64, and 512 to show where group commit
/// goes with more appends in flight (each writer has one append outstanding, so a batch holds at
/// most as many records as there are writers).
const WRITERS: [usize; 4] = [1, 8, 64, 512];
const RUNS: usize = 3;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn postgres_url() -> String {
    std::env::var("REIN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A decision event with the fields a real one carries (about 600 bytes of JSON as a record).
fn decision(i: u64) -> Event {
    let agent = format!(
        "spiffe://rein.local/agent/team-{}/agent-{}/prod",
        i % 20,
        i % 1000
    );
    let mut e = Event::new(
        EventType::Decision,
        Actor {
            kind: ActorKind::Agent,
            id: agent.clone(),
        },
        "success",
    );
    e.agent = Some(agent);
    e.task_id = Some(format!("task-{}", i % 10_000));
    e.system = Some(format!("system-{}", i % 50));
    e.action = Some("query".to_owned());
    e.decision = Some("allow".to_owned());
    e.determined_by = vec![format!("grant:grt_{i:032x}"), "policy:default".to_owned()];
    e.policy_version = Some("sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f0".to_owned());
    e.approvers = vec!["alice".to_owned(), "bob".to_owned()];
    e.revokers = vec!["team:secops".to_owned()];
    e.argument_digest =
        Some("5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592".to_owned());
    e.latency_us = Some(37);
    e.details.insert("risk".to_owned(), "20".to_owned());
    e
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// `12,345` style.
fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Delegates to a store and counts batches, records and time spent in `append`.
struct Counting {
    inner: Arc<dyn Store>,
    batches: AtomicU64,
    records: AtomicU64,
    append_nanos: AtomicU64,
}

impl Counting {
    fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            batches: AtomicU64::new(0),
            records: AtomicU64::new(0),
            append_nanos: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl AuditSink for Counting {
    async fn head(&self) -> Result<Option<(u64, Hash)>, SinkError> {
        self.inner.head().await
    }
    async fn append(&self, records: &[Record]) -> Result<(), SinkError> {
        let start = Instant::now();
        let result = self.inner.append(records).await;
        self.append_nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        result
    }
    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        self.inner.append_checkpoint(checkpoint).await
    }
}

struct AppendRun {
    per_sec: f64,
    mean_batch: f64,
    mean_append: Duration,
    /// Records the store's indexer had not indexed yet when the run ended.
    unindexed: u64,
    /// The time `audit_index` then took to index them.
    catch_up: Duration,
}

/// `writers` tasks append in a loop for `secs`; every append is durable when it returns.
async fn append_run(store: Arc<dyn Store>, writers: usize, secs: Duration) -> AppendRun {
    let sink = Counting::new(store.clone());
    let signer = CheckpointSigner::new("bench", SigningKey::from_bytes(&[1; 32]));
    let log = AuditLog::open(sink.clone(), signer, LogConfig::default())
        .await
        .unwrap();
    let start = Instant::now();
    let deadline = start + secs;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                log.append(decision(w as u64 * 1_000_000 + n))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let head = store.head().await.unwrap().map_or(0, |(seq, _)| seq);
    let unindexed = head - store.audit_index(0).await.unwrap();
    let caught_up = Instant::now();
    while store.audit_index(1_000_000).await.unwrap() < head {}
    let catch_up = caught_up.elapsed();
    let batches = sink.batches.load(Ordering::Relaxed).max(1);
    AppendRun {
        per_sec: rate(total, elapsed),
        mean_batch: sink.records.load(Ordering::Relaxed) as f64 / batches as f64,
        mean_append: Duration::from_nanos(sink.append_nanos.load(Ordering::Relaxed) / batches),
        unindexed,
        catch_up,
    }
}

async fn append_rows(
    name: &str,
    writer_counts: &[usize],
    open: impl AsyncFn() -> Arc<dyn Store>,
    secs: Duration,
) {
    for &writers in writer_counts {
        let store = open().await;
        let runs: Vec<AppendRun> = {
            let mut runs = Vec::new();
            for _ in 0..RUNS {
                runs.push(append_run(store.clone(), writers, secs).await);
            }
            runs
        };
        let rates: Vec<f64> = runs.iter().map(|r| r.per_sec).collect();
        let (lo, hi) = (
            rates.iter().copied().fold(f64::INFINITY, f64::min),
            rates.iter().copied().fold(0.0, f64::max),
        );
        let mid = runs
            .iter()
            .find(|r| r.per_sec == median(rates.clone()))
            .unwrap();
        println!(
            "append  {name:<22} writers={writers:<3} {:>9} appends/s [{}–{}]  mean batch {:.1}  mean sink append {:.2?}  unindexed at end {} (indexed in {:.2?})",
            thousands(mid.per_sec),
            thousands(lo),
            thousands(hi),
            mid.mean_batch,
            mid.mean_append,
            mid.unindexed,
            mid.catch_up,
        );
    }
}

fn build_chain(n: u64) -> Vec<Record> {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut prev = Hash::GENESIS;
    (1..=n)
        .map(|seq| {
            let r = Record::chain(
                seq,
                start + chrono::Duration::microseconds(seq as i64 * 100),
                prev,
                decision(seq),
            );
            prev = r.hash;
            r
        })
        .collect()
}

/// Times `f` `RUNS` times over `n` items; prints the median rate.
fn timed(label: &str, n: u64, mut f: impl FnMut()) {
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        f();
        rates.push(rate(n, start.elapsed()));
    }
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().copied().fold(0.0, f64::max);
    println!(
        "verify  {label:<52} {:>10} records/s [{}–{}]",
        thousands(median(rates)),
        thousands(lo),
        thousands(hi)
    );
}

fn verify_in_memory(records: &[Record]) {
    let n = records.len() as u64;
    let canonical: Vec<Vec<u8>> = records
        .iter()
        .map(|r| {
            let mut bytes = b"rein.audit.v1\0".to_vec();
            bytes.extend(r.canonical_bytes());
            bytes
        })
        .collect();
    let mean_len = canonical.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
    let docs: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let mean_doc = docs.iter().map(String::len).sum::<usize>() as f64 / n as f64;
    println!(
        "verify  {n} records, canonical bytes {mean_len:.0} B/record, stored JSON {mean_doc:.0} B/record"
    );

    timed(
        "baseline: SHA-256 of precomputed canonical bytes",
        n,
        || {
            let mut acc = 0u8;
            for bytes in &canonical {
                acc ^= Sha256::digest(bytes)[0];
            }
            std::hint::black_box(acc);
        },
    );
    timed(
        "baseline: canonical encode + SHA-256 (recompute_hash)",
        n,
        || {
            let mut acc = 0u8;
            for r in records {
                acc ^= r.recompute_hash().0[0];
            }
            std::hint::black_box(acc);
        },
    );
    timed("baseline: JSON decode of the stored documents", n, || {
        for doc in &docs {
            std::hint::black_box(serde_json::from_str::<Record>(doc).unwrap());
        }
    });
    timed("Verifier::push over records in memory", n, || {
        let mut v = Verifier::new(&HashMap::new(), &[]);
        for r in records {
            v.push(r);
        }
        assert!(v.finish().ok());
    });
    timed(
        "Verifier::push_all over records in memory (hashes on every core)",
        n,
        || {
            let mut v = Verifier::new(&HashMap::new(), &[]);
            v.push_all(records);
            assert!(v.finish().ok());
        },
    );
    timed("JSON decode + Verifier::push (an export file)", n, || {
        let mut v = Verifier::new(&HashMap::new(), &[]);
        for doc in &docs {
            v.push(&serde_json::from_str::<Record>(doc).unwrap());
        }
        assert!(v.finish().ok());
    });
}

async fn verify_from_sqlite(records: &[Record]) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("rein.db"))
        .await
        .unwrap();
    let start = Instant::now();
    for batch in records.chunks(2048) {
        store.append(batch).await.unwrap();
    }
    let n = records.len() as u64;
    println!(
        "store   sqlite     {n} records in batches of 2048 via AuditSink::append: {} records/s",
        thousands(rate(n, start.elapsed()))
    );
    const PAGE: u32 = 10_000;
    let mut rates = Vec::new();
    let mut scan_rates = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut after = 0;
        let mut rows = 0u64;
        loop {
            let page = store.audit_scan(after, PAGE).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            rows += page.len() as u64;
            std::hint::black_box(page);
        }
        assert_eq!(rows, n);
        scan_rates.push(rate(n, start.elapsed()));

        let start = Instant::now();
        let mut v = Verifier::new(&HashMap::new(), &[]);
        let mut after = 0;
        loop {
            let page = store.audit_scan(after, PAGE).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            for row in &page {
                v.push(row.record.as_ref().unwrap());
            }
        }
        let report = v.finish();
        assert!(report.ok() && report.records == n, "{report:?}");
        rates.push(rate(n, start.elapsed()));
    }
    println!(
        "verify  {:<52} {:>10} records/s",
        "audit_scan alone (read + JSON decode), SQLite",
        thousands(median(scan_rates))
    );
    println!(
        "verify  {:<52} {:>10} records/s",
        "audit_scan + Verifier::push, SQLite",
        thousands(median(rates))
    );
}

fn main() {
    let rt = Runtime::new().unwrap();
    let secs = Duration::from_secs_f64(env_or("REIN_BENCH_SECS", 3.0));
    let records_n: u64 = env_or("REIN_BENCH_RECORDS", 1_000_000);
    let only = std::env::var("REIN_BENCH_ONLY").unwrap_or_default();

    if only != "verify" {
        rt.block_on(appends(secs));
    }
    if only != "append" {
        let start = Instant::now();
        let records = build_chain(records_n);
        println!(
            "verify  built {records_n} records with Record::chain in {:.2?} ({} records/s)",
            start.elapsed(),
            thousands(rate(records_n, start.elapsed()))
        );
        verify_in_memory(&records);
        rt.block_on(verify_from_sqlite(&records));
    }
}

/// Same-run baseline for durable appends: the median time of writing `size` bytes at the end of
/// a file and `fdatasync`ing it, in the directory the SQLite rows use.
fn fdatasync_baseline(dir: &std::path::Path, size: usize) -> Duration {
    use std::io::Write as _;
    let mut file = std::fs::File::create(dir.join("fsync-baseline")).unwrap();
    let buf = vec![0x5a_u8; size];
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            let start = Instant::now();
            file.write_all(&buf).unwrap();
            file.sync_data().unwrap();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Duration::from_secs_f64(times[times.len() / 2])
}

/// The audit table's synchronous filter indexes, dropped for the diagnostic rows (the agent,
/// task, system and actor ones of older releases are `IF EXISTS`: those keys are now indexed
/// after the commit, by the store's indexer, which the diagnostic rows keep).
const FILTER_INDEXES: [&str; 7] = [
    "audit_records_by_time",
    "audit_records_by_type",
    "audit_records_by_other_actor",
    "audit_records_by_agent",
    "audit_records_by_task",
    "audit_records_by_system",
    "audit_records_by_subject",
];

async fn appends(secs: Duration) {
    let dir = tempfile::tempdir().unwrap();
    for size in [4096, 256 * 1024, 1024 * 1024] {
        println!(
            "append  baseline: write {:>4} KiB + fdatasync, median {:.2?}",
            size / 1024,
            fdatasync_baseline(dir.path(), size)
        );
    }
    let counter = AtomicU64::new(0);
    // A fresh SQLite store, without its filter indexes when `bare` (diagnostic rows: what the
    // indexes cost on the durable path).
    let sqlite = async |bare: bool| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let path = dir.path().join(format!("rein-{n}.db"));
        let store = SqliteStore::open(&path).await.unwrap();
        if bare {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(SqliteStore::audit_path(&path))
                .connect()
                .await
                .unwrap();
            for index in FILTER_INDEXES {
                sqlx::query(&format!("DROP INDEX IF EXISTS {index}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
        Arc::new(store) as Arc<dyn Store>
    };
    append_rows("sqlite", &WRITERS, async || sqlite(false).await, secs).await;
    append_rows(
        "sqlite, no indexes",
        &WRITERS[2..],
        async || sqlite(true).await,
        secs,
    )
    .await;

    let url = postgres_url();
    let Ok(mut conn) = PgConnection::connect(&url).await else {
        println!("append  postgresql skipped: unreachable");
        return;
    };
    let schema = format!("rein_bench_audit_{}", std::process::id());
    let drop_schema = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let postgres = async |bare: bool| {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::query(&drop_schema).execute(&mut conn).await.unwrap();
        let store = PgStore::connect_with_schema(&url, &schema).await.unwrap();
        if bare {
            for index in FILTER_INDEXES {
                sqlx::query(&format!("DROP INDEX IF EXISTS \"{schema}\".{index}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
        Arc::new(store) as Arc<dyn Store>
    };
    append_rows("postgresql", &WRITERS, async || postgres(false).await, secs).await;
    append_rows(
        "postgresql, no indexes",
        &WRITERS[2..],
        async || postgres(true).await,
        secs,
    )
    .await;
    sqlx::query(&drop_schema).execute(&mut conn).await.unwrap();
}
