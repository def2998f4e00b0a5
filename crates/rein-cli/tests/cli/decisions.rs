//! `rein authorize` and `rein policy status|reload` against a real `rein server --dev`: the
//! example governance set (`examples/governance`) decides, exit codes separate allow (0), deny
//! and step-up (3) and errors (1), and an invalid policy set is refused on reload while the
//! previous one stays in force.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::{assert_error, rein, run, stderr, stdout, workspace_root, Server};

/// The example prod agent: active, every accountable role, per-task budgets (so every call
/// names a task).
const AGENT: &str = "payments/invoice-reconciler/prod";

/// A dev server on the examples, with its policies read from `policies` when given; returns it
/// with the admin token.
fn dev_server(tmp: &Path, policies: Option<&Path>) -> (Server, String) {
    let mut args = vec!["--dev", "--listen", "127.0.0.1:0"];
    if let Some(dir) = policies {
        args.extend(["--policies-dir", dir.to_str().unwrap()]);
    }
    let mut server = Server::start(&args, &workspace_root(), &tmp.join("dev.log"));
    let admin = server.line("REIN_TOKEN=");
    (server, admin)
}

/// `rein authorize --agent AGENT <args>` as `token`.
fn authorize(server: &Server, token: &str, args: &[&str]) -> Output {
    server.client(token, &[&["authorize", "--agent", AGENT], args].concat())
}

/// A confident, low-risk call in task `t-1` with a stated intent: no example guardrail
/// matches it.
const CALM: [&str; 8] = [
    "--task-id",
    "t-1",
    "--intent",
    "match settlements against open invoices",
    "--risk",
    "10",
    "--confidence",
    "0.95",
];

/// A granted production write the agent rates at risk 90: the example guardrails ask for a
/// step-up.
const RISKY_WRITE: [&str; 12] = [
    "--system",
    "tickets",
    "--action",
    "add_comment",
    "--task-id",
    "t-2",
    "--intent",
    "report a mismatch",
    "--risk",
    "90",
    "--confidence",
    "0.95",
];

#[track_caller]
fn assert_exit(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

#[test]
fn authorize_prints_the_decision_and_exits_by_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = dev_server(tmp.path(), None);
    let read = ["--system", "payments-db", "--action", "select_invoices"];

    // Granted (examples/governance/grants.yaml), and no guardrail matches: allow, exit 0.
    let text = assert_exit(&authorize(&server, &admin, &[&read[..], &CALM].concat()), 0);
    assert!(text.starts_with("allow  (rule allow)"), "{text}");
    assert!(text.contains("allowed by grant `grt_"), "{text}");

    // The system declares the action, but no grant includes it: deny, exit 3, with the reason.
    let out = authorize(
        &server,
        &admin,
        &[
            &["--system", "payments-db", "--action", "insert_adjustment"][..],
            &CALM,
        ]
        .concat(),
    );
    let text = assert_exit(&out, 3);
    assert!(text.starts_with("deny  (rule grant)"), "{text}");
    assert!(
        text.contains("no active grant covers `insert_adjustment` on `payments-db`"),
        "{text}"
    );
    assert!(text.contains("does not include this action"), "{text}");
    assert!(text.contains("rule:no-grant"), "{text}");

    // A granted production write the agent rates at risk 90: step-up, exit 3.
    let out = authorize(&server, &admin, &RISKY_WRITE);
    let text = assert_exit(&out, 3);
    assert!(text.starts_with("step_up  (rule guardrail)"), "{text}");
    assert!(text.contains("prod-write-high-risk"), "{text}");
    assert!(
        text.contains("step-up:         1 approver(s) needed"),
        "{text}"
    );

    // `--output json`: the response body, with what scripts need.
    let out = authorize(
        &server,
        &admin,
        &[&read[..], &CALM, &["--output", "json"]].concat(),
    );
    let text = assert_exit(&out, 0);
    let d: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["rule"], "allow");
    assert!(
        d["decision_id"].as_str().unwrap().starts_with("dec_"),
        "{d}"
    );
    assert!(
        d["policy_version"].as_str().unwrap().starts_with("sha256:"),
        "{d}"
    );
    let by = d["determined_by"].as_array().unwrap();
    assert_eq!(by.len(), 1, "{d}");
    assert!(by[0].as_str().unwrap().starts_with("grt_"), "{d}");
    // A denial prints its JSON too, and still exits 3.
    let out = authorize(
        &server,
        &admin,
        &[
            &["--system", "payments-db", "--action", "insert_adjustment"][..],
            &CALM,
            &["--output", "json"],
        ]
        .concat(),
    );
    let d: Value = serde_json::from_str(&assert_exit(&out, 3)).unwrap();
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["determined_by"][0], "rule:no-grant");

    // Malformed input is an error (exit 1, one line), not a decision.
    for (flag, value, code, says) in [
        ("--risk", "150", "invalid-field", "risk"),
        (
            "--arguments",
            "[1]",
            "invalid-input",
            "must be a JSON object",
        ),
    ] {
        let args = [&read[..], &["--task-id", "t-1", flag, value]].concat();
        let err = assert_error(&authorize(&server, &admin, &args), code);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }

    // `rein policy status` shows the version the decisions name.
    let status = server.json(&admin, &["policy", "status"]);
    assert_eq!(status["version"], d["policy_version"]);
    let text = assert_exit(&server.client(&admin, &["policy", "status"]), 0);
    let version = d["policy_version"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("version:    {version}\n")),
        "{text}"
    );
    assert!(text.contains("prod-write-high-risk"), "{text}");
    assert!(text.contains("prod-writes.cedar:4"), "{text}");
}

#[test]
fn policy_reload_keeps_the_set_in_force_when_the_new_one_is_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    let policies = tmp.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let examples = workspace_root().join("examples/policies");
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cedar") {
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
    }
    let (mut server, admin) = dev_server(tmp.path(), Some(&policies));
    let tokens =
        std::fs::read_to_string(server.line("Example users' tokens (valid 1 day): ")).unwrap();
    let alice = tokens
        .lines()
        .find_map(|l| l.strip_prefix("REIN_TOKEN_ALICE="))
        .unwrap();

    let before = server.json(&admin, &["policy", "status"]);
    let version = before["version"].as_str().unwrap().to_owned();
    assert_eq!(
        before["dir"].as_str().map(Path::new),
        Some(policies.as_path()),
        "{before}"
    );
    let drop = before["guardrails"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "sql-drop-or-truncate")
        .unwrap();
    assert_eq!(drop["mode"], "enforce");
    assert_eq!(drop["step_up"], 2);
    assert_eq!(drop["location"], "dangerous-arguments.cedar:4");

    // An admin reloads the unchanged set: the same version.
    let out = server.client(&admin, &["policy", "reload"]);
    let text = assert_exit(&out, 0);
    assert!(
        text.starts_with(&format!("reloaded\nversion:    {version}\n")),
        "{text}"
    );
    let reloaded = server.json(&admin, &["policy", "reload"]);
    assert_eq!(reloaded["version"], version.as_str());
    // Members may read the set in force but not reload it.
    assert_eq!(
        server.json(alice, &["policy", "status"])["version"],
        version.as_str()
    );
    assert_error(&server.client(alice, &["policy", "reload"]), "forbidden");

    // An invalid file: the reload is refused naming it, and the old set stays in force.
    // Written beside the directory and renamed into it, so that the server's watcher never
    // sees the file half-written (an empty file would be a valid, different set).
    let staged = tmp.path().join("broken.cedar");
    std::fs::write(
        &staged,
        "@id(\"broken\")\nforbid (principal, action, resource) when { nonsense };\n",
    )
    .unwrap();
    std::fs::rename(&staged, policies.join("broken.cedar")).unwrap();
    let err = assert_error(
        &server.client(&admin, &["policy", "reload"]),
        "invalid-policy",
    );
    assert!(err.contains("broken.cedar:2:"), "{err}");
    assert!(err.contains("nonsense"), "{err}");
    let after = server.json(&admin, &["policy", "status"]);
    assert_eq!(after["version"], version.as_str());
    assert_eq!(after["guardrails"], before["guardrails"]);
    let text = assert_exit(&server.client(&admin, &["policy", "status"]), 0);
    assert!(
        text.starts_with(&format!("version:    {version}\n")),
        "{text}"
    );

    // Offline commands need neither a server nor a token.
    let out = run(rein().args(["policy", "check"]).arg(&policies));
    let err = assert_error(&out, "invalid-policy");
    assert!(err.contains("broken.cedar"), "{err}");
    std::fs::remove_file(policies.join("broken.cedar")).unwrap();
    let out = run(rein()
        .args(["policy", "check", "--output", "json"])
        .arg(&policies));
    let checked: Value = serde_json::from_str(&assert_exit(&out, 0)).unwrap();
    assert_eq!(checked["version"], version.as_str());
}

#[test]
fn the_kill_switch_denies_until_it_is_lifted() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, admin) = dev_server(tmp.path(), None);
    let users =
        std::fs::read_to_string(server.line("Example users' tokens (valid 1 day): ")).unwrap();
    let alice = users
        .lines()
        .find_map(|l| l.strip_prefix("REIN_TOKEN_ALICE="))
        .unwrap()
        .to_owned();
    let read = [
        &["--system", "payments-db", "--action", "select_invoices"][..],
        &CALM,
    ]
    .concat();
    assert_exit(&authorize(&server, &admin, &read), 0);

    // Only an admin pulls the kill switch; alice is refused with one line.
    let out = server.client(
        &alice,
        &["revoke", "environment", "prod", "--reason", "drill"],
    );
    assert_error(&out, "forbidden");
    let out = server.client(
        &admin,
        &[
            "--output",
            "json",
            "revoke",
            "environment",
            "prod",
            "--reason",
            "drill",
        ],
    );
    let revocation: Value = serde_json::from_str(&assert_exit(&out, 0)).unwrap();
    let id = revocation["id"].as_str().unwrap().to_owned();
    let text = assert_exit(&authorize(&server, &admin, &read), 3);
    assert!(text.contains("environment `prod` is revoked"), "{text}");
    let listed = assert_exit(&server.client(&alice, &["revoke", "list"]), 0);
    assert!(
        listed.contains(&id) && listed.contains("environment"),
        "{listed}"
    );
    // The one running replica (this server) has applied it.
    let status = assert_exit(
        &server.client(&alice, &["revoke", "status", &id, "--wait", "5"]),
        0,
    );
    assert!(
        status.contains("rpl_") && status.contains("complete: true"),
        "{status}"
    );
    assert_error(
        &server.client(&alice, &["revoke", "status", &id, "--wait", "61"]),
        "invalid-field",
    );

    // Lifted: decisions resume.
    assert_exit(
        &server.client(&admin, &["revoke", "lift", &id, "--reason", "drill over"]),
        0,
    );
    assert_exit(&authorize(&server, &admin, &read), 0);
    let out = server.client(&admin, &["revoke", "before", "yesterday", "--reason", "x"]);
    assert_error(&out, "invalid-input");

    // Key rotation is an admin's; decisions and tokens go on.
    assert_error(&server.client(&alice, &["keys", "rotate"]), "forbidden");
    let text = assert_exit(&server.client(&admin, &["keys", "rotate"]), 0);
    assert!(
        text.contains("kid") && text.contains("retired_kid"),
        "{text}"
    );
}

/// The approval ID `rein authorize` printed for a step-up.
fn approval_of(text: &str) -> String {
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("approval:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no approval line: {text}"))
        .to_owned();
    assert!(id.starts_with("apr_"), "{text}");
    id
}

#[test]
fn a_step_up_is_approved_from_the_cli_and_unlocks_the_call_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, admin) = dev_server(tmp.path(), None);
    let users =
        std::fs::read_to_string(server.line("Example users' tokens (valid 1 day): ")).unwrap();
    let dave = users
        .lines()
        .find_map(|l| l.strip_prefix("REIN_TOKEN_DAVE="))
        .unwrap()
        .to_owned();
    let call = RISKY_WRITE;
    let id = approval_of(&assert_exit(&authorize(&server, &admin, &call), 3));

    // dave (team platform: the system's approvers) sees and approves it; the admin who asked
    // may not; waiting reports the approval.
    let listed = assert_exit(&server.client(&dave, &["approvals", "list"]), 0);
    assert!(listed.contains(&id), "{listed}");
    assert_error(
        &server.client(&admin, &["approvals", "approve", &id]),
        "forbidden",
    );
    assert_exit(
        &server.client(&dave, &["approvals", "approve", &id, "--comment", "fine"]),
        0,
    );
    let waited = assert_exit(&server.client(&admin, &["approvals", "wait", &id]), 0);
    assert!(waited.contains("approved"), "{waited}");

    // The call goes through once with the approval attached.
    let with = [&call[..], &["--approval-id", &id]].concat();
    let text = assert_exit(&authorize(&server, &admin, &with), 0);
    assert!(text.contains(&format!("approval:{id}")), "{text}");
    assert_exit(&authorize(&server, &admin, &with), 3);
    assert_error(
        &server.client(&dave, &["approvals", "deny", &id, "--comment", "late"]),
        "invalid-transition",
    );

    // `rein trace` shows the task's chain in order: the approval asked with the step-up,
    // given, used by the allowed call; the second use asks again.
    let trace = server.json(&admin, &["trace", "t-2"]);
    let chain: Vec<String> = trace
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let e = &r["event"];
            match e["decision"].as_str() {
                Some(d) => format!("{}:{d}", e["type"].as_str().unwrap()),
                None => e["type"].as_str().unwrap().to_owned(),
            }
        })
        .collect();
    assert_eq!(
        chain,
        [
            "approval.requested",
            "decision:step_up",
            "approval.granted",
            "approval.used",
            "decision:allow",
            "approval.requested",
            "decision:step_up"
        ]
    );
    let text = assert_exit(&server.client(&admin, &["trace", "t-2"]), 0);
    assert!(
        text.contains("tickets") && text.contains("add_comment"),
        "{text}"
    );
    assert!(text.contains("step_up") && text.contains("dave"), "{text}");
    let none = assert_exit(&server.client(&admin, &["trace", "no-such-task"]), 0);
    assert!(none.contains("No records"), "{none}");
    // A denied request makes `wait` exit 3.
    let id = approval_of(&assert_exit(&authorize(&server, &admin, &call), 3));
    assert_exit(
        &server.client(&dave, &["approvals", "deny", &id, "--comment", "no"]),
        0,
    );
    assert_exit(&server.client(&admin, &["approvals", "wait", &id]), 3);
}

#[test]
fn posture_prints_a_table_writes_sarif_and_fails_ci_on_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = dev_server(tmp.path(), None);
    let text = assert_exit(&server.client(&admin, &["posture"]), 0);
    assert!(
        text.contains("SEVERITY") || text.contains("severity"),
        "{text}"
    );
    let sarif = tmp.path().join("posture.sarif");
    assert_exit(
        &server.client(
            &admin,
            &[
                "posture",
                "--format",
                "sarif",
                "--out",
                sarif.to_str().unwrap(),
            ],
        ),
        0,
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(doc["version"], "2.1.0");
    let json = assert_exit(&server.client(&admin, &["--output", "json", "posture"]), 0);
    let report: Value = serde_json::from_str(&json).unwrap();
    // The example set has findings (e.g. grants without a token lifetime of their own).
    assert!(
        !report["findings"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_error(
        &server.client(&admin, &["posture", "--fail-on", "info"]),
        "findings",
    );
    assert_error(
        &server.client(&admin, &["posture", "--format", "pdf"]),
        "invalid-input",
    );
}

#[test]
fn an_access_review_is_started_shown_and_decided_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, admin) = dev_server(tmp.path(), None);
    let users =
        std::fs::read_to_string(server.line("Example users' tokens (valid 1 day): ")).unwrap();
    let frank = users
        .lines()
        .find_map(|l| l.strip_prefix("REIN_TOKEN_FRANK="))
        .unwrap()
        .to_owned();
    let prod = "spiffe://rein.local/agent/payments/invoice-reconciler/prod";

    // The example agents were just created: nobody is due, `--all` reviews them anyway.
    assert_error(
        &server.client(&admin, &["review", "start"]),
        "invalid-field",
    );
    let opened = server.json(&admin, &["review", "start", "--all"]);
    let id = opened["campaign"]["id"].as_str().unwrap().to_owned();
    let item = opened["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["agent"] == prod)
        .unwrap();
    let grants: Vec<String> = item["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grant"].as_str().unwrap().to_owned())
        .collect();
    assert!(grants.len() >= 2, "{item}");

    // frank (team secops, the prod agent's reviewers) sees each grant with its use.
    let shown = assert_exit(&server.client(&frank, &["review", "show", &id]), 0);
    for expected in [
        "payments/invoice-reconciler/prod",
        "GRANT",
        "CALLS",
        "LAST_USED",
        "never",
    ] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
    let agent = "payments/invoice-reconciler/prod";
    let mut decide = vec!["review", "decide", &id, agent, "--keep", &grants[0]];
    for g in &grants[1..] {
        decide.extend(["--revoke", g.as_str()]);
    }
    decide.extend(["--comment", "quarterly review"]);
    // Not the admin, who is no reviewer.
    assert_error(&server.client(&admin, &decide), "forbidden");
    let decided = assert_exit(&server.client(&frank, &decide), 0);
    assert!(
        decided.contains("keep (frank)") && decided.contains("revoke (frank)"),
        "{decided}"
    );
    // Final, and the revoked grants are revoked.
    assert_error(&server.client(&frank, &decide), "invalid-transition");
    let revoked = server.json(&admin, &["grant", "show", &grants[1]]);
    assert_eq!(revoked["status"], "revoked", "{revoked}");
    let kept = server.json(&admin, &["grant", "show", &grants[0]]);
    assert_ne!(kept["status"], "revoked", "{kept}");
    let listed = assert_exit(&server.client(&admin, &["review", "list"]), 0);
    assert!(listed.contains(&id), "{listed}");
    assert_exit(&server.client(&admin, &["review", "overdue"]), 0);
}
