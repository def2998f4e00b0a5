use std::collections::BTreeMap;

use chrono::Duration;

use super::*;
use crate::agent::{AccountableRoles, Budgets};
use crate::system::{ActionClass, ActionSpec, Classification};
use crate::user::Role;

fn p<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| unreachable!("bad test literal {s}"))
}

fn now() -> Timestamp {
    p("2026-06-01T12:00:00Z")
}

fn actor(user: &str, teams: &[&str]) -> Actor {
    Actor {
        user: p(user),
        role: Role::Member,
        teams: teams.iter().map(|t| p(t)).collect(),
    }
}

fn agent(env: &str) -> Agent {
    Agent {
        id: p(&format!("spiffe://rein.local/agent/payments/bot/{env}")),
        description: String::new(),
        use_case: "invoices".into(),
        roles: AccountableRoles {
            business_owner: Some(p("olivia")),
            approvers: vec![p("team:payments-leads")],
            revokers: vec![p("team:secops")],
            reviewers: vec![p("user:rita")],
            review_cadence_days: Some(90),
        },
        last_review: None,
        status: AgentStatus::Active,
        status_reason: None,
        keys: vec![],
        budgets: Budgets::default(),
        created_by: p("dave"),
        created_at: now(),
        updated_at: now(),
    }
}

fn system(env: &str) -> System {
    let mut actions = BTreeMap::new();
    actions.insert(
        p("query"),
        ActionSpec {
            class: Some(ActionClass::Read),
            description: String::new(),
        },
    );
    actions.insert(
        p("refund"),
        ActionSpec {
            class: Some(ActionClass::Write),
            description: String::new(),
        },
    );
    actions.insert(p("mystery"), ActionSpec::default());
    System {
        name: p("billing"),
        description: String::new(),
        environment: p(env),
        owner_team: p("billing"),
        approvers: vec![p("team:billing-approvers")],
        classification: Classification::Confidential,
        actions,
        created_at: now(),
        updated_at: now(),
        mcp: None,
    }
}

fn request(env: &str, actions: &[&str]) -> GrantRequest {
    GrantRequest {
        agent: p(&format!("spiffe://rein.local/agent/payments/bot/{env}")),
        system: p("billing"),
        actions: actions.iter().map(|a| p(a)).collect(),
        expires_at: now() + Duration::days(30),
        schedule: None,
        max_token_ttl_secs: Some(600),
        justification: "monthly invoicing".into(),
    }
}

fn grant(env: &str, actions: &[&str]) -> Grant {
    Grant::request(
        GrantId::from_bytes([1; 16]),
        request(env, actions),
        &agent(env),
        &system(env),
        env == "prod",
        &p("dave"),
        now(),
    )
    .unwrap_or_else(|e| unreachable!("{e}"))
}

fn approvers() -> Vec<PrincipalRef> {
    system("prod").approvers
}

#[test]
fn read_grant_needs_one_system_approval() -> Result<(), DomainError> {
    let mut g = grant("prod", &["query"]);
    assert!(!g.mutates_production);
    let role = g.approve(
        &actor("sam", &["billing-approvers"]),
        &approvers(),
        "ok",
        now(),
    )?;
    assert_eq!(role, ApprovalRole::SystemApprover);
    assert_eq!(g.status, GrantStatus::Active);
    Ok(())
}

#[test]
fn prod_write_needs_business_owner_as_second_distinct_person() -> Result<(), DomainError> {
    let mut g = grant("prod", &["query", "refund"]);
    assert!(g.mutates_production);
    g.approve(
        &actor("sam", &["billing-approvers"]),
        &approvers(),
        "",
        now(),
    )?;
    assert_eq!(g.status, GrantStatus::Requested);
    // Sam cannot give the second approval too.
    assert_eq!(
        g.approve(
            &actor("sam", &["billing-approvers"]),
            &approvers(),
            "",
            now()
        ),
        Err(DomainError::AlreadyApproved { user: "sam".into() })
    );
    // Another system approver cannot stand in for the business owner.
    assert!(matches!(
        g.approve(
            &actor("tom", &["billing-approvers"]),
            &approvers(),
            "",
            now()
        ),
        Err(DomainError::Forbidden { .. })
    ));
    let role = g.approve(&actor("olivia", &[]), &approvers(), "", now())?;
    assert_eq!(role, ApprovalRole::BusinessOwner);
    assert_eq!(g.status, GrantStatus::Active);
    Ok(())
}

#[test]
fn unclassified_action_counts_as_write() {
    assert!(grant("prod", &["mystery"]).mutates_production);
    assert!(!grant("staging", &["refund"]).mutates_production);
}

#[test]
fn business_owner_who_is_also_an_approver_fills_the_owner_slot() -> Result<(), DomainError> {
    let mut g = grant("prod", &["refund"]);
    g.approve(
        &actor("olivia", &["billing-approvers"]),
        &approvers(),
        "",
        now(),
    )?;
    assert_eq!(
        g.approvals.first().map(|a| a.role),
        Some(ApprovalRole::BusinessOwner)
    );
    assert_eq!(g.status, GrantStatus::Requested);
    g.approve(
        &actor("sam", &["billing-approvers"]),
        &approvers(),
        "",
        now(),
    )?;
    assert_eq!(g.status, GrantStatus::Active);
    Ok(())
}

#[test]
fn requester_never_approves_own_request() {
    let mut g = grant("prod", &["query"]);
    assert_eq!(
        g.approve(
            &actor("dave", &["billing-approvers"]),
            &approvers(),
            "",
            now()
        ),
        Err(DomainError::SelfApproval)
    );
    assert_eq!(g.status, GrantStatus::Requested);
}

#[test]
fn outsiders_and_auditors_cannot_approve() {
    let mut g = grant("prod", &["query"]);
    assert!(matches!(
        g.approve(&actor("mallory", &["payments"]), &approvers(), "", now()),
        Err(DomainError::Forbidden { .. })
    ));
    let auditor = Actor {
        role: Role::Auditor,
        ..actor("audrey", &["billing-approvers"])
    };
    assert!(matches!(
        g.approve(&auditor, &approvers(), "", now()),
        Err(DomainError::Forbidden { .. })
    ));
    assert!(g.approvals.is_empty());
}

#[test]
fn denied_revoked_and_expired_grants_are_final() -> Result<(), DomainError> {
    let sam = actor("sam", &["billing-approvers"]);
    let mut denied = grant("prod", &["query"]);
    denied.deny(&sam, &approvers(), "not needed", now())?;
    assert!(matches!(
        denied.approve(&sam, &approvers(), "", now()),
        Err(DomainError::InvalidTransition { .. })
    ));
    assert!(denied.revoke(&p("sam"), "x", now()).is_err());

    let mut revoked = grant("prod", &["query"]);
    revoked.approve(&sam, &approvers(), "", now())?;
    revoked.revoke(&p("sec"), "incident 42", now())?;
    assert_eq!(revoked.status, GrantStatus::Revoked);
    assert_eq!(
        revoked.closed.as_ref().map(|c| c.reason.as_str()),
        Some("incident 42")
    );
    assert!(revoked.revoke(&p("sec"), "again", now()).is_err());

    let mut g = grant("prod", &["query"]);
    let later = g.expires_at + Duration::seconds(1);
    assert_eq!(g.status_at(later), GrantStatus::Expired);
    assert!(matches!(
        g.approve(&sam, &approvers(), "", later),
        Err(DomainError::InvalidTransition { .. })
    ));
    Ok(())
}

#[test]
fn requests_are_checked_against_agent_and_system() {
    let make = |req: GrantRequest, env: &str| {
        Grant::request(
            GrantId::from_bytes([2; 16]),
            req,
            &agent(env),
            &system(env),
            true,
            &p("dave"),
            now(),
        )
    };
    assert!(matches!(
        make(request("prod", &["nope"]), "prod"),
        Err(DomainError::UnknownAction { .. })
    ));
    assert!(make(request("prod", &[]), "prod").is_err());
    assert!(make(
        GrantRequest {
            expires_at: now(),
            ..request("prod", &["query"])
        },
        "prod"
    )
    .is_err());
    assert!(make(
        GrantRequest {
            max_token_ttl_secs: Some(3601),
            ..request("prod", &["query"])
        },
        "prod"
    )
    .is_err());
    assert!(make(
        GrantRequest {
            justification: " ".into(),
            ..request("prod", &["query"])
        },
        "prod"
    )
    .is_err());
    // Environments must match.
    let cross = Grant::request(
        GrantId::from_bytes([3; 16]),
        request("dev", &["query"]),
        &agent("dev"),
        &system("prod"),
        true,
        &p("dave"),
        now(),
    );
    assert!(cross.is_err());
    // The business owner cannot request what they must approve.
    let by_owner = Grant::request(
        GrantId::from_bytes([5; 16]),
        request("prod", &["refund"]),
        &agent("prod"),
        &system("prod"),
        true,
        &p("olivia"),
        now(),
    );
    assert!(matches!(by_owner, Err(DomainError::Forbidden { .. })));
    // A retired agent gets no new grants.
    let mut retired = agent("prod");
    retired.status = AgentStatus::Retired;
    assert!(Grant::request(
        GrantId::from_bytes([4; 16]),
        request("prod", &["query"]),
        &retired,
        &system("prod"),
        true,
        &p("dave"),
        now()
    )
    .is_err());
}

#[test]
fn coverage_honours_actions_status_and_schedule() -> Result<(), DomainError> {
    let mut g = grant("prod", &["query"]);
    assert!(!g.covers(&p("query"), now()));
    g.approve(
        &actor("sam", &["billing-approvers"]),
        &approvers(),
        "",
        now(),
    )?;
    assert!(g.covers(&p("query"), now()));
    assert!(!g.covers(&p("refund"), now()));
    g.schedule = Some(Schedule {
        timezone: "UTC".into(),
        windows: vec![crate::schedule::Window {
            days: vec![crate::schedule::Day::Mon],
            start: p("00:00"),
            end: p("01:00"),
        }],
    });
    // 2026-06-01 is a Monday, 12:00 UTC: outside the window.
    assert!(!g.covers(&p("query"), now()));
    assert!(g.covers(&p("query"), p("2026-06-01T00:30:00Z")));
    Ok(())
}
