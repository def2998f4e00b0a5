//! `rein audit` end to end: reading the log through the CLI, `verify` catching a tampered store
//! and a tampered export (altered, deleted, swapped, truncated), and a server killed with
//! SIGKILL under load losing no acknowledged record, on SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use serde_json::{json, Value};
use sqlx::Connection as _;

use super::{assert_error, init, rein, run, stderr, stdout, Server, STARTUP};

/// Checkpoints every few records, so truncation after a checkpoint can be staged.
const CHECKPOINT_EVERY: &str = "4";

fn start(dir: &Path, tmp: &Path, log: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Server::start_with_env(
        &args,
        &[("REIN_AUDIT_CHECKPOINT_EVERY_RECORDS", CHECKPOINT_EVERY)],
        tmp,
        &tmp.join(log),
    )
}

/// `rein audit verify <args>` without a server.
fn verify(args: &[&str]) -> Output {
    run(rein().args(["audit", "verify"]).args(args))
}

#[track_caller]
fn assert_intact(out: &Output, records: u64) {
    assert!(
        out.status.success(),
        "verify failed: {}{}",
        stdout(out),
        stderr(out)
    );
    let text = stdout(out);
    assert!(
        text.starts_with(&format!("audit log intact: {records} records")),
        "{text}"
    );
}

/// Asserts `verify` exited 1 with one line naming the problem, containing `expected`.
#[track_caller]
fn assert_caught(out: &Output, expected: &str) {
    let err = assert_error(out, "audit-invalid");
    assert!(err.contains(expected), "expected `{expected}` in: {err}");
}

/// Copies the files of a stopped server's data directory (databases with their WAL files).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Runs SQL statements on the audit database of a (copied) data directory.
fn tamper(dir: &Path, statements: &[String]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("rein-audit.db"));
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        for sql in statements {
            let done = sqlx::query(sql).execute(&mut conn).await.unwrap();
            assert!(done.rows_affected() > 0, "{sql} changed nothing");
        }
        conn.close().await.unwrap();
    });
}

#[test]
fn verify_catches_tampering_with_the_store_and_with_an_export() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let admin = init(&dir, &[]);
    let mut server = start(&dir, tmp.path(), "server.log", &[]);
    // Records: 1 the admin, 2 their token, then users u1..u12 at 3..14.
    for i in 1..=12 {
        let out = server.client(&admin, &["user", "create", &format!("u{i}")]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    // Reading through the CLI.
    let tail = server.client(&admin, &["audit", "tail", "-n", "3", "--output", "json"]);
    assert!(tail.status.success(), "{}", stderr(&tail));
    let lines: Vec<Value> = stdout(&tail)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [12, 13, 14]);
    assert_eq!(lines[2]["event"]["subject"], "u12");
    let filtered = server.client(
        &admin,
        &["audit", "tail", "--type", "user.created", "--subject", "u3"],
    );
    let text = stdout(&filtered);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with("5 "), "{text}");
    assert_eq!(
        server.json(&admin, &["audit", "show", "5"])["event"]["subject"],
        "u3"
    );
    let why = server.client(&admin, &["audit", "why", "5"]);
    assert!(
        stdout(&why).contains("who can revoke it"),
        "{}",
        stdout(&why)
    );
    assert_eq!(
        server.json(&admin, &["audit", "why", "5"])["record"]["seq"],
        5
    );
    assert_intact(&server.client(&admin, &["audit", "verify"]), 14);
    assert_intact(&verify(&["--data-dir", dir.to_str().unwrap()]), 14);

    // --follow polls for new records: the one created after it started is printed.
    let mut follower = rein()
        .env("REIN_ADDR", &server.addr)
        .env("REIN_TOKEN", &admin)
        .args([
            "audit",
            "tail",
            "-n",
            "1",
            "--follow",
            "--interval",
            "1",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, followed) = mpsc::channel();
    let out = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first: Value = serde_json::from_str(&followed.recv_timeout(STARTUP).unwrap()).unwrap();
    assert_eq!(first["seq"], 14);
    assert!(server
        .client(&admin, &["user", "create", "u13"])
        .status
        .success());
    let next: Value = serde_json::from_str(&followed.recv_timeout(STARTUP).unwrap()).unwrap();
    assert_eq!(
        (next["seq"].as_u64(), next["event"]["subject"].as_str()),
        (Some(15), Some("u13"))
    );
    follower.kill().unwrap();
    follower.wait().unwrap();

    // Export with the checkpoints, then stop the server.
    let export = tmp.path().join("audit.jsonl");
    let cps = tmp.path().join("checkpoints.json");
    let out = server.client(
        &admin,
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--out",
            export.to_str().unwrap(),
            "--checkpoints-out",
            cps.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ocsf = server.client(&admin, &["audit", "export", "--format", "ocsf"]);
    assert!(ocsf.status.success());
    assert_eq!(stdout(&ocsf).lines().count(), 15);
    assert!(server.stop().success());

    let jsonl = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines.len(), 15);
    let secret = admin.rsplit('_').next().unwrap();
    assert!(
        !jsonl.contains(secret) && !stdout(&ocsf).contains(secret),
        "a token was exported"
    );
    let checkpoints: Value = serde_json::from_str(&std::fs::read_to_string(&cps).unwrap()).unwrap();
    let last_checkpoint = checkpoints["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(last_checkpoint >= 8, "{checkpoints}");
    let cut = last_checkpoint - 2;

    // The intact log and export verify.
    let data = dir.to_str().unwrap();
    assert_intact(&verify(&["--data-dir", data]), 15);
    let intact = verify(&[
        "--file",
        export.to_str().unwrap(),
        "--checkpoints",
        cps.to_str().unwrap(),
    ]);
    assert_intact(&intact, 15);
    let report: Value =
        serde_json::from_slice(&verify(&["--data-dir", data, "--output", "json"]).stdout).unwrap();
    assert_eq!(
        (report["ok"].as_bool(), report["records"].as_u64()),
        (Some(true), Some(15))
    );

    // The store, tampered with in four ways, each in a copy of the stopped server's directory.
    // The store may hold a later checkpoint than the export (one signed after it was taken).
    let truncated = format!("the chain ends at record {cut} but a signed checkpoint covers record");
    let cases: [(&str, Vec<String>, &str); 4] = [
        (
            "altered",
            vec![
                r#"UPDATE audit_records SET doc = replace(doc, '"subject":"u5"', '"subject":"mallory"') WHERE seq = 7"#.into(),
            ],
            "record 7 was altered",
        ),
        (
            "deleted",
            vec!["DELETE FROM audit_records WHERE seq = 9".into()],
            "records 9 to 9 are missing",
        ),
        (
            "swapped",
            vec![
                "UPDATE audit_records SET doc = (SELECT doc FROM audit_records AS o WHERE o.seq = 15 - audit_records.seq) WHERE seq IN (5, 10)".into(),
            ],
            "entry 5 is not a valid record: the document is record 10",
        ),
        (
            "truncated",
            vec![format!("DELETE FROM audit_records WHERE seq > {cut}")],
            &truncated,
        ),
    ];
    for (name, statements, expected) in &cases {
        let copy = tmp.path().join(format!("store-{name}"));
        copy_dir(&dir, &copy);
        tamper(&copy, statements);
        assert_caught(&verify(&["--data-dir", copy.to_str().unwrap()]), expected);
    }

    // A deleted audit database is not an empty, intact log.
    let gone = tmp.path().join("store-gone");
    copy_dir(&dir, &gone);
    for file in ["rein-audit.db", "rein-audit.db-wal", "rein-audit.db-shm"] {
        let _ = std::fs::remove_file(gone.join(file));
    }
    assert_error(
        &verify(&["--data-dir", gone.to_str().unwrap()]),
        "not-found",
    );
    assert!(
        !gone.join("rein-audit.db").exists(),
        "verify created a database"
    );

    // The export, edited the same four ways, verified with the exported checkpoints.
    let edit = |name: &str, lines: Vec<String>| {
        let path = tmp.path().join(format!("export-{name}.jsonl"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        verify(&[
            "--file",
            path.to_str().unwrap(),
            "--checkpoints",
            cps.to_str().unwrap(),
        ])
    };
    let owned = || {
        lines
            .iter()
            .map(|l| (*l).to_owned())
            .collect::<Vec<String>>()
    };
    let mut altered = owned();
    altered[6] = altered[6].replace(r#""subject":"u5""#, r#""subject":"mallory""#);
    assert_ne!(altered[6], lines[6]);
    assert_caught(&edit("altered", altered), "record 7 was altered");
    let mut deleted = owned();
    deleted.remove(8);
    assert_caught(&edit("deleted", deleted), "records 9 to 9 are missing");
    let mut swapped = owned();
    swapped.swap(4, 9);
    assert_caught(&edit("swapped", swapped), "records 5 to 9 are missing");
    let truncated_export: Vec<String> = owned().into_iter().take(cut as usize).collect();
    assert_caught(
        &edit("truncated", truncated_export),
        &format!("{truncated} {last_checkpoint}: records were truncated"),
    );
    // A line that is not a record is named by its position.
    let mut garbled = owned();
    garbled[2] = "{\"seq\": 3".into();
    assert_caught(&edit("garbled", garbled), "entry 3 is not a valid record");
}

// === a crash under load ===

/// How many users must be acknowledged before the server is killed.
const ACKNOWLEDGED: usize = 100;
/// Concurrent clients.
const CLIENTS: usize = 16;

/// Creates users from [`CLIENTS`] concurrent clients until the server stops answering, and
/// kills it with SIGKILL (from here, while requests are in flight) once [`ACKNOWLEDGED`] of them
/// were answered 201. Returns the names of every user whose creation was acknowledged.
fn create_users_until_killed(server: &mut Server, token: &str) -> BTreeSet<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let (enough_tx, enough) = mpsc::channel::<()>();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, acknowledged, count, enough_tx) = (
            client.clone(),
            acknowledged.clone(),
            count.clone(),
            enough_tx.clone(),
        );
        let url = format!("{}/v1/users", server.addr);
        let token = token.to_owned();
        tasks.push(runtime.spawn(async move {
            for i in 0.. {
                let name = format!("crash-{c}-{i}");
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"name": name}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => {
                        acknowledged.lock().unwrap().insert(name);
                        if count.fetch_add(1, Ordering::SeqCst) + 1 == ACKNOWLEDGED {
                            let _ = enough_tx.send(());
                        }
                    }
                    Ok(r) => panic!("creating {name} answered {}", r.status()),
                    // The server is gone.
                    Err(_) => return,
                }
            }
        }));
    }
    drop(enough_tx);
    enough
        .recv_timeout(STARTUP)
        .expect("the server acknowledged too few users");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= ACKNOWLEDGED);
    acknowledged
}

/// Every `user.created` record's subject, read through a running server.
fn created_users(server: &Server, token: &str) -> BTreeSet<String> {
    let out = server.client(
        token,
        &[
            "audit",
            "tail",
            "-n",
            "1000",
            "--type",
            "user.created",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let subjects: BTreeSet<String> = stdout(&out)
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["event"]["subject"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(subjects.len() < 1000, "more users than one page holds");
    subjects
}

/// The crash test on one backend; `verify_args` name the database for `rein audit verify`.
fn crash_and_recover(tmp: &Path, dir: &Path, admin: &str, verify_args: &[&str]) {
    let mut server = start(dir, tmp, "crash.log", &[]);
    let acknowledged = create_users_until_killed(&mut server, admin);
    drop(server);

    // The chain the killed server left verifies.
    let mut args = vec!["--data-dir", dir.to_str().unwrap()];
    args.extend_from_slice(verify_args);
    let out = verify(&args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // Every acknowledged change has its record; appends continue the chain after a restart.
    let server = start(dir, tmp, "restart.log", &[]);
    let recorded = created_users(&server, admin);
    let missing: Vec<&String> = acknowledged.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not recorded: {missing:?}"
    );
    let head = |server: &Server| {
        let out = server.client(admin, &["audit", "tail", "-n", "1", "--output", "json"]);
        let record: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        record["seq"].as_u64().unwrap()
    };
    let before = head(&server);
    let out = server.client(admin, &["user", "create", "after-the-crash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(head(&server), before + 1);
    let shown = server.json(admin, &["audit", "show", &(before + 1).to_string()]);
    assert_eq!(shown["event"]["subject"], "after-the-crash");
    let out = verify(&args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("audit log intact: {} records", before + 1)),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_server_killed_under_load_loses_no_acknowledged_record_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let admin = init(&dir, &[]);
    crash_and_recover(tmp.path(), &dir, &admin, &[]);
}

#[test]
fn a_server_killed_under_load_loses_no_acknowledged_record_on_postgres() {
    let Some((schema_url, drop_schema)) = super::postgres_schema("rein_cli_crash") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let admin = init(&dir, &["--database-url", &schema_url]);
    crash_and_recover(tmp.path(), &dir, &admin, &["--database-url", &schema_url]);
    drop_schema();
}
