//! `rein plan` and `rein apply` end to end: the example governance repository loads into a
//! fresh installation without approving anything, applying it again changes nothing, a saved
//! plan is refused once the registry moved on, and a broken set applies nothing.

use std::path::Path;

use super::{init, rein, run, stderr, stdout, workspace_root, Server};

/// A copy of the example governance set in `tmp/governance`.
fn examples_copy(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("governance");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(workspace_root().join("examples/governance")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[test]
fn the_examples_apply_once_and_a_stale_plan_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let admin = init(&data, &[]);
    let server = Server::start(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        tmp.path(),
        &tmp.path().join("server.log"),
    );
    let set = examples_copy(tmp.path());
    let set_arg = set.to_str().unwrap();
    let grants_yaml = std::fs::read_to_string(set.join("grants.yaml")).unwrap();
    let declared_grants = grants_yaml.matches("kind: Grant").count();

    // The plan names each change at its manifest line.
    let out = server.client(&admin, &["plan", set_arg]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("agents.yaml:8: create agent"), "{text}");
    assert!(text.contains("waits for approval by"), "{text}");

    let out = server.client(&admin, &["apply", set_arg]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("Applied apl_"), "{text}");

    // Nothing was approved: every declared grant is a request.
    let grants = server.json(&admin, &["grant", "list"]);
    let grants = grants.as_array().unwrap();
    assert_eq!(grants.len(), declared_grants);
    assert!(
        grants.iter().all(|g| g["status"] == "requested"),
        "{grants:?}"
    );

    // Idempotent.
    let out = server.client(&admin, &["apply", set_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("No changes"), "{}", stdout(&out));

    // A plan saved for review is refused once the registry changed, and nothing is applied.
    let agents = std::fs::read_to_string(set.join("agents.yaml")).unwrap();
    std::fs::write(
        set.join("agents.yaml"),
        agents.replacen("review_cadence_days: 90", "review_cadence_days: 60", 1),
    )
    .unwrap();
    let plan_file = tmp.path().join("plan.json");
    let out = server.client(
        &admin,
        &["plan", set_arg, "--out", plan_file.to_str().unwrap()],
    );
    assert!(stdout(&out).contains("change agent"), "{}", stdout(&out));
    server.json(&admin, &["user", "create", "zoe"]);
    let out = server.client(
        &admin,
        &["apply", set_arg, "--plan", plan_file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("(stale-plan)"), "{}", stderr(&out));
    let prod = "spiffe://rein.local/agent/payments/invoice-reconciler/prod";
    let agent = server.json(&admin, &["agent", "show", prod]);
    assert_eq!(agent["roles"]["review_cadence_days"], 90);
    // Re-planned, it applies.
    let out = server.client(&admin, &["apply", set_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let agent = server.json(&admin, &["agent", "show", prod]);
    assert_eq!(agent["roles"]["review_cadence_days"], 60);

    // A broken set: every problem at its file:line, exit 1, nothing applied.
    std::fs::write(
        set.join("zz-extra.yaml"),
        "---\nkind: User\nspec: {name: yuri}\n---\nkind: Grant\nspec:\n  agent: spiffe://rein.local/agent/payments/ghost/prod\n  system: payments-db\n  actions: [read]\n  expires_at: \"2099-01-01T00:00:00Z\"\n  justification: nobody\n",
    )
    .unwrap();
    let out = server.client(&admin, &["apply", set_arg]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("zz-extra.yaml:5: grant") && l.contains("not declared")),
        "{err}"
    );
    let users = server.json(&admin, &["user", "list"]);
    assert!(!users.to_string().contains("yuri"), "{users}");

    // Inline secrets never reach the server.
    std::fs::write(
        set.join("zz-extra.yaml"),
        "---\nkind: User\nspec:\n  name: yuri\n  password: hunter2-very-secret\n",
    )
    .unwrap();
    let out = run(rein()
        .env("REIN_ADDR", "http://127.0.0.1:9")
        .env("REIN_TOKEN", &admin)
        .args(["plan", set_arg]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("zz-extra.yaml:5: inline secret"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
