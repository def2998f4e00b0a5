//! `/v1/secrets`: secrets for MCP upstreams, set and rotated by admins, shown only as metadata,
//! opened only by the gateway (`Registry::reveal_secret`). The value and its ciphertext appear in
//! no response, no audit record and no log line; a system references only secrets that exist, a
//! referenced secret is not deleted, and a tampered ciphertext fails closed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rein_core::mcp::SecretName;
use rein_store::{AuditStore as _, Store as _};
use serde_json::{json, Value};

use super::common::{self, Server};
use super::{read, worlds};

const PATH: &str = "/v1/secrets/billing-token";

/// A value no other test uses, so its absence from the shared log buffer means something.
fn unique_value(label: &str) -> String {
    format!("sk-live-{label}-{:032x}", rand::random::<u128>())
}

fn name(s: &str) -> SecretName {
    s.parse().unwrap()
}

/// A system whose MCP upstream takes its API key from the secret `secret`.
fn mcp_system(system: &str, secret: &str) -> Value {
    json!({
        "name": system, "environment": "prod", "owner_team": "payments",
        "approvers": ["team:dba"],
        "mcp": {
            "transport": "stdio", "command": "billing-mcp",
            "env": {"BILLING_API_KEY": {"secret": secret}, "LOG_LEVEL": "info"},
        },
    })
}

/// The opened value of `secret`, as the gateway gets it.
async fn reveal(srv: &Server, secret: &str) -> Result<String, rein_registry::Error> {
    let value = srv
        .registry
        .reveal_secret(&srv.master, &name(secret))
        .await?;
    Ok(value.as_str().unwrap().to_owned())
}

/// The stored ciphertext of `secret`, base64 as it is in the store's document.
async fn ciphertext(srv: &Server, secret: &str) -> String {
    let stored = srv.store.secret(&name(secret)).await.unwrap().unwrap();
    STANDARD.encode(&stored.value.sealed)
}

/// Every audit record, read from the store, as JSON text.
async fn every_audit_record(srv: &Server) -> Vec<String> {
    let rows = srv.store.audit_scan(0, 100_000).await.unwrap();
    rows.into_iter()
        .map(|row| serde_json::to_string(&row.record.unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn secrets_are_set_rotated_revealed_only_inside_and_never_shown() {
    for w in worlds().await {
        let srv = &w.srv;
        let first = unique_value("first");
        let second = unique_value("second");
        let mut leaks = vec![first.clone(), second.clone()];

        // Set: 201 with the metadata only.
        let created = srv
            .call(
                reqwest::Method::PUT,
                PATH,
                Some(&srv.admin),
                Some(&json!({"value": first})),
            )
            .await;
        assert!(!created.text.contains(&first), "{}", created.text);
        let created = created.ok(201);
        assert_eq!(created["name"], "billing-token");
        assert_eq!(created["version"], 1);
        assert_eq!(created["updated_by"], "admin");
        assert!(created.get("value").is_none() && created.get("sealed").is_none());
        leaks.push(ciphertext(srv, "billing-token").await);
        assert_eq!(reveal(srv, "billing-token").await.unwrap(), first);

        // List and read: metadata, never the value nor the ciphertext.
        let listed = srv.get(&srv.admin, "/v1/secrets").await;
        let one = srv.get(&srv.admin, PATH).await;
        for reply in [&listed, &one] {
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert!(!reply.text.contains("sealed"), "{}", reply.text);
            for leak in &leaks {
                assert!(!reply.text.contains(leak.as_str()), "{}", reply.text);
            }
        }
        assert_eq!(listed.body.as_array().unwrap().len(), 1);
        assert_eq!(one.body["version"], 1);

        // Rotate: 200, the next version, and the gateway now gets the new value.
        let rotated = srv
            .call(
                reqwest::Method::PUT,
                PATH,
                Some(&srv.admin),
                Some(&json!({"value": second})),
            )
            .await
            .ok(200);
        assert_eq!(rotated["version"], 2);
        assert_eq!(rotated["created_at"], created["created_at"]);
        leaks.push(ciphertext(srv, "billing-token").await);
        assert_eq!(reveal(srv, "billing-token").await.unwrap(), second);
        assert_eq!(read(srv, &srv.admin, PATH).await["version"], 2);

        // Who may: admins only, not even auditors may read the metadata.
        for token in [&w.alice, &w.erin] {
            srv.call(
                reqwest::Method::PUT,
                PATH,
                Some(token),
                Some(&json!({"value": "x"})),
            )
            .await
            .problem(403, "forbidden");
            srv.get(token, "/v1/secrets")
                .await
                .problem(403, "forbidden");
            srv.get(token, PATH).await.problem(403, "forbidden");
            srv.delete(token, PATH).await.problem(403, "forbidden");
        }
        assert_eq!(reveal(srv, "billing-token").await.unwrap(), second);

        // Bad names and values.
        for (path, body) in [
            ("/v1/secrets/Billing_Token", json!({"value": "x"})),
            (PATH, json!({"value": ""})),
            (
                PATH,
                json!({"value": "x".repeat(rein_core::secret::MAX_SECRET_BYTES + 1)}),
            ),
        ] {
            let r = srv
                .call(reqwest::Method::PUT, path, Some(&srv.admin), Some(&body))
                .await;
            r.problem(422, "invalid-field");
        }
        srv.call(
            reqwest::Method::PUT,
            PATH,
            Some(&srv.admin),
            Some(&json!({"value": second, "note": "x"})),
        )
        .await
        .problem(400, "malformed-request");
        assert_eq!(read(srv, &srv.admin, PATH).await["version"], 2);
        srv.get(&srv.admin, "/v1/secrets/nope")
            .await
            .problem(404, "not-found");

        // A system references only secrets that exist: on create and on update.
        let p = srv
            .post(
                &srv.admin,
                "/v1/systems",
                mcp_system("billing-mcp", "missing-key"),
            )
            .await;
        let detail = p.problem(422, "invalid-field")["detail"].as_str().unwrap();
        assert!(
            detail.contains("mcp") && detail.contains("missing-key"),
            "{detail}"
        );
        srv.get(&srv.admin, "/v1/systems/billing-mcp")
            .await
            .problem(404, "not-found");
        srv.post(
            &srv.admin,
            "/v1/systems",
            mcp_system("billing-mcp", "billing-token"),
        )
        .await
        .ok(201);
        let patch = json!({"mcp": mcp_system("x", "missing-key")["mcp"]});
        srv.patch(&srv.admin, "/v1/systems/billing-db", patch)
            .await
            .problem(422, "invalid-field");
        assert_eq!(
            read(srv, &srv.admin, "/v1/systems/billing-db").await["mcp"],
            Value::Null
        );

        // A referenced secret stays; an unreferenced one goes, and the gateway can no longer
        // open it.
        let p = srv.delete(&srv.admin, PATH).await;
        let detail = p.problem(409, "in-use")["detail"].as_str().unwrap();
        assert!(detail.contains("billing-mcp"), "{detail}");
        assert_eq!(reveal(srv, "billing-token").await.unwrap(), second);
        let spare = unique_value("spare");
        leaks.push(spare.clone());
        srv.call(
            reqwest::Method::PUT,
            "/v1/secrets/spare",
            Some(&srv.admin),
            Some(&json!({"value": spare})),
        )
        .await
        .ok(201);
        leaks.push(ciphertext(srv, "spare").await);
        let deleted = srv.delete(&srv.admin, "/v1/secrets/spare").await;
        assert_eq!(deleted.status, 204, "{}", deleted.text);
        assert!(matches!(
            reveal(srv, "spare").await,
            Err(rein_registry::Error::NotFound { .. })
        ));
        assert!(srv.store.secret(&name("spare")).await.unwrap().is_none());
        srv.delete(&srv.admin, "/v1/secrets/spare")
            .await
            .problem(404, "not-found");

        // A ciphertext altered in the store does not open: the gateway gets an error that
        // carries nothing of the value.
        let stored = srv
            .store
            .secret(&name("billing-token"))
            .await
            .unwrap()
            .unwrap();
        let mut tampered = stored.value.clone();
        if let Some(byte) = tampered.sealed.last_mut() {
            *byte ^= 0x01;
        }
        srv.store
            .update_secret(&tampered, stored.version)
            .await
            .unwrap();
        let e = reveal(srv, "billing-token").await.unwrap_err();
        assert!(matches!(e, rein_registry::Error::Secret(_)), "{e:?}");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("does not open"), "{shown}");
        for leak in &leaks {
            assert!(!shown.contains(leak.as_str()), "{shown}");
        }

        // The audit log names each set and deletion with its version, never a value or a
        // ciphertext; nor does any log line.
        let records = every_audit_record(srv).await;
        let of = |t: &str| -> Vec<Value> {
            records
                .iter()
                .map(|r| serde_json::from_str::<Value>(r).unwrap())
                .filter(|r| r["event"]["type"] == t)
                .collect()
        };
        let sets: Vec<(String, String)> = of("secret.set")
            .iter()
            .map(|r| {
                (
                    r["event"]["subject"].as_str().unwrap().to_owned(),
                    r["event"]["details"]["version"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(
            sets,
            [
                ("billing-token".to_owned(), "1".to_owned()),
                ("billing-token".to_owned(), "2".to_owned()),
                ("spare".to_owned(), "1".to_owned()),
            ]
        );
        assert!(of("secret.set")
            .iter()
            .all(|r| r["event"]["actor"]["id"] == "admin"));
        let deleted = of("secret.deleted");
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0]["event"]["subject"], "spare");
        let logs = common::logs().text();
        for leak in &leaks {
            for record in &records {
                assert!(!record.contains(leak.as_str()), "audit leaks: {record}");
            }
            assert!(!logs.contains(leak.as_str()), "the logs leak a secret");
        }
        w.srv.cleanup().await;
    }
}
