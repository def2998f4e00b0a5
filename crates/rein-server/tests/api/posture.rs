//! `GET /v1/posture` over the live registry and audit log: findings with their controls, as
//! JSON, SARIF and HTML, for admins and auditors only.

use super::*;

fn rules_for<'a>(report: &'a Value, entity: &str) -> Vec<&'a str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["entity"]["id"] == entity)
        .map(|f| f["rule"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_posture_report_reads_the_registry_and_the_audit_log() {
    for w in worlds().await {
        let srv = &w.srv;
        let grant = prod_read_grant(&w).await;
        srv.post(&w.bob, &approve(&grant), json!({})).await.ok(200);
        // The prod agent reads invoices once: its grant is in use.
        let d = srv
            .post(
                &w.alice,
                "/v1/authorize",
                json!({"agent": PROD_AGENT, "system": "billing-db",
                "action": "read_invoices", "context": {"risk": 1, "confidence": 0.99}}),
            )
            .await
            .ok(200);
        assert_eq!(d["decision"], "allow", "{d}");

        // Members may not read it (it reads the audit log); auditors may.
        srv.get(&w.alice, "/v1/posture")
            .await
            .problem(403, "forbidden");
        let report = srv.get(&w.erin, "/v1/posture").await.ok(200);
        // The dev agent was registered without accountable roles.
        assert!(
            rules_for(&report, DEV_AGENT).contains(&"missing-accountable-role"),
            "{report}"
        );
        let prod = rules_for(&report, PROD_AGENT);
        assert!(!prod.contains(&"missing-accountable-role"), "{report}");
        assert!(!prod.contains(&"agent-inactive"), "{report}");
        // Every finding names controls from the catalog, with a fix.
        for f in report["findings"].as_array().unwrap() {
            assert!(!f["controls"].as_array().unwrap().is_empty(), "{f}");
            assert!(f["fix"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
        }

        // 105 days on: the prod agent's review is overdue (90 days + 14 of grace) and it has
        // done nothing for longer than 60 days.
        srv.clock.advance(Duration::days(105));
        let later = srv.get(&w.erin, "/v1/posture").await.ok(200);
        let prod = rules_for(&later, PROD_AGENT);
        assert!(prod.contains(&"review-overdue"), "{later}");
        assert!(prod.contains(&"agent-inactive"), "{later}");

        // SARIF 2.1.0 and a self-contained HTML page; an unknown format is refused.
        let sarif = srv.get(&w.erin, "/v1/posture?format=sarif").await.ok(200);
        assert_eq!(sarif["version"], "2.1.0");
        assert!(!sarif["runs"][0]["results"].as_array().unwrap().is_empty());
        let html = srv
            .client
            .get(format!("{}/v1/posture?format=html", srv.base))
            .bearer_auth(&w.erin)
            .send()
            .await
            .unwrap();
        assert!(html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let page = html.text().await.unwrap();
        assert!(page.contains("<svg") && page.contains("review-overdue"));
        srv.get(&w.erin, "/v1/posture?format=pdf")
            .await
            .problem(422, "invalid-field");
        w.srv.cleanup().await;
    }
}
