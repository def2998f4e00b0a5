//! Every revocation kind taking effect on the next check, for decisions and for access tokens,
//! who may revoke and lift, and revocations surviving a restart (a fresh decision point loads
//! them from the store).

use super::oauth::{agent_token, call_as_agent};
use super::*;

fn revocation(target: Value) -> Value {
    json!({"target": target, "reason": "incident 7"})
}

async fn decide(srv: &Server, token: &str, task: &str) -> Value {
    srv.post(
        token,
        "/v1/authorize",
        json!({"agent": PROD_AGENT, "system": "billing-db", "action": "read_invoices",
               "context": {"task_id": task, "risk": 1, "confidence": 0.99}}),
    )
    .await
    .ok(200)
}

#[tokio::test]
async fn each_revocation_takes_effect_on_the_next_check_and_survives_a_restart() {
    for w in worlds().await {
        let srv = &w.srv;
        let grant = prod_read_grant(&w).await;
        srv.post(&w.bob, &approve(&grant), json!({})).await.ok(200);
        let (key, token) = agent_token(&w, "task-7").await;
        assert_eq!(call_as_agent(srv, &token).await, 200);
        assert_eq!(decide(srv, &w.alice, "t-1").await["decision"], "allow");

        // A task: its tokens die, its further calls are denied, other tasks go on.
        srv.post(
            &w.frank,
            "/v1/revocations",
            revocation(json!({"kind": "task", "agent": PROD_AGENT, "task_id": "task-7"})),
        )
        .await
        .ok(201);
        assert_eq!(call_as_agent(srv, &token).await, 401);
        let d = decide(srv, &w.alice, "task-7").await;
        assert_eq!(
            (d["decision"].as_str(), d["rule"].as_str()),
            (Some("deny"), Some("agent")),
            "{d}"
        );
        assert_eq!(decide(srv, &w.alice, "t-1").await["decision"], "allow");

        // One token, through RFC 7009: that token only.
        let (_, token) = agent_token(&w, "task-8").await;
        let (_, other) = agent_token(&w, "task-8").await;
        let revoke = srv
            .client
            .post(format!("{}/oauth2/revoke", srv.base))
            .bearer_auth(&w.frank)
            .form(&[("token", token.as_str())]);
        assert_eq!(revoke.send().await.unwrap().status(), 200);
        assert_eq!(call_as_agent(srv, &token).await, 401);
        assert_eq!(call_as_agent(srv, &other).await, 200);
        // Someone who may not revoke this agent's tokens.
        let revoke = srv
            .client
            .post(format!("{}/oauth2/revoke", srv.base))
            .bearer_auth(&w.dave)
            .form(&[("token", other.as_str())]);
        assert_eq!(revoke.send().await.unwrap().status(), 403);
        assert_eq!(call_as_agent(srv, &other).await, 200);

        // Everything issued before a time: older tokens die, newer ones work.
        let cut = srv
            .post(
                &srv.admin,
                "/v1/revocations",
                revocation(json!({"kind": "issued_before", "before": Utc::now().to_rfc3339()})),
            )
            .await
            .ok(201);
        assert_eq!(call_as_agent(srv, &other).await, 401);
        srv.clock.advance(Duration::seconds(2));
        let (_, fresh) = agent_token(&w, "task-9").await;
        assert_eq!(call_as_agent(srv, &fresh).await, 200);

        // The team: every call and token of its agents, until an admin lifts it.
        let team = srv
            .post(
                &w.alice,
                "/v1/revocations",
                revocation(json!({"kind": "team", "team": "payments"})),
            )
            .await
            .ok(201);
        let d = decide(srv, &w.alice, "t-1").await;
        assert!(
            d["reason"]
                .as_str()
                .unwrap()
                .contains("team `payments` is revoked"),
            "{d}"
        );
        assert_eq!(call_as_agent(srv, &fresh).await, 401);
        let refused = super::oauth::token_request(
            srv,
            &super::oauth::form(
                &key.sign(&super::oauth::claims(srv, PROD_AGENT)),
                "billing-db",
                "read_invoices",
            ),
        )
        .await;
        assert_eq!(
            refused.body["error"], "unauthorized_client",
            "{}",
            refused.text
        );

        // A restart: a fresh decision point over the same store knows every revocation.
        let fresh_pdp = rein_pdp::Pdp::start(srv.registry.clone(), None)
            .await
            .unwrap();
        let agent: rein_core::id::AgentId = PROD_AGENT.parse().unwrap();
        let why = fresh_pdp.facts().revoked_call(&agent, None).unwrap();
        assert!(why.unwrap().contains("payments"));
        assert!(fresh_pdp
            .facts()
            .revoked_call(&agent, Some("task-7"))
            .unwrap()
            .is_some());

        // Lifting is an admin's decision, and final.
        let lift = format!("/v1/revocations/{}/lift", team["id"].as_str().unwrap());
        srv.post(&w.alice, &lift, json!({"reason": "over"}))
            .await
            .problem(403, "forbidden");
        srv.post(&srv.admin, &lift, json!({"reason": "contained"}))
            .await
            .ok(200);
        srv.post(&srv.admin, &lift, json!({"reason": "again"}))
            .await
            .problem(409, "invalid-transition");
        assert_eq!(decide(srv, &w.alice, "t-1").await["decision"], "allow");
        assert_eq!(call_as_agent(srv, &fresh).await, 200);

        // The environment kill switch: admins only.
        srv.post(
            &w.alice,
            "/v1/revocations",
            revocation(json!({"kind": "environment", "environment": "prod"})),
        )
        .await
        .problem(403, "forbidden");
        srv.post(
            &srv.admin,
            "/v1/revocations",
            revocation(json!({"kind": "environment", "environment": "prod"})),
        )
        .await
        .ok(201);
        let d = decide(srv, &w.alice, "t-1").await;
        assert!(
            d["reason"]
                .as_str()
                .unwrap()
                .contains("environment `prod` is revoked"),
            "{d}"
        );
        assert_eq!(call_as_agent(srv, &fresh).await, 401);

        // Others may not revoke what is not theirs; every revocation is listed and audited.
        srv.post(
            &w.dave,
            "/v1/revocations",
            revocation(json!({"kind": "task", "agent": PROD_AGENT, "task_id": "x"})),
        )
        .await
        .problem(403, "forbidden");
        let listed = read(srv, &w.alice, "/v1/revocations").await;
        assert_eq!(listed.as_array().unwrap().len(), 5, "{listed}");
        let audited = read(srv, &w.erin, "/v1/audit?type=revocation").await;
        assert_eq!(
            audited["records"].as_array().unwrap().len(),
            6,
            "5 revocations, 1 lift"
        );
        assert_eq!(cut["by"], "admin");
        w.srv.cleanup().await;
    }
}

/// Waits until `ready` holds on `pdp`'s facts, woken by each write it applies (no polling);
/// fails after 10 s.
async fn until(pdp: &rein_pdp::Pdp, what: &str, ready: impl Fn(&rein_pdp::Pdp) -> bool) {
    let mut applied = pdp.facts().watch();
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !ready(pdp) {
            applied.changed().await.unwrap();
        }
    })
    .await;
    assert!(waited.is_ok(), "the other replica never saw {what}");
}

/// A second replica over the same PostgreSQL database: its own registry, audit appender,
/// decision point and token endpoint, following the first's announcements. Revocations and
/// suspensions reach it at once, it acknowledges them, and an assertion used on one replica is
/// refused on the other.
#[tokio::test]
async fn a_revocation_reaches_another_replica_at_once() {
    let Some(pg) = backends()
        .into_iter()
        .find(|b| matches!(b, common::Backend::Postgres(_)))
    else {
        return; // no PostgreSQL and not required: `backends()` said so already
    };
    let w = World::new(&pg).await.unwrap();
    let srv = &w.srv;
    let store: std::sync::Arc<dyn rein_store::Store> = srv.store.clone();
    let master = rein_keys::MasterKey::from_bytes(srv.master_bytes);
    let audit = rein_registry::keys::open_audit_log(
        store.clone(),
        &master,
        rein_audit::LogConfig::default(),
    )
    .await
    .unwrap();
    let other = rein_registry::Registry::new(
        store,
        rein_registry::RegistryConfig::default(),
        srv.clock.clone(),
        audit,
    );
    let replica = rein_pdp::Pdp::start(other, None).await.unwrap();
    let _follow = replica.follow_replicas().await.unwrap().unwrap();
    let upkeep = replica.start_upkeep().await.unwrap();
    let agent: rein_core::id::AgentId = PROD_AGENT.parse().unwrap();
    assert!(replica
        .facts()
        .revoked_call(&agent, None)
        .unwrap()
        .is_none());

    // An assertion accepted by the first replica is a replay on the second.
    let grant = prod_read_grant(&w).await;
    srv.post(&w.bob, &approve(&grant), json!({})).await.ok(200);
    let key = super::oauth::AgentKey::register(srv, &w.alice, PROD_AGENT_PATH).await;
    let once = super::oauth::form(
        &key.sign(&super::oauth::claims(srv, PROD_AGENT)),
        "billing-db",
        "read_invoices",
    );
    assert_eq!(super::oauth::token_request(srv, &once).await.status, 200);
    let issuer = rein_pdp::Issuer::open(replica.registry(), std::sync::Arc::new(master), &srv.base)
        .await
        .unwrap();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(once.iter())
        .finish();
    let replayed = replica.issue_token(&issuer, body.as_bytes()).await;
    let e = replayed.expect_err("a replayed assertion is refused on another replica");
    assert_eq!(e.code().as_str(), "invalid_client", "{e}");

    // Revoked through the first replica's API: the second sees it without a reload.
    let started = std::time::Instant::now();
    let revoked = srv
        .post(
            &w.alice,
            "/v1/revocations",
            revocation(json!({"kind": "team", "team": "payments"})),
        )
        .await
        .ok(201);
    until(&replica, "the revocation", |r| {
        r.facts().revoked_call(&agent, None).unwrap().is_some()
    })
    .await;
    eprintln!(
        "revocation visible on the other replica after {:?}",
        started.elapsed()
    );
    // Both replicas report having applied it.
    let id = revoked["id"].as_str().unwrap();
    let p = srv
        .get(
            &w.alice,
            &format!("/v1/revocations/{id}/propagation?wait=10"),
        )
        .await
        .ok(200);
    assert_eq!(p["complete"], true, "{p}");
    let applied: Vec<&str> = p["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["alive"] == true && r["applied_at"].is_string())
        .map(|r| r["replica"].as_str().unwrap())
        .collect();
    assert_eq!(applied.len(), 2, "{p}");
    assert!(applied.contains(&replica.replica_id()), "{p}");

    // A suspension too.
    srv.post(
        &w.frank,
        &format!("{PROD_AGENT_PATH}/suspend"),
        json!({"reason": "incident"}),
    )
    .await
    .ok(200);
    until(&replica, "the suspension", |r| {
        r.facts()
            .lookup(&agent, &"billing-db".parse().unwrap())
            .unwrap()
            .agent
            .is_some_and(|a| a.status == rein_core::agent::AgentStatus::Suspended)
    })
    .await;

    // A replica that stops leaves the list; the revocation stays complete.
    upkeep.stop().await;
    let p = srv
        .get(&w.alice, &format!("/v1/revocations/{id}/propagation"))
        .await
        .ok(200);
    let listed = p["replicas"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|r| r["replica"] == replica.replica_id() && r["alive"] == false),
        "{p}"
    );
    assert_eq!(p["complete"], true, "{p}");
    w.srv.cleanup().await;
}
