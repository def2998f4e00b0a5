//! `rein policy` end to end, offline: `check` on the example guardrails and on a broken file,
//! `test` on the example cases (and on a failing case and an invalid case file), `explain` on a
//! denied case.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::{assert_error, rein, run, stdout, workspace_root};

/// How many cases `examples/policies/tests/*.yaml` hold.
const EXAMPLE_CASES: usize = 52;

fn examples() -> PathBuf {
    workspace_root().join("examples/policies")
}

fn policy(args: &[&str]) -> Output {
    run(rein().arg("policy").args(args))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A directory with copies of the example guardrails and one case file.
fn with_case(tmp: &Path, name: &str, text: &str) -> PathBuf {
    let dir = tmp.join("policies");
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "cedar") {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.join("tests").join(name), text).unwrap();
    dir
}

const CASE: &str = "\
time: 2026-01-10T10:00:00Z
fixture:
  agents: [{id: payments/bot/prod}]
  systems: [{name: db, actions: {alter_schema: admin}}]
  grants: [{name: dba}]
cases:
";

#[test]
fn the_example_guardrails_pass_their_own_cases() {
    let out = policy(&["test", path(&examples())]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", super::stderr(&out));
    assert_eq!(
        text.lines().filter(|l| l.starts_with("PASS ")).count(),
        EXAMPLE_CASES,
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with(&format!("{EXAMPLE_CASES} passed, 0 failed, 0 invalid")),
        "{text}"
    );

    // JSON for scripts, with --output before or after the subcommand.
    for args in [
        vec!["--output", "json", "policy", "test", path(&examples())],
        vec!["policy", "test", path(&examples()), "--output", "json"],
    ] {
        let out = run(rein().args(&args));
        assert!(out.status.success());
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["passed"], EXAMPLE_CASES);
        assert_eq!(doc["failed"], 0);
        assert!(doc["policy_version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
    }
}

#[test]
fn a_failing_case_exits_1_and_is_named_with_what_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = with_case(
        tmp.path(),
        "wrong.yaml",
        &format!(
            "{CASE}  - name: saturday admin is wrongly expected to pass\n    request: {{action: alter_schema}}\n    expect: {{decision: allow}}\n  - name: saturday admin is denied\n    request: {{action: alter_schema}}\n    expect: {{decision: deny, determined_by: [prod-admin-outside-change-window]}}\n"
        ),
    );
    let out = policy(&["test", path(&dir)]);
    let err = assert_error(&out, "policy-test-failed");
    assert!(
        err.contains("`saturday admin is wrongly expected to pass`"),
        "{err}"
    );
    let text = stdout(&out);
    assert!(
        text.contains("FAIL ") && text.contains("saturday admin is wrongly expected to pass"),
        "{text}"
    );
    assert!(
        text.contains("decision: expected allow, got deny"),
        "{text}"
    );
    assert!(
        text.contains("PASS ") && text.contains("saturday admin is denied"),
        "{text}"
    );
    assert!(text.contains("1 passed, 1 failed"), "{text}");
}

#[test]
fn an_invalid_case_file_names_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = with_case(
        tmp.path(),
        "typo.yaml",
        &format!(
            "{CASE}  - name: a typo\n    request: {{action: alter_schema}}\n    expect: {{decision: deny, determind_by: [x]}}\n"
        ),
    );
    let out = policy(&["test", path(&dir)]);
    let err = assert_error(&out, "invalid-case");
    assert!(err.contains("typo.yaml:9:"), "{err}");
    assert!(err.contains("unknown field `determind_by`"), "{err}");

    // A fixture that describes an impossible state: a grant across environments.
    let dir = with_case(
        &tmp.path().join("x"),
        "cross.yaml",
        "fixture:\n  agents: [{id: payments/bot/dev}]\n  systems: [{name: db, actions: {r: read}}]\n  grants: [{name: g}]\ncases:\n  - name: a\n    request: {action: r, time: 2026-01-07T10:00:00Z}\n    expect: {decision: allow}\n",
    );
    let out = policy(&["test", path(&dir)]);
    let err = assert_error(&out, "invalid-case");
    assert!(err.contains("cross.yaml: fixture: grant `g`"), "{err}");
}

#[test]
fn check_prints_the_version_and_names_file_and_line_of_an_error() {
    let out = policy(&["check", path(&examples())]);
    assert!(out.status.success(), "{}", super::stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("8 guardrail(s) valid, version sha256:"),
        "{text}"
    );
    assert!(text.contains("sql-drop-or-truncate"), "{text}");
    assert!(text.contains("step_up(2)"), "{text}");
    assert!(text.contains("shadow deny"), "{text}");

    let out = run(rein().args(["policy", "check", path(&examples()), "--output", "json"]));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["guardrails"].as_array().unwrap().len(), 8);

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.cedar"),
        "// a comment\n@id(\"x\")\nforbid (principal, action, resource)\nwhen { context.no_such_thing };\n",
    )
    .unwrap();
    let out = policy(&["check", path(tmp.path())]);
    let err = assert_error(&out, "invalid-policy");
    let at = format!("{}:4:", tmp.path().join("bad.cedar").display());
    assert!(err.contains(&at), "{err}");
    assert!(stdout(&out).contains(&at), "{}", stdout(&out));

    // `test` refuses to run against an invalid set, naming the same place.
    let out = policy(&["test", path(&examples()), "--policies", path(tmp.path())]);
    let err = assert_error(&out, "invalid-policy");
    assert!(err.contains(&at), "{err}");
}

#[test]
fn explain_names_the_guardrail_its_reason_and_where_it_is() {
    let case = examples().join("tests/change-window.yaml");
    let out = policy(&[
        "explain",
        "--case",
        path(&case),
        "--name",
        "admin on a Saturday is denied",
    ]);
    assert!(out.status.success(), "{}", super::stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("decision:  deny (rule guardrail)"), "{text}");
    assert!(
        text.contains("prod-admin-outside-change-window [deny] change-window.cedar:4: MATCHED: admin actions on production systems are allowed only in the change window"),
        "{text}"
    );
    assert!(text.contains("not applicable (skipped by the"), "{text}");
    assert!(text.contains("expected:  met"), "{text}");

    let out = run(rein().args([
        "policy",
        "explain",
        "--case",
        path(&case),
        "--name",
        "admin on a Saturday is denied",
        "--output",
        "json",
    ]));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["decision"]["outcome"], "deny");
    assert_eq!(doc["explanation"]["outcome"], "deny");
    let matched: Vec<&Value> = doc["explanation"]["guardrails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["status"] == "matched")
        .collect();
    assert_eq!(matched.len(), 1);
    assert_eq!(matched[0]["id"], "prod-admin-outside-change-window");

    // Several cases and no --name: the choice is listed.
    let out = policy(&["explain", "--case", path(&case)]);
    let err = assert_error(&out, "invalid-case");
    assert!(err.contains("choose one with --name"), "{err}");
}
