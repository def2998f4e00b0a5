//! `rein secret` through the real binary against a real server: values come from a file,
//! standard input or an environment variable (never an argument), are never printed, logged or
//! returned, and are stored sealed under the data directory's master key; systems reference
//! them by name, and a referenced secret is not deleted.

use std::process::Output;

use rein_store::Store as _;

use super::tokens::with_stdin;
use super::{assert_error, init, rein, run, stderr, stdout, Server};

const FIRST: &str = "pg-password-from-file-6f1d2c";
const SECOND: &str = "pg-password-from-stdin-93ab47";
const THIRD: &str = "api-key-from-env-51e0aa";

#[test]
fn secrets_are_set_from_files_stdin_or_env_and_never_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let admin = init(&dir, &[]);
    let log = tmp.path().join("server.log");
    let mut server = Server::start(
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        tmp.path(),
        &log,
    );
    let mut outputs: Vec<Output> = Vec::new();
    let secret_cmd = |args: &[&str]| {
        let mut cmd = rein();
        cmd.env("REIN_ADDR", &server.addr)
            .env("REIN_TOKEN", &admin)
            .arg("secret")
            .args(args);
        cmd
    };

    // From a file: its trailing newline is not part of the value.
    let file = tmp.path().join("db-pass.txt");
    std::fs::write(&file, format!("{FIRST}\n")).unwrap();
    let set = server.json(
        &admin,
        &[
            "secret",
            "set",
            "db-pass",
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (set["name"].as_str(), set["version"].as_u64()),
        (Some("db-pass"), Some(1))
    );
    assert!(
        set.get("value").is_none() && set.get("sealed").is_none(),
        "{set}"
    );

    // From standard input: a rotation.
    let out = with_stdin(
        &mut secret_cmd(&["set", "db-pass", "--from-file", "-"]),
        &format!("{SECOND}\r\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("version") && stdout(&out).contains('2'),
        "{}",
        stdout(&out)
    );
    outputs.push(out);

    // From an environment variable.
    let out =
        run(secret_cmd(&["set", "api-key", "--from-env", "BILLING_KEY"]).env("BILLING_KEY", THIRD));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    outputs.push(out);
    let out = run(&mut secret_cmd(&[
        "set",
        "other",
        "--from-env",
        "NOT_SET_ANYWHERE",
    ]));
    assert_error(&out, "invalid-input");
    outputs.push(out);

    // Never as an argument, and one source only: usage errors.
    for args in [
        &["set", "db-pass", FIRST][..],
        &["set", "db-pass"],
        &[
            "set",
            "db-pass",
            "--from-file",
            "-",
            "--from-env",
            "BILLING_KEY",
        ],
    ] {
        let out = run(&mut secret_cmd(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }

    // List and show: names and versions.
    let listed = server.json(&admin, &["secret", "list"]);
    let names: Vec<(&str, u64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(names, [("api-key", 1), ("db-pass", 2)]);
    let out = run(&mut secret_cmd(&["list"]));
    assert!(stdout(&out).contains("db-pass"), "{}", stdout(&out));
    outputs.push(out);
    let out = run(&mut secret_cmd(&["show", "db-pass"]));
    assert!(stdout(&out).contains("updated_by"), "{}", stdout(&out));
    outputs.push(out);

    // A system references a secret by name: only one that exists; a referenced one stays.
    let system = |secret: &str| {
        let path = tmp.path().join(format!("billing-{secret}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: billing-{secret}\nenvironment: prod\nowner_team: platform\n\
                 mcp:\n  transport: stdio\n  command: billing-mcp\n  env:\n    DB_PASSWORD: {{secret: {secret}}}\n"
            ),
        )
        .unwrap();
        run(rein()
            .env("REIN_ADDR", &server.addr)
            .env("REIN_TOKEN", &admin)
            .args(["system", "create", "--file", path.to_str().unwrap()]))
    };
    server.json(&admin, &["team", "create", "platform"]);
    assert_error(&system("missing"), "invalid-field");
    let out = system("db-pass");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = assert_error(&run(&mut secret_cmd(&["delete", "db-pass"])), "in-use");
    assert!(err.contains("billing-db-pass"), "{err}");
    let out = run(&mut secret_cmd(&["delete", "api-key"]));
    assert_eq!(stdout(&out).trim(), "deleted secret api-key");
    outputs.push(out);
    assert_error(&run(&mut secret_cmd(&["show", "api-key"])), "not-found");
    let out = run(&mut secret_cmd(&["show", "db-pass"]));
    outputs.push(out);

    assert!(server.stop().success());
    // Nothing printed or logged any value.
    let log = std::fs::read_to_string(&log).unwrap();
    for value in [FIRST, SECOND, THIRD] {
        assert!(!log.contains(value), "the server log shows a secret");
        for out in &outputs {
            assert!(!stdout(out).contains(value) && !stderr(out).contains(value));
        }
    }

    // What the server stored opens under the data directory's master key to the value sent,
    // without the trailing newline.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = rein_store::SqliteStore::open(&dir.join("rein.db"))
            .await
            .unwrap();
        let master = rein_keys::MasterKey::load(&dir.join("master.key")).unwrap();
        let stored = store
            .secret(&"db-pass".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let value = master
            .open_secret("db-pass", stored.value.version, &stored.value.sealed)
            .unwrap();
        assert_eq!(value.as_str().unwrap(), SECOND);
        assert!(store
            .secret(&"api-key".parse().unwrap())
            .await
            .unwrap()
            .is_none());
    });
}
