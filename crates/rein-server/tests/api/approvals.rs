//! Step-up approvals end to end: a risky production write gets `step_up` and opens an
//! approval request, a real local webhook receiver gets a signed notification, an approver
//! decides over HTTP, the agent's waiting call returns, and the approval unlocks exactly one
//! call with exactly these arguments. Then the rules: who may decide, finality, races, expiry,
//! two-person approvals, bad input.

use tokio::sync::mpsc;

use super::decisions::{active_grant, example_policies, strs};
use super::oauth::{claims, form_for_task, token_request, AgentKey};
use super::*;

const SECRET: &str = "whsec-test-0123456789";

/// A webhook receiver on a real local HTTP server: each request's signature header, event
/// header and body, as received.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(String, String, Vec<u8>)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let _ = tx.send((
                        header(rein_notify::SIGNATURE_HEADER),
                        header(rein_notify::EVENT_HEADER),
                        body.to_vec(),
                    ));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// The next notification of `kind`, its signature checked with the receiver's helper.
async fn notification(
    rx: &mut mpsc::UnboundedReceiver<(String, String, Vec<u8>)>,
    kind: &str,
) -> Value {
    loop {
        let (signature, event, body) =
            tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("no webhook notification")
                .unwrap();
        let now = Utc::now().timestamp();
        rein_notify::verify(SECRET.as_bytes(), &signature, &body, now, 300)
            .expect("a genuine signature");
        // A forged or altered one is refused by the same helper.
        assert!(rein_notify::verify(b"wrong", &signature, &body, now, 300).is_err());
        assert!(rein_notify::verify(SECRET.as_bytes(), &signature, b"{}", now, 300).is_err());
        assert!(
            rein_notify::verify(SECRET.as_bytes(), &signature, &body, now + 3600, 300).is_err(),
            "a replay an hour later"
        );
        if event == kind {
            return serde_json::from_slice(&body).unwrap();
        }
    }
}

async fn world_with_webhook(backend: &common::Backend, url: &str) -> Option<World> {
    let policies = example_policies();
    let webhook: rein_notify::Webhook = serde_json::from_value(json!({
        "name": "approvers", "url": url, "secret": SECRET,
    }))
    .unwrap();
    let w = World::full(backend, Some(policies.path().to_path_buf()), vec![webhook]).await;
    // The policies were copied into the server's own view at start; the directory may go.
    drop(policies);
    w
}

fn risky(arguments: Value) -> Value {
    json!({"task_id": "t-9", "intent": "correct an invoice total", "risk": 85,
           "confidence": 0.9, "arguments": arguments})
}

#[tokio::test]
async fn a_step_up_is_notified_approved_and_unlocks_exactly_one_identical_call() {
    for backend in backends() {
        let (url, mut hooks) = receiver().await;
        let Some(w) = world_with_webhook(&backend, &url).await else {
            continue;
        };
        let srv = &w.srv;
        let grant = active_grant(&w, PROD_AGENT, "billing-db", &["write_invoice"]).await;
        // The agent's own token for the write.
        let key = AgentKey::register(srv, &w.alice, PROD_AGENT_PATH).await;
        let t = token_request(
            srv,
            &form_for_task(
                &key.sign(&claims(srv, PROD_AGENT)),
                "billing-db",
                "write_invoice",
                "t-9",
            ),
        )
        .await;
        assert_eq!(t.status, 200, "{}", t.text);
        let token = t.body["access_token"].as_str().unwrap().to_owned();
        let args = json!({"invoice": 7, "total": 1250, "api_key": "sk-live-secret"});
        let call = |context: Value| json!({"agent": PROD_AGENT, "system": "billing-db", "action": "write_invoice", "context": context});

        // A high-risk production write: step-up, with an approval request for this call.
        let d = srv
            .post(&token, "/v1/authorize", call(risky(args.clone())))
            .await
            .ok(200);
        assert_eq!(d["decision"], "step_up", "{d}");
        let id = d["approval"]["id"].as_str().unwrap().to_owned();
        assert_eq!(d["approval"]["status"], "pending");
        // Asking again does not multiply requests.
        let again = srv
            .post(&token, "/v1/authorize", call(risky(args.clone())))
            .await
            .ok(200);
        assert_eq!(again["approval"]["id"], id.as_str());

        // The webhook receiver gets a signed notification naming the call, without secrets.
        let requested = notification(&mut hooks, "approval.requested").await;
        assert_eq!(requested["approval"]["id"], id.as_str());
        assert_eq!(requested["approval"]["action"], "write_invoice");
        assert_eq!(
            requested["approval"]["arguments_preview"]["api_key"],
            "[redacted]"
        );
        assert!(requested["links"]["approve"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/approvals/{id}/approve")));
        assert!(
            !String::from_utf8_lossy(&serde_json::to_vec(&requested).unwrap())
                .contains("sk-live-secret")
        );

        // The agent waits (long poll) while the approver decides.
        let waiting = {
            let (api, token, id) = (srv.api.clone(), token.clone(), id.clone());
            tokio::spawn(async move {
                api.get(&token, &format!("/v1/approvals/{id}/wait?timeout=30"))
                    .await
                    .ok(200)
            })
        };
        let pending = srv
            .get(&w.bob, "/v1/approvals?status=pending")
            .await
            .ok(200);
        assert!(
            pending
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["id"] == id.as_str()),
            "{pending}"
        );
        // dave is no approver: he neither sees nor decides it.
        let seen = srv
            .get(&w.dave, "/v1/approvals?status=pending")
            .await
            .ok(200);
        assert!(seen.as_array().unwrap().is_empty(), "{seen}");
        srv.post(&w.dave, &format!("/v1/approvals/{id}/approve"), json!({}))
            .await
            .problem(403, "forbidden");
        let approved = srv
            .post(
                &w.bob,
                &format!("/v1/approvals/{id}/approve"),
                json!({"comment": "checked the invoice"}),
            )
            .await
            .ok(200);
        assert_eq!(approved["status"], "approved");
        let waited = waiting.await.unwrap();
        assert_eq!(waited["status"], "approved", "{waited}");
        let decided = notification(&mut hooks, "approval.decided").await;
        assert_eq!(decided["approval"]["status"], "approved");

        // The call with the approval attached goes through, once.
        let mut with = risky(args.clone());
        with["approval_id"] = json!(id);
        let ok = srv
            .post(&token, "/v1/authorize", call(with.clone()))
            .await
            .ok(200);
        assert_eq!(ok["decision"], "allow", "{ok}");
        assert!(
            strs(&ok["determined_by"]).contains(&format!("approval:{id}").as_str()),
            "{ok}"
        );
        assert!(strs(&ok["determined_by"]).contains(&grant.as_str()), "{ok}");
        assert_eq!(ok["approval"]["approvers"], json!(["bob"]));
        let twice = srv
            .post(&token, "/v1/authorize", call(with.clone()))
            .await
            .ok(200);
        assert_ne!(twice["decision"], "allow", "a second use: {twice}");
        // Other arguments with the same approval: not allowed either.
        let mut other = risky(json!({"invoice": 8, "total": 99999}));
        other["approval_id"] = json!(id);
        let d = srv.post(&token, "/v1/authorize", call(other)).await.ok(200);
        assert_ne!(d["decision"], "allow", "{d}");

        // The audit log links decision → approval → approvers → the call it unlocked.
        let record = srv
            .get(&w.erin, &format!("/v1/audit/{}", ok["audit_seq"]))
            .await
            .ok(200);
        let event = &record["event"];
        assert_eq!(event["details"]["approval_id"], id.as_str());
        assert!(strs(&event["approvers"]).contains(&"bob"), "{record}");
        let used = srv
            .get(
                &w.erin,
                &format!("/v1/audit?type=approval.used&subject={id}"),
            )
            .await
            .ok(200);
        let used = &used["records"][0]["event"];
        assert_eq!(used["details"]["decision_id"], ok["decision_id"]);
        let granted = srv
            .get(&w.erin, "/v1/audit?type=approval.granted")
            .await
            .ok(200);
        assert!(granted.to_string().contains(&id), "{granted}");
        assert!(!granted.to_string().contains("sk-live-secret"));

        // Delivery state is visible.
        let deliveries = srv
            .get(&w.bob, &format!("/v1/approvals/{id}/deliveries"))
            .await
            .ok(200);
        let states: Vec<&str> = deliveries
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["state"].as_str().unwrap())
            .collect();
        assert!(states.contains(&"delivered"), "{deliveries}");
        w.srv.cleanup().await;
    }
}

#[tokio::test]
async fn decisions_on_approvals_are_checked_final_and_race_free() {
    for backend in backends() {
        let (url, _hooks) = receiver().await;
        let Some(w) = world_with_webhook(&backend, &url).await else {
            continue;
        };
        let srv = &w.srv;
        active_grant(&w, PROD_AGENT, "billing-db", &["write_invoice"]).await;
        let step_up = |arguments: Value| {
            let srv = &w.srv;
            let alice = w.alice.clone();
            async move {
                let d = srv
                    .post(
                        &alice,
                        "/v1/authorize",
                        json!({"agent": PROD_AGENT, "system": "billing-db",
                        "action": "write_invoice", "context": risky(arguments)}),
                    )
                    .await
                    .ok(200);
                assert_eq!(d["decision"], "step_up", "{d}");
                d["approval"]["id"].as_str().unwrap().to_owned()
            }
        };
        let path = |id: &str, what: &str| format!("/v1/approvals/{id}/{what}");

        // The user whose call asked may not decide it; bad input changes nothing.
        let id = step_up(json!({"invoice": 1})).await;
        srv.post(&w.alice, &path(&id, "approve"), json!({}))
            .await
            .problem(403, "forbidden");
        let long = "x".repeat(2001);
        srv.post(&w.bob, &path(&id, "approve"), json!({"comment": long}))
            .await
            .problem(422, "invalid-field");
        srv.post(&w.bob, &path(&id, "approve"), json!({"uses": 0}))
            .await
            .problem(422, "invalid-field");
        srv.post(&w.bob, &path(&id, "deny"), json!({"comment": ""}))
            .await
            .problem(422, "invalid-field");
        srv.post(&w.bob, &path(&id, "approve"), json!({"surprise": 1}))
            .await
            .problem(400, "malformed-request");
        assert_eq!(
            srv.get(&w.bob, &format!("/v1/approvals/{id}"))
                .await
                .ok(200)["status"],
            "pending"
        );
        // The business owner may decide a production write; a decision is final.
        srv.post(
            &w.carol,
            &path(&id, "deny"),
            json!({"comment": "not this month"}),
        )
        .await
        .ok(200);
        srv.post(&w.bob, &path(&id, "approve"), json!({}))
            .await
            .problem(409, "invalid-transition");
        let waited = srv
            .get(&w.alice, &format!("{}?timeout=1", path(&id, "wait")))
            .await
            .ok(200);
        assert_eq!(waited["status"], "denied");
        // Admins are not approvers unless configured.
        let id = step_up(json!({"invoice": 2})).await;
        srv.post(&srv.admin, &path(&id, "approve"), json!({}))
            .await
            .problem(403, "forbidden");

        // Approve and deny racing: exactly one wins, and the state is the winner's.
        let (approve, deny) = (path(&id, "approve"), path(&id, "deny"));
        let (a, d) = tokio::join!(
            srv.post(&w.bob, &approve, json!({})),
            srv.post(&w.carol, &deny, json!({"comment": "no"})),
        );
        assert_eq!(
            [a.status, d.status].iter().filter(|s| **s == 200).count(),
            1,
            "{} / {}",
            a.text,
            d.text
        );
        let state = srv
            .get(&w.bob, &format!("/v1/approvals/{id}"))
            .await
            .ok(200);
        let expected = if a.status == 200 {
            "approved"
        } else {
            "denied"
        };
        assert_eq!(state["status"], expected);

        // Two approvers for a dangerous statement: distinct people, then approved.
        let id = step_up(json!({"sql": "DROP TABLE invoices"})).await;
        let one = srv
            .post(&w.bob, &path(&id, "approve"), json!({}))
            .await
            .ok(200);
        assert_eq!(one["status"], "pending");
        srv.post(&w.bob, &path(&id, "approve"), json!({}))
            .await
            .problem(409, "already-approved");
        let two = srv
            .post(&w.grace, &path(&id, "approve"), json!({"uses": 2}))
            .await
            .ok(200);
        assert_eq!(
            (two["status"].as_str(), two["uses_allowed"].as_u64()),
            (Some("approved"), Some(2))
        );

        // Expiry: no decision after it, waiting reports it, listing finds it.
        let id = step_up(json!({"invoice": 3})).await;
        srv.clock.advance(Duration::minutes(16));
        srv.post(&w.bob, &path(&id, "approve"), json!({}))
            .await
            .problem(409, "invalid-transition");
        let waited = srv.get(&w.alice, &path(&id, "wait")).await.ok(200);
        assert_eq!(waited["status"], "expired");
        let expired = srv
            .get(&w.bob, "/v1/approvals?status=expired")
            .await
            .ok(200);
        assert!(expired
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str()));
        srv.get(&w.alice, &format!("{}?timeout=121", path(&id, "wait")))
            .await
            .problem(422, "invalid-field");
        srv.get(&w.bob, "/v1/approvals/apr_00000000000000000000000000000000")
            .await
            .problem(404, "not-found");
        w.srv.cleanup().await;
    }
}
