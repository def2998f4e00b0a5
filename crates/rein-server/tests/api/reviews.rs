//! Access reviews end to end: a campaign over the agents due, their grants with the use the
//! audit log recorded, reviewers keeping and revoking over HTTP, the revocation enforced at the
//! next decision, everything audited in order, the agent's review no longer due or flagged.
//! Then who may decide and see what, finality, bad input, team scopes, early closing, and the
//! overdue sweep with and without automatic suspension.

use rein_registry::RegistryConfig;

use super::*;

/// Requests a grant of `actions` on `billing-db` for the prod agent that runs 200 days, and has
/// it approved (bob; carol too for a production write).
async fn long_grant(w: &World, actions: &[&str]) -> String {
    let mut body = grant_request(PROD_AGENT, "billing-db", actions);
    body["expires_at"] = json!((Utc::now() + Duration::days(200)).to_rfc3339());
    let id = w.srv.post(&w.alice, "/v1/grants", body).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let after = w.srv.post(&w.bob, &approve(&id), json!({})).await.ok(200);
    if after["status"] == "requested" {
        w.srv.post(&w.carol, &approve(&id), json!({})).await.ok(200);
    }
    id
}

/// Asks for a decision on the prod agent's `action` as alice (its team); returns the outcome.
async fn authorize(w: &World, action: &str) -> String {
    let d = w
        .srv
        .post(
            &w.alice,
            "/v1/authorize",
            json!({"agent": PROD_AGENT, "system": "billing-db", "action": action,
                   "context": {"risk": 1, "confidence": 0.99}}),
        )
        .await
        .ok(200);
    d["decision"].as_str().unwrap().to_owned()
}

const PROD_ITEM: &str = "agents/payments/invoice-bot/prod";

fn item_path(campaign: &str, agent_path: &str) -> String {
    format!("/v1/reviews/{campaign}/{agent_path}")
}

fn decide_path(campaign: &str, agent_path: &str) -> String {
    format!("/v1/reviews/{campaign}/{agent_path}/decide")
}

/// The types of every audit record of a review flow, in log order.
async fn review_trail(w: &World) -> Vec<String> {
    let page = w.srv.get(&w.erin, "/v1/audit?limit=1000").await.ok(200);
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["type"].as_str().unwrap().to_owned())
        .filter(|t| {
            t.starts_with("review.")
                || matches!(
                    t.as_str(),
                    "grant.revoked" | "agent.reviewed" | "agent.suspended"
                )
        })
        .collect()
}

fn rules_for(report: &Value, entity: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["entity"]["id"] == entity)
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_access_review_campaign_end_to_end() {
    for w in worlds().await {
        let srv = &w.srv;
        let used = long_grant(&w, &["read_invoices"]).await;
        let unused = long_grant(&w, &["write_invoice"]).await;
        for _ in 0..2 {
            assert_eq!(authorize(&w, "read_invoices").await, "allow");
        }
        // Nobody is due yet (the prod agent's cadence is 90 days; the dev agent has none).
        srv.post(&srv.admin, "/v1/reviews", json!({}))
            .await
            .problem(422, "invalid-field");

        // 106 days on, the review is overdue: flagged by posture and listed as overdue.
        srv.clock.advance(Duration::days(106));
        let report = srv.get(&w.erin, "/v1/posture").await.ok(200);
        assert!(
            rules_for(&report, PROD_AGENT).contains(&"review-overdue".to_owned()),
            "{report}"
        );
        let overdue = srv.get(&w.alice, "/v1/reviews/overdue").await.ok(200);
        assert_eq!(overdue[0]["agent"], PROD_AGENT, "{overdue}");
        assert_eq!(overdue[0]["days_overdue"], 16);

        // An admin opens the campaign: one item, the prod agent, with both grants and their use.
        let opened = srv.post(&srv.admin, "/v1/reviews", json!({})).await.ok(201);
        let id = opened["campaign"]["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("rvw_"), "{opened}");
        assert_eq!(opened["campaign"]["status"], "open");
        assert_eq!(opened["campaign"]["agents"], json!([PROD_AGENT]));
        let item = srv.get(&w.carol, &item_path(&id, PROD_ITEM)).await.ok(200);
        assert_eq!(item["reviewers"], json!(["user:carol"]));
        let grant = |gid: &str| {
            item["grants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["grant"] == gid)
                .cloned()
                .unwrap()
        };
        let (u, n) = (grant(&used), grant(&unused));
        assert_eq!(u["usage"]["calls"], json!({"read_invoices": 2}), "{item}");
        assert!(u["usage"]["last_used"].is_string(), "{item}");
        assert_eq!(n["usage"]["calls"], json!({}), "{item}");
        assert_eq!(n["usage"]["tokens_issued"], 0);
        assert!(n["usage"].get("last_used").is_none(), "{item}");
        // The whole campaign, as the reviewer sees it.
        let whole = srv
            .get(&w.carol, &format!("/v1/reviews/{id}"))
            .await
            .ok(200);
        assert_eq!(whole["items"].as_array().unwrap().len(), 1);

        // Only the agent's reviewers decide: not its team, not an admin, not an auditor.
        let both = json!({"decisions": {&used: "keep", &unused: "revoke"}, "comment": "quarterly"});
        for token in [&w.alice, &srv.admin, &w.erin, &w.dave] {
            srv.post(token, &decide_path(&id, PROD_ITEM), both.clone())
                .await
                .problem(403, "forbidden");
        }
        // A grant not under review, a malformed ID, nothing decided: refused, nothing recorded.
        let stranger = "grt_0190f5a1c2d34e5f8a6b7c8d9e0f1a2b";
        srv.post(
            &w.carol,
            &decide_path(&id, PROD_ITEM),
            json!({"decisions": {stranger: "keep"}}),
        )
        .await
        .problem(422, "invalid-field");
        srv.post(
            &w.carol,
            &decide_path(&id, PROD_ITEM),
            json!({"decisions": {"gr_1": "keep"}}),
        )
        .await
        .problem(422, "invalid-id");
        srv.post(&w.carol, &decide_path(&id, PROD_ITEM), json!({}))
            .await
            .problem(422, "invalid-field");
        srv.post(
            &w.carol,
            &decide_path(&id, PROD_ITEM),
            json!({"decisions": {&used: "maybe"}}),
        )
        .await
        .problem(400, "malformed-request");
        srv.post(
            &w.carol,
            &decide_path(&id, "agents/payments/nobody/prod"),
            both.clone(),
        )
        .await
        .problem(404, "not-found");
        assert_eq!(review_trail(&w).await, ["review.opened"]);

        // The reviewer keeps the used grant and revokes the unused one.
        let decided = srv
            .post(&w.carol, &decide_path(&id, PROD_ITEM), both.clone())
            .await
            .ok(200);
        assert_eq!(decided["completed"]["by"], "carol", "{decided}");
        // Final: the same grant cannot be decided again.
        srv.post(
            &w.carol,
            &decide_path(&id, PROD_ITEM),
            json!({"decisions": {&used: "revoke"}}),
        )
        .await
        .problem(409, "invalid-transition");

        // The revoked grant is denied at the next decision; the kept one still allows.
        assert_eq!(authorize(&w, "write_invoice").await, "deny");
        assert_eq!(authorize(&w, "read_invoices").await, "allow");
        let revoked = srv.get(&w.alice, &grant_path(&unused)).await.ok(200);
        assert_eq!(revoked["status"], "revoked");
        assert_eq!(revoked["closed"]["by"], "carol");
        assert!(
            revoked["closed"]["reason"].as_str().unwrap().contains(&id),
            "{revoked}"
        );
        assert_eq!(
            srv.get(&w.alice, &grant_path(&used)).await.ok(200)["status"],
            "active"
        );

        // Audited in order, each decision naming the campaign, agent, grant, verdict, reviewer.
        assert_eq!(
            review_trail(&w).await,
            [
                "review.opened",
                "review.decided",
                "review.decided",
                "grant.revoked",
                "agent.reviewed",
                "review.closed"
            ]
        );
        let decisions = srv
            .get(&w.erin, "/v1/audit?type=review.decided")
            .await
            .ok(200);
        let decisions: Vec<(String, String)> = decisions["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let e = &r["event"];
                assert_eq!(e["subject"], id.as_str());
                assert_eq!(e["agent"], PROD_AGENT);
                assert_eq!(e["actor"]["id"], "carol");
                (
                    e["details"]["grant"].as_str().unwrap().to_owned(),
                    e["details"]["decision"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert!(decisions.contains(&(used.clone(), "keep".into())));
        assert!(decisions.contains(&(unused.clone(), "revoke".into())));

        // Reviewed: no longer due, overdue or flagged; the campaign closed itself.
        let agent = srv.get(&w.alice, PROD_AGENT_PATH).await.ok(200);
        assert!(agent["last_review"].is_string(), "{agent}");
        assert_eq!(
            srv.get(&w.alice, "/v1/reviews/overdue").await.ok(200),
            json!([])
        );
        let report = srv.get(&w.erin, "/v1/posture").await.ok(200);
        assert!(
            !rules_for(&report, PROD_AGENT).contains(&"review-overdue".to_owned()),
            "{report}"
        );
        let campaign = srv
            .get(&w.carol, &format!("/v1/reviews/{id}"))
            .await
            .ok(200);
        assert_eq!(campaign["campaign"]["status"], "closed");
        assert_eq!(campaign["campaign"]["closed"]["by"], "rein");
        srv.post(&srv.admin, "/v1/reviews", json!({}))
            .await
            .problem(422, "invalid-field");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn team_campaigns_hold_their_team_and_readers_see_their_items() {
    for w in worlds().await {
        let srv = &w.srv;
        srv.post(
            &srv.admin,
            "/v1/teams",
            json!({"name": "ops", "members": ["dave"]}),
        )
        .await
        .ok(201);
        srv.post(
            &w.dave,
            "/v1/agents",
            json!({"team": "ops", "name": "backup-bot", "environment": "dev", "use_case": "backups",
                   "roles": {"reviewers": ["user:frank"], "review_cadence_days": 30}}),
        )
        .await
        .ok(201);
        srv.clock.advance(Duration::days(31));

        // A team's members open campaigns of their own team only; auditors none.
        srv.post(&w.dave, "/v1/reviews", json!({"team": "payments"}))
            .await
            .problem(403, "forbidden");
        srv.post(&w.dave, "/v1/reviews", json!({}))
            .await
            .problem(403, "forbidden");
        srv.post(
            &w.erin,
            "/v1/reviews",
            json!({"team": "payments", "all": true}),
        )
        .await
        .problem(403, "forbidden");
        srv.post(&srv.admin, "/v1/reviews", json!({"team": "nope"}))
            .await
            .problem(404, "not-found");
        srv.post(
            &srv.admin,
            "/v1/reviews",
            json!({"team": "ops", "extra": 1}),
        )
        .await
        .problem(400, "malformed-request");
        // The prod agent is not due; `all` takes it anyway.
        srv.post(&w.alice, "/v1/reviews", json!({"team": "payments"}))
            .await
            .problem(422, "invalid-field");
        let payments = srv
            .post(
                &w.alice,
                "/v1/reviews",
                json!({"team": "payments", "all": true}),
            )
            .await
            .ok(201);
        assert_eq!(payments["campaign"]["agents"], json!([PROD_AGENT]));
        let ops = srv
            .post(&w.dave, "/v1/reviews", json!({"team": "ops"}))
            .await
            .ok(201);
        let ops_agent = "spiffe://rein.local/agent/ops/backup-bot/dev";
        assert_eq!(ops["campaign"]["agents"], json!([ops_agent]));
        // Both agents are under review already: an admin's campaign finds nobody left.
        srv.post(&srv.admin, "/v1/reviews", json!({"all": true}))
            .await
            .problem(422, "invalid-field");

        // frank reviews only the ops agent: he sees that campaign, not the other.
        let (pid, oid) = (
            payments["campaign"]["id"].as_str().unwrap(),
            ops["campaign"]["id"].as_str().unwrap(),
        );
        let listed = srv.get(&w.frank, "/v1/reviews").await.ok(200);
        let ids: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [oid]);
        srv.get(&w.frank, &format!("/v1/reviews/{pid}"))
            .await
            .problem(403, "forbidden");
        srv.get(&w.frank, &item_path(pid, PROD_ITEM))
            .await
            .problem(403, "forbidden");
        assert_eq!(
            srv.get(&w.erin, "/v1/reviews")
                .await
                .ok(200)
                .as_array()
                .unwrap()
                .len(),
            2
        );

        // An agent without grants is certified by an empty decision.
        let ops_item = "agents/ops/backup-bot/dev";
        let item = srv
            .post(
                &w.frank,
                &decide_path(oid, ops_item),
                json!({"comment": "no access to keep"}),
            )
            .await
            .ok(200);
        assert_eq!(item["grants"], json!([]));
        assert_eq!(item["completed"]["by"], "frank");
        srv.post(&w.frank, &decide_path(oid, ops_item), json!({}))
            .await
            .problem(409, "invalid-transition");
        let agent = srv
            .get(&w.dave, "/v1/agents/ops/backup-bot/dev")
            .await
            .ok(200);
        assert!(agent["last_review"].is_string());
        assert_eq!(
            srv.get(&w.dave, &format!("/v1/reviews/{oid}"))
                .await
                .ok(200)["campaign"]["status"],
            "closed"
        );

        // Only an admin closes a campaign early; then it takes no decisions.
        srv.post(&w.alice, &format!("/v1/reviews/{pid}/close"), json!({}))
            .await
            .problem(403, "forbidden");
        let closed = srv
            .post(
                &srv.admin,
                &format!("/v1/reviews/{pid}/close"),
                json!({"reason": "re-run next quarter"}),
            )
            .await
            .ok(200);
        assert_eq!(closed["campaign"]["status"], "closed");
        assert_eq!(
            closed["campaign"]["closed"]["reason"],
            "re-run next quarter"
        );
        srv.post(&srv.admin, &format!("/v1/reviews/{pid}/close"), json!({}))
            .await
            .problem(409, "invalid-transition");
        srv.post(&w.carol, &decide_path(pid, PROD_ITEM), json!({}))
            .await
            .problem(409, "invalid-transition");
        // Its agent was not reviewed.
        let prod = srv.get(&w.alice, PROD_AGENT_PATH).await.ok(200);
        assert!(prod["last_review"].is_null(), "{prod}");
        srv.get(&w.alice, "/v1/reviews/rvw_nope")
            .await
            .problem(404, "not-found");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn overdue_reviews_are_listed_and_suspended_only_when_configured() {
    for backend in backends() {
        for suspend in [false, true] {
            let config = RegistryConfig {
                suspend_overdue_reviews: suspend,
                ..RegistryConfig::default()
            };
            let Some(w) = World::configured(&backend, None, Vec::new(), config).await else {
                continue;
            };
            let srv = &w.srv;
            // Due (90 days) but within the grace period (14 days): nothing to do.
            srv.clock.advance(Duration::days(100));
            assert!(srv
                .registry
                .sweep_overdue_reviews()
                .await
                .unwrap()
                .is_empty());
            assert_eq!(
                srv.get(&w.alice, "/v1/reviews/overdue").await.ok(200),
                json!([])
            );

            srv.clock.advance(Duration::days(6));
            let swept = srv.registry.sweep_overdue_reviews().await.unwrap();
            assert_eq!(swept.len(), 1);
            assert_eq!(swept[0].agent.as_str(), PROD_AGENT);
            assert_eq!(swept[0].days_overdue, 16);
            assert_eq!(swept[0].suspended_now, suspend);
            let listed = srv.get(&w.alice, "/v1/reviews/overdue").await.ok(200);
            assert_eq!(listed[0]["agent"], PROD_AGENT);
            assert_eq!(listed[0]["review_cadence_days"], 90);
            let agent = srv.get(&w.alice, PROD_AGENT_PATH).await.ok(200);
            if !suspend {
                assert_eq!(agent["status"], "active");
                assert!(!review_trail(&w)
                    .await
                    .contains(&"agent.suspended".to_owned()));
                w.srv.cleanup().await;
                continue;
            }
            assert_eq!(agent["status"], "suspended");
            assert_eq!(agent["status_reason"]["by"], "rein");
            let reason = agent["status_reason"]["reason"].as_str().unwrap();
            assert!(
                reason.starts_with("access review overdue since ")
                    && reason.ends_with(": cadence 90 days, grace 14 days"),
                "{reason}"
            );
            let records = srv
                .get(&w.erin, "/v1/audit?type=agent.suspended")
                .await
                .ok(200);
            let e = &records["records"][0]["event"];
            assert_eq!(e["actor"], json!({"kind": "rein", "id": "rein"}));
            assert_eq!(e["reason"], reason);
            // A suspended agent is denied; a second sweep changes nothing.
            assert_eq!(authorize(&w, "read_invoices").await, "deny");
            let again = srv.registry.sweep_overdue_reviews().await.unwrap();
            assert!(!again[0].suspended_now);
            assert_eq!(
                review_trail(&w)
                    .await
                    .iter()
                    .filter(|t| *t == "agent.suspended")
                    .count(),
                1
            );
            w.srv.cleanup().await;
        }
    }
}
