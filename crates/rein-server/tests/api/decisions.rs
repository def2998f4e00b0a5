//! `/v1/authorize` and `/v1/policies` over HTTP: each decision against the registry as the API
//! changed it a moment before, the audit record of every decision, budgets and the circuit
//! breaker, fail-closed behaviour, bad input, and guardrail reloads (API and file watch). The
//! decision table itself (every rule and ordering) is `rein-policy`'s `tests/decision.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

const DEV_SYSTEM: &str = "billing-db-dev";

/// The example guardrails, copied so that a test may change them.
pub(super) fn example_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "cedar") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

async fn worlds_with(policies: &Path) -> Vec<World> {
    let mut worlds = Vec::new();
    for backend in backends() {
        if let Some(w) = World::with_policies(&backend, Some(PathBuf::from(policies))).await {
            worlds.push(w);
        }
    }
    worlds
}

fn call(agent: &str, system: &str, action: &str, context: Value) -> Value {
    json!({"agent": agent, "system": system, "action": action, "context": context})
}

async fn authorize(api: &Api, token: &str, body: Value) -> Value {
    api.post(token, "/v1/authorize", body).await.ok(200)
}

/// An active grant: requested by alice, approved by bob (and carol when it needs her).
pub(super) async fn active_grant(w: &World, agent: &str, system: &str, actions: &[&str]) -> String {
    let id = request_grant(&w.srv, &w.alice, agent, system, actions).await;
    let after = w.srv.post(&w.bob, &approve(&id), json!({})).await.ok(200);
    if after["status"] == "requested" {
        w.srv.post(&w.carol, &approve(&id), json!({})).await.ok(200);
    }
    id
}

pub(super) fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_decision_follows_the_registry_on_the_next_call_and_is_audited() {
    let policies = example_policies();
    for w in worlds_with(policies.path()).await {
        let srv = &w.srv;
        let read_call = || {
            call(
                PROD_AGENT,
                "billing-db",
                "read_invoices",
                json!({"task_id": "t-1", "intent": "reconcile march"}),
            )
        };

        // No grant yet: step 2 denies.
        let d = authorize(srv, &w.alice, read_call()).await;
        assert_eq!(
            (d["decision"].as_str(), d["rule"].as_str()),
            (Some("deny"), Some("grant")),
            "{d}"
        );

        // Granted: allowed, naming the grant, the policy version and its audit record.
        let grant = active_grant(&w, PROD_AGENT, "billing-db", &["read_invoices"]).await;
        let d = authorize(srv, &w.alice, read_call()).await;
        assert_eq!(d["decision"], "allow", "{d}");
        assert_eq!(strs(&d["determined_by"]), vec![grant.as_str()]);
        let status = read(srv, &w.alice, "/v1/policies").await;
        assert_eq!(d["policy_version"], status["version"]);
        assert!(d["decision_id"].as_str().unwrap().starts_with("dec_"));
        let seq = d["audit_seq"].as_u64().unwrap();
        let record = read(srv, &w.erin, &format!("/v1/audit/{seq}")).await;
        let e = &record["event"];
        assert_eq!(e["type"], "decision");
        assert_eq!(e["subject"], d["decision_id"]);
        assert_eq!(e["decision"], "allow");
        assert_eq!(e["actor"], json!({"kind": "user", "id": "alice"}));
        assert_eq!(e["task_id"], "t-1");
        assert_eq!(e["argument_digest"], d["argument_digest"]);
        assert_eq!(
            strs(&e["approvers"]),
            vec!["bob"],
            "who approved the access"
        );
        assert_eq!(
            strs(&e["revokers"]),
            vec!["team:sec"],
            "who can revoke the agent"
        );
        assert_eq!(e["details"]["intent"], "reconcile march");

        // Suspended: the very next call is denied at step 1, although the grant matches.
        srv.post(
            &w.frank,
            &format!("{PROD_AGENT_PATH}/suspend"),
            json!({"reason": "incident 42"}),
        )
        .await
        .ok(200);
        let d = authorize(srv, &w.alice, read_call()).await;
        assert_eq!(
            (d["decision"].as_str(), d["rule"].as_str()),
            (Some("deny"), Some("agent")),
            "{d}"
        );
        srv.post(
            &w.frank,
            &format!("{PROD_AGENT_PATH}/resume"),
            json!({"reason": "resolved"}),
        )
        .await
        .ok(200);
        assert_eq!(
            authorize(srv, &w.alice, read_call()).await["decision"],
            "allow"
        );

        // Revoked grant: the next call is denied at step 2.
        srv.post(
            &w.frank,
            &format!("/v1/grants/{grant}/revoke"),
            json!({"reason": "no longer needed"}),
        )
        .await
        .ok(200);
        let d = authorize(srv, &w.alice, read_call()).await;
        assert_eq!(
            (d["decision"].as_str(), d["rule"].as_str()),
            (Some("deny"), Some("grant")),
            "{d}"
        );

        // Unknown agents and actions are denied, with the reason.
        let ghost = "spiffe://rein.local/agent/payments/ghost/prod";
        let d = authorize(
            srv,
            &w.alice,
            call(ghost, "billing-db", "read_invoices", json!({})),
        )
        .await;
        assert_eq!(
            (d["decision"].as_str(), d["rule"].as_str()),
            (Some("deny"), Some("agent")),
            "{d}"
        );
        let d = authorize(
            srv,
            &w.alice,
            call(PROD_AGENT, "billing-db", "no_such_tool", json!({})),
        )
        .await;
        assert_eq!(d["decision"], "deny", "{d}");
        assert!(
            d["reason"].as_str().unwrap().contains("no_such_tool"),
            "{d}"
        );
        let metrics = srv.call(Method::GET, "/metrics", None, None).await.text;
        assert!(
            metrics.contains(r#"rein_decisions_total{decision="allow"}"#)
                && metrics.contains(r#"rein_decisions_total{decision="deny"}"#),
            "{metrics}"
        );
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn guardrails_step_up_and_shadow_as_loaded_from_the_policy_directory() {
    let policies = example_policies();
    for w in worlds_with(policies.path()).await {
        let srv = &w.srv;
        let write = active_grant(&w, PROD_AGENT, "billing-db", &["write_invoice"]).await;
        let confident = json!({"task_id": "t-2", "intent": "fix an invoice", "risk": 10, "confidence": 0.95, "arguments": {"invoice": 7}});

        let d = authorize(
            srv,
            &w.alice,
            call(PROD_AGENT, "billing-db", "write_invoice", confident.clone()),
        )
        .await;
        assert_eq!(d["decision"], "allow", "{d}");
        assert_eq!(strs(&d["determined_by"]), vec![write.as_str()]);

        // Risky: step-up, named by the guardrail that asked.
        let mut risky = confident.clone();
        risky["risk"] = json!(85);
        let d = authorize(
            srv,
            &w.alice,
            call(PROD_AGENT, "billing-db", "write_invoice", risky),
        )
        .await;
        assert_eq!(
            (d["decision"].as_str(), d["rule"].as_str()),
            (Some("step_up"), Some("guardrail")),
            "{d}"
        );
        assert!(
            strs(&d["determined_by"]).contains(&"prod-write-high-risk"),
            "{d}"
        );
        assert_eq!(d["step_up"]["approvers_required"], 1);

        // A dangerous statement needs two approvers; the audit record says so, not the SQL.
        let mut drop = confident.clone();
        drop["arguments"] = json!({"sql": "DROP TABLE invoices"});
        let d = authorize(
            srv,
            &w.alice,
            call(PROD_AGENT, "billing-db", "write_invoice", drop),
        )
        .await;
        assert_eq!(d["decision"], "step_up", "{d}");
        assert_eq!(d["step_up"]["approvers_required"], 2);
        let record = read(srv, &w.erin, &format!("/v1/audit/{}", d["audit_seq"])).await;
        assert_eq!(record["event"]["details"]["step_up_approvers"], "2");
        assert!(
            !record.to_string().contains("DROP TABLE"),
            "arguments never reach the audit log"
        );

        // A shadow guardrail is reported but changes nothing: no intent stated.
        let mut silent = confident.clone();
        silent.as_object_mut().unwrap().remove("intent");
        let d = authorize(
            srv,
            &w.alice,
            call(PROD_AGENT, "billing-db", "write_invoice", silent),
        )
        .await;
        assert_eq!(d["decision"], "allow", "{d}");
        let shadow = d["shadow"].as_array().unwrap();
        assert!(!shadow.is_empty(), "{d}");
        let record = read(srv, &w.erin, &format!("/v1/audit/{}", d["audit_seq"])).await;
        assert!(record["event"]["details"]["shadow"].is_string(), "{record}");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_breached_budget_denies_and_trips_the_circuit_breaker() {
    for w in worlds().await {
        let srv = &w.srv;
        active_grant(&w, PROD_AGENT, "billing-db", &["read_invoices"]).await;
        srv.patch(
            &w.alice,
            PROD_AGENT_PATH,
            json!({"budgets": {"calls_per_minute": 2, "suspend_on_breach": true}}),
        )
        .await
        .ok(200);
        let read_call = call(PROD_AGENT, "billing-db", "read_invoices", json!({}));
        for _ in 0..2 {
            assert_eq!(
                authorize(srv, &w.alice, read_call.clone()).await["decision"],
                "allow"
            );
        }
        let d = authorize(srv, &w.alice, read_call.clone()).await;
        assert_eq!(
            (d["decision"].as_str(), d["rule"].as_str()),
            (Some("deny"), Some("budget")),
            "{d}"
        );

        // The breaker suspended the agent, on Rein's authority, with the reason recorded.
        let agent = read(srv, &w.alice, PROD_AGENT_PATH).await;
        assert_eq!(agent["status"], "suspended", "{agent}");
        assert_eq!(agent["status_reason"]["by"], "rein");
        assert!(agent["status_reason"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("circuit breaker"));
        let suspended = read(srv, &w.erin, "/v1/audit?type=agent.suspended").await;
        let e = &suspended["records"][0]["event"];
        assert_eq!(
            e["actor"],
            json!({"kind": "rein", "id": "rein"}),
            "{suspended}"
        );
        // From now on step 1 denies, whatever the budget.
        let d = authorize(srv, &w.alice, read_call).await;
        assert_eq!(d["rule"], "agent", "{d}");
        // Nobody may impersonate Rein.
        srv.post(
            &srv.admin,
            "/v1/users",
            json!({"name": "rein", "display_name": "x"}),
        )
        .await
        .problem(422, "invalid-id");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_decision_that_cannot_be_recorded_is_a_deny() {
    for w in worlds().await {
        let srv = &w.srv;
        active_grant(&w, PROD_AGENT, "billing-db", &["read_invoices"]).await;
        let read_call = call(PROD_AGENT, "billing-db", "read_invoices", json!({}));
        assert_eq!(
            authorize(srv, &w.alice, read_call.clone()).await["decision"],
            "allow"
        );
        srv.store.audit_down.store(true, Ordering::SeqCst);
        let d = authorize(srv, &w.alice, read_call.clone()).await;
        assert_eq!(
            (d["decision"].as_str(), d["rule"].as_str()),
            (Some("deny"), Some("error")),
            "{d}"
        );
        assert!(d.get("audit_seq").is_none(), "{d}");
        assert!(!d.to_string().contains("secret-audit"), "{d}");
        srv.store.audit_down.store(false, Ordering::SeqCst);
        assert_eq!(
            authorize(srv, &w.alice, read_call).await["decision"],
            "allow"
        );
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn bad_requests_and_callers_are_refused_before_anything_is_decided() {
    for w in worlds().await {
        let srv = &w.srv;
        let head = || async {
            read(srv, &w.erin, "/v1/audit?latest=true&limit=1").await["records"][0]["seq"].as_u64()
        };
        let before = head().await;
        let with = |context: Value| call(PROD_AGENT, "billing-db", "read_invoices", context);
        for (context, field) in [
            (json!({"risk": 150}), "risk"),
            (json!({"risk": -1}), "risk"),
            (json!({"confidence": 1.5}), "confidence"),
            (json!({"arguments": [1, 2]}), "arguments"),
            (
                json!({"arguments": {"blob": "x".repeat(70 * 1024)}}),
                "arguments",
            ),
            (json!({"task_id": ""}), "task_id"),
        ] {
            let r = srv.post(&w.alice, "/v1/authorize", with(context)).await;
            let p = r.problem(422, "invalid-field");
            assert!(p["detail"].as_str().unwrap().contains(field), "{p}");
        }
        for body in [
            json!({"agent": PROD_AGENT, "system": "billing-db"}),
            json!({"agent": "not-a-spiffe-id", "system": "billing-db", "action": "x"}),
            json!({"agent": PROD_AGENT, "system": "billing-db", "action": "x", "context": {"risk": "high"}}),
            json!({"agent": PROD_AGENT, "system": "billing-db", "action": "x", "surprise": 1}),
        ] {
            srv.post(&w.alice, "/v1/authorize", body)
                .await
                .problem(400, "malformed-request");
        }
        // Auditors change nothing; other teams may not ask about this team's agents.
        srv.post(&w.erin, "/v1/authorize", with(json!({})))
            .await
            .problem(403, "forbidden");
        srv.post(&w.dave, "/v1/authorize", with(json!({})))
            .await
            .problem(403, "forbidden");
        // A batch with one bad entry is refused whole, naming the entry.
        let r = srv
            .post(
                &w.alice,
                "/v1/authorize/batch",
                json!({"requests": [with(json!({})), with(json!({"risk": 101}))]}),
            )
            .await;
        assert!(r.problem(422, "invalid-field")["detail"]
            .as_str()
            .unwrap()
            .contains("requests[1]"));
        srv.post(&w.alice, "/v1/authorize/batch", json!({"requests": []}))
            .await
            .problem(422, "invalid-field");
        assert_eq!(head().await, before, "nothing was decided or recorded");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_batch_decides_each_request_in_order() {
    for w in worlds().await {
        let srv = &w.srv;
        let grant = active_grant(&w, PROD_AGENT, "billing-db", &["read_invoices"]).await;
        let batch = json!({"requests": [
            call(PROD_AGENT, "billing-db", "read_invoices", json!({"task_id": "b"})),
            call(PROD_AGENT, "billing-db", "write_invoice", json!({"task_id": "b"})),
            call(DEV_AGENT, DEV_SYSTEM, "read_invoices", json!({})),
        ]});
        let r = srv
            .post(&w.alice, "/v1/authorize/batch", batch)
            .await
            .ok(200);
        let d = r["decisions"].as_array().unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(
            (d[0]["decision"].as_str(), strs(&d[0]["determined_by"])),
            (Some("allow"), vec![grant.as_str()])
        );
        assert_eq!(d[1]["rule"], "grant", "no write grant");
        assert_eq!(
            d[2]["rule"], "agent",
            "the dev agent has no accountable roles"
        );
        let ids: std::collections::BTreeSet<_> = d
            .iter()
            .map(|x| x["decision_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 3, "each decision has its own ID");
        w.srv.cleanup().await;
    }
}

/// Polls `/v1/policies` until its version differs from `old` (the watcher reloads on its own
/// schedule); fails after 20 s.
async fn wait_for_new_version(srv: &Server, token: &str, old: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = read(srv, token, "/v1/policies").await;
        if status["version"] != *old {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the policy watcher did not reload"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn policies_reload_atomically_and_an_invalid_set_keeps_the_previous_one() {
    let policies = example_policies();
    let dir = policies.path();
    // One world is enough: reloading touches no database beyond the audit record.
    let w = worlds_with(dir).await.into_iter().next().unwrap();
    let srv = &w.srv;
    active_grant(&w, PROD_AGENT, "billing-db", &["read_invoices"]).await;
    let probe = call(PROD_AGENT, "billing-db", "read_invoices", json!({}));
    let status = read(srv, &w.alice, "/v1/policies").await;
    let ids: Vec<&str> = status["guardrails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"sql-drop-or-truncate"), "{status}");
    assert_eq!(
        authorize(srv, &w.alice, probe.clone()).await["decision"],
        "allow"
    );

    // Only admins reload.
    srv.post(&w.alice, "/v1/policies/reload", json!({}))
        .await
        .problem(403, "forbidden");

    // An invalid file: refused with file and line, the previous set stays in force.
    std::fs::write(
        dir.join("broken.cedar"),
        "@id(\"x\")\nforbid (principal, action, resource)\nwhen { context.nope == 1 };\n",
    )
    .unwrap();
    let r = srv.post(&srv.admin, "/v1/policies/reload", json!({})).await;
    let detail = r.problem(422, "invalid-policy")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("broken.cedar:"), "{detail}");
    assert_eq!(
        read(srv, &w.alice, "/v1/policies").await["version"],
        status["version"]
    );
    let failed = read(srv, &w.erin, "/v1/audit?type=policy_set.loaded").await;
    assert!(
        failed["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"]["outcome"] == "failure"),
        "{failed}"
    );

    // A valid new guardrail, reloaded through the API: in force at once, audited.
    std::fs::remove_file(dir.join("broken.cedar")).unwrap();
    std::fs::write(
        dir.join("read-freeze.cedar"),
        "@id(\"read-freeze\")\n@reason(\"reads are frozen\")\nforbid (principal, action, resource) when { resource.class == \"read\" };\n",
    )
    .unwrap();
    let reloaded = srv
        .post(&srv.admin, "/v1/policies/reload", json!({}))
        .await
        .ok(200);
    assert_ne!(reloaded["version"], status["version"]);
    let d = authorize(srv, &w.alice, probe.clone()).await;
    assert_eq!(
        (d["decision"].as_str(), strs(&d["determined_by"])),
        (Some("deny"), vec!["read-freeze"]),
        "{d}"
    );
    assert_eq!(d["policy_version"], reloaded["version"]);
    assert_eq!(d["reason"], "reads are frozen");

    // Removing the file: the watcher reloads by itself.
    std::fs::remove_file(dir.join("read-freeze.cedar")).unwrap();
    let after = wait_for_new_version(srv, &w.alice, &reloaded["version"]).await;
    assert_eq!(
        after["version"], status["version"],
        "the same files give the same version"
    );
    assert_eq!(authorize(srv, &w.alice, probe).await["decision"], "allow");
    w.srv.cleanup().await;
}
