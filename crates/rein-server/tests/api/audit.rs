//! The audit log over HTTP: what the registry's changes leave in it, reading it (filters,
//! cursors, `why`), exporting it (JSON Lines that verify offline, OCSF), who may read it, and
//! that a change whose record cannot be written is refused and changes nothing.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{Duration, Utc};
use rein_audit::{Checkpoint, Record, Verifier};
use serde_json::{json, Value};

use super::common::{self, Api, CHECKPOINT_EVERY};
use super::{approve, grant_path, prod_write_grant, read, worlds, World, PROD_AGENT};

/// Every record matching `query` (e.g. `type=user.created`), following `next` cursors with
/// pages of `limit`.
async fn all_records(api: &Api, token: &str, query: &str, limit: u32) -> Vec<Value> {
    let mut records = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let cursor = after.map(|a| format!("&after={a}")).unwrap_or_default();
        let page = read(
            api,
            token,
            &format!("/v1/audit?limit={limit}{cursor}&{query}"),
        )
        .await;
        let batch = page["records"].as_array().unwrap();
        assert!(batch.len() <= limit as usize);
        records.extend(batch.iter().cloned());
        match page["next"].as_u64() {
            Some(next) => {
                assert_eq!(Some(next), batch.last().and_then(|r| r["seq"].as_u64()));
                after = Some(next);
            }
            None => return records,
        }
    }
}

fn types(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["event"]["type"].as_str().unwrap())
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// A raw GET, for bodies that are not JSON.
pub(super) async fn get_text(api: &Api, token: &str, path: &str) -> (u16, String, String) {
    let response = api
        .client
        .get(format!("{}{path}", api.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// The checkpoints and the keys that signed them, as the API publishes them.
async fn checkpoints_and_keys(
    api: &Api,
    token: &str,
) -> (
    Vec<Checkpoint>,
    HashMap<String, ed25519_dalek::VerifyingKey>,
) {
    let checkpoints: Vec<Checkpoint> =
        serde_json::from_value(read(api, token, "/v1/audit/checkpoints").await).unwrap();
    let jwks = read(api, token, "/v1/audit/keys").await;
    let keys = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(
                (k["kty"].as_str(), k["crv"].as_str()),
                (Some("OKP"), Some("Ed25519"))
            );
            let x: [u8; 32] = URL_SAFE_NO_PAD
                .decode(k["x"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            (
                k["kid"].as_str().unwrap().to_owned(),
                ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap(),
            )
        })
        .collect();
    (checkpoints, keys)
}

#[tokio::test]
async fn a_grant_lifecycle_is_recorded_in_order_with_its_approvers_and_revokers() {
    for w in worlds().await {
        let srv = &w.srv;
        let id = prod_write_grant(&w).await;
        srv.post(&w.bob, &approve(&id), json!({"comment": "schema reviewed"}))
            .await
            .ok(200);
        // A refused attempt is not a change, and leaves no record.
        srv.post(&w.grace, &approve(&id), json!({}))
            .await
            .problem(403, "forbidden");
        srv.post(&w.carol, &approve(&id), json!({"comment": "ok"}))
            .await
            .ok(200);
        srv.post(
            &w.frank,
            &format!("/v1/grants/{id}/revoke"),
            json!({"reason": "incident 42"}),
        )
        .await
        .ok(200);

        let records = all_records(srv, &w.erin, &format!("subject={id}"), 100).await;
        assert_eq!(
            types(&records),
            [
                "grant.requested",
                "grant.approved",
                "grant.approved",
                "grant.revoked"
            ]
        );
        let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
        let actors: Vec<&str> = records
            .iter()
            .map(|r| r["event"]["actor"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(actors, ["alice", "bob", "carol", "frank"]);
        for r in &records {
            let e = &r["event"];
            assert_eq!(e["actor"]["kind"], "user");
            assert_eq!(e["agent"], PROD_AGENT);
            assert_eq!(e["system"], "billing-db");
            assert_eq!(e["outcome"], "success");
            let revokers = strings(&e["revokers"]);
            assert!(
                revokers.contains(&"team:sec") && revokers.contains(&"team:dba"),
                "{e}"
            );
        }
        assert!(strings(&records[0]["event"]["approvers"]).is_empty());
        assert_eq!(strings(&records[1]["event"]["approvers"]), ["bob"]);
        assert_eq!(strings(&records[2]["event"]["approvers"]), ["bob", "carol"]);
        assert_eq!(records[2]["event"]["details"]["status"], "active");
        assert_eq!(strings(&records[3]["event"]["approvers"]), ["bob", "carol"]);
        assert_eq!(records[3]["event"]["reason"], "incident 42");

        // One record by its sequence number is the same record.
        let revoked_seq = seqs[3];
        assert_eq!(
            read(srv, &w.erin, &format!("/v1/audit/{revoked_seq}")).await,
            records[3]
        );
        srv.get(&w.erin, "/v1/audit/999999")
            .await
            .problem(404, "not-found");
        srv.get(&w.erin, "/v1/audit/first")
            .await
            .problem(422, "invalid-field");

        // Why: who owns the agent, who approved the access, who can revoke it.
        let why = read(srv, &w.erin, &format!("/v1/audit/{revoked_seq}/why")).await;
        assert_eq!(why["record"], records[3]);
        assert_eq!(why["agent"], PROD_AGENT);
        assert_eq!(why["owner"]["owner_team"], "payments");
        assert_eq!(why["owner"]["business_owner"], "carol");
        assert_eq!(why["owner"]["agent_status"], "active");
        assert_eq!(strings(&why["approval"]["recorded"]), ["bob", "carol"]);
        let grant = &why["approval"]["grants"][0];
        assert_eq!(grant["id"], id.as_str());
        assert_eq!(grant["status"], "revoked");
        assert_eq!(grant["requested_by"], "alice");
        let approvals: Vec<(&str, &str)> = grant["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["by"].as_str().unwrap(), a["role"].as_str().unwrap()))
            .collect();
        assert_eq!(
            approvals,
            [("bob", "system_approver"), ("carol", "business_owner")]
        );
        assert_eq!(strings(&why["revocation"]["agent_revokers"]), ["team:sec"]);
        assert_eq!(
            strings(&why["revocation"]["system_approvers"]),
            ["team:dba"]
        );
        assert_eq!(strings(&why["revocation"]["all"]), ["team:sec", "team:dba"]);

        // For an agent's own record: its owner and revokers as recorded and as they are now.
        let created = all_records(
            srv,
            &w.admin_token(),
            &format!("type=agent.created&subject={PROD_AGENT}"),
            10,
        )
        .await;
        assert_eq!(created.len(), 1);
        let seq = created[0]["seq"].as_u64().unwrap();
        let why = read(srv, &w.srv.admin, &format!("/v1/audit/{seq}/why")).await;
        assert_eq!(why["owner"]["owner_team"], "payments");
        assert_eq!(why["owner"]["recorded_business_owner"], "carol");
        assert_eq!(strings(&why["revocation"]["recorded"]), ["team:sec"]);
        assert_eq!(strings(&why["revocation"]["all"]), ["team:sec"]);
        assert_eq!(why["approval"]["grants"], json!([]));
        w.srv.cleanup().await;
    }
}

impl World {
    fn admin_token(&self) -> String {
        self.srv.admin.clone()
    }
}

#[tokio::test]
async fn audit_records_are_filtered_and_paged_by_cursor() {
    for w in worlds().await {
        let srv = &w.srv;
        let everything = all_records(srv, &w.erin, "", 1000).await;
        // Setting up the world: 1 bootstrap admin + its token, 7 users and their tokens, 3
        // teams, 2 systems, 2 agents.
        assert_eq!(
            everything.len(),
            2 + 7 * 2 + 3 + 2 + 2,
            "{:?}",
            types(&everything)
        );
        let seqs: Vec<u64> = everything
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

        // Small pages, followed by cursor, give the same records in the same order.
        for limit in [1, 3, 5] {
            assert_eq!(all_records(srv, &w.erin, "", limit).await, everything);
        }
        // The default page size is 100 and the last page says there is no next one.
        let page = read(srv, &w.erin, "/v1/audit").await;
        assert_eq!(page["records"].as_array().unwrap().len(), everything.len());
        assert_eq!(page["next"], Value::Null);
        let page = read(srv, &w.erin, "/v1/audit?limit=4").await;
        assert_eq!(page["next"], 4);

        let users = all_records(srv, &w.erin, "type=user.created", 2).await;
        assert_eq!(users.len(), 8);
        assert!(types(&users).iter().all(|t| *t == "user.created"));
        let by_alice = all_records(srv, &w.erin, "actor=alice", 100).await;
        assert_eq!(types(&by_alice), ["agent.created", "agent.created"]);
        let about_prod = all_records(
            srv,
            &w.erin,
            &format!("agent={}", PROD_AGENT.replace(':', "%3A")),
            100,
        )
        .await;
        assert_eq!(types(&about_prod), ["agent.created"]);
        let on_db = all_records(srv, &w.erin, "system=billing-db", 100).await;
        assert_eq!(types(&on_db), ["system.created"]);
        let combined = all_records(
            srv,
            &w.erin,
            "type=user.created&subject=carol&actor=admin",
            100,
        )
        .await;
        assert_eq!(combined.len(), 1);
        assert_eq!(combined[0]["event"]["subject"], "carol");
        assert!(all_records(srv, &w.erin, "task=no-such-task", 100)
            .await
            .is_empty());

        // Time range.
        let past = "2000-01-01T00:00:00Z";
        let future = (Utc::now() + Duration::hours(1)).to_rfc3339();
        let future = future.replace('+', "%2B");
        assert_eq!(
            all_records(srv, &w.erin, &format!("since={past}"), 100).await,
            everything
        );
        assert!(all_records(srv, &w.erin, &format!("until={past}"), 100)
            .await
            .is_empty());
        assert!(all_records(srv, &w.erin, &format!("since={future}"), 100)
            .await
            .is_empty());
        assert_eq!(
            all_records(srv, &w.erin, &format!("until={future}"), 100).await,
            everything
        );

        // The latest records, as `tail` shows them.
        let latest = read(srv, &w.erin, "/v1/audit?latest=true&limit=2").await;
        assert_eq!(
            latest["records"].as_array().unwrap(),
            &everything[everything.len() - 2..]
        );
        let latest = read(
            srv,
            &w.erin,
            "/v1/audit?latest=true&limit=2&type=team.created",
        )
        .await;
        assert_eq!(
            types(latest["records"].as_array().unwrap()),
            ["team.created", "team.created"]
        );

        for bad in [
            "type=grant.teleported",
            "limit=0",
            "limit=1001",
            "since=yesterday",
            "latest=true&after=3",
        ] {
            srv.get(&w.erin, &format!("/v1/audit?{bad}"))
                .await
                .problem(422, "invalid-field");
        }
        srv.get(&w.erin, "/v1/audit?colour=red")
            .await
            .problem(400, "malformed-request");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn the_export_verifies_offline_maps_to_ocsf_and_holds_no_token() {
    for w in worlds().await {
        let srv = &w.srv;
        let id = prod_write_grant(&w).await;
        srv.post(&w.bob, &approve(&id), json!({})).await.ok(200);
        srv.post(&w.carol, &approve(&id), json!({})).await.ok(200);

        // Checkpoints first: every one of them is covered by the export that follows.
        let (checkpoints, keys) = checkpoints_and_keys(srv, &w.erin).await;
        assert!(!checkpoints.is_empty());
        assert!(checkpoints.iter().any(|c| c.seq >= CHECKPOINT_EVERY));
        assert_eq!(keys.len(), 1);

        let (status, content_type, jsonl) = get_text(srv, &w.erin, "/v1/audit/export").await;
        assert_eq!(status, 200, "{jsonl}");
        assert_eq!(content_type, "application/jsonl");
        let records: Vec<Record> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2 + 7 * 2 + 3 + 2 + 2 + 3);
        let mut verifier = Verifier::new(&keys, &checkpoints);
        for r in &records {
            assert!(verifier.push(r), "{r:?}");
        }
        let report = verifier.finish();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.records, records.len() as u64);
        assert_eq!(report.checkpoints_verified, checkpoints.len() as u64);

        // The server's own verification agrees.
        let verified = read(srv, &w.erin, "/v1/audit/verify").await;
        assert_eq!(verified["ok"], true, "{verified}");
        assert_eq!(verified["message"], Value::Null);
        assert!(verified["records"].as_u64().unwrap() >= records.len() as u64);

        // A modified export does not verify.
        let mut altered = records.clone();
        altered[4].event.outcome = "failure".into();
        let mut verifier = Verifier::new(&keys, &checkpoints);
        altered
            .iter()
            .take_while(|r| verifier.push(r))
            .for_each(drop);
        assert_eq!(
            verifier.finish().problem,
            Some(rein_audit::Finding::Altered { seq: 5 })
        );

        let (status, _, ocsf) = get_text(srv, &w.erin, "/v1/audit/export?format=ocsf").await;
        assert_eq!(status, 200);
        let events: Vec<Value> = ocsf
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), records.len());
        for (event, record) in events.iter().zip(&records) {
            let class = event["class_uid"].as_u64().unwrap();
            let activity = event["activity_id"].as_u64().unwrap();
            assert_eq!(event["type_uid"].as_u64(), Some(class * 100 + activity));
            assert_eq!(event["metadata"]["sequence"].as_u64(), Some(record.seq));
            assert_eq!(
                event["metadata"]["event_code"],
                record.event.event_type.as_str()
            );
        }
        let grant_approved = events
            .iter()
            .find(|e| e["metadata"]["event_code"] == "grant.approved")
            .unwrap();
        assert_eq!(grant_approved["class_uid"], 3005);
        srv.get(&w.erin, "/v1/audit/export?format=csv")
            .await
            .problem(422, "invalid-field");

        // No API token, nor its secret part, is anywhere in the log.
        for token in [
            &srv.admin, &w.alice, &w.bob, &w.carol, &w.dave, &w.erin, &w.frank, &w.grace,
        ] {
            let secret = token.rsplit('_').next().unwrap();
            assert!(secret.len() >= 16);
            assert!(!jsonl.contains(secret), "a token is in the audit log");
            assert!(!ocsf.contains(secret), "a token is in the OCSF export");
        }
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn only_admins_and_auditors_read_the_audit_log() {
    for w in worlds().await {
        let srv = &w.srv;
        let paths = [
            "/v1/audit",
            "/v1/audit/1",
            "/v1/audit/1/why",
            "/v1/audit/checkpoints",
            "/v1/audit/keys",
            "/v1/audit/export",
            "/v1/audit/verify",
        ];
        for path in paths {
            for token in [&w.erin, &srv.admin] {
                let (status, _, body) = get_text(srv, token, path).await;
                assert_eq!(status, 200, "{path}: {body}");
            }
            for token in [&w.alice, &w.carol, &w.frank] {
                srv.get(token, path).await.problem(403, "forbidden");
            }
        }
        // The auditor still changes nothing.
        srv.post(&w.erin, "/v1/users", json!({"name": "mallory"}))
            .await
            .problem(403, "forbidden");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn a_change_whose_record_cannot_be_written_is_refused_and_changes_nothing() {
    for w in worlds().await {
        let srv = &w.srv;
        let id = prod_write_grant(&w).await;
        let grant_before = read(srv, &w.alice, &grant_path(&id)).await;
        let head = |records: &Value| records["records"][0]["seq"].as_u64().unwrap();
        let head_before = head(&read(srv, &w.erin, "/v1/audit?latest=true&limit=1").await);

        srv.store.audit_down.store(true, Ordering::SeqCst);
        let r = srv
            .post(&srv.admin, "/v1/users", json!({"name": "newbie"}))
            .await;
        r.problem(503, "audit-unavailable");
        assert!(!r.text.contains("secret-audit"), "{}", r.text);
        srv.post(&w.bob, &approve(&id), json!({}))
            .await
            .problem(503, "audit-unavailable");
        srv.post(
            &w.frank,
            &format!("/v1/grants/{id}/revoke"),
            json!({"reason": "x"}),
        )
        .await
        .problem(503, "audit-unavailable");
        srv.post(&w.alice, "/v1/users/alice/tokens", json!({}))
            .await
            .problem(503, "audit-unavailable");
        // Reads still work, and show that nothing changed.
        srv.get(&srv.admin, "/v1/users/newbie")
            .await
            .problem(404, "not-found");
        assert_eq!(read(srv, &w.alice, &grant_path(&id)).await, grant_before);
        assert_eq!(
            head(&read(srv, &w.erin, "/v1/audit?latest=true&limit=1").await),
            head_before
        );
        // The cause is in the server's log, not in the response.
        assert!(common::logs().text().contains("secret-audit.internal"));

        // Once the audit store is back, changes are recorded again and the chain continues.
        srv.store.audit_down.store(false, Ordering::SeqCst);
        srv.post(&srv.admin, "/v1/users", json!({"name": "newbie"}))
            .await
            .ok(201);
        let latest = read(srv, &w.erin, "/v1/audit?latest=true&limit=1").await;
        assert_eq!(head(&latest), head_before + 1);
        assert_eq!(latest["records"][0]["event"]["subject"], "newbie");
        let verified = read(srv, &w.erin, "/v1/audit/verify").await;
        assert_eq!(verified["ok"], true, "{verified}");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn the_expiry_sweep_records_grant_expired() {
    for w in worlds().await {
        let srv = &w.srv;
        let id = prod_write_grant(&w).await;
        srv.post(&w.bob, &approve(&id), json!({})).await.ok(200);
        srv.post(&w.carol, &approve(&id), json!({})).await.ok(200);
        assert_eq!(srv.registry.expire_grants().await.unwrap(), 0);

        srv.clock.advance(Duration::days(8));
        assert_eq!(srv.registry.expire_grants().await.unwrap(), 1);
        assert_eq!(srv.registry.expire_grants().await.unwrap(), 0);
        let grant = read(srv, &w.alice, &grant_path(&id)).await;
        assert_eq!(grant["status"], "expired");

        let records = all_records(srv, &w.erin, &format!("subject={id}"), 100).await;
        assert_eq!(
            types(&records),
            [
                "grant.requested",
                "grant.approved",
                "grant.approved",
                "grant.expired"
            ]
        );
        let expired = &records[3]["event"];
        assert_eq!(expired["actor"], json!({"kind": "rein", "id": "rein"}));
        assert_eq!(strings(&expired["approvers"]), ["bob", "carol"]);
        assert_eq!(expired["details"]["status"], "expired");
        let by_rein = all_records(srv, &w.erin, "actor=rein", 100).await;
        assert_eq!(types(&by_rein), ["grant.expired"]);
        w.srv.cleanup().await;
    }
}
