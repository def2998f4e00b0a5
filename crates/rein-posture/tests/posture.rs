//! The posture rules on fixtures (one per rule, plus a clean inventory), the catalog, and the
//! renderers (SARIF validated against the official 2.1.0 schema, HTML escaping and charts).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use rein_core::agent::{AccountableRoles, Agent, AgentStatus, Budgets};
use rein_core::grant::{Approval, ApprovalRole, Grant, GrantStatus};
use rein_core::id::{AgentId, GrantId};
use rein_core::system::{ActionClass, ActionSpec, Classification, System};
use rein_posture::{
    evaluate, render, Catalog, EntityKind, GuardrailMode, GuardrailUse, Inventory, Location,
    PostureConfig, Report, Severity, RULES,
};

// === fixtures ===

fn now() -> DateTime<Utc> {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

fn days_ago(n: i64) -> DateTime<Utc> {
    now() - TimeDelta::days(n)
}

fn days_ahead(n: i64) -> DateTime<Utc> {
    now() + TimeDelta::days(n)
}

fn name<T: FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn agent_id(agent: &str, env: &str) -> AgentId {
    name(&format!("spiffe://rein.local/agent/payments/{agent}/{env}"))
}

fn agent(agent: &str, env: &str) -> Agent {
    Agent {
        id: agent_id(agent, env),
        description: format!("agent {agent}"),
        use_case: "reconcile invoices".to_owned(),
        roles: AccountableRoles {
            business_owner: Some(name("bob")),
            approvers: vec![name("user:alice")],
            revokers: vec![name("team:secops")],
            reviewers: vec![name("user:carol")],
            review_cadence_days: Some(90),
        },
        last_review: Some(days_ago(10)),
        status: AgentStatus::Active,
        status_reason: None,
        keys: Vec::new(),
        budgets: Budgets::default(),
        created_by: name("alice"),
        created_at: days_ago(200),
        updated_at: days_ago(10),
    }
}

fn system(n: &str, env: &str) -> System {
    let action = |class| ActionSpec {
        class: Some(class),
        description: String::new(),
    };
    System {
        name: name(n),
        description: format!("system {n}"),
        environment: name(env),
        owner_team: name("platform"),
        approvers: vec![name("user:alice")],
        classification: Classification::Confidential,
        actions: BTreeMap::from([
            (name("query"), action(ActionClass::Read)),
            (name("export"), action(ActionClass::Read)),
            (name("refund"), action(ActionClass::Write)),
        ]),
        created_at: days_ago(300),
        updated_at: days_ago(300),
        mcp: None,
    }
}

fn grant(n: u128, agent: &AgentId, system: &str, actions: &[&str]) -> Grant {
    Grant {
        id: GrantId::from_bytes(n.to_be_bytes()),
        agent: agent.clone(),
        system: name(system),
        actions: actions.iter().map(|a| name(a)).collect(),
        expires_at: days_ahead(30),
        schedule: None,
        max_token_ttl_secs: Some(300),
        justification: "reconciliation".to_owned(),
        requested_by: name("dave"),
        requested_at: days_ago(101),
        status: GrantStatus::Active,
        mutates_production: false,
        approvers: vec![name("user:alice")],
        business_owner_approver: None,
        approvals: vec![approval("alice", ApprovalRole::SystemApprover, 100)],
        revokers: vec![name("team:secops")],
        closed: None,
        updated_at: days_ago(100),
    }
}

fn approval(by: &str, role: ApprovalRole, days: i64) -> Approval {
    Approval {
        by: name(by),
        role,
        at: days_ago(days),
        comment: String::new(),
    }
}

/// One well-governed prod agent with one used read grant, one system, one guardrail that matches.
fn clean() -> Inventory {
    let mut inv = Inventory::new(now());
    let a = agent("invoice-bot", "prod");
    inv.grants.push(grant(1, &a.id, "billing-db", &["query"]));
    inv.usage
        .record_use(&a.id, &name("billing-db"), &name("query"), days_ago(1));
    inv.usage.record_context(&a.id, "team:payments env:prod");
    inv.agents.push(a);
    inv.systems.push(system("billing-db", "prod"));
    inv.guardrails.push(GuardrailUse {
        id: "no-bulk-refunds".to_owned(),
        mode: GuardrailMode::Enforce,
        loaded_since: days_ago(100),
        matches: 7,
    });
    inv
}

fn catalog() -> Catalog {
    Catalog::embedded().unwrap()
}

fn run(inv: &Inventory) -> Report {
    evaluate(inv, &PostureConfig::default(), &catalog())
}

fn rules_of(report: &Report) -> BTreeSet<&str> {
    report.findings.iter().map(|f| f.rule.as_ref()).collect()
}

/// Asserts the report holds exactly one finding, of `rule`, and returns it.
fn only<'a>(report: &'a Report, rule: &str) -> &'a rein_posture::Finding {
    assert_eq!(
        rules_of(report),
        BTreeSet::from([rule]),
        "findings: {:#?}",
        report.findings
    );
    assert_eq!(report.findings.len(), 1, "findings: {:#?}", report.findings);
    &report.findings[0]
}

// === rules ===

#[test]
fn a_clean_inventory_has_no_findings() {
    let report = run(&clean());
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert!(report.by_framework.is_empty());
    assert_eq!(report.by_severity.len(), 5);
    assert!(report.by_severity.iter().all(|c| c.count == 0));
    assert_eq!(report.worst(), None);
}

#[test]
fn missing_accountable_roles_are_high_in_prod_and_medium_in_dev() {
    let mut inv = clean();
    inv.agents[0].roles.business_owner = None;
    inv.agents[0].roles.revokers.clear();
    let report = run(&inv);
    let f = only(&report, "missing-accountable-role");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.entity.kind, EntityKind::Agent);
    assert_eq!(
        f.entity.id,
        "spiffe://rein.local/agent/payments/invoice-bot/prod"
    );
    assert_eq!(
        f.details["missing"],
        serde_json::json!(["business_owner", "revokers"])
    );
    assert!(
        f.evidence.contains("business_owner, revokers"),
        "{}",
        f.evidence
    );
    assert!(f.controls.iter().any(|c| c == "NHI1:2025"));

    let mut inv = clean();
    let mut dev = agent("invoice-bot", "dev");
    dev.roles = AccountableRoles::default();
    inv.usage.record_activity(&dev.id, days_ago(2));
    inv.agents.push(dev);
    let report = run(&inv);
    let f = only(&report, "missing-accountable-role");
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.details["missing"].as_array().map(Vec::len), Some(5));
}

#[test]
fn retired_agents_are_not_evaluated() {
    let mut inv = clean();
    let mut old = agent("old-bot", "prod");
    old.roles = AccountableRoles::default();
    old.status = AgentStatus::Retired;
    inv.agents.push(old);
    assert!(run(&inv).findings.is_empty());
}

#[test]
fn reviews_past_cadence_and_grace_are_overdue() {
    // Cadence 90 + grace 14: reviewed 100 days ago is within grace, 110 days ago is overdue.
    let mut inv = clean();
    inv.agents[0].last_review = Some(days_ago(100));
    assert!(run(&inv).findings.is_empty());

    inv.agents[0].last_review = Some(days_ago(110));
    let report = run(&inv);
    let f = only(&report, "review-overdue");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.details["overdue_days"], 20);
    assert!(f.fix.contains("user:carol"), "{}", f.fix);

    // Never reviewed: counted from creation (200 days ago).
    inv.agents[0].last_review = None;
    let report = run(&inv);
    let f = only(&report, "review-overdue");
    assert!(f.evidence.contains("never reviewed"), "{}", f.evidence);
}

#[test]
fn an_identity_used_from_several_contexts_is_shared() {
    let mut inv = clean();
    let id = inv.agents[0].id.clone();
    inv.usage.record_context(&id, "team:growth env:prod");
    let report = run(&inv);
    let f = only(&report, "shared-identity");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(
        f.details["used_from"],
        serde_json::json!(["team:growth env:prod", "team:payments env:prod"])
    );
    assert!(f.controls.iter().any(|c| c == "NHI9:2025"));
}

#[test]
fn a_grant_unused_for_the_window_is_flagged_but_a_young_one_is_not() {
    let mut inv = clean();
    inv.usage.last_used.clear();
    let id = inv.agents[0].id.clone();
    inv.usage
        .record_use(&id, &name("billing-db"), &name("query"), days_ago(40));
    inv.usage.record_activity(&id, days_ago(1));
    let report = run(&inv);
    let f = only(&report, "grant-unused");
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.entity.kind, EntityKind::Grant);
    assert_eq!(f.entity.id, inv.grants[0].id.as_str());
    assert!(
        f.evidence
            .contains("query (last used 2026-04-22T00:00:00Z)"),
        "{}",
        f.evidence
    );

    // Approved 10 days ago and not used yet: too young to judge.
    inv.grants[0].approvals = vec![approval("alice", ApprovalRole::SystemApprover, 10)];
    assert!(run(&inv).findings.is_empty());
}

#[test]
fn actions_unused_while_others_are_used_yield_the_narrowed_grant() {
    let mut inv = clean();
    inv.grants[0].actions = ["query", "export"].iter().map(|a| name(a)).collect();
    let report = run(&inv);
    let f = only(&report, "action-never-used");
    assert_eq!(f.severity, Severity::Low);
    assert_eq!(f.details["unused_actions"], serde_json::json!(["export"]));
    assert_eq!(f.details["narrowed_actions"], serde_json::json!(["query"]));
    assert!(
        f.fix.contains("request a grant of query on billing-db"),
        "{}",
        f.fix
    );

    // An unused write action is worse. The business owner approved, so no other finding.
    inv.grants[0].actions = ["query", "refund"].iter().map(|a| name(a)).collect();
    inv.grants[0].mutates_production = true;
    inv.grants[0]
        .approvals
        .push(approval("bob", ApprovalRole::BusinessOwner, 100));
    let report = run(&inv);
    let f = only(&report, "action-never-used");
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.details["unused_actions"], serde_json::json!(["refund"]));
}

#[test]
fn prod_mutations_need_the_business_owner_approval_on_record() {
    let mut inv = clean();
    let id = inv.agents[0].id.clone();
    let mut g = grant(2, &id, "billing-db", &["refund"]);
    g.mutates_production = true;
    g.business_owner_approver = Some(name("bob"));
    inv.grants.push(g);
    inv.usage
        .record_use(&id, &name("billing-db"), &name("refund"), days_ago(3));
    let report = run(&inv);
    let f = only(&report, "prod-mutation-without-business-owner");
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.fix.contains("`bob`"), "{}", f.fix);
    assert!(
        f.evidence.contains("alice as SystemApprover"),
        "{}",
        f.evidence
    );

    // The flag is not trusted alone: a write action on a production system counts too.
    inv.grants[1].mutates_production = false;
    let report = run(&inv);
    only(&report, "prod-mutation-without-business-owner");

    inv.grants[1]
        .approvals
        .push(approval("bob", ApprovalRole::BusinessOwner, 100));
    assert!(run(&inv).findings.is_empty());
}

#[test]
fn long_lived_grants_and_token_lifetimes_above_policy_are_flagged() {
    let mut inv = clean();
    inv.grants[0].expires_at = days_ahead(200);
    let report = run(&inv);
    let f = only(&report, "grant-without-expiry-or-ttl-above-policy");
    assert_eq!(f.severity, Severity::Medium);
    assert!(f.evidence.contains("200 days from now"), "{}", f.evidence);

    let mut inv = clean();
    inv.grants[0].max_token_ttl_secs = None;
    let f = run(&inv).findings.remove(0);
    assert_eq!(f.rule, "grant-without-expiry-or-ttl-above-policy");
    assert_eq!(f.severity, Severity::Low);

    let config = PostureConfig {
        max_token_ttl_secs: 120,
        ..PostureConfig::default()
    };
    let report = evaluate(&clean(), &config, &catalog());
    let f = only(&report, "grant-without-expiry-or-ttl-above-policy");
    assert_eq!(f.severity, Severity::Medium);
    assert!(
        f.evidence.contains("max_token_ttl_secs is 300"),
        "{}",
        f.evidence
    );
}

#[test]
fn inactive_expired_and_revoked_grants_are_not_evaluated() {
    let mut inv = clean();
    let id = inv.agents[0].id.clone();
    let mut expired = grant(3, &id, "billing-db", &["refund"]);
    expired.mutates_production = true;
    expired.expires_at = days_ago(1);
    let mut revoked = grant(4, &id, "billing-db", &["refund"]);
    revoked.mutates_production = true;
    revoked.status = GrantStatus::Revoked;
    inv.grants.extend([expired, revoked]);
    assert!(run(&inv).findings.is_empty());
}

#[test]
fn active_agents_without_recent_activity_are_offboarding_candidates() {
    let mut inv = clean();
    let id = inv.agents[0].id.clone();
    inv.usage.last_activity.insert(id.clone(), days_ago(70));
    inv.usage.last_used.clear();
    inv.grants.clear();
    let report = run(&inv);
    let f = only(&report, "agent-inactive");
    assert_eq!(f.details["idle_days"], 70);
    assert!(f.controls.iter().any(|c| c == "NHI1:2025"));

    // Never active: counted from creation.
    inv.usage.last_activity.clear();
    let f = only(&run(&inv), "agent-inactive").clone();
    assert!(
        f.evidence.contains("no recorded activity"),
        "{}",
        f.evidence
    );

    // A suspended agent is not a candidate.
    inv.agents[0].status = AgentStatus::Suspended;
    assert!(run(&inv).findings.is_empty());
}

#[test]
fn systems_without_approvers_are_flagged() {
    let mut inv = clean();
    let mut s = system("ledger-api", "prod");
    s.approvers.clear();
    inv.systems.push(s);
    let mut s = system("sandbox", "dev");
    s.approvers.clear();
    inv.systems.push(s);
    let report = run(&inv);
    assert_eq!(
        rules_of(&report),
        BTreeSet::from(["system-without-approvers"])
    );
    let sev: Vec<(Severity, &str)> = report
        .findings
        .iter()
        .map(|f| (f.severity, f.entity.id.as_str()))
        .collect();
    assert_eq!(
        sev,
        vec![
            (Severity::High, "ledger-api"),
            (Severity::Medium, "sandbox")
        ]
    );
}

#[test]
fn guardrails_in_shadow_mode_too_long_are_flagged() {
    let mut inv = clean();
    inv.guardrails.push(GuardrailUse {
        id: "no-deletes".to_owned(),
        mode: GuardrailMode::Shadow,
        loaded_since: days_ago(20),
        matches: 3,
    });
    let report = run(&inv);
    let f = only(&report, "shadow-too-long");
    assert_eq!(f.entity.kind, EntityKind::Guardrail);
    assert_eq!(f.entity.id, "no-deletes");

    inv.guardrails[1].loaded_since = days_ago(10);
    assert!(run(&inv).findings.is_empty());
}

#[test]
fn guardrails_that_never_match_are_flagged() {
    let mut inv = clean();
    inv.guardrails[0].matches = 0;
    let report = run(&inv);
    let f = only(&report, "guardrail-never-matched");
    assert_eq!(f.entity.id, "no-bulk-refunds");

    inv.guardrails[0].loaded_since = days_ago(5);
    assert!(run(&inv).findings.is_empty());
}

/// Everything at once: used by the ordering, counting and rendering tests.
fn messy() -> Inventory {
    let mut inv = clean();
    inv.agents[0].roles.business_owner = None;
    inv.agents[0].use_case = "<script>alert('use case')</script>".to_owned();
    inv.agents[0].description = "\"><img src=x onerror=alert(1)>".to_owned();
    let id = inv.agents[0].id.clone();
    inv.usage.record_context(&id, "team:growth env:dev");
    let mut g = grant(2, &id, "billing-db", &["refund", "query"]);
    g.mutates_production = true;
    g.max_token_ttl_secs = None;
    inv.grants.push(g);
    let mut s = system("ledger-api", "prod");
    s.approvers.clear();
    inv.systems.push(s);
    inv.guardrails.push(GuardrailUse {
        id: "<b>shadowy</b>".to_owned(),
        mode: GuardrailMode::Shadow,
        loaded_since: days_ago(60),
        matches: 0,
    });
    inv
}

#[test]
fn findings_are_sorted_by_severity_and_counted_by_severity_and_framework() {
    let report = run(&messy());
    assert!(report.findings.len() >= 6, "{:#?}", report.findings);
    assert!(report
        .findings
        .windows(2)
        .all(|w| w[0].severity >= w[1].severity));
    assert_eq!(
        report.findings[0].rule,
        "prod-mutation-without-business-owner"
    );
    assert_eq!(report.worst(), Some(Severity::Critical));
    let total: usize = report.by_severity.iter().map(|c| c.count).sum();
    assert_eq!(total, report.findings.len());
    assert_eq!(report.count(Severity::Critical), 1);
    let frameworks: BTreeMap<&str, usize> = report
        .by_framework
        .iter()
        .map(|c| (c.framework.as_str(), c.count))
        .collect();
    // Every finding maps to OWASP Agentic and NIST CSF; counted once per finding.
    assert_eq!(
        frameworks.get("OWASP Top 10 for Agentic Applications (2026)"),
        Some(&report.findings.len())
    );
    assert_eq!(
        frameworks.get("NIST CSF 2.0 (NIST CSWP 29)"),
        Some(&report.findings.len())
    );
    assert!(frameworks.contains_key("OWASP Non-Human Identities Top 10 (2025)"));
    assert!(frameworks.contains_key("CSA MAESTRO (Feb 2025)"));
    assert!(frameworks.contains_key("NIST AI RMF 1.0 (NIST AI 100-1)"));
}

// === catalog ===

#[test]
fn every_control_a_rule_cites_is_in_the_embedded_catalog() {
    let catalog = catalog();
    assert!(catalog.controls().len() > 100);
    assert!(rein_posture::catalog::EMBEDDED_CATALOG
        .starts_with("# Copied on 2026-11-28 from ../shared/controls.toml"));
    for rule in RULES {
        for id in rule.controls {
            assert!(
                catalog.get(id).is_some(),
                "rule {} cites unknown control `{id}`",
                rule.id
            );
        }
        // Each rule maps to OWASP Agentic, NIST AI RMF, NIST CSF and a MAESTRO layer or threat.
        let frameworks: BTreeSet<&str> = rule
            .controls
            .iter()
            .filter_map(|id| catalog.framework_of(id))
            .collect();
        for fw in [
            "OWASP Top 10 for Agentic Applications (2026)",
            "NIST AI RMF 1.0 (NIST AI 100-1)",
            "NIST CSF 2.0 (NIST CSWP 29)",
            "CSA MAESTRO (Feb 2025)",
        ] {
            assert!(
                frameworks.contains(fw),
                "rule {} maps to nothing in {fw}",
                rule.id
            );
        }
    }
    let ids: BTreeSet<&str> = RULES.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), RULES.len(), "rule IDs are unique");
}

#[test]
fn a_catalog_with_a_duplicate_id_is_refused() {
    let text = "[[control]]\nframework = \"F\"\nid = \"X\"\ntitle = \"t\"\ntitle_kind = \"official\"\n\
                [[control]]\nframework = \"F\"\nid = \"X\"\ntitle = \"t\"\ntitle_kind = \"official\"\n";
    assert!(Catalog::parse(text).is_err());
    assert!(Catalog::parse("nonsense = [").is_err());
}

// === renderers ===

#[test]
fn json_round_trips() {
    let report = run(&messy());
    let text = render::json(&report).unwrap();
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back, report);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["findings"][0]["severity"], "critical");
    assert_eq!(value["findings"][0]["entity"]["kind"], "grant");
}

#[test]
fn the_table_is_aligned_and_one_line_per_finding() {
    let mut inv = messy();
    inv.agents[0].roles.reviewers.clear();
    let report = run(&inv);
    let table = render::table(&report);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SEVERITY"));
    for header in ["RULE", "ENTITY", "FINDING"] {
        let col = lines[0].find(header).unwrap();
        for line in &lines[1..=report.findings.len()] {
            // Each column starts at the header's offset, after at least two spaces.
            assert_eq!(line.get(col - 2..col), Some("  "), "{header}: {line}");
            assert_ne!(line.get(col..=col), Some(" "), "{header}: {line}");
        }
    }
    assert!(table.contains("critical  prod-mutation-without-business-owner"));
    assert!(
        table.ends_with("\n8 findings: 1 critical, 3 high, 1 medium, 3 low, 0 info\n"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("low       shadow-too-long ")
                && l.contains(" guardrail <b>shadowy</b> ")
                && l.ends_with("  in shadow mode for 60 days")),
        "{table}"
    );
    assert_eq!(
        render::table(&run(&clean())),
        "No findings.\n0 findings: 0 critical, 0 high, 0 medium, 0 low, 0 info\n"
    );
}

fn sarif_validator() -> (boon::Schemas, boon::SchemaIndex) {
    // The official OASIS SARIF 2.1.0 schema, as shipped in the npm package
    // @datadog/datadog-ci-plugin-sarif 5.25.0 (src/json-schema/sarif-schema-2.1.0.json).
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("data/sarif-schema-2.1.0.json")).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.enable_format_assertions();
    let url = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
    compiler.add_resource(url, schema).unwrap();
    let index = compiler.compile(url, &mut schemas).unwrap();
    (schemas, index)
}

#[test]
fn sarif_is_valid_against_the_official_schema() {
    let (schemas, index) = sarif_validator();
    let catalog = catalog();
    let mut report = run(&messy());
    report.findings[0].location = Some(Location {
        file: "governance/grants/billing.yaml".to_owned(),
        line: 12,
    });
    let log = render::sarif(&report, &catalog);
    if let Err(e) = schemas.validate(&log, index) {
        panic!("invalid SARIF: {e:#}\n{log:#}");
    }
    // An empty report is valid too.
    let empty = render::sarif(&run(&clean()), &catalog);
    assert!(schemas.validate(&empty, index).is_ok());
    // The validator does reject a broken log.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(schemas.validate(&broken, index).is_err());

    assert_eq!(log["version"], "2.1.0");
    let run0 = &log["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "rein-posture");
    let rules = run0["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), RULES.len());
    let tags = rules[0]["properties"]["tags"].as_array().unwrap();
    assert!(tags.iter().any(|t| t == "NHI1:2025"));

    let results = run0["results"].as_array().unwrap();
    assert_eq!(results.len(), report.findings.len());
    let first = &results[0];
    assert_eq!(first["ruleId"], "prod-mutation-without-business-owner");
    assert_eq!(first["level"], "error");
    let rule_index = first["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[rule_index]["id"], first["ruleId"]);
    let physical = &first["locations"][0]["physicalLocation"];
    assert_eq!(
        physical["artifactLocation"]["uri"],
        "governance/grants/billing.yaml"
    );
    assert_eq!(physical["region"]["startLine"], 12);
    // Without a location: a logical location names the entity.
    let second = &results[1];
    assert!(second["locations"][0].get("physicalLocation").is_none());
    assert!(
        second["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
            .as_str()
            .unwrap()
            .contains(':')
    );
    let levels: BTreeSet<&str> = results.iter().filter_map(|r| r["level"].as_str()).collect();
    assert!(levels.is_subset(&BTreeSet::from(["error", "warning", "note"])));
}

#[test]
fn html_is_self_contained_escaped_and_has_both_charts() {
    let report = run(&messy());
    let html = render::html(&report, &catalog());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("id=\"chart-severity\""));
    assert!(html.contains("id=\"chart-framework\""));
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("<rect"));
    // The malicious use case, description and guardrail ID appear only escaped.
    assert!(!html.contains("<script"), "an unescaped script tag");
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>shadowy"));
    assert!(html.contains("&lt;script&gt;alert(&#39;use case&#39;)&lt;/script&gt;"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&lt;b&gt;shadowy&lt;/b&gt;"));
    // No external assets.
    assert!(!html
        .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
        .contains("http://"));
    assert!(!html.contains("https://"));
    assert!(!html.contains("<link"));
    // Every finding is a table row, and the cited controls are explained.
    assert_eq!(
        html.matches("<tr><td><span class=\"sev\"").count(),
        report.findings.len()
    );
    assert!(
        html.contains("Improper Offboarding") || html.contains("Identity &amp; Privilege Abuse")
    );
    let empty = render::html(&run(&clean()), &catalog());
    assert!(empty.contains("No findings."));
}
