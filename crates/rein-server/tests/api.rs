//! The HTTP API end to end: the real router served over TCP, a real store (SQLite, and
//! PostgreSQL when reachable), reqwest as the client. Every refusal is checked for its status,
//! its problem `code`, and that nothing changed (the record is read again).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "api/approvals.rs"]
mod approvals;
#[path = "api/audit.rs"]
mod audit;
mod common;
#[path = "api/decisions.rs"]
mod decisions;
#[path = "api/gateway.rs"]
mod gateway;
#[path = "api/governance.rs"]
mod governance;
#[path = "api/oauth.rs"]
mod oauth;
#[path = "api/posture.rs"]
mod posture;
#[path = "api/reviews.rs"]
mod reviews;
#[path = "api/revocations.rs"]
mod revocations;
#[path = "api/secrets.rs"]
mod secrets;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{Duration, Utc};
use common::{backends, Api, Server};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Barrier;

// === the world every test starts from ===

const PROD_AGENT: &str = "spiffe://rein.local/agent/payments/invoice-bot/prod";
const PROD_AGENT_PATH: &str = "/v1/agents/payments/invoice-bot/prod";
const DEV_AGENT: &str = "spiffe://rein.local/agent/payments/invoice-bot/dev";
const DEV_AGENT_PATH: &str = "/v1/agents/payments/invoice-bot/dev";

/// Users (with their tokens), teams, two systems and two agents:
/// - `alice`, `grace`, `erin` (an auditor) are in `payments`, which owns the agents;
/// - `bob` and `grace` are in `dba`, the approvers of both systems;
/// - `carol` is the prod agent's business owner; `frank` (team `sec`) its revoker;
/// - `dave` belongs to no team.
struct World {
    srv: Server,
    alice: String,
    bob: String,
    carol: String,
    dave: String,
    erin: String,
    frank: String,
    grace: String,
}

impl World {
    async fn new(backend: &common::Backend) -> Option<Self> {
        Self::with_policies(backend, None).await
    }

    /// A world whose guardrails are loaded from `policies`.
    async fn with_policies(
        backend: &common::Backend,
        policies: Option<std::path::PathBuf>,
    ) -> Option<Self> {
        Self::full(backend, policies, Vec::new()).await
    }

    /// A world with guardrails from `policies`, announcing approvals to `webhooks`.
    async fn full(
        backend: &common::Backend,
        policies: Option<std::path::PathBuf>,
        webhooks: Vec<rein_notify::Webhook>,
    ) -> Option<Self> {
        Self::configured(
            backend,
            policies,
            webhooks,
            rein_registry::RegistryConfig::default(),
        )
        .await
    }

    /// A world whose registry runs with `config`.
    async fn configured(
        backend: &common::Backend,
        policies: Option<std::path::PathBuf>,
        webhooks: Vec<rein_notify::Webhook>,
        config: rein_registry::RegistryConfig,
    ) -> Option<Self> {
        let srv = Server::start_configured(backend, policies, webhooks, config).await?;
        let alice = srv.user("alice", "member").await;
        let bob = srv.user("bob", "member").await;
        let carol = srv.user("carol", "member").await;
        let dave = srv.user("dave", "member").await;
        let erin = srv.user("erin", "auditor").await;
        let frank = srv.user("frank", "member").await;
        let grace = srv.user("grace", "member").await;
        for (team, members) in [
            ("payments", json!(["alice", "grace", "erin"])),
            ("dba", json!(["bob", "grace"])),
            ("sec", json!(["frank"])),
        ] {
            srv.post(
                &srv.admin,
                "/v1/teams",
                json!({"name": team, "members": members}),
            )
            .await
            .ok(201);
        }
        for (name, env) in [("billing-db", "prod"), ("billing-db-dev", "dev")] {
            srv.post(
                &srv.admin,
                "/v1/systems",
                json!({
                    "name": name,
                    "environment": env,
                    "owner_team": "payments",
                    "approvers": ["team:dba"],
                    "classification": "confidential",
                    "actions": {
                        "read_invoices": {"class": "read"},
                        "write_invoice": {"class": "write"},
                        "drop_table": {"class": "admin"},
                        "legacy_op": {},
                    },
                }),
            )
            .await
            .ok(201);
        }
        srv.post(&alice, "/v1/agents", prod_agent()).await.ok(201);
        srv.post(
            &alice,
            "/v1/agents",
            json!({"team": "payments", "name": "invoice-bot", "environment": "dev", "use_case": "invoices"}),
        )
        .await
        .ok(201);
        Some(Self {
            srv,
            alice,
            bob,
            carol,
            dave,
            erin,
            frank,
            grace,
        })
    }
}

/// One world per available backend.
async fn worlds() -> Vec<World> {
    let mut worlds = Vec::new();
    for backend in backends() {
        if let Some(w) = World::new(&backend).await {
            worlds.push(w);
        }
    }
    worlds
}

fn prod_agent() -> Value {
    json!({
        "team": "payments",
        "name": "invoice-bot",
        "environment": "prod",
        "description": "Reconciles invoices",
        "use_case": "invoice reconciliation",
        "roles": {
            "business_owner": "carol",
            "approvers": ["user:carol"],
            "revokers": ["team:sec"],
            "reviewers": ["user:carol"],
            "review_cadence_days": 90,
        },
    })
}

fn in_a_week() -> String {
    (Utc::now() + Duration::days(7)).to_rfc3339()
}

fn grant_request(agent: &str, system: &str, actions: &[&str]) -> Value {
    json!({
        "agent": agent,
        "system": system,
        "actions": actions,
        "expires_at": in_a_week(),
        "justification": "month-end close",
    })
}

/// Requests a grant as `token` and returns its ID.
async fn request_grant(
    api: &Api,
    token: &str,
    agent: &str,
    system: &str,
    actions: &[&str],
) -> String {
    let grant = api
        .post(token, "/v1/grants", grant_request(agent, system, actions))
        .await
        .ok(201);
    assert_eq!(grant["status"], "requested");
    grant["id"].as_str().unwrap().to_owned()
}

async fn prod_write_grant(w: &World) -> String {
    request_grant(
        &w.srv,
        &w.alice,
        PROD_AGENT,
        "billing-db",
        &["write_invoice"],
    )
    .await
}

async fn prod_read_grant(w: &World) -> String {
    request_grant(
        &w.srv,
        &w.alice,
        PROD_AGENT,
        "billing-db",
        &["read_invoices"],
    )
    .await
}

fn approve(id: &str) -> String {
    format!("/v1/grants/{id}/approve")
}

fn grant_path(id: &str) -> String {
    format!("/v1/grants/{id}")
}

async fn read(api: &Api, token: &str, path: &str) -> Value {
    api.get(token, path).await.ok(200)
}

fn approvers_of(grant: &Value) -> Vec<(String, String)> {
    grant["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["by"].as_str().unwrap().to_owned(),
                a["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

// === grants ===

#[tokio::test]
async fn prod_write_grant_needs_the_system_approver_then_the_business_owner() {
    for w in worlds().await {
        let srv = &w.srv;
        let id = prod_write_grant(&w).await;
        let grant = read(srv, &w.alice, &grant_path(&id)).await;
        assert_eq!(grant["mutates_production"], true);
        assert_eq!(grant["business_owner_approver"], "carol");
        assert_eq!(grant["approvers"], json!(["team:dba"]));
        assert_eq!(grant["requested_by"], "alice");
        let revokers = grant["revokers"].as_array().unwrap();
        assert!(revokers.contains(&json!("team:sec")) && revokers.contains(&json!("team:dba")));

        // The system approver first: recorded, still requested.
        let after_bob = srv
            .post(&w.bob, &approve(&id), json!({"comment": "schema reviewed"}))
            .await
            .ok(200);
        assert_eq!(after_bob["status"], "requested");
        assert_eq!(
            approvers_of(&after_bob),
            vec![("bob".into(), "system_approver".into())]
        );
        assert_eq!(after_bob["approvals"][0]["comment"], "schema reviewed");

        // Another system approver cannot fill the business owner's slot.
        srv.post(&w.grace, &approve(&id), json!({}))
            .await
            .problem(403, "forbidden");
        // Nor can the same person approve twice.
        srv.post(&w.bob, &approve(&id), json!({}))
            .await
            .problem(409, "already-approved");
        assert_eq!(read(srv, &w.alice, &grant_path(&id)).await, after_bob);

        // The business owner completes it.
        let active = srv
            .post(&w.carol, &approve(&id), json!({"comment": "ok for Q3"}))
            .await
            .ok(200);
        assert_eq!(active["status"], "active");
        assert_eq!(
            approvers_of(&active),
            vec![
                ("bob".into(), "system_approver".into()),
                ("carol".into(), "business_owner".into())
            ]
        );
        assert_eq!(read(srv, &w.alice, &grant_path(&id)).await, active);

        // Someone who is not a revoker cannot revoke it.
        srv.post(
            &w.dave,
            &format!("/v1/grants/{id}/revoke"),
            json!({"reason": "x"}),
        )
        .await
        .problem(403, "forbidden");
        // A revoke needs a reason.
        srv.post(
            &w.frank,
            &format!("/v1/grants/{id}/revoke"),
            json!({"reason": " "}),
        )
        .await
        .problem(422, "invalid-field");
        assert_eq!(read(srv, &w.alice, &grant_path(&id)).await, active);

        // The agent's revoker revokes it, with a reason.
        let revoked = srv
            .post(
                &w.frank,
                &format!("/v1/grants/{id}/revoke"),
                json!({"reason": "incident 42"}),
            )
            .await
            .ok(200);
        assert_eq!(revoked["status"], "revoked");
        assert_eq!(revoked["closed"]["by"], "frank");
        assert_eq!(revoked["closed"]["reason"], "incident 42");
        assert_eq!(approvers_of(&revoked).len(), 2);
        assert_eq!(read(srv, &w.alice, &grant_path(&id)).await, revoked);

        // Final: neither approving nor revoking again changes it.
        srv.post(&w.carol, &approve(&id), json!({}))
            .await
            .problem(409, "invalid-transition");
        srv.post(
            &w.frank,
            &format!("/v1/grants/{id}/revoke"),
            json!({"reason": "again"}),
        )
        .await
        .problem(409, "invalid-transition");
        assert_eq!(read(srv, &w.alice, &grant_path(&id)).await, revoked);

        // Listing finds it by agent, system and status.
        let listed = read(
            srv,
            &w.erin,
            &format!("/v1/grants?agent={PROD_AGENT}&system=billing-db&status=revoked"),
        )
        .await;
        assert_eq!(listed, json!([revoked]));
        let none = read(
            srv,
            &w.erin,
            &format!("/v1/grants?agent={PROD_AGENT}&status=active"),
        )
        .await;
        assert_eq!(none, json!([]));
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_read_grant_needs_one_approval_and_a_denial_is_final() {
    for w in worlds().await {
        let srv = &w.srv;
        let id = prod_read_grant(&w).await;
        let active = srv.post(&w.bob, &approve(&id), json!({})).await.ok(200);
        assert_eq!(active["status"], "active");
        assert_eq!(active["mutates_production"], false);
        assert_eq!(active["business_owner_approver"], Value::Null);
        assert_eq!(
            approvers_of(&active),
            vec![("bob".into(), "system_approver".into())]
        );

        // Unclassified actions count as writes.
        let legacy = request_grant(srv, &w.alice, PROD_AGENT, "billing-db", &["legacy_op"]).await;
        let legacy = read(srv, &w.alice, &grant_path(&legacy)).await;
        assert_eq!(legacy["mutates_production"], true);

        // A denial.
        let id = prod_read_grant(&w).await;
        srv.post(
            &w.bob,
            &format!("/v1/grants/{id}/deny"),
            json!({"reason": ""}),
        )
        .await
        .problem(422, "invalid-field");
        srv.post(&w.bob, &format!("/v1/grants/{id}/deny"), json!({}))
            .await
            .problem(400, "malformed-request");
        srv.post(
            &w.dave,
            &format!("/v1/grants/{id}/deny"),
            json!({"reason": "no"}),
        )
        .await
        .problem(403, "forbidden");
        let denied = srv
            .post(
                &w.bob,
                &format!("/v1/grants/{id}/deny"),
                json!({"reason": "use the replica"}),
            )
            .await
            .ok(200);
        assert_eq!(denied["status"], "denied");
        assert_eq!(denied["closed"]["by"], "bob");
        assert_eq!(denied["closed"]["reason"], "use the replica");

        srv.post(&w.grace, &approve(&id), json!({}))
            .await
            .problem(409, "invalid-transition");
        srv.post(
            &w.bob,
            &format!("/v1/grants/{id}/deny"),
            json!({"reason": "twice"}),
        )
        .await
        .problem(409, "invalid-transition");
        srv.post(
            &w.frank,
            &format!("/v1/grants/{id}/revoke"),
            json!({"reason": "cleanup"}),
        )
        .await
        .problem(409, "invalid-transition");
        assert_eq!(read(srv, &w.alice, &grant_path(&id)).await, denied);

        // A revoked request cannot be approved either.
        let id = prod_read_grant(&w).await;
        let revoked = srv
            .post(
                &w.bob,
                &format!("/v1/grants/{id}/revoke"),
                json!({"reason": "not needed"}),
            )
            .await
            .ok(200);
        srv.post(&w.grace, &approve(&id), json!({}))
            .await
            .problem(409, "invalid-transition");
        assert_eq!(read(srv, &w.alice, &grant_path(&id)).await, revoked);
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn only_distinct_non_requesting_approvers_may_approve_and_auditors_change_nothing() {
    for w in worlds().await {
        let srv = &w.srv;
        // grace is both a payments member (may request) and a dba member (may approve).
        let id = request_grant(srv, &w.grace, PROD_AGENT, "billing-db", &["read_invoices"]).await;
        let before = read(srv, &w.alice, &grant_path(&id)).await;
        srv.post(&w.grace, &approve(&id), json!({}))
            .await
            .problem(403, "self-approval");
        srv.post(&w.dave, &approve(&id), json!({}))
            .await
            .problem(403, "forbidden");
        // An admin is not an approver unless named as one.
        srv.post(&srv.admin, &approve(&id), json!({}))
            .await
            .problem(403, "forbidden");
        srv.post(&w.erin, &approve(&id), json!({}))
            .await
            .problem(403, "forbidden");
        srv.post(
            &w.erin,
            &format!("/v1/grants/{id}/revoke"),
            json!({"reason": "x"}),
        )
        .await
        .problem(403, "forbidden");
        assert_eq!(read(srv, &w.alice, &grant_path(&id)).await, before);

        // The auditor reads everything but writes nothing, not even as a team member.
        read(srv, &w.erin, "/v1/users").await;
        read(srv, &w.erin, "/v1/grants").await;
        read(srv, &w.erin, PROD_AGENT_PATH).await;
        srv.post(
            &w.erin,
            "/v1/agents",
            json!({"team": "payments", "name": "erins-bot", "environment": "dev", "use_case": "x"}),
        )
        .await
        .problem(403, "forbidden");
        srv.post(
            &w.erin,
            "/v1/grants",
            grant_request(PROD_AGENT, "billing-db", &["read_invoices"]),
        )
        .await
        .problem(403, "forbidden");
        srv.post(&w.erin, "/v1/users", json!({"name": "mallory"}))
            .await
            .problem(403, "forbidden");
        srv.post(&w.erin, "/v1/users/erin/tokens", json!({}))
            .await
            .problem(403, "forbidden");
        srv.get(&w.erin, "/v1/agents/payments/erins-bot/dev")
            .await
            .problem(404, "not-found");
        srv.get(&w.erin, "/v1/users/mallory")
            .await
            .problem(404, "not-found");

        // A team non-member cannot create the team's agents or request grants for them.
        srv.post(
            &w.dave,
            "/v1/agents",
            json!({"team": "payments", "name": "daves-bot", "environment": "dev", "use_case": "x"}),
        )
        .await
        .problem(403, "forbidden");
        srv.get(&w.dave, "/v1/agents/payments/daves-bot/dev")
            .await
            .problem(404, "not-found");
        srv.post(
            &w.dave,
            "/v1/grants",
            grant_request(PROD_AGENT, "billing-db", &["read_invoices"]),
        )
        .await
        .problem(403, "forbidden");
        assert_eq!(
            read(srv, &w.alice, &format!("/v1/grants?agent={PROD_AGENT}")).await,
            json!([before])
        );
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn invalid_grant_requests_are_refused_and_nothing_is_stored() {
    for w in worlds().await {
        let srv = &w.srv;
        let mut past = grant_request(PROD_AGENT, "billing-db", &["read_invoices"]);
        past["expires_at"] = json!((Utc::now() - Duration::hours(1)).to_rfc3339());
        srv.post(&w.alice, "/v1/grants", past)
            .await
            .problem(422, "invalid-field");
        srv.post(
            &w.alice,
            "/v1/grants",
            grant_request(PROD_AGENT, "billing-db", &["rm_rf"]),
        )
        .await
        .problem(422, "unknown-action");
        srv.post(
            &w.alice,
            "/v1/grants",
            grant_request(PROD_AGENT, "billing-db", &[]),
        )
        .await
        .problem(422, "invalid-field");
        // One identity per environment: a prod agent gets nothing on a dev system.
        srv.post(
            &w.alice,
            "/v1/grants",
            grant_request(PROD_AGENT, "billing-db-dev", &["read_invoices"]),
        )
        .await
        .problem(422, "invalid-field");
        srv.post(
            &w.alice,
            "/v1/grants",
            grant_request(PROD_AGENT, "nope", &["read_invoices"]),
        )
        .await
        .problem(404, "not-found");
        let mut ttl = grant_request(PROD_AGENT, "billing-db", &["read_invoices"]);
        ttl["max_token_ttl_secs"] = json!(7200);
        srv.post(&w.alice, "/v1/grants", ttl)
            .await
            .problem(422, "invalid-field");
        // An identifier that does not parse is a body that does not match the schema.
        srv.post(
            &w.alice,
            "/v1/grants",
            grant_request(
                "spiffe://rein.local/agent/Payments/x/prod",
                "billing-db",
                &["read_invoices"],
            ),
        )
        .await
        .problem(400, "malformed-request");
        assert_eq!(read(srv, &w.alice, "/v1/grants").await, json!([]));

        // A dev grant needs one approval even for a write.
        let id = request_grant(
            srv,
            &w.alice,
            DEV_AGENT,
            "billing-db-dev",
            &["write_invoice"],
        )
        .await;
        let g = srv.post(&w.bob, &approve(&id), json!({})).await.ok(200);
        assert_eq!(
            (g["status"].as_str(), g["mutates_production"].as_bool()),
            (Some("active"), Some(false))
        );
        w.srv.cleanup().await;
    }
}

// === transport errors and authentication ===

#[tokio::test]
async fn malformed_requests_get_problem_documents() {
    for w in worlds().await {
        let srv = &w.srv;
        let admin = srv.admin.clone();
        let users_before = read(srv, &admin, "/v1/users").await;

        srv.call_raw(
            Method::POST,
            "/v1/users",
            &admin,
            Some("application/json"),
            "{\"name\": ",
        )
        .await
        .problem(400, "malformed-request");
        srv.post(
            &admin,
            "/v1/users",
            json!({"name": "zed", "is_admin": true}),
        )
        .await
        .problem(400, "malformed-request");
        srv.post(&admin, "/v1/users", json!({"name": "zed", "role": "root"}))
            .await
            .problem(400, "malformed-request");
        srv.post(&admin, "/v1/users", json!({"name": "Zed"}))
            .await
            .problem(400, "malformed-request");
        srv.call_raw(
            Method::POST,
            "/v1/users",
            &admin,
            Some("text/plain"),
            r#"{"name":"zed"}"#,
        )
        .await
        .problem(415, "unsupported-media-type");
        srv.call_raw(Method::POST, "/v1/users", &admin, None, r#"{"name":"zed"}"#)
            .await
            .problem(415, "unsupported-media-type");
        let huge = json!({"name": "zed", "display_name": "x".repeat(2 * 1024 * 1024)}).to_string();
        srv.call_raw(
            Method::POST,
            "/v1/users",
            &admin,
            Some("application/json"),
            huge,
        )
        .await
        .problem(413, "payload-too-large");
        assert_eq!(read(srv, &admin, "/v1/users").await, users_before);

        // Identifiers in paths and queries are parsed by the domain's parsers.
        srv.get(&admin, "/v1/users/Not%20A%20Name")
            .await
            .problem(422, "invalid-id");
        srv.get(&admin, "/v1/agents/Payments/invoice-bot/prod")
            .await
            .problem(422, "invalid-id");
        srv.get(&admin, "/v1/grants/grt_nothex")
            .await
            .problem(422, "invalid-id");
        srv.get(
            &admin,
            "/v1/grants?agent=spiffe://rein.local/agent/payments/invoice-bot",
        )
        .await
        .problem(422, "invalid-id");
        srv.get(&admin, "/v1/grants?agent=https://example.com/")
            .await
            .problem(422, "invalid-id");
        srv.get(&admin, "/v1/agents?status=sleeping")
            .await
            .problem(422, "invalid-field");
        srv.get(&admin, "/v1/agents?owner=payments")
            .await
            .problem(400, "malformed-request");
        srv.get(&admin, "/v1/grants/grt_00000000000000000000000000000000")
            .await
            .problem(404, "not-found");
        assert_eq!(
            read(srv, &admin, "/v1/agents?team=&environment=dev")
                .await
                .as_array()
                .unwrap()
                .len(),
            1
        );

        // Routes and methods.
        srv.get(&admin, "/v1/nothing-here")
            .await
            .problem(404, "route-not-found");
        srv.get(&admin, "/nothing-here")
            .await
            .problem(404, "route-not-found");
        let r = srv.delete(&admin, "/v1/users").await;
        r.problem(405, "method-not-allowed");
        let allow = r.headers.get("allow").unwrap().to_str().unwrap();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

        // An existing record.
        srv.post(&admin, "/v1/users", json!({"name": "alice"}))
            .await
            .problem(409, "already-exists");
        srv.post(&w.alice, "/v1/agents", prod_agent())
            .await
            .problem(409, "already-exists");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn requests_without_a_usable_token_are_unauthenticated() {
    for w in worlds().await {
        let srv = &w.srv;
        let unauthenticated = |r: common::Reply| {
            r.problem(401, "unauthenticated");
            assert_eq!(
                r.headers.get("www-authenticate").unwrap(),
                r#"Bearer realm="rein""#
            );
        };
        unauthenticated(srv.call(Method::GET, "/v1/whoami", None, None).await);
        unauthenticated(srv.get("", "/v1/whoami").await);
        unauthenticated(
            srv.get(
                "rein_0123456789abcdef_0000000000000000000000000000000000000000",
                "/v1/whoami",
            )
            .await,
        );
        unauthenticated(srv.get("not-even-close", "/v1/whoami").await);
        // The right secret with another token's ID, and a token with one character changed.
        let tampered = format!("{}x", &w.alice[..w.alice.len() - 1]);
        unauthenticated(srv.get(&tampered, "/v1/whoami").await);
        let basic = srv
            .client
            .get(format!("{}/v1/whoami", srv.base))
            .header("authorization", format!("Basic {}", w.alice))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 401);
        // Authentication comes before reading the body.
        unauthenticated(
            srv.call(Method::POST, "/v1/users", None, Some(&json!({"bogus": 1})))
                .await,
        );

        let me = read(srv, &w.alice, "/v1/whoami").await;
        assert_eq!(
            me,
            json!({"user": "alice", "role": "member", "teams": ["payments"]})
        );

        // A revoked token.
        let issued = srv
            .post(
                &w.alice,
                "/v1/users/alice/tokens",
                json!({"description": "laptop", "ttl_days": 30}),
            )
            .await;
        assert_eq!(issued.headers.get("cache-control").unwrap(), "no-store");
        let issued = issued.ok(201);
        let second = issued["token"].as_str().unwrap().to_owned();
        let token_id = issued["metadata"]["id"].as_str().unwrap().to_owned();
        assert!(issued["metadata"].get("hash").is_none());
        read(srv, &second, "/v1/whoami").await;
        srv.delete(&w.dave, &format!("/v1/users/alice/tokens/{token_id}"))
            .await
            .problem(403, "forbidden");
        srv.delete(&w.alice, &format!("/v1/users/alice/tokens/{token_id}"))
            .await
            .ok(204);
        unauthenticated(srv.get(&second, "/v1/whoami").await);
        srv.delete(&w.alice, &format!("/v1/users/alice/tokens/{token_id}"))
            .await
            .problem(409, "invalid-transition");
        let tokens = read(srv, &w.alice, "/v1/users/alice/tokens").await;
        let listed = tokens
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == token_id.as_str())
            .unwrap();
        assert!(listed["revoked_at"].is_string());
        assert!(!tokens.to_string().contains(&second));
        assert!(tokens
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("hash").is_none()));
        read(srv, &w.alice, "/v1/whoami").await;

        // A disabled user's tokens stop working, and work again once re-enabled.
        let dave = srv
            .patch(&srv.admin, "/v1/users/dave", json!({"disabled": true}))
            .await
            .ok(200);
        assert_eq!(dave["disabled"], true);
        unauthenticated(srv.get(&w.dave, "/v1/whoami").await);
        srv.patch(&srv.admin, "/v1/users/dave", json!({"disabled": false}))
            .await
            .ok(200);
        read(srv, &w.dave, "/v1/whoami").await;

        // An admin cannot lock themself out.
        srv.patch(&srv.admin, "/v1/users/admin", json!({"disabled": true}))
            .await
            .problem(403, "forbidden");
        read(srv, &srv.admin, "/v1/whoami").await;
        w.srv.cleanup().await;
    }
}

/// Every operation in the OpenAPI document, with any path parameters, refuses a request without
/// a token (the public document itself excepted), so no route skipped the `Authenticated`
/// extractor; and every documented operation is routed (no 404 or 405).
#[tokio::test]
async fn every_v1_operation_requires_a_token() {
    let Some(srv) = Server::start(&common::Backend::Sqlite).await else {
        unreachable!()
    };
    let doc = srv
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .ok(200);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = srv
                .call(method.clone(), &concrete, None, Some(&json!({})))
                .await;
            if path == "/v1/openapi.json" {
                assert_eq!(r.status, 200);
                assert_eq!(item["get"]["security"], json!([{}]));
            } else {
                assert_eq!(r.status, 401, "{method} {path} answered {}", r.text);
                r.problem(401, "unauthenticated");
                assert_eq!(
                    item[method.as_str().to_lowercase()]["security"],
                    Value::Null,
                    "{path} overrides the global security"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 67);
    assert_eq!(doc["security"], json!([{"bearer": []}]));
}

// === agents ===

#[tokio::test]
async fn agents_need_accountable_roles_only_in_protected_environments() {
    for w in worlds().await {
        let srv = &w.srv;
        let dev = read(srv, &w.alice, DEV_AGENT_PATH).await;
        assert_eq!(dev["id"], DEV_AGENT);
        assert_eq!(dev["status"], "active");
        assert_eq!(dev["created_by"], "alice");

        let mut bare =
            json!({"team": "payments", "name": "bare-bot", "environment": "prod", "use_case": "x"});
        srv.post(&w.alice, "/v1/agents", bare.clone())
            .await
            .problem(422, "missing-accountable-roles");
        srv.get(&w.alice, "/v1/agents/payments/bare-bot/prod")
            .await
            .problem(404, "not-found");
        // Created suspended it is allowed, but cannot be resumed until its roles are set.
        bare["status"] = json!("suspended");
        srv.post(&w.alice, "/v1/agents", bare).await.ok(201);
        srv.post(
            &srv.admin,
            "/v1/agents/payments/bare-bot/prod/resume",
            json!({"reason": "try"}),
        )
        .await
        .problem(422, "missing-accountable-roles");
        assert_eq!(
            read(srv, &w.alice, "/v1/agents/payments/bare-bot/prod").await["status"],
            "suspended"
        );

        // Roles must name existing principals; an active prod agent keeps every role.
        let mut ghost = prod_agent();
        ghost["name"] = json!("ghost-bot");
        ghost["roles"]["revokers"] = json!(["team:ghosts"]);
        srv.post(&w.alice, "/v1/agents", ghost)
            .await
            .problem(422, "invalid-field");
        let before = read(srv, &w.alice, PROD_AGENT_PATH).await;
        srv.patch(
            &w.frank,
            PROD_AGENT_PATH,
            json!({"roles": {"business_owner": "carol"}}),
        )
        .await
        .problem(422, "missing-accountable-roles");
        srv.patch(&w.dave, PROD_AGENT_PATH, json!({"description": "mine now"}))
            .await
            .problem(403, "forbidden");
        assert_eq!(read(srv, &w.alice, PROD_AGENT_PATH).await, before);
        let patched = srv
            .patch(
                &w.alice,
                PROD_AGENT_PATH,
                json!({"description": "Reconciles invoices nightly"}),
            )
            .await
            .ok(200);
        assert_eq!(patched["description"], "Reconciles invoices nightly");

        // Environment must be configured.
        srv.post(
            &w.alice,
            "/v1/agents",
            json!({"team": "payments", "name": "x", "environment": "qa", "use_case": "x"}),
        )
        .await
        .problem(422, "invalid-field");

        let listed = read(
            srv,
            &w.erin,
            "/v1/agents?team=payments&environment=dev&status=active",
        )
        .await;
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["id"], DEV_AGENT);
        let suspended = read(srv, &w.erin, "/v1/agents?status=suspended").await;
        assert_eq!(
            suspended[0]["id"],
            "spiffe://rein.local/agent/payments/bare-bot/prod"
        );
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn agents_suspend_resume_and_retire_for_good() {
    for w in worlds().await {
        let srv = &w.srv;
        let suspend = format!("{PROD_AGENT_PATH}/suspend");
        let resume = format!("{PROD_AGENT_PATH}/resume");
        let retire = format!("{PROD_AGENT_PATH}/retire");
        let before = read(srv, &w.alice, PROD_AGENT_PATH).await;

        // Only its revokers (or an admin) suspend it; its team may not undo their decision.
        srv.post(&w.alice, &suspend, json!({"reason": "oops"}))
            .await
            .problem(403, "forbidden");
        srv.post(&w.frank, &suspend, json!({"reason": ""}))
            .await
            .problem(422, "invalid-field");
        srv.post(&w.frank, &suspend, json!({"reason": "x", "force": true}))
            .await
            .problem(400, "malformed-request");
        assert_eq!(read(srv, &w.alice, PROD_AGENT_PATH).await, before);

        let suspended = srv
            .post(&w.frank, &suspend, json!({"reason": "anomalous writes"}))
            .await
            .ok(200);
        assert_eq!(suspended["status"], "suspended");
        assert_eq!(suspended["status_reason"]["by"], "frank");
        assert_eq!(suspended["status_reason"]["reason"], "anomalous writes");
        srv.post(&w.frank, &suspend, json!({"reason": "again"}))
            .await
            .problem(409, "invalid-transition");
        srv.post(&w.alice, &resume, json!({"reason": "false alarm"}))
            .await
            .problem(403, "forbidden");
        assert_eq!(read(srv, &w.alice, PROD_AGENT_PATH).await, suspended);

        let resumed = srv
            .post(&w.frank, &resume, json!({"reason": "false alarm"}))
            .await
            .ok(200);
        assert_eq!(resumed["status"], "active");
        srv.post(&w.frank, &resume, json!({"reason": "again"}))
            .await
            .problem(409, "invalid-transition");

        srv.post(&w.dave, &retire, json!({"reason": "mine"}))
            .await
            .problem(403, "forbidden");
        let retired = srv
            .post(&w.alice, &retire, json!({"reason": "decommissioned"}))
            .await
            .ok(200);
        assert_eq!(retired["status"], "retired");

        // Final.
        for path in [&suspend, &resume, &retire] {
            srv.post(&w.frank, path, json!({"reason": "undo"}))
                .await
                .problem(409, "invalid-transition");
        }
        srv.patch(&w.alice, PROD_AGENT_PATH, json!({"description": "back"}))
            .await
            .problem(409, "invalid-transition");
        srv.post(&w.alice, &format!("{PROD_AGENT_PATH}/keys"), ed25519_jwk())
            .await
            .problem(409, "invalid-transition");
        srv.post(
            &w.alice,
            "/v1/grants",
            grant_request(PROD_AGENT, "billing-db", &["read_invoices"]),
        )
        .await
        .problem(409, "invalid-transition");
        assert_eq!(read(srv, &w.alice, PROD_AGENT_PATH).await, retired);
        srv.post(
            &w.alice,
            "/v1/agents/payments/nobody/prod/suspend",
            json!({"reason": "x"}),
        )
        .await
        .problem(404, "not-found");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_team_cannot_route_around_its_revokers_and_retiring_revokes_grants() {
    for w in worlds().await {
        let srv = &w.srv;
        let before = read(srv, &w.alice, PROD_AGENT_PATH).await;
        // The team may not swap out the revokers that check it, suspended or not.
        let mut roles = before["roles"].clone();
        roles["revokers"] = json!(["team:payments"]);
        srv.patch(&w.alice, PROD_AGENT_PATH, json!({"roles": roles.clone()}))
            .await
            .problem(403, "forbidden");
        srv.post(
            &w.frank,
            &format!("{PROD_AGENT_PATH}/suspend"),
            json!({"reason": "incident"}),
        )
        .await
        .ok(200);
        srv.patch(&w.alice, PROD_AGENT_PATH, json!({"roles": roles.clone()}))
            .await
            .problem(403, "forbidden");
        srv.post(
            &w.alice,
            &format!("{PROD_AGENT_PATH}/resume"),
            json!({"reason": "mine"}),
        )
        .await
        .problem(403, "forbidden");
        assert_eq!(
            read(srv, &w.alice, PROD_AGENT_PATH).await["roles"],
            before["roles"]
        );
        // The revokers themselves may hand over; the team still may change the description.
        let mut handed = before["roles"].clone();
        handed["revokers"] = json!(["team:sec", "user:grace"]);
        let changed = srv
            .patch(&w.frank, PROD_AGENT_PATH, json!({"roles": handed.clone()}))
            .await
            .ok(200);
        assert_eq!(changed["roles"]["revokers"], handed["revokers"]);
        srv.patch(
            &w.alice,
            PROD_AGENT_PATH,
            json!({"description": "reconciles"}),
        )
        .await
        .ok(200);

        // The business owner may not request what they must approve.
        srv.post(
            &w.carol,
            "/v1/grants",
            grant_request(PROD_AGENT, "billing-db", &["write_invoice"]),
        )
        .await
        .problem(403, "forbidden");

        // Retiring revokes the agent's requested and active grants with it.
        srv.post(
            &w.frank,
            &format!("{PROD_AGENT_PATH}/resume"),
            json!({"reason": "cleared"}),
        )
        .await
        .ok(200);
        let active = prod_read_grant(&w).await;
        srv.post(&w.bob, &approve(&active), json!({})).await.ok(200);
        let pending = prod_write_grant(&w).await;
        srv.post(
            &w.alice,
            &format!("{PROD_AGENT_PATH}/retire"),
            json!({"reason": "replaced"}),
        )
        .await
        .ok(200);
        for id in [&active, &pending] {
            let g = read(srv, &w.alice, &grant_path(id)).await;
            assert_eq!(g["status"], "revoked", "{id}");
            assert_eq!(g["closed"]["reason"], "agent retired: replaced");
            assert_eq!(g["closed"]["by"], "alice");
        }
        w.srv.cleanup().await;
    }
}

fn ed25519_jwk() -> Value {
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())})
}

fn p256_jwk() -> (Value, String) {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let point = key.public_key().to_encoded_point(false);
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
        "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        "kid": "p256-2025",
        "use": "sig",
    });
    (jwk, URL_SAFE_NO_PAD.encode(key.to_bytes()))
}

#[tokio::test]
async fn agents_register_public_keys_and_never_private_ones() {
    for w in worlds().await {
        let srv = &w.srv;
        let keys = format!("{PROD_AGENT_PATH}/keys");

        let ed = ed25519_jwk();
        let added = srv.post(&w.alice, &keys, ed.clone()).await.ok(201);
        assert_eq!(added["alg"], "EdDSA");
        assert_eq!(added["added_by"], "alice");
        let ed_kid = added["kid"].as_str().unwrap().to_owned();
        assert_eq!(ed_kid.len(), 43, "RFC 7638 thumbprint");
        assert_eq!(added["jwk"]["kid"], ed_kid.as_str());
        assert_eq!(added["jwk"]["x"], ed["x"]);

        let (ec, ec_private) = p256_jwk();
        let added = srv.post(&w.alice, &keys, ec.clone()).await.ok(201);
        assert_eq!(added["alg"], "ES256");
        assert_eq!(added["kid"], "p256-2025");

        let before = read(srv, &w.alice, PROD_AGENT_PATH).await;
        assert_eq!(before["keys"].as_array().unwrap().len(), 2);

        // Private key material, a key that is not on the curve, a duplicate, an outsider.
        let mut with_d = ec.clone();
        with_d["kid"] = json!("leaky");
        with_d["d"] = json!(ec_private);
        let r = srv.post(&w.alice, &keys, with_d).await;
        r.problem(422, "invalid-key");
        assert!(!r.text.contains(&ec_private));
        let mut off_curve = ec.clone();
        off_curve["kid"] = json!("bent");
        off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
        srv.post(&w.alice, &keys, off_curve)
            .await
            .problem(422, "invalid-key");
        srv.post(
            &w.alice,
            &keys,
            json!({"kty": "RSA", "crv": "", "x": "AQAB"}),
        )
        .await
        .problem(422, "invalid-key");
        srv.post(&w.alice, &keys, ed.clone())
            .await
            .problem(422, "invalid-field");
        srv.post(&w.dave, &keys, ed25519_jwk())
            .await
            .problem(403, "forbidden");
        let mut extra = ed25519_jwk();
        extra["x5c"] = json!([]);
        srv.post(&w.alice, &keys, extra)
            .await
            .problem(400, "malformed-request");
        let after = read(srv, &w.alice, PROD_AGENT_PATH).await;
        assert_eq!(after, before);
        assert!(!after.to_string().contains(&ec_private));

        // Removal.
        srv.delete(&w.dave, &format!("{keys}/{ed_kid}"))
            .await
            .problem(403, "forbidden");
        let agent = srv
            .delete(&w.alice, &format!("{keys}/{ed_kid}"))
            .await
            .ok(200);
        assert_eq!(agent["keys"].as_array().unwrap().len(), 1);
        assert_eq!(agent["keys"][0]["kid"], "p256-2025");
        srv.delete(&w.alice, &format!("{keys}/{ed_kid}"))
            .await
            .problem(404, "not-found");
        // The agent's revoker may remove keys too: it only takes access away.
        srv.delete(&w.frank, &format!("{keys}/p256-2025"))
            .await
            .ok(200);
        assert_eq!(
            read(srv, &w.alice, PROD_AGENT_PATH).await["keys"],
            json!([])
        );
        w.srv.cleanup().await;
    }
}

// === users, teams, systems ===

#[tokio::test]
async fn admins_manage_users_teams_and_systems() {
    for w in worlds().await {
        let srv = &w.srv;
        let admin = srv.admin.clone();
        let users = read(srv, &w.alice, "/v1/users").await;
        let names: Vec<&str> = users
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["admin", "alice", "bob", "carol", "dave", "erin", "frank", "grace"]
        );

        srv.post(
            &w.alice,
            "/v1/users",
            json!({"name": "mallory", "role": "admin"}),
        )
        .await
        .problem(403, "forbidden");
        srv.patch(&w.alice, "/v1/users/alice", json!({"role": "admin"}))
            .await
            .problem(403, "forbidden");
        assert_eq!(read(srv, &admin, "/v1/users/alice").await["role"], "member");
        let hank = srv
            .post(
                &admin,
                "/v1/users",
                json!({"name": "hank", "email": "hank@example.com"}),
            )
            .await
            .ok(201);
        assert_eq!(
            (hank["role"].as_str(), hank["disabled"].as_bool()),
            (Some("member"), Some(false))
        );
        let hank = srv
            .patch(&admin, "/v1/users/hank", json!({"display_name": "Hank"}))
            .await
            .ok(200);
        assert_eq!(read(srv, &w.alice, "/v1/users/hank").await, hank);
        srv.patch(&admin, "/v1/users/nobody", json!({"display_name": "x"}))
            .await
            .problem(404, "not-found");

        // Teams.
        srv.post(&w.alice, "/v1/teams", json!({"name": "rogue"}))
            .await
            .problem(403, "forbidden");
        srv.post(
            &admin,
            "/v1/teams",
            json!({"name": "ops", "members": ["ghost"]}),
        )
        .await
        .problem(422, "invalid-field");
        srv.get(&admin, "/v1/teams/ops")
            .await
            .problem(404, "not-found");
        srv.post(
            &admin,
            "/v1/teams",
            json!({"name": "ops", "description": "on call"}),
        )
        .await
        .ok(201);
        let ops = srv
            .patch(
                &admin,
                "/v1/teams/ops",
                json!({"add_members": ["hank", "alice"]}),
            )
            .await
            .ok(200);
        assert_eq!(ops["members"], json!(["alice", "hank"]));
        let me = read(srv, &w.alice, "/v1/whoami").await;
        assert_eq!(me["teams"], json!(["ops", "payments"]));
        let ops = srv
            .patch(
                &admin,
                "/v1/teams/ops",
                json!({"remove_members": ["alice"]}),
            )
            .await
            .ok(200);
        assert_eq!(read(srv, &w.bob, "/v1/teams/ops").await, ops);
        assert_eq!(
            read(srv, &w.alice, "/v1/whoami").await["teams"],
            json!(["payments"])
        );
        assert_eq!(
            read(srv, &w.bob, "/v1/teams")
                .await
                .as_array()
                .unwrap()
                .len(),
            4
        );

        // Systems.
        let db = read(srv, &w.alice, "/v1/systems/billing-db").await;
        assert_eq!(db["actions"]["read_invoices"]["class"], "read");
        srv.patch(
            &w.bob,
            "/v1/systems/billing-db",
            json!({"approvers": ["user:bob"]}),
        )
        .await
        .problem(403, "forbidden");
        srv.patch(
            &admin,
            "/v1/systems/billing-db",
            json!({"approvers": ["user:ghost"]}),
        )
        .await
        .problem(422, "invalid-field");
        srv.patch(
            &admin,
            "/v1/systems/billing-db",
            json!({"environment": "dev"}),
        )
        .await
        .problem(400, "malformed-request");
        assert_eq!(read(srv, &w.alice, "/v1/systems/billing-db").await, db);
        let db = srv
            .patch(
                &admin,
                "/v1/systems/billing-db",
                json!({"approvers": ["team:dba", "user:carol"]}),
            )
            .await
            .ok(200);
        assert_eq!(db["approvers"], json!(["team:dba", "user:carol"]));
        srv.post(
            &admin,
            "/v1/systems",
            json!({"name": "crm", "environment": "prod", "owner_team": "ghosts"}),
        )
        .await
        .problem(422, "invalid-field");
        assert_eq!(
            read(srv, &w.alice, "/v1/systems")
                .await
                .as_array()
                .unwrap()
                .len(),
            2
        );
        w.srv.cleanup().await;
    }
}

// === races ===

const RACE_ROUNDS: usize = 25;

/// Sends the requests at once from separate tasks, lined up on a barrier.
async fn race(api: &Api, requests: Vec<(String, String, Value)>) -> Vec<common::Reply> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(token, path, body)| {
            let api = api.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                api.post(&token, &path, body).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_distinct_approvers_both_land_exactly_once() {
    for w in worlds().await {
        let srv = &w.srv;
        for _ in 0..RACE_ROUNDS {
            let id = prod_write_grant(&w).await;
            let replies = race(
                srv,
                vec![
                    (w.bob.clone(), approve(&id), json!({"comment": "bob"})),
                    (w.carol.clone(), approve(&id), json!({"comment": "carol"})),
                ],
            )
            .await;
            let mut statuses: Vec<&str> = replies
                .iter()
                .map(|r| {
                    assert_eq!(r.status, 200, "{}", r.text);
                    r.record_status()
                })
                .collect();
            statuses.sort_unstable();
            // The first to land left it requested, the second activated it.
            assert_eq!(statuses, ["active", "requested"]);
            let grant = read(srv, &w.alice, &grant_path(&id)).await;
            assert_eq!(grant["status"], "active");
            let mut approvals = approvers_of(&grant);
            approvals.sort();
            assert_eq!(
                approvals,
                vec![
                    ("bob".into(), "system_approver".into()),
                    ("carol".into(), "business_owner".into())
                ]
            );
            let active = replies
                .iter()
                .find(|r| r.record_status() == "active")
                .unwrap();
            assert_eq!(active.body, grant);
        }
        w.srv.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_approver_racing_themself_wins_once() {
    for w in worlds().await {
        let srv = &w.srv;
        for _ in 0..RACE_ROUNDS {
            let id = prod_write_grant(&w).await;
            let replies = race(
                srv,
                (0..3)
                    .map(|i| {
                        (
                            w.bob.clone(),
                            approve(&id),
                            json!({"comment": format!("try {i}")}),
                        )
                    })
                    .collect(),
            )
            .await;
            let (won, lost): (Vec<_>, Vec<_>) = replies.iter().partition(|r| r.status == 200);
            assert_eq!(won.len(), 1, "{replies:?}");
            for r in lost {
                r.problem(409, "already-approved");
            }
            let grant = read(srv, &w.alice, &grant_path(&id)).await;
            assert_eq!(grant["status"], "requested");
            assert_eq!(grant, won[0].body);
            assert_eq!(
                approvers_of(&grant),
                vec![("bob".into(), "system_approver".into())]
            );
        }
        w.srv.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approve_racing_revoke_ends_revoked_and_the_replies_agree() {
    for w in worlds().await {
        let srv = &w.srv;
        let (mut approved_first, mut revoked_first) = (0, 0);
        for _ in 0..RACE_ROUNDS {
            let id = prod_read_grant(&w).await;
            let replies = race(
                srv,
                vec![
                    (w.bob.clone(), approve(&id), json!({})),
                    (
                        w.frank.clone(),
                        format!("/v1/grants/{id}/revoke"),
                        json!({"reason": "race"}),
                    ),
                ],
            )
            .await;
            let (approval, revocation) = (&replies[0], &replies[1]);
            // A requested or an active grant can be revoked: the revocation always lands.
            assert_eq!(revocation.status, 200, "{}", revocation.text);
            assert_eq!(revocation.record_status(), "revoked");
            let grant = read(srv, &w.alice, &grant_path(&id)).await;
            assert_eq!(
                grant["status"], "revoked",
                "a revoked grant is never active again"
            );
            assert_eq!(grant, revocation.body);
            if approval.status == 200 {
                // The approval landed first: it activated the grant, then the revocation ended it.
                approved_first += 1;
                assert_eq!(approval.record_status(), "active");
                assert_eq!(
                    approvers_of(&grant),
                    vec![("bob".into(), "system_approver".into())]
                );
            } else {
                revoked_first += 1;
                approval.problem(409, "invalid-transition");
                assert_eq!(approvers_of(&grant), vec![]);
            }
        }
        assert_eq!(approved_first + revoked_first, RACE_ROUNDS);
        w.srv.cleanup().await;
    }
}

// === operations ===

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    for w in worlds().await {
        let srv = &w.srv;
        let health = srv
            .client
            .get(format!("{}/healthz", srv.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (health.status().as_u16(), health.text().await.unwrap()),
            (200, "ok".into())
        );
        let ready = srv
            .client
            .get(format!("{}/readyz", srv.base))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);

        read(srv, &w.alice, "/v1/users/carol").await;
        srv.get(&w.alice, "/v1/users/nobody-at-all")
            .await
            .problem(404, "not-found");
        srv.get(&w.alice, "/v1/no/such/secret-path")
            .await
            .problem(404, "route-not-found");
        let metrics = srv
            .client
            .get(format!("{}/metrics", srv.base))
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), 200);
        assert!(metrics
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let text = metrics.text().await.unwrap();
        assert!(
            text.contains(
                r#"rein_http_requests_total{method="GET",route="/v1/users/{name}",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"rein_http_requests_total{method="GET",route="/v1/users/{name}",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"rein_http_requests_total{method="POST",route="/v1/agents",status="201"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"rein_http_requests_total{method="GET",route="unmatched",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("rein_http_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE rein_http_request_duration_seconds histogram"),
            "{text}"
        );
        for raw in ["carol", "nobody-at-all", "secret-path"] {
            assert!(
                !text.contains(raw),
                "metrics leak the raw path segment {raw}"
            );
        }

        let doc = srv
            .call(Method::GET, "/v1/openapi.json", None, None)
            .await
            .ok(200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        assert_eq!(doc, serde_json::to_value(rein_server::openapi()).unwrap());
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/whoami",
            "/v1/users",
            "/v1/users/{name}",
            "/v1/users/{name}/tokens",
            "/v1/users/{name}/tokens/{id}",
            "/v1/teams",
            "/v1/teams/{name}",
            "/v1/systems",
            "/v1/systems/{name}",
            "/v1/agents",
            "/v1/agents/{team}/{name}/{environment}",
            "/v1/agents/{team}/{name}/{environment}/suspend",
            "/v1/agents/{team}/{name}/{environment}/resume",
            "/v1/agents/{team}/{name}/{environment}/retire",
            "/v1/agents/{team}/{name}/{environment}/keys",
            "/v1/agents/{team}/{name}/{environment}/keys/{kid}",
            "/v1/grants",
            "/v1/grants/{id}",
            "/v1/grants/{id}/approve",
            "/v1/grants/{id}/deny",
            "/v1/grants/{id}/revoke",
            "/v1/audit",
            "/v1/audit/{seq}",
            "/v1/audit/{seq}/why",
            "/v1/audit/checkpoints",
            "/v1/audit/keys",
            "/v1/audit/export",
            "/v1/audit/verify",
            "/v1/secrets",
            "/v1/secrets/{name}",
            "/v1/openapi.json",
        ] {
            assert!(paths.contains_key(p), "missing {p}");
        }
        // Every path parameter is declared on every operation of its path.
        for (path, item) in paths {
            let mut expected: Vec<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            expected.sort_unstable();
            for op in item.as_object().unwrap().values() {
                let mut declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                declared.sort_unstable();
                assert_eq!(declared, expected, "{path}");
            }
        }
        let mut operation_ids: Vec<&str> = paths
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let operations = operation_ids.len();
        operation_ids.sort_unstable();
        operation_ids.dedup();
        assert_eq!(
            operation_ids.len(),
            operations,
            "operation IDs must be unique"
        );
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for s in [
            "Problem",
            "Grant",
            "GrantRequest",
            "Agent",
            "NewAgent",
            "Jwk",
            "IssuedToken",
            "User",
            "AuditPage",
            "Record",
            "Why",
            "Checkpoint",
            "CheckpointKeys",
            "Verification",
            "SecretMetadata",
            "SecretBody",
        ] {
            assert!(schemas.contains_key(s), "missing schema {s}");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"],
            json!({"type": "http", "scheme": "bearer"})
        );
        let approve = &paths["/v1/grants/{id}/approve"]["post"];
        assert_eq!(
            approve["responses"]["default"]["$ref"],
            "#/components/responses/Problem"
        );
        assert!(doc["components"]["responses"]["Problem"]["content"]
            .get("application/problem+json")
            .is_some());
        assert!(approve["requestBody"].is_object());
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn an_unavailable_store_is_503_and_fails_closed() {
    let Some(srv) = Server::start(&common::Backend::Sqlite).await else {
        unreachable!()
    };
    // Issuing a token forgets every resolved token: admin's is resolved again after it.
    let unchecked = srv.token_for("admin").await;
    read(&srv, &srv.admin, "/v1/whoami").await;
    srv.store.down.store(true, Ordering::SeqCst);
    // A token that cannot be checked is refused, never let through, and the cause stays in the
    // log.
    let r = srv.get(&unchecked, "/v1/whoami").await;
    r.problem(503, "store-unavailable");
    assert!(!r.text.contains("secret-db"), "{}", r.text);
    // A token resolved moments ago is still known (for AUTH_CACHE_TTL), but whatever needs the
    // store fails closed.
    read(&srv, &srv.admin, "/v1/whoami").await;
    let r = srv.get(&srv.admin, "/v1/teams").await;
    r.problem(503, "store-unavailable");
    assert!(!r.text.contains("secret-db"), "{}", r.text);
    let r = srv.call(Method::GET, "/readyz", None, None).await;
    r.problem(503, "store-unavailable");
    assert!(!r.text.contains("secret-db"), "{}", r.text);
    srv.store.down.store(false, Ordering::SeqCst);
    read(&srv, &srv.admin, "/v1/whoami").await;
    let ready = srv
        .client
        .get(format!("{}/readyz", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

/// Requests that fail in every way a token could leak, each tagged with a request ID so that its
/// log lines can be found among those of the other tests (the capturing subscriber is global).
#[tokio::test]
async fn bearer_tokens_never_reach_the_logs() {
    let srv = Server::start(&common::Backend::Sqlite).await.unwrap();
    let alice = srv.user("alice", "member").await;
    let issued = srv
        .post(
            &alice,
            "/v1/users/alice/tokens",
            json!({"description": "ci"}),
        )
        .await
        .ok(201);
    let second = issued["token"].as_str().unwrap().to_owned();
    let tag = format!("log-test-{:016x}", rand::random::<u64>());
    let send = |method: Method, path: &str, token: String, body: &'static str| {
        srv.client
            .request(method, format!("{}{path}", srv.base))
            .header("x-request-id", &tag)
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(body)
    };
    let reply = |req| async {
        common::Reply::read(reqwest::RequestBuilder::send(req).await.unwrap()).await
    };
    reply(send(Method::GET, "/v1/whoami", second.clone(), ""))
        .await
        .ok(200);
    reply(send(Method::GET, "/v1/whoami", format!("{second}x"), ""))
        .await
        .problem(401, "unauthenticated");
    reply(send(
        Method::POST,
        "/v1/users",
        second.clone(),
        r#"{"name":"x"}"#,
    ))
    .await
    .problem(403, "forbidden");
    reply(send(Method::POST, "/v1/teams", second.clone(), "{"))
        .await
        .problem(400, "malformed-request");
    reply(send(Method::GET, "/v1/nowhere", second.clone(), ""))
        .await
        .problem(404, "route-not-found");
    srv.store.down.store(true, Ordering::SeqCst);
    reply(send(Method::GET, "/v1/teams", second.clone(), ""))
        .await
        .problem(503, "store-unavailable");
    srv.store.down.store(false, Ordering::SeqCst);
    drop(srv);

    let text = common::logs().text();
    let ours: Vec<&str> = text.lines().filter(|l| l.contains(&tag)).collect();
    // The requests were logged (the test is not vacuous), with the internal cause of the 503.
    assert!(
        ours.iter()
            .filter(|l| l.contains("finished processing request"))
            .count()
            >= 5,
        "{text}"
    );
    assert!(
        ours.iter().any(|l| l.contains(r#"route="/v1/whoami""#)),
        "{text}"
    );
    assert!(
        ours.iter().any(|l| l.contains("secret-db.internal")),
        "{text}"
    );
    // Nowhere in the logs of any test is there a token of this one, or an Authorization header.
    for token in [&alice, &second] {
        let secret = token.rsplit('_').next().unwrap();
        assert!(!text.contains(secret), "a token's secret was logged");
    }
    assert!(
        !text.to_lowercase().contains("bearer rein_"),
        "an Authorization header was logged"
    );
}
