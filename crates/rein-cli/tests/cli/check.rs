//! `rein check` end to end, offline: the example governance repository passes with findings
//! (located on its manifest lines in SARIF), and broken sets fail with `file:line` messages.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::{rein, run, stderr, stdout, workspace_root};

fn check(cwd: &Path, args: &[&str]) -> Output {
    run(rein().current_dir(cwd).arg("check").args(args))
}

/// A copy of the example governance set in `tmp/governance`, plus `extra` written to
/// `zz-extra.yaml` (read last).
fn set_with(tmp: &Path, extra: &str) -> PathBuf {
    let dir = tmp.join("governance");
    std::fs::create_dir_all(&dir).unwrap();
    let examples = workspace_root().join("examples/governance");
    for entry in std::fs::read_dir(examples).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.join("zz-extra.yaml"), extra).unwrap();
    dir
}

/// Asserts `rein check` failed with exit 1 and one stderr line starting with `prefix` that
/// mentions `mentions`; returns stderr.
fn assert_fails_at(out: &Output, prefix: &str, mentions: &str) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{}\n{err}", stdout(out));
    assert!(
        err.lines()
            .any(|l| l.starts_with(prefix) && l.contains(mentions)),
        "expected a line `{prefix}…{mentions}…`:\n{err}"
    );
    assert!(err.lines().last().unwrap().starts_with("error: "), "{err}");
    err
}

#[test]
fn the_examples_pass_with_findings_located_on_their_manifest_lines() {
    let root = workspace_root();
    let out = check(&root, &["examples/governance"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("valid"), "{text}");
    assert!(text.contains("missing-accountable-role"), "{text}");
    assert!(
        text.contains("ticket-triage"),
        "the shared-service agent is flagged: {text}"
    );
    assert!(text.contains("not evaluated offline"), "{text}");

    let out = check(
        &root,
        &[
            "examples/governance",
            "--policies",
            "examples/policies",
            "--format",
            "sarif",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sarif: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(!results.is_empty());
    let agents = std::fs::read_to_string(root.join("examples/governance/agents.yaml")).unwrap();
    let triage = results
        .iter()
        .find(|r| {
            r["ruleId"] == "missing-accountable-role"
                && r["message"]["text"]
                    .as_str()
                    .unwrap()
                    .contains("ticket-triage")
        })
        .expect("the shared-service agent's finding");
    let physical = &triage["locations"][0]["physicalLocation"];
    assert_eq!(
        physical["artifactLocation"]["uri"],
        "examples/governance/agents.yaml"
    );
    let line = physical["region"]["startLine"].as_u64().unwrap() as usize;
    let declared = agents.lines().nth(line - 1).unwrap();
    assert_eq!(declared, "kind: Agent", "line {line}");
    assert!(
        agents
            .lines()
            .skip(line)
            .take(4)
            .any(|l| l.contains("ticket-triage")),
        "line {line} starts the ticket-triage document"
    );
    let grant = results
        .iter()
        .find(|r| r["ruleId"] == "grant-without-expiry-or-ttl-above-policy")
        .expect("a grant finding");
    assert_eq!(
        grant["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "examples/governance/grants.yaml"
    );

    let out = check(&root, &["examples/governance", "--fail-on", "info"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("(findings)"), "{}", stderr(&out));

    let out = check(&root, &["examples/governance", "--fail-on", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_grant_for_an_undeclared_agent_fails_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = set_with(
        tmp.path(),
        "# a grant for nobody\n---\nkind: Grant\nspec:\n  agent: spiffe://rein.local/agent/payments/ghost/prod\n  system: payments-db\n  actions: [select_invoices]\n  expires_at: \"2099-01-01T00:00:00Z\"\n  justification: none\n",
    );
    let out = check(tmp.path(), &[dir.to_str().unwrap()]);
    let file = dir.join("zz-extra.yaml");
    assert_fails_at(&out, &format!("{}:3: ", file.display()), "ghost");
}

/// The server's secrets are unknown offline: a system's reference to one is accepted by `rein
/// check` (and checked against the server by `rein plan`), a literal credential is not.
#[test]
fn mcp_systems_reference_secrets_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let system = |value: &str| {
        format!(
            "kind: System\nspec:\n  name: billing-mcp\n  environment: prod\n  owner_team: payments\n  \
             mcp:\n    transport: stdio\n    command: billing-mcp\n    env:\n      BILLING_API_KEY: {value}\n"
        )
    };
    let dir = set_with(tmp.path(), &system("{secret: billing-api-key}"));
    let out = check(tmp.path(), &[dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let dir = set_with(tmp.path(), &system("sk-live-abcdef0123456789"));
    let out = check(tmp.path(), &[dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        !stderr(&out).contains("sk-live-abcdef0123456789"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_fields_and_invalid_yaml_fail_at_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = set_with(
        tmp.path(),
        "---\nkind: Team\nspec:\n  name: research\n  members: [alice]\n  colour: blue\n",
    );
    let file = dir.join("zz-extra.yaml");
    let out = check(tmp.path(), &[dir.to_str().unwrap()]);
    assert_fails_at(
        &out,
        &format!("{}:6: ", file.display()),
        "unknown field `colour`",
    );

    std::fs::write(
        &file,
        "---\nkind: Team\nspec:\n  name: [research\n  members: x\n",
    )
    .unwrap();
    let out = check(tmp.path(), &[dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with(&format!("{}:", file.display())))
        .unwrap_or_else(|| panic!("a located error: {err}"));
    let number: u32 = line[file.display().to_string().len() + 1..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((4..=6).contains(&number), "{line}");
}

#[test]
fn a_duplicate_identity_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = set_with(
        tmp.path(),
        "---\nkind: Team\nspec:\n  name: payments\n  members: [alice]\n",
    );
    let out = check(tmp.path(), &[dir.to_str().unwrap()]);
    let file = dir.join("zz-extra.yaml");
    assert_fails_at(&out, &format!("{}:2: ", file.display()), "payments");
}

#[test]
fn an_inline_secret_fails_at_its_line_without_echoing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = set_with(
        tmp.path(),
        "---\nkind: System\nspec:\n  name: vault\n  environment: dev\n  owner_team: platform\n  classification: internal\n  approvers: [team:platform]\n  api_key: sk-live0123456789abcdefghijkl\n  actions:\n    read: {class: read}\n",
    );
    let out = check(tmp.path(), &[dir.to_str().unwrap()]);
    let file = dir.join("zz-extra.yaml");
    let err = assert_fails_at(
        &out,
        &format!("{}:9: ", file.display()),
        "inline secret in `spec.api_key`",
    );
    assert!(!err.contains("sk-live"), "{err}");
    assert!(!stdout(&out).contains("sk-live"));
}
