//! The audit log's storage (the `AuditSink` the group-commit writer drives, and the `AuditStore`
//! reads) and the signing keys, on both adapters.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use rein_audit::{
    Actor, ActorKind, AppendError, AuditLog, AuditSink, CheckpointSigner, Event, EventType,
    Finding, Hash, LogConfig, Record, Report, SinkError, Verifier,
};
use rein_keys::{KeyPurpose, MasterKey, SealedKey};
use rein_store::{AuditFilter, AuditRow, AuditStore, SqliteStore, Store, StoreError};

use sqlx::{Connection, PgConnection};

use crate::{at, Backend, Harness};

conformance!(
    audit_append_reads_back_and_moves_the_head,
    audit_append_not_at_the_head_is_conflict_and_stores_nothing,
    audit_batch_that_is_not_one_chain_is_refused_whole,
    audit_batch_failing_mid_insert_stores_nothing,
    audit_filters_match_each_field_and_the_time_range,
    audit_pages_after_seq_cover_every_match_once,
    audit_latest_returns_the_last_matches_ascending,
    audit_actor_filter_merges_self_and_other_records_in_order,
    audit_checkpoints_round_trip,
    audit_scan_reports_damaged_documents_in_place,
    audit_log_records_survive_reopen_and_verify,
    audit_filters_agree_on_both_sides_of_the_index_watermark,
    audit_pages_stay_exact_while_the_index_advances,
    audit_indexer_rerun_after_a_crash_is_idempotent,
    audit_index_catches_up_after_many_appends,
    signing_keys_insert_list_update,
);

// === fixtures ===

const AGENT_A: &str = "spiffe://rein.local/agent/payments/invoice-bot/prod";
const AGENT_B: &str = "spiffe://rein.local/agent/crm/sync-bot/prod";

fn actor(kind: ActorKind, id: &str) -> Actor {
    Actor {
        kind,
        id: id.to_owned(),
    }
}

/// A decision by agent `A` or `B` (by `i`'s parity) on a task, with the fields a real one has.
fn decision(i: u64) -> Event {
    let agent = if i % 2 == 1 { AGENT_A } else { AGENT_B };
    let mut e = Event::new(
        EventType::Decision,
        actor(ActorKind::Agent, agent),
        "success",
    );
    e.agent = Some(agent.to_owned());
    e.task_id = Some(format!("task-{}", i % 5));
    e.system = Some("billing-db".to_owned());
    e.action = Some("query".to_owned());
    e.decision = Some("allow".to_owned());
    e.determined_by = vec![format!("grant:{i}")];
    e.policy_version = Some("sha256:00ff".to_owned());
    e.latency_us = Some(37);
    e
}

/// Records chaining `events` onto `head`, each at its own time.
fn chain_onto(head: Option<(u64, Hash)>, events: Vec<(Event, DateTime<Utc>)>) -> Vec<Record> {
    let (mut seq, mut prev) = head.unwrap_or((0, Hash::GENESIS));
    events
        .into_iter()
        .map(|(event, time)| {
            seq += 1;
            let r = Record::chain(seq, time, prev, event);
            prev = r.hash;
            r
        })
        .collect()
}

/// `n` decisions chained onto `head`, one millisecond apart.
fn decisions(head: Option<(u64, Hash)>, n: u64) -> Vec<Record> {
    let first = head.map_or(1, |h| h.0 + 1);
    chain_onto(
        head,
        (first..first + n)
            .map(|i| (decision(i), at(i as i64)))
            .collect(),
    )
}

fn head_of(records: &[Record]) -> Option<(u64, Hash)> {
    records.last().map(|r| (r.seq, r.hash))
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

/// Every stored row, through `audit_scan` pages of `page` rows.
async fn scan_all(store: &dyn Store, page: u32) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let batch = store.audit_scan(after, page).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.seq;
        rows.extend(batch);
    }
    rows
}

/// Verifies the stored chain against the stored checkpoints, as `rein audit verify` would.
async fn verify_stored(
    store: &dyn Store,
    keys: &HashMap<String, ed25519_dalek::VerifyingKey>,
) -> Report {
    let checkpoints = store.audit_checkpoints().await.unwrap();
    let mut verifier = Verifier::new(keys, &checkpoints);
    for (i, row) in scan_all(store, 1000).await.into_iter().enumerate() {
        match &row.record {
            Ok(record) => {
                if !verifier.push(record) {
                    break;
                }
            }
            Err(reason) => verifier.malformed(i as u64 + 1, reason.clone()),
        }
    }
    verifier.finish()
}

fn signer(id: &str, seed: u8) -> CheckpointSigner {
    CheckpointSigner::new(id, SigningKey::from_bytes(&[seed; 32]))
}

fn keys_of(signers: &[&CheckpointSigner]) -> HashMap<String, ed25519_dalek::VerifyingKey> {
    signers
        .iter()
        .map(|s| (s.key_id().to_owned(), s.verifying_key()))
        .collect()
}

async fn count(store: &dyn Store) -> usize {
    scan_all(store, 10_000).await.len()
}

// === tests ===

async fn audit_append_reads_back_and_moves_the_head(h: &mut Harness) {
    let s = h.store.as_ref();
    assert_eq!(s.head().await.unwrap(), None);
    assert_eq!(s.audit_record(1).await.unwrap(), None);
    s.append(&[]).await.unwrap();
    assert_eq!(s.head().await.unwrap(), None, "an empty batch is a no-op");

    let first = decisions(None, 3);
    s.append(&first).await.unwrap();
    assert_eq!(s.head().await.unwrap(), head_of(&first));
    let second = decisions(head_of(&first), 2);
    s.append(&second).await.unwrap();
    assert_eq!(s.head().await.unwrap(), head_of(&second));

    let all: Vec<Record> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        s.audit_records(&AuditFilter::default(), None, 100)
            .await
            .unwrap(),
        all
    );
    assert_eq!(s.audit_record(4).await.unwrap().as_ref(), Some(&all[3]));
    assert_eq!(s.audit_record(6).await.unwrap(), None);
    assert_eq!(s.audit_record(u64::MAX).await.unwrap(), None);
    let rows = s.audit_scan(0, 100).await.unwrap();
    assert_eq!(
        rows,
        all.iter()
            .map(|r| AuditRow {
                seq: r.seq,
                record: Ok(r.clone()),
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(
            &s.audit_records(&AuditFilter::default(), Some(2), 2)
                .await
                .unwrap()
        ),
        [3, 4]
    );
    assert!(s
        .audit_records(&AuditFilter::default(), None, 0)
        .await
        .unwrap()
        .is_empty());

    // What is stored is exactly what was appended: it verifies, and survives a restart.
    h.reopen().await;
    assert_eq!(h.store.head().await.unwrap(), head_of(&second));
    let report = verify_stored(h.store.as_ref(), &HashMap::new()).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 5);
}

async fn audit_append_not_at_the_head_is_conflict_and_stores_nothing(h: &mut Harness) {
    let s = h.store.as_ref();
    // On an empty log the first record must be seq 1.
    let from_two = chain_onto(Some((1, Hash::GENESIS)), vec![(decision(2), at(2))]);
    assert_eq!(s.append(&from_two).await, Err(SinkError::Conflict));
    assert_eq!(s.head().await.unwrap(), None);

    let stored = decisions(None, 3);
    s.append(&stored).await.unwrap();
    let head = head_of(&stored);

    // Another replica appended 3 already: re-appending at 3 (a duplicate) conflicts.
    let at_three = decisions(head_of(&stored[..2]), 2);
    assert_eq!(s.append(&at_three).await, Err(SinkError::Conflict));
    // A batch that skips 4 would leave a gap.
    let from_five = chain_onto(Some((4, stored[2].hash)), vec![(decision(5), at(5))]);
    assert_eq!(s.append(&from_five).await, Err(SinkError::Conflict));
    // Seq 4, but chained onto another head than the stored one.
    let wrong_link = chain_onto(Some((3, Hash([7; 32]))), vec![(decision(4), at(4))]);
    assert_eq!(s.append(&wrong_link).await, Err(SinkError::Conflict));

    assert_eq!(s.head().await.unwrap(), head);
    assert_eq!(count(s).await, 3);
    assert_eq!(
        s.audit_records(&AuditFilter::default(), None, 10)
            .await
            .unwrap(),
        stored
    );
    // The right batch still goes in.
    s.append(&decisions(head, 1)).await.unwrap();
    assert_eq!(count(s).await, 4);
}

async fn audit_batch_that_is_not_one_chain_is_refused_whole(h: &mut Harness) {
    let s = h.store.as_ref();
    let stored = decisions(None, 2);
    s.append(&stored).await.unwrap();

    // A duplicate sequence number inside the batch.
    let mut batch = decisions(head_of(&stored), 3);
    batch.insert(2, batch[1].clone());
    let err = s.append(&batch).await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err:?}");
    // A record that does not link to the one before it.
    let mut batch = decisions(head_of(&stored), 3);
    batch[2] = Record::chain(5, at(5), Hash([9; 32]), decision(5));
    let err = s.append(&batch).await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err:?}");
    // A gap inside the batch.
    let mut batch = decisions(head_of(&stored), 3);
    batch.remove(1);
    let err = s.append(&batch).await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err:?}");

    assert_eq!(s.head().await.unwrap(), head_of(&stored));
    assert_eq!(count(s).await, 2);
}

/// A batch larger than one statement's bind limit (7,000 rows × 10 binds exceeds both SQLite's
/// 32,766 and PostgreSQL's 65,535) is written in several statements in one transaction: when an
/// insert near its end fails, the statements before it are rolled back too.
async fn audit_batch_failing_mid_insert_stores_nothing(h: &mut Harness) {
    let stored = decisions(None, 3);
    h.store.append(&stored).await.unwrap();
    let batch = decisions(head_of(&stored), 7_000);

    match &h.backend {
        Backend::Sqlite { .. } => {
            h.execute_raw_audit(
                "CREATE TRIGGER fail_mid_batch BEFORE INSERT ON audit_records \
                 WHEN NEW.seq = 6990 BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                &[],
            )
            .await;
        }
        Backend::Postgres { .. } => {
            h.execute_raw_audit(
                "CREATE FUNCTION fail_mid_batch() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.seq = 6990 THEN RAISE EXCEPTION 'injected failure'; END IF; \
                 RETURN NEW; END $$",
                &[],
            )
            .await;
            h.execute_raw_audit(
                "CREATE TRIGGER fail_mid_batch BEFORE INSERT ON audit_records \
                 FOR EACH ROW EXECUTE FUNCTION fail_mid_batch()",
                &[],
            )
            .await;
        }
    }
    let err = h.store.append(&batch).await.unwrap_err();
    match &err {
        SinkError::Unavailable(message) => {
            assert!(message.contains("injected failure"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(h.store.head().await.unwrap(), head_of(&stored));
    assert_eq!(
        count(h.store.as_ref()).await,
        3,
        "nothing of the failed batch is stored"
    );

    let drop_trigger = match &h.backend {
        Backend::Sqlite { .. } => "DROP TRIGGER fail_mid_batch",
        Backend::Postgres { .. } => "DROP TRIGGER fail_mid_batch ON audit_records",
    };
    h.execute_raw_audit(drop_trigger, &[]).await;
    h.store.append(&batch).await.unwrap();
    assert_eq!(h.store.head().await.unwrap(), head_of(&batch));
    let report = verify_stored(h.store.as_ref(), &HashMap::new()).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 7_003);
}

/// Five records that differ in every filterable field, one second apart.
fn varied_records() -> Vec<Record> {
    let mut e1 = Event::new(
        EventType::Decision,
        actor(ActorKind::Agent, AGENT_A),
        "success",
    );
    e1.agent = Some(AGENT_A.to_owned());
    e1.task_id = Some("task-1".to_owned());
    e1.system = Some("billing-db".to_owned());
    let mut e2 = Event::new(
        EventType::GrantApproved,
        actor(ActorKind::User, "sam"),
        "success",
    );
    e2.agent = Some(AGENT_A.to_owned());
    e2.system = Some("billing-db".to_owned());
    e2.subject = Some("grt_1".to_owned());
    let mut e3 = Event::new(
        EventType::TokenIssued,
        actor(ActorKind::Rein, "rein"),
        "success",
    );
    e3.agent = Some(AGENT_B.to_owned());
    e3.task_id = Some("task-2".to_owned());
    e3.system = Some("crm".to_owned());
    e3.subject = Some("jti_1".to_owned());
    let mut e4 = Event::new(
        EventType::Decision,
        actor(ActorKind::Agent, AGENT_B),
        "denied",
    );
    e4.agent = Some(AGENT_B.to_owned());
    e4.task_id = Some("task-2".to_owned());
    e4.system = Some("crm".to_owned());
    let mut e5 = Event::new(
        EventType::UserCreated,
        actor(ActorKind::User, "admin"),
        "success",
    );
    e5.subject = Some("alice".to_owned());
    chain_onto(
        None,
        [e1, e2, e3, e4, e5]
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e, at(i as i64 * 1000)))
            .collect(),
    )
}

async fn audit_filters_match_each_field_and_the_time_range(h: &mut Harness) {
    let s = h.store.as_ref();
    s.append(&varied_records()).await.unwrap();
    let some = |s: &str| Some(s.to_owned());
    let cases: Vec<(AuditFilter, Vec<u64>)> = vec![
        (AuditFilter::default(), vec![1, 2, 3, 4, 5]),
        (
            AuditFilter {
                agent: some(AGENT_A),
                ..Default::default()
            },
            vec![1, 2],
        ),
        (
            AuditFilter {
                agent: some(AGENT_B),
                ..Default::default()
            },
            vec![3, 4],
        ),
        (
            AuditFilter {
                agent: some("spiffe://nobody"),
                ..Default::default()
            },
            vec![],
        ),
        (
            AuditFilter {
                task_id: some("task-2"),
                ..Default::default()
            },
            vec![3, 4],
        ),
        (
            AuditFilter {
                system: some("billing-db"),
                ..Default::default()
            },
            vec![1, 2],
        ),
        (
            AuditFilter {
                event_type: Some(EventType::Decision),
                ..Default::default()
            },
            vec![1, 4],
        ),
        (
            AuditFilter {
                event_type: Some(EventType::GrantRevoked),
                ..Default::default()
            },
            vec![],
        ),
        (
            AuditFilter {
                actor: some("sam"),
                ..Default::default()
            },
            vec![2],
        ),
        (
            AuditFilter {
                actor: some("rein"),
                ..Default::default()
            },
            vec![3],
        ),
        (
            AuditFilter {
                actor: some(AGENT_B),
                ..Default::default()
            },
            vec![4],
        ),
        (
            AuditFilter {
                subject: some("alice"),
                ..Default::default()
            },
            vec![5],
        ),
        (
            AuditFilter {
                since: Some(at(1000)),
                ..Default::default()
            },
            vec![2, 3, 4, 5],
        ),
        (
            AuditFilter {
                until: Some(at(3000)),
                ..Default::default()
            },
            vec![1, 2, 3],
        ),
        (
            AuditFilter {
                since: Some(at(1000)),
                until: Some(at(3000)),
                ..Default::default()
            },
            vec![2, 3],
        ),
        (
            AuditFilter {
                since: Some(at(999)),
                until: Some(at(1001)),
                ..Default::default()
            },
            vec![2],
        ),
        (
            AuditFilter {
                agent: some(AGENT_B),
                event_type: Some(EventType::Decision),
                ..Default::default()
            },
            vec![4],
        ),
        (
            AuditFilter {
                agent: some(AGENT_A),
                task_id: some("task-2"),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        let records = s.audit_records(&filter, None, 100).await.unwrap();
        assert_eq!(seqs(&records), expected, "{filter:?}");
        let latest = s.audit_latest(&filter, 100).await.unwrap();
        assert_eq!(latest, records, "{filter:?}");
    }
}

async fn audit_pages_after_seq_cover_every_match_once(h: &mut Harness) {
    let s = h.store.as_ref();
    let all = decisions(None, 25);
    s.append(&all).await.unwrap();

    let filter = AuditFilter {
        agent: Some(AGENT_A.to_owned()),
        ..Default::default()
    };
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = s.audit_records(&filter, after, 4).await.unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        pages.push(seqs(&page));
    }
    assert_eq!(
        pages,
        vec![
            vec![1, 3, 5, 7],
            vec![9, 11, 13, 15],
            vec![17, 19, 21, 23],
            vec![25]
        ]
    );
    assert_eq!(
        seqs(
            &s.audit_records(&AuditFilter::default(), Some(20), 100)
                .await
                .unwrap()
        ),
        [21, 22, 23, 24, 25]
    );
    assert!(s
        .audit_records(&AuditFilter::default(), Some(25), 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.audit_records(&AuditFilter::default(), Some(u64::MAX), 100)
            .await
            .unwrap(),
        vec![]
    );
}

/// An actor filter is answered from two index ranges (records whose agent is the actor, and
/// the others): pages and `latest` must interleave both in sequence order, limit the total, and
/// never match a record about the actor that someone else acted on.
async fn audit_actor_filter_merges_self_and_other_records_in_order(h: &mut Harness) {
    let s = h.store.as_ref();
    let events: Vec<(Event, DateTime<Utc>)> = (1..=30u64)
        .map(|i| {
            let mut e = match i % 5 {
                // The agent acting about itself.
                0 | 1 => decision(1),
                // The agent acting about another agent.
                2 => {
                    let mut e = decision(1);
                    e.agent = Some(AGENT_B.to_owned());
                    e
                }
                // The agent acting about no agent.
                3 => {
                    let mut e = decision(1);
                    e.agent = None;
                    e
                }
                // Someone else acting about the agent: never a match.
                _ => {
                    let mut e = decision(2);
                    e.agent = Some(AGENT_A.to_owned());
                    e
                }
            };
            e.task_id = Some(format!("task-{}", i % 2));
            (e, at(i as i64))
        })
        .collect();
    s.append(&chain_onto(None, events)).await.unwrap();
    let by_agent_a = |task: Option<&str>| AuditFilter {
        actor: Some(AGENT_A.to_owned()),
        task_id: task.map(str::to_owned),
        ..Default::default()
    };
    let expected: Vec<u64> = (1..=30).filter(|i| i % 5 != 4).collect();

    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s.audit_records(&by_agent_a(None), after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        paged.extend(seqs(&page));
    }
    assert_eq!(paged, expected);
    assert_eq!(
        seqs(&s.audit_latest(&by_agent_a(None), 4).await.unwrap()),
        expected[expected.len() - 4..]
    );
    assert_eq!(
        seqs(
            &s.audit_records(&by_agent_a(Some("task-1")), Some(10), 4)
                .await
                .unwrap()
        ),
        [11, 13, 15, 17]
    );
    assert_eq!(
        seqs(
            &s.audit_latest(&by_agent_a(Some("task-0")), 3)
                .await
                .unwrap()
        ),
        [26, 28, 30]
    );
    let by_agent_b = AuditFilter {
        actor: Some(AGENT_B.to_owned()),
        ..Default::default()
    };
    assert_eq!(
        seqs(&s.audit_records(&by_agent_b, None, 100).await.unwrap()),
        (1..=30).filter(|i| i % 5 == 4).collect::<Vec<u64>>()
    );
}

async fn audit_latest_returns_the_last_matches_ascending(h: &mut Harness) {
    let s = h.store.as_ref();
    assert!(s
        .audit_latest(&AuditFilter::default(), 5)
        .await
        .unwrap()
        .is_empty());
    let all = decisions(None, 25);
    s.append(&all).await.unwrap();

    let filter = AuditFilter {
        agent: Some(AGENT_A.to_owned()),
        ..Default::default()
    };
    assert_eq!(
        seqs(&s.audit_latest(&filter, 3).await.unwrap()),
        [21, 23, 25]
    );
    assert_eq!(
        s.audit_latest(&AuditFilter::default(), 2).await.unwrap(),
        all[23..].to_vec()
    );
    assert_eq!(
        s.audit_latest(&AuditFilter::default(), 100).await.unwrap(),
        all
    );
    assert!(s
        .audit_latest(&AuditFilter::default(), 0)
        .await
        .unwrap()
        .is_empty());
}

async fn audit_checkpoints_round_trip(h: &mut Harness) {
    let s = h.store.as_ref();
    assert!(s.audit_checkpoints().await.unwrap().is_empty());
    let records = decisions(None, 4);
    s.append(&records).await.unwrap();
    let signer = signer("audit-1", 3);
    let cp2 = signer.sign(2, records[1].hash, at(10));
    let cp4 = signer.sign(4, records[3].hash, at(20));
    s.append_checkpoint(&cp4).await.unwrap();
    s.append_checkpoint(&cp2).await.unwrap();
    assert_eq!(
        s.audit_checkpoints().await.unwrap(),
        vec![cp2.clone(), cp4.clone()]
    );

    // Another replica attesting the same head at the same position is fine; another head there
    // is a fork of history and refused.
    let replica = self::signer("audit-2", 4).sign(4, records[3].hash, at(30));
    s.append_checkpoint(&replica).await.unwrap();
    let forked = signer.sign(4, records[2].hash, at(40));
    assert!(matches!(
        s.append_checkpoint(&forked).await,
        Err(SinkError::Corrupt(_))
    ));
    assert_eq!(s.audit_checkpoints().await.unwrap(), vec![cp2, cp4]);

    h.reopen().await;
    let report = verify_stored(h.store.as_ref(), &keys_of(&[&signer])).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checkpoints_verified, 2);
}

async fn audit_scan_reports_damaged_documents_in_place(h: &mut Harness) {
    let records = decisions(None, 5);
    h.store.append(&records).await.unwrap();
    let first_doc = serde_json::to_string(&records[0]).unwrap();
    h.execute_raw_audit(
        "UPDATE audit_records SET doc = $1 WHERE seq = 2",
        &["{not json"],
    )
    .await;
    h.execute_raw_audit(
        "UPDATE audit_records SET doc = $1 WHERE seq = 3",
        &[&first_doc],
    )
    .await;

    let rows = h.store.audit_scan(0, 100).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5],
        "never skipped"
    );
    assert_eq!(rows[0].record.as_ref(), Ok(&records[0]));
    assert!(rows[1].record.is_err(), "{:?}", rows[1]);
    assert_eq!(rows[2].record, Err("the document is record 1".to_owned()));
    assert_eq!(rows[3].record.as_ref(), Ok(&records[3]));

    let report = verify_stored(h.store.as_ref(), &HashMap::new()).await;
    assert!(
        matches!(report.problem, Some(Finding::Malformed { position: 2, .. })),
        "{report:?}"
    );
    assert_eq!(report.records, 1);

    for result in [
        h.store.audit_record(2).await.map(|_| ()),
        h.store.audit_record(3).await.map(|_| ()),
        h.store
            .audit_records(&AuditFilter::default(), None, 10)
            .await
            .map(|_| ()),
        h.store
            .audit_latest(&AuditFilter::default(), 10)
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(StoreError::Corrupt {
                kind: "audit record",
                ..
            }) => {}
            other => panic!("expected a corrupt audit record, got {other:?}"),
        }
    }
    // Reads that avoid the damaged rows still work.
    assert_eq!(
        h.store.audit_record(4).await.unwrap().as_ref(),
        Some(&records[3])
    );
    assert_eq!(
        h.store
            .audit_latest(&AuditFilter::default(), 2)
            .await
            .unwrap(),
        records[3..]
    );

    // A damaged head cannot be extended: the log refuses to chain onto what it cannot read.
    h.execute_raw_audit("UPDATE audit_records SET doc = $1 WHERE seq = 5", &["[]"])
        .await;
    assert!(matches!(h.store.head().await, Err(SinkError::Corrupt(_))));
    let next = chain_onto(Some((5, records[4].hash)), vec![(decision(6), at(6))]);
    assert!(matches!(
        h.store.append(&next).await,
        Err(SinkError::Corrupt(_))
    ));
    assert_eq!(h.store.audit_scan(5, 10).await.unwrap(), vec![]);
}

/// Appends through the group-commit writer, from concurrent tasks; the records survive a
/// restart, verify with their checkpoints, and a new writer continues the chain.
async fn audit_log_records_survive_reopen_and_verify(h: &mut Harness) {
    const TASKS: u64 = 8;
    const EACH: u64 = 40;
    let first = signer("audit-1", 1);
    let keys = keys_of(&[&first]);
    let config = LogConfig {
        checkpoint_every_records: 50,
        ..LogConfig::default()
    };
    // An `Arc<dyn Store>` is the log's sink (trait upcasting).
    let sink: Arc<dyn AuditSink> = h.store.clone();
    let log = AuditLog::open(sink, first, config.clone()).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in 0..EACH {
                receipts.push(log.append(decision(t * EACH + i)).await.unwrap());
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.extend(task.await.unwrap());
    }
    drop(log);
    receipts.sort_by_key(|r| r.seq);
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=TASKS * EACH).collect::<Vec<_>>()
    );
    let last = receipts[receipts.len() - 1];

    h.reopen().await;
    assert_eq!(h.store.head().await.unwrap(), Some((last.seq, last.hash)));
    for receipt in &receipts {
        let record = h.store.audit_record(receipt.seq).await.unwrap().unwrap();
        assert_eq!(record.hash, receipt.hash);
    }
    let report = verify_stored(h.store.as_ref(), &keys).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, TASKS * EACH);
    assert!(report.checkpoints_verified >= 1, "{report:?}");

    let second = signer("audit-2", 2);
    let keys = keys_of(&[&signer("audit-1", 1), &second]);
    let log = AuditLog::open(h.store.clone(), second, config)
        .await
        .unwrap();
    let next = log.append(decision(0)).await.unwrap();
    assert_eq!(next.seq, last.seq + 1);
    let report = verify_stored(h.store.as_ref(), &keys).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.head, Some((next.seq, next.hash.to_hex())));
}

async fn signing_keys_insert_list_update(h: &mut Harness) {
    let master = MasterKey::from_bytes([7; 32]);
    let newer = SealedKey::generate(&master, KeyPurpose::Token, at(2000));
    let older = SealedKey::generate(&master, KeyPurpose::Token, at(1000));
    let checkpoint = SealedKey::generate(&master, KeyPurpose::AuditCheckpoint, at(0));
    let s = h.store.as_ref();
    assert!(s.signing_keys(KeyPurpose::Token).await.unwrap().is_empty());
    for key in [&newer, &older, &checkpoint] {
        s.insert_signing_key(key).await.unwrap();
    }
    assert_eq!(
        s.signing_keys(KeyPurpose::Token).await.unwrap(),
        vec![older.clone(), newer.clone()],
        "oldest first"
    );
    assert_eq!(
        s.signing_keys(KeyPurpose::AuditCheckpoint).await.unwrap(),
        vec![checkpoint.clone()]
    );

    match s.insert_signing_key(&newer).await {
        Err(StoreError::AlreadyExists { kind, key }) => {
            assert_eq!((kind, key.as_str()), ("signing key", newer.kid.as_str()));
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    let retired = SealedKey {
        retired_at: Some(at(5000)),
        ..older.clone()
    };
    s.update_signing_key(&retired).await.unwrap();
    let missing = SealedKey::generate(&master, KeyPurpose::Token, at(3000));
    match s.update_signing_key(&missing).await {
        Err(StoreError::NotFound { kind, key }) => {
            assert_eq!((kind, key.as_str()), ("signing key", missing.kid.as_str()));
        }
        other => panic!("expected NotFound, got {other:?}"),
    }

    h.reopen().await;
    let stored = h.store.signing_keys(KeyPurpose::Token).await.unwrap();
    assert_eq!(stored, vec![retired, newer]);
    // The sealed private key round-trips: it still opens under the master key.
    let opened = stored[0].open(&master).unwrap();
    assert_eq!(Some(opened.verifying_key()), older.verifying_key());
}

// === backend-specific ===

/// Two replicas, each with its own connection pool and group-commit writer, append to one
/// PostgreSQL database concurrently. The result is one gap-free chain that verifies with both
/// replicas' checkpoints, holding exactly the acknowledged events, each once, at the position its
/// receipt names.
///
/// `AuditLog` gives up on a batch after a fixed number of lost races in a row ("conflicting
/// writers"; under this load a few percent of appends), and a refused append must then be absent
/// from the chain. The test counts those refusals instead of failing on them: bounding them is the
/// appender's retry policy, not the store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_replicas_append_one_verifiable_chain() {
    const TASKS: u64 = 8;
    const EACH: u64 = 50;
    let Some(h) = Harness::postgres().await else {
        return;
    };
    let replica = h.replica().await;
    let (a, b) = (signer("replica-a", 1), signer("replica-b", 2));
    let keys = keys_of(&[&a, &b]);
    let config = LogConfig {
        checkpoint_every_records: 100,
        ..LogConfig::default()
    };
    let logs = [
        AuditLog::open(h.store.clone(), a, config.clone())
            .await
            .unwrap(),
        AuditLog::open(replica.clone(), b, config).await.unwrap(),
    ];
    let mut tasks = Vec::new();
    for (n, log) in logs.iter().enumerate() {
        for t in 0..TASKS {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..EACH {
                    let subject = format!("replica-{n}-task-{t}-{i}");
                    let mut e = decision(i);
                    e.subject = Some(subject.clone());
                    outcomes.push((subject, log.append(e).await));
                }
                outcomes
            }));
        }
    }
    let mut acknowledged = std::collections::BTreeMap::new();
    let mut refused = std::collections::BTreeSet::new();
    for task in tasks {
        for (subject, outcome) in task.await.unwrap() {
            match outcome {
                Ok(receipt) => {
                    assert!(acknowledged
                        .insert(receipt.seq, (subject, receipt.hash))
                        .is_none());
                }
                Err(AppendError::Unavailable(reason)) if reason == "conflicting writers" => {
                    refused.insert(subject);
                }
                Err(e) => panic!("unexpected append error: {e}"),
            }
        }
    }
    drop(logs);
    let total = 2 * TASKS * EACH;
    eprintln!(
        "two replicas: {} of {total} appends acknowledged, {} refused after repeated lost races",
        acknowledged.len(),
        refused.len()
    );
    assert!(
        acknowledged.len() as u64 > total / 2,
        "{} refused",
        refused.len()
    );
    assert_eq!(
        acknowledged.keys().copied().collect::<Vec<_>>(),
        (1..=acknowledged.len() as u64).collect::<Vec<_>>(),
        "one acknowledgement per position, no gap"
    );

    let report = verify_stored(h.store.as_ref(), &keys).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, acknowledged.len() as u64);
    let stored = scan_all(replica.as_ref(), 1000).await;
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "nothing unacknowledged is stored"
    );
    for row in stored {
        let record = row.record.unwrap();
        let (subject, hash) = &acknowledged[&row.seq];
        assert_eq!(record.event.subject.as_ref(), Some(subject));
        assert_eq!(&record.hash, hash);
    }
    h.cleanup().await;
}

#[tokio::test]
async fn sqlite_audit_log_lives_in_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("rein.db");
    let store = SqliteStore::open(&main).await.unwrap();
    store.append(&decisions(None, 2)).await.unwrap();
    let audit = dir.path().join("rein-audit.db");
    assert_eq!(SqliteStore::audit_path(&main), audit);
    assert!(audit.exists());

    use sqlx::{ConnectOptions, Row};
    let tables = |path: std::path::PathBuf| async move {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .connect()
            .await
            .unwrap();
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tables(audit).await,
        [
            "audit_checkpoints",
            "audit_index_state",
            "audit_keys",
            "audit_records"
        ]
    );
    let main_tables = tables(main).await;
    assert!(
        main_tables.contains(&"signing_keys".to_owned()),
        "{main_tables:?}"
    );
    assert!(
        !main_tables.iter().any(|t| t.starts_with("audit")),
        "{main_tables:?}"
    );

    for (path, expected) in [
        ("/var/lib/rein/rein.db", "/var/lib/rein/rein-audit.db"),
        ("data/store.sqlite3", "data/store-audit.sqlite3"),
        ("rein", "rein-audit"),
        ("/srv/.rein.db", "/srv/.rein-audit.db"),
    ] {
        assert_eq!(
            SqliteStore::audit_path(std::path::Path::new(path)),
            std::path::PathBuf::from(expected)
        );
    }
}

// === deferred key index ===

/// A log of `n` records mixing what the filters must tell apart: decisions by agent A or B on
/// five tasks and two systems (actor = agent), grant approvals about an agent by a user (actor ≠
/// agent), token issues by `rein`, and user records with no agent at all, one millisecond apart.
fn mixed_records(n: u64) -> Vec<Record> {
    let events = (1..=n)
        .map(|i| {
            let agent = if i % 2 == 1 { AGENT_A } else { AGENT_B };
            let mut e = match i % 7 {
                0 => {
                    let mut e = Event::new(
                        EventType::GrantApproved,
                        actor(ActorKind::User, "sam"),
                        "success",
                    );
                    e.agent = Some(agent.to_owned());
                    e
                }
                3 => {
                    let mut e = Event::new(
                        EventType::TokenIssued,
                        actor(ActorKind::Rein, "rein"),
                        "success",
                    );
                    e.agent = Some(agent.to_owned());
                    e
                }
                5 => Event::new(
                    EventType::UserCreated,
                    actor(ActorKind::User, if i % 2 == 0 { "sam" } else { AGENT_A }),
                    "success",
                ),
                _ => decision(i),
            };
            if i % 7 != 5 {
                e.task_id = Some(format!("task-{}", i % 5));
                e.system = Some(if i % 3 == 0 { "crm" } else { "billing-db" }.to_owned());
            }
            e.subject = Some(format!("subject-{}", i % 4));
            (e, at(i as i64))
        })
        .collect();
    chain_onto(None, events)
}

/// What a filter must match, decided in memory from the records themselves.
fn matches(filter: &AuditFilter, r: &Record) -> bool {
    let e = &r.event;
    let ms = r.time.timestamp_millis();
    filter
        .agent
        .as_ref()
        .is_none_or(|v| e.agent.as_ref() == Some(v))
        && filter
            .task_id
            .as_ref()
            .is_none_or(|v| e.task_id.as_ref() == Some(v))
        && filter
            .system
            .as_ref()
            .is_none_or(|v| e.system.as_ref() == Some(v))
        && filter.event_type.is_none_or(|v| e.event_type == v)
        && filter.actor.as_ref().is_none_or(|v| &e.actor.id == v)
        && filter
            .subject
            .as_ref()
            .is_none_or(|v| e.subject.as_ref() == Some(v))
        && filter.since.is_none_or(|t| ms >= t.timestamp_millis())
        && filter.until.is_none_or(|t| ms < t.timestamp_millis())
}

/// Filters over every indexed key alone, combined with each other and with the synchronous
/// ones (type, subject, time).
fn key_filters() -> Vec<AuditFilter> {
    let some = |s: &str| Some(s.to_owned());
    let mut filters = Vec::new();
    for agent in [None, some(AGENT_A), some(AGENT_B)] {
        for (task, system, actor) in [
            (None, None, None),
            (some("task-2"), None, None),
            (None, some("crm"), None),
            (None, None, some(AGENT_A)),
            (None, None, some("sam")),
            (None, None, some("rein")),
            (some("task-3"), some("billing-db"), None),
            (some("task-1"), None, some(AGENT_A)),
        ] {
            filters.push(AuditFilter {
                agent: agent.clone(),
                task_id: task,
                system,
                actor,
                ..Default::default()
            });
        }
    }
    filters.push(AuditFilter {
        agent: some(AGENT_A),
        event_type: Some(EventType::Decision),
        since: Some(at(10)),
        until: Some(at(50)),
        ..Default::default()
    });
    filters.push(AuditFilter {
        actor: some("sam"),
        subject: some("subject-3"),
        ..Default::default()
    });
    filters.push(AuditFilter {
        system: some("crm"),
        event_type: Some(EventType::TokenIssued),
        ..Default::default()
    });
    filters
}

/// Checks every filter of [`key_filters`] against `records` (the whole log): the full result,
/// pages of several sizes, and the latest matches at several limits.
async fn assert_filters_exact(store: &dyn Store, records: &[Record], context: &str) {
    for filter in key_filters() {
        let expected: Vec<u64> = records
            .iter()
            .filter(|r| matches(&filter, r))
            .map(|r| r.seq)
            .collect();
        let all = store.audit_records(&filter, None, 10_000).await.unwrap();
        assert_eq!(seqs(&all), expected, "{context}: {filter:?}");
        for page in [1, 3, 7] {
            let mut got = Vec::new();
            let mut after = None;
            loop {
                let batch = store.audit_records(&filter, after, page).await.unwrap();
                assert!(batch.len() <= page as usize);
                let Some(last) = batch.last() else { break };
                after = Some(last.seq);
                got.extend(seqs(&batch));
            }
            assert_eq!(got, expected, "{context}: pages of {page}, {filter:?}");
        }
        for limit in [1, 4, 10_000] {
            let latest = store.audit_latest(&filter, limit).await.unwrap();
            let from = expected.len().saturating_sub(limit as usize);
            assert_eq!(
                seqs(&latest),
                expected[from..],
                "{context}: latest {limit}, {filter:?}"
            );
        }
    }
}

/// Records not yet indexed are found exactly like indexed ones: the same filters give the same
/// answers with the watermark at 0, partway through the log and at its head.
async fn audit_filters_agree_on_both_sides_of_the_index_watermark(h: &mut Harness) {
    let s = h.store.as_ref();
    let records = mixed_records(70);
    s.append(&records).await.unwrap();
    assert_eq!(s.audit_index(0).await.unwrap(), 0, "nothing indexed yet");
    assert_filters_exact(s, &records, "watermark 0").await;
    assert_eq!(
        s.audit_index(23).await.unwrap(),
        23,
        "the indexer stops halfway"
    );
    assert_filters_exact(s, &records, "watermark 23").await;
    assert_eq!(s.audit_index(30).await.unwrap(), 53);
    assert_filters_exact(s, &records, "watermark 53").await;
    assert_eq!(s.audit_index(1_000).await.unwrap(), 70);
    assert_eq!(s.audit_index(1_000).await.unwrap(), 70, "nothing left");
    assert_filters_exact(s, &records, "watermark 70").await;
}

/// A reader paging through the log while the indexer moves the watermark past the page
/// boundary between two pages sees every match once, in order.
async fn audit_pages_stay_exact_while_the_index_advances(h: &mut Harness) {
    let s = h.store.as_ref();
    let records = mixed_records(60);
    s.append(&records).await.unwrap();
    for filter in key_filters() {
        let expected: Vec<u64> = records
            .iter()
            .filter(|r| matches(&filter, r))
            .map(|r| r.seq)
            .collect();
        // Start each filter with a fresh index: drop the entries and the watermark.
        h.execute_raw_audit("DELETE FROM audit_keys", &[]).await;
        h.execute_raw_audit("UPDATE audit_index_state SET indexed_through_seq = 0", &[])
            .await;
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let batch = s.audit_records(&filter, after, 2).await.unwrap();
            let Some(last) = batch.last() else { break };
            after = Some(last.seq);
            got.extend(seqs(&batch));
            s.audit_index(5).await.unwrap();
        }
        assert_eq!(got, expected, "{filter:?}");
    }
}

/// A crash between writing entries and moving the watermark (simulated: entries of records
/// 11–40 stay while the watermark goes back to 10) neither duplicates nor hides a record, and
/// the indexer's rerun over the same range succeeds.
async fn audit_indexer_rerun_after_a_crash_is_idempotent(h: &mut Harness) {
    let s = h.store.as_ref();
    let records = mixed_records(40);
    s.append(&records).await.unwrap();
    assert_eq!(s.audit_index(40).await.unwrap(), 40);
    h.execute_raw_audit("UPDATE audit_index_state SET indexed_through_seq = 10", &[])
        .await;
    assert_eq!(s.audit_index(0).await.unwrap(), 10);
    assert_filters_exact(s, &records, "entries above the watermark").await;
    assert_eq!(s.audit_index(15).await.unwrap(), 25);
    assert_filters_exact(s, &records, "rerun halfway").await;
    assert_eq!(s.audit_index(100).await.unwrap(), 40);
    assert_filters_exact(s, &records, "rerun to the head").await;

    // Entries lost below the watermark would hide records: the index is derived data, so
    // dropping it and resetting the watermark rebuilds it.
    h.execute_raw_audit("DELETE FROM audit_keys", &[]).await;
    h.execute_raw_audit("UPDATE audit_index_state SET indexed_through_seq = 0", &[])
        .await;
    assert_filters_exact(s, &records, "index dropped").await;
    assert_eq!(s.audit_index(100).await.unwrap(), 40);
    assert_filters_exact(s, &records, "index rebuilt").await;

    // Restarting changes nothing either.
    h.reopen().await;
    assert_eq!(h.store.audit_index(0).await.unwrap(), 40);
    assert_filters_exact(h.store.as_ref(), &records, "reopened").await;
}

/// The store indexes by itself: after more appends than its trigger, through the group-commit
/// writer, the watermark moves without anyone asking (awaited by polling the store's own
/// answer, not by sleeping a fixed time), and the filters are exact throughout.
async fn audit_index_catches_up_after_many_appends(h: &mut Harness) {
    let s = h.store.clone();
    let all = decisions(None, 9_000);
    for chunk in all.chunks(500) {
        s.append(chunk).await.unwrap();
    }
    let filter = AuditFilter {
        agent: Some(AGENT_A.to_owned()),
        task_id: Some("task-3".to_owned()),
        ..Default::default()
    };
    let expected: Vec<u64> = all
        .iter()
        .filter(|r| matches(&filter, r))
        .map(|r| r.seq)
        .collect();
    let got = s.audit_records(&filter, None, 10_000).await.unwrap();
    assert_eq!(seqs(&got), expected);
    // The store's indexer started after 4,096 appends; wait until it has caught up at least to
    // there (it yields between chunks, so poll with a yield, no fixed sleep).
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while s.audit_index(0).await.unwrap() < 4_096 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the store's indexer never ran");
    let got = s.audit_records(&filter, None, 10_000).await.unwrap();
    assert_eq!(seqs(&got), expected);
    let latest = s.audit_latest(&filter, 3).await.unwrap();
    assert_eq!(seqs(&latest), expected[expected.len() - 3..]);
}

/// Two replicas index the same log at once while a third appends to it: every record ends up
/// indexed once (the primary key would refuse a duplicate entry, and the count matches), the
/// watermark only moves forward, and the filters stay exact throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_indexers_racing_index_each_record_once() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    let records = mixed_records(1_200);
    let (a, b) = (h.replica().await, h.replica().await);
    let appender = {
        let store = h.store.clone();
        let records = records.clone();
        tokio::spawn(async move {
            for chunk in records.chunks(100) {
                store.append(chunk).await.unwrap();
            }
        })
    };
    let indexer = |store: Arc<dyn Store>| {
        tokio::spawn(async move {
            let mut last = 0;
            let mut seen = Vec::new();
            while last < 1_200 {
                let now = store.audit_index(70).await.unwrap();
                assert!(now >= last, "the watermark went back from {last} to {now}");
                last = now;
                seen.push(now);
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let (ia, ib) = (indexer(a.clone()), indexer(b.clone()));
    appender.await.unwrap();
    let (sa, sb) = (ia.await.unwrap(), ib.await.unwrap());
    eprintln!("indexer runs: {} and {}", sa.len(), sb.len());
    assert_filters_exact(h.store.as_ref(), &records, "after racing indexers").await;

    let expected_entries: usize = records
        .iter()
        .map(|r| {
            let e = &r.event;
            usize::from(e.agent.is_some())
                + usize::from(e.task_id.is_some())
                + usize::from(e.system.is_some())
                + usize::from(e.agent.as_ref() != Some(&e.actor.id))
        })
        .sum();
    let Backend::Postgres { url, schema } = &h.backend else {
        unreachable!()
    };
    let mut conn = PgConnection::connect(url).await.unwrap();
    use sqlx::Row;
    let entries: i64 = sqlx::query(&format!("SELECT count(*) FROM \"{schema}\".audit_keys"))
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(entries as usize, expected_entries);
    h.cleanup().await;
}

/// Applies the migrations in `dir` numbered below `below` (an older Rein's schema) with the
/// given pool, by copying them to a directory of their own.
async fn migrate_below<DB: sqlx::Database>(dir: &str, below: &str, pool: &sqlx::Pool<DB>)
where
    DB::Connection: sqlx::migrate::Migrate,
{
    let old = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.as_str() < below {
            std::fs::copy(entry.path(), old.path().join(&name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(pool)
        .await
        .unwrap();
}

/// Inserts `records` as an older Rein stored them (the same row layout, no key index).
async fn insert_old_rows<'c, E>(conn: E, records: &[Record])
where
    E: sqlx::Executor<'c> + Copy,
    for<'q> <E::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, E::Database>,
    i64: sqlx::Type<E::Database> + for<'q> sqlx::Encode<'q, E::Database>,
    String: sqlx::Type<E::Database> + for<'q> sqlx::Encode<'q, E::Database>,
    Option<String>: sqlx::Type<E::Database> + for<'q> sqlx::Encode<'q, E::Database>,
{
    for r in records {
        let e = &r.event;
        sqlx::query(
            "INSERT INTO audit_records (seq, time_ms, event_type, actor, agent, task_id, system, \
             subject, hash, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(r.seq as i64)
        .bind(r.time.timestamp_millis())
        .bind(e.event_type.as_str().to_owned())
        .bind(e.actor.id.clone())
        .bind(e.agent.clone())
        .bind(e.task_id.clone())
        .bind(e.system.clone())
        .bind(e.subject.clone())
        .bind(r.hash.to_hex())
        .bind(serde_json::to_string(r).unwrap())
        .execute(conn)
        .await
        .unwrap();
    }
}

/// A log written before the key index existed is indexed by the migration: its records are
/// below the watermark from the start, found through the index, and the log continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_log_of_an_older_release_is_indexed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("rein.db");
    let records = mixed_records(50);
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(SqliteStore::audit_path(&main))
                .create_if_missing(true),
        )
        .await
        .unwrap();
        migrate_below("migrations/sqlite-audit", "0003", &pool).await;
        insert_old_rows(&pool, &records).await;
        pool.close().await;
    }
    let store = SqliteStore::open(&main).await.unwrap();
    assert_eq!(
        store.audit_index(0).await.unwrap(),
        50,
        "indexed by the migration"
    );
    assert_filters_exact(&store, &records, "migrated").await;
    let more = chain_onto(head_of(&records), vec![(decision(51), at(51))]);
    store.append(&more).await.unwrap();
    let all: Vec<Record> = records.iter().chain(&more).cloned().collect();
    assert_filters_exact(&store, &all, "migrated and appended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_log_of_an_older_release_is_indexed_at_connect() {
    let url = crate::postgres_url();
    if PgConnection::connect(&url).await.is_err() {
        assert_ne!(
            std::env::var("REIN_REQUIRE_POSTGRES").as_deref(),
            Ok("1"),
            "PostgreSQL is unreachable"
        );
        return;
    }
    let schema = crate::fresh_schema();
    let records = mixed_records(50);
    {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let pool = sqlx::PgPool::connect_with(options).await.unwrap();
        migrate_below("migrations/postgres", "0004", &pool).await;
        insert_old_rows(&pool, &records).await;
        pool.close().await;
    }
    let store = rein_store::PgStore::connect_with_schema(&url, &schema)
        .await
        .unwrap();
    assert_eq!(
        store.audit_index(0).await.unwrap(),
        50,
        "indexed by the migration"
    );
    assert_filters_exact(&store, &records, "migrated").await;
    let more = chain_onto(head_of(&records), vec![(decision(51), at(51))]);
    store.append(&more).await.unwrap();
    let all: Vec<Record> = records.iter().chain(&more).cloned().collect();
    assert_filters_exact(&store, &all, "migrated and appended").await;
    drop(store);
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}
