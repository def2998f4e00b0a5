//! `/v1/governance/plan` and `/v1/governance/apply`: a declared set against the live registry.
//! Applying is idempotent, all or nothing (also when another writer wins a race against the
//! store transaction), never approves a grant, and refuses a stale plan.

use super::*;

const HELPER: &str = "spiffe://rein.local/agent/payments/helper/prod";
const FAR: &str = "2099-01-01T00:00:00Z";

fn grant(agent: &str, actions: &[&str]) -> Value {
    json!({"agent": agent, "system": "billing-db", "actions": actions,
        "expires_at": FAR, "justification": "month-end close"})
}

/// Four users, three teams, a prod system, two prod agents and two grant requests.
fn set() -> Value {
    let mut helper = prod_agent();
    helper["name"] = json!("helper");
    helper["use_case"] = json!("answers invoice questions");
    json!({
        "users": [{"name": "alice"}, {"name": "bob"}, {"name": "carol"}, {"name": "frank"}],
        "teams": [
            {"name": "payments", "members": ["alice"]},
            {"name": "dba", "members": ["bob"]},
            {"name": "sec", "members": ["frank"]},
        ],
        "systems": [{
            "name": "billing-db", "environment": "prod", "owner_team": "payments",
            "approvers": ["team:dba"],
            "actions": {"read_invoices": {"class": "read"}, "write_invoice": {"class": "write"}},
        }],
        "agents": [prod_agent(), helper],
        "grants": [grant(PROD_AGENT, &["read_invoices"]), grant(PROD_AGENT, &["write_invoice"])],
    })
}

async fn plan(srv: &Server, set: &Value) -> Value {
    srv.post(&srv.admin, "/v1/governance/plan", set.clone())
        .await
        .ok(200)
}

async fn apply(srv: &Server, set: &Value) -> Value {
    srv.post(&srv.admin, "/v1/governance/apply", json!({"set": set}))
        .await
        .ok(200)
}

/// `(action, kind, key)` of every change.
fn changes(plan: &Value) -> Vec<(String, String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_owned();
            (s("action"), s("kind"), s("key"))
        })
        .collect()
}

async fn audit_count(srv: &Server) -> usize {
    let mut n = 0;
    let mut after = 0;
    loop {
        let page = srv
            .get(&srv.admin, &format!("/v1/audit?limit=1000&after={after}"))
            .await
            .ok(200);
        let records = page["records"].as_array().unwrap();
        n += records.len();
        match records.last() {
            Some(r) if records.len() == 1000 => after = r["seq"].as_u64().unwrap(),
            _ => return n,
        }
    }
}

async fn grants_of(srv: &Server, agent: &str) -> Vec<Value> {
    let agent = agent.replace(':', "%3A").replace('/', "%2F");
    srv.get(&srv.admin, &format!("/v1/grants?agent={agent}"))
        .await
        .ok(200)
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_set_applies_once_never_approves_and_then_changes_nothing() {
    for backend in backends() {
        let Some(srv) = Server::start(&backend).await else {
            continue;
        };
        let first = plan(&srv, &set()).await;
        assert!(first["problems"].as_array().unwrap().is_empty(), "{first}");
        let planned = changes(&first);
        assert_eq!(planned.len(), 12, "{first}");
        assert!(planned.iter().all(|(a, _, _)| a == "create"), "{first}");
        // Every grant request waits for its approvers; the production write also for the
        // agent's business owner.
        let requests: Vec<&Value> = first["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "grant")
            .collect();
        assert_eq!(requests.len(), 2);
        assert!(requests[0]["needs_approval_by"]
            .to_string()
            .contains("team:dba"));
        assert!(requests[1]["needs_approval_by"]
            .to_string()
            .contains("carol"));
        // Users, teams and systems the set does not declare are left alone, and said so.
        assert!(first["notes"].to_string().contains("admin"), "{first}");

        let applied = apply(&srv, &set()).await;
        let id = applied["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("apl_"), "{applied}");
        assert_eq!(applied["plan"]["changes"], first["changes"]);
        // Manifests never approve: both grants are requested, and the admin who applied the
        // set requested them, so they cannot approve them either.
        let grants = grants_of(&srv, PROD_AGENT).await;
        assert_eq!(grants.len(), 2);
        assert!(
            grants.iter().all(|g| g["status"] == "requested"),
            "{grants:?}"
        );
        let g = grants[0]["id"].as_str().unwrap();
        srv.post(&srv.admin, &approve(g), json!({}))
            .await
            .problem(403, "self-approval");
        // Every change was recorded, with the apply's ID, and the apply itself.
        let records = srv
            .get(
                &srv.admin,
                &format!("/v1/audit?type=governance.applied&subject={id}"),
            )
            .await
            .ok(200);
        assert_eq!(records["records"].as_array().unwrap().len(), 1, "{records}");
        let created = srv
            .get(&srv.admin, "/v1/audit?type=agent.created")
            .await
            .ok(200);
        for r in created["records"].as_array().unwrap() {
            assert_eq!(
                r["event"]["details"]["governance_apply"],
                id.as_str(),
                "{r}"
            );
        }

        // Again: nothing to do, and nothing is recorded.
        let before = audit_count(&srv).await;
        let again = plan(&srv, &set()).await;
        assert!(changes(&again).is_empty(), "{again}");
        let applied = apply(&srv, &set()).await;
        assert!(applied["id"].is_null(), "{applied}");
        assert_eq!(audit_count(&srv).await, before);

        // An approver denies the production write; the same request is not asked again.
        let bob = srv.token_for("bob").await;
        let write = grants
            .iter()
            .find(|g| g["actions"] == json!(["write_invoice"]))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        srv.post(
            &bob,
            &format!("/v1/grants/{write}/deny"),
            json!({"reason": "not now"}),
        )
        .await
        .ok(200);
        let after_denial = plan(&srv, &set()).await;
        assert!(changes(&after_denial).is_empty(), "{after_denial}");
        assert!(
            after_denial["notes"].to_string().contains("was denied"),
            "{after_denial}"
        );

        // Changing the set: a new description, a new member, the helper and the read grant
        // gone. The helper is retired, the read grant revoked.
        let mut changed = set();
        changed["agents"][0]["description"] = json!("Reconciles invoices and credit notes");
        changed["agents"].as_array_mut().unwrap().pop();
        changed["teams"][0]["members"] = json!(["alice", "carol"]);
        changed["grants"].as_array_mut().unwrap().remove(0);
        let next = plan(&srv, &changed).await;
        let mut got = changes(&next);
        got.sort();
        let read = grants
            .iter()
            .find(|g| g["actions"] == json!(["read_invoices"]))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut want = vec![
            (
                "update".to_owned(),
                "team".to_owned(),
                "payments".to_owned(),
            ),
            (
                "update".to_owned(),
                "agent".to_owned(),
                PROD_AGENT.to_owned(),
            ),
            ("remove".to_owned(), "agent".to_owned(), HELPER.to_owned()),
            ("remove".to_owned(), "grant".to_owned(), read.clone()),
        ];
        want.sort();
        assert_eq!(got, want, "{next}");
        apply(&srv, &changed).await;
        let agent = srv.get(&srv.admin, PROD_AGENT_PATH).await.ok(200);
        assert_eq!(agent["description"], "Reconciles invoices and credit notes");
        let helper = srv
            .get(&srv.admin, "/v1/agents/payments/helper/prod")
            .await
            .ok(200);
        assert_eq!(helper["status"], "retired");
        let read = srv.get(&srv.admin, &grant_path(&read)).await.ok(200);
        assert_eq!(read["status"], "revoked");
        assert!(changes(&plan(&srv, &changed).await).is_empty());

        // Only admins plan and apply.
        let alice = srv.token_for("alice").await;
        srv.post(&alice, "/v1/governance/plan", set())
            .await
            .problem(403, "forbidden");
        srv.post(&alice, "/v1/governance/apply", json!({"set": set()}))
            .await
            .problem(403, "forbidden");
        srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_set_with_problems_applies_nothing_and_the_plan_names_each_document() {
    for backend in backends() {
        let Some(srv) = Server::start(&backend).await else {
            continue;
        };
        let mut bad = set();
        let mut other = bad["systems"][0].clone();
        other["name"] = json!("ledger");
        other["approvers"] = json!(["team:dba", "user:nobody"]);
        bad["systems"].as_array_mut().unwrap().push(other);
        bad["grants"][1]["actions"] = json!(["drop_everything"]);
        bad["grants"].as_array_mut().unwrap().push(grant(
            "spiffe://rein.local/agent/payments/ghost/prod",
            &["read_invoices"],
        ));
        bad["users"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "bob"}));
        let p = plan(&srv, &bad).await;
        let problems: Vec<(String, u64, String)> = p["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["kind"].as_str().unwrap().to_owned(),
                    x["index"].as_u64().unwrap(),
                    x["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let has = |kind: &str, index: u64, text: &str| {
            problems
                .iter()
                .any(|(k, i, m)| k == kind && *i == index && m.contains(text))
        };
        assert!(has("user", 4, "declared twice"), "{p}");
        assert!(has("system", 1, "user:nobody"), "{p}");
        assert!(has("grant", 1, "drop_everything"), "{p}");
        assert!(has("grant", 2, "not declared"), "{p}");

        let before = audit_count(&srv).await;
        srv.post(&srv.admin, "/v1/governance/apply", json!({"set": bad}))
            .await
            .problem(422, "invalid-governance-set");
        let users = srv.get(&srv.admin, "/v1/users").await.ok(200);
        assert_eq!(
            users.as_array().unwrap().len(),
            1,
            "only the admin: {users}"
        );
        assert_eq!(audit_count(&srv).await, before, "nothing was recorded");

        // Unknown fields are malformed requests.
        let mut unknown = set();
        unknown["agents"][0]["rolez"] = json!({});
        srv.post(&srv.admin, "/v1/governance/plan", unknown)
            .await
            .problem(400, "malformed-request");
        srv.cleanup().await;
    }
}

/// A system's `mcp` configuration may reference only secrets that exist: the plan names the
/// missing one on the system's document, and once it is set the same set applies.
#[tokio::test]
async fn a_system_referencing_a_missing_secret_is_a_problem_of_the_plan() {
    for backend in backends() {
        let Some(srv) = Server::start(&backend).await else {
            continue;
        };
        let mut with_mcp = set();
        with_mcp["systems"][0]["mcp"] = json!({
            "transport": "streamable_http", "url": "https://billing.example.com/mcp",
            "headers": {"Authorization": {"secret": "billing-token"}},
        });
        let p = plan(&srv, &with_mcp).await;
        let problems = p["problems"].as_array().unwrap();
        assert_eq!(problems[0]["kind"], "system", "{p}");
        assert_eq!(problems[0]["index"], 0);
        let message = problems[0]["message"].as_str().unwrap();
        assert!(
            message.contains("`mcp`") && message.contains("billing-token"),
            "{message}"
        );
        // The grants on it say so, and nothing else is wrong.
        assert!(problems[1..]
            .iter()
            .all(|x| x["kind"] == "grant" && x["message"].as_str().unwrap().contains("not valid")));
        srv.post(&srv.admin, "/v1/governance/apply", json!({"set": with_mcp}))
            .await
            .problem(422, "invalid-governance-set");

        srv.call(
            Method::PUT,
            "/v1/secrets/billing-token",
            Some(&srv.admin),
            Some(&json!({"value": "Bearer token-of-the-billing-api"})),
        )
        .await
        .ok(201);
        let p = plan(&srv, &with_mcp).await;
        assert!(p["problems"].as_array().unwrap().is_empty(), "{p}");
        apply(&srv, &with_mcp).await;
        let system = srv.get(&srv.admin, "/v1/systems/billing-db").await.ok(200);
        assert_eq!(system["mcp"], with_mcp["systems"][0]["mcp"]);
        srv.delete(&srv.admin, "/v1/secrets/billing-token")
            .await
            .problem(409, "in-use");
        srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_stale_plan_is_refused_and_nothing_is_applied() {
    for backend in backends() {
        let Some(srv) = Server::start(&backend).await else {
            continue;
        };
        let p = plan(&srv, &set()).await;
        let expect = json!({"state": p["state"], "set": p["set"]});
        // The set changed since the plan.
        let mut other = set();
        other["users"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "zed"}));
        srv.post(
            &srv.admin,
            "/v1/governance/apply",
            json!({"set": other, "expect": expect}),
        )
        .await
        .problem(409, "stale-plan");
        // The registry changed since the plan.
        srv.post(&srv.admin, "/v1/users", json!({"name": "yara"}))
            .await
            .ok(201);
        let before = audit_count(&srv).await;
        srv.post(
            &srv.admin,
            "/v1/governance/apply",
            json!({"set": set(), "expect": expect}),
        )
        .await
        .problem(409, "stale-plan");
        srv.get(&srv.admin, "/v1/users/alice")
            .await
            .problem(404, "not-found");
        assert_eq!(audit_count(&srv).await, before);
        // A fresh plan applies.
        let p = plan(&srv, &set()).await;
        srv.post(
            &srv.admin,
            "/v1/governance/apply",
            json!({"set": set(), "expect": {"state": p["state"], "set": p["set"]}}),
        )
        .await
        .ok(200);
        srv.get(&srv.admin, "/v1/users/alice").await.ok(200);
        srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_set_that_loses_a_race_in_the_store_is_rolled_back_whole() {
    for backend in backends() {
        let Some(srv) = Server::start(&backend).await else {
            continue;
        };
        apply(&srv, &set()).await;
        // The next set adds a user (written first) and changes team `payments`; another writer
        // changes that team between the plan and the store transaction.
        let mut next = set();
        next["users"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "zed"}));
        next["teams"][0]["members"] = json!(["alice", "zed"]);
        *srv.store.race_team.lock().unwrap() = Some("payments".parse().unwrap());
        srv.post(&srv.admin, "/v1/governance/apply", json!({"set": next}))
            .await
            .problem(409, "stale-plan");
        // The user inserted earlier in the same transaction is not there.
        srv.get(&srv.admin, "/v1/users/zed")
            .await
            .problem(404, "not-found");
        let team = srv.get(&srv.admin, "/v1/teams/payments").await.ok(200);
        assert_eq!(team["members"], json!(["alice"]));
        // Each change recorded write-ahead is superseded by a record saying it was not applied.
        let created = srv
            .get(&srv.admin, "/v1/audit?type=user.created&subject=zed")
            .await
            .ok(200);
        let outcomes: Vec<&str> = created["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["event"]["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["success", "failure"], "{created}");
        // Planned again, it applies.
        apply(&srv, &next).await;
        srv.get(&srv.admin, "/v1/users/zed").await.ok(200);
        srv.cleanup().await;
    }
}
