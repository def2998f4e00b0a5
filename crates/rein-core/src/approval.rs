//! Step-up approval requests: a human decision on one exact action (agent, system, action,
//! argument digest), with an expiry, used once or a chosen number of times.
//!
//! Who may decide: the target system's approvers; for a `write` or `admin` action in
//! production, also the agent's business owner. Never the user whose call asked for it (the
//! agent acts for them), never anyone outside those sets; an admin only when the configuration
//! allows it. A guardrail may demand N distinct approvers; one denial is final.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::authz::Actor;
use crate::id::{ActionName, AgentId, PrincipalRef, SystemName, UserName};
use crate::user::Role;
use crate::DomainError;

/// Default time a request waits for its decision.
pub const DEFAULT_TTL_SECS: i64 = 15 * 60;
/// Longest time a request may wait (configuration is capped here).
pub const MAX_TTL_SECS: i64 = 24 * 3600;
/// Most uses an approver may allow within the approval's window.
pub const MAX_USES: u32 = 100;
/// Longest comment, in bytes.
pub const MAX_COMMENT_LEN: usize = 2000;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for its approvers.
    Pending,
    /// Approved: usable for its bound action until it expires or is used up.
    Approved,
    /// Denied; final.
    Denied,
    /// No decision in time, or approved and not used in time; final.
    Expired,
    /// Approved and used as many times as allowed; final.
    Used,
}

impl ApprovalStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Used => "used",
        }
    }

    /// Whether nothing can change it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Denied | Self::Expired | Self::Used)
    }
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Vote {
    /// Who.
    #[schema(value_type = String)]
    pub by: UserName,
    /// `true` approve, `false` deny.
    pub approve: bool,
    /// Their comment.
    #[serde(default)]
    pub comment: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// What the decision point knows when a call needs a step-up.
#[derive(Debug, Clone, PartialEq)]
pub struct StepUpCall {
    /// The agent.
    pub agent: AgentId,
    /// The target system.
    pub system: SystemName,
    /// The action.
    pub action: ActionName,
    /// Whether the action mutates (`write` or `admin`).
    pub mutating: bool,
    /// Whether the system's environment counts as production.
    pub production: bool,
    /// SHA-256 of the canonical arguments.
    pub argument_digest: String,
    /// The arguments with secret-looking values masked and long values cut.
    pub arguments_preview: serde_json::Value,
    /// The task.
    pub task_id: Option<String>,
    /// The task's stated intent.
    pub intent: Option<String>,
    /// Risk as the agent stated it.
    pub risk: Option<u8>,
    /// Confidence as the agent stated it.
    pub confidence: Option<f64>,
    /// The guardrails that asked for approval.
    pub policies: Vec<String>,
    /// Their set's version.
    pub policy_version: String,
    /// Distinct approvers needed.
    pub approvers_required: u32,
    /// The decision that asked.
    pub decision_id: String,
    /// Who asked for the decision: `user:<name>` or the agent's SPIFFE ID.
    pub requested_by: String,
}

/// A step-up approval request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRequest {
    /// `apr_` and 32 hex digits.
    pub id: String,
    /// The agent.
    #[schema(value_type = String)]
    pub agent: AgentId,
    /// The target system.
    #[schema(value_type = String)]
    pub system: SystemName,
    /// The action.
    #[schema(value_type = String)]
    pub action: ActionName,
    /// Whether the action mutates.
    pub mutating: bool,
    /// Whether the system is in production.
    pub production: bool,
    /// SHA-256 of the canonical arguments: the approval is valid for these arguments only.
    pub argument_digest: String,
    /// The arguments, redacted.
    #[schema(value_type = Object)]
    pub arguments_preview: serde_json::Value,
    /// The task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The task's intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// Stated risk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<u8>,
    /// Stated confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// The guardrails that asked for it.
    pub policies: Vec<String>,
    /// Their set's version.
    pub policy_version: String,
    /// The decision that asked for it.
    pub decision_id: String,
    /// Who asked for that decision.
    pub requested_by: String,
    /// Who may decide: the system's approvers when it was opened.
    #[schema(value_type = Vec<String>)]
    pub approvers: Vec<PrincipalRef>,
    /// The agent's business owner, who may also decide a production mutation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub business_owner: Option<UserName>,
    /// Distinct approvals needed.
    pub approvers_required: u32,
    /// Stored status; read [`ApprovalRequest::status_at`] for the effective one.
    pub status: ApprovalStatus,
    /// The decisions so far.
    pub votes: Vec<Vote>,
    /// How many calls the approval covers (set by the last approver; default 1).
    pub uses_allowed: u32,
    /// The decisions that used it.
    pub used_by: Vec<String>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// Until when it may be decided, and used.
    pub expires_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

impl ApprovalRequest {
    /// Opens a request for `call`, decided by `approvers` (and `business_owner` for a
    /// production mutation), waiting `ttl_secs` (1 s to [`MAX_TTL_SECS`]).
    pub fn open(
        id: [u8; 16],
        call: StepUpCall,
        approvers: Vec<PrincipalRef>,
        business_owner: Option<UserName>,
        ttl_secs: i64,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(DomainError::invalid(
                "approval_ttl",
                format!("must be 1 to {MAX_TTL_SECS} seconds"),
            ));
        }
        let business_owner = business_owner.filter(|_| call.mutating && call.production);
        Ok(Self {
            id: id.iter().fold(String::from("apr_"), |mut s, b| {
                s.push_str(&format!("{b:02x}"));
                s
            }),
            agent: call.agent,
            system: call.system,
            action: call.action,
            mutating: call.mutating,
            production: call.production,
            argument_digest: call.argument_digest,
            arguments_preview: call.arguments_preview,
            task_id: call.task_id,
            intent: call.intent,
            risk: call.risk,
            confidence: call.confidence,
            policies: call.policies,
            policy_version: call.policy_version,
            decision_id: call.decision_id,
            requested_by: call.requested_by,
            approvers,
            business_owner,
            approvers_required: call.approvers_required.max(1),
            status: ApprovalStatus::Pending,
            votes: Vec::new(),
            uses_allowed: 1,
            used_by: Vec::new(),
            created_at: now,
            expires_at: now + Duration::seconds(ttl_secs),
            updated_at: now,
        })
    }

    /// What identical requests share: pending ones with the same key are one request.
    pub fn binding_key(&self) -> String {
        binding_key(
            &self.agent,
            &self.system,
            &self.action,
            &self.argument_digest,
        )
    }

    /// The effective status at `now`: pending or approved past the expiry is expired.
    pub fn status_at(&self, now: DateTime<Utc>) -> ApprovalStatus {
        match self.status {
            ApprovalStatus::Pending | ApprovalStatus::Approved if now >= self.expires_at => {
                ApprovalStatus::Expired
            }
            s => s,
        }
    }

    /// Whether `actor` may decide it (`allow_admin`: the configuration lets admins decide).
    pub fn may_decide(&self, actor: &Actor, allow_admin: bool) -> Result<(), DomainError> {
        if actor.role == Role::Auditor {
            return Err(DomainError::forbidden("auditors are read-only"));
        }
        if self.requested_by == format!("user:{}", actor.user) {
            return Err(DomainError::forbidden(
                "the user whose call asked for this approval may not decide it",
            ));
        }
        let as_owner = self.business_owner.as_ref() == Some(&actor.user);
        if actor.is_any(&self.approvers) || as_owner || (allow_admin && actor.is_admin()) {
            return Ok(());
        }
        Err(DomainError::forbidden(
            "only an approver of the target system, or the agent's business owner for a production write, may decide this request",
        ))
    }

    /// Distinct people who approved.
    pub fn approvers_so_far(&self) -> Vec<&UserName> {
        self.votes
            .iter()
            .filter(|v| v.approve)
            .map(|v| &v.by)
            .collect()
    }

    fn require_pending(
        &self,
        transition: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        match self.status_at(now) {
            ApprovalStatus::Pending => Ok(()),
            s => Err(DomainError::InvalidTransition {
                entity: "approval request",
                transition,
                state: s.as_str().to_owned(),
            }),
        }
    }

    /// Records `actor`'s approval; it turns `approved` when enough distinct people approved.
    /// `uses` (1 to [`MAX_USES`]) is how many calls it covers; the last approver's choice holds.
    pub fn approve(
        &mut self,
        actor: &Actor,
        allow_admin: bool,
        comment: &str,
        uses: u32,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.require_pending("approve", now)?;
        self.may_decide(actor, allow_admin)?;
        check_comment(comment)?;
        if !(1..=MAX_USES).contains(&uses) {
            return Err(DomainError::invalid(
                "uses",
                format!("must be 1 to {MAX_USES}"),
            ));
        }
        if self.votes.iter().any(|v| v.by == actor.user) {
            return Err(DomainError::AlreadyApproved {
                user: actor.user.to_string(),
            });
        }
        self.votes.push(Vote {
            by: actor.user.clone(),
            approve: true,
            comment: comment.to_owned(),
            at: now,
        });
        self.uses_allowed = uses;
        let approvals = u32::try_from(self.approvers_so_far().len()).unwrap_or(u32::MAX);
        if approvals >= self.approvers_required {
            self.status = ApprovalStatus::Approved;
        }
        self.updated_at = now;
        Ok(())
    }

    /// Records `actor`'s denial; final.
    pub fn deny(
        &mut self,
        actor: &Actor,
        allow_admin: bool,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.require_pending("deny", now)?;
        self.may_decide(actor, allow_admin)?;
        check_comment(comment)?;
        if comment.trim().is_empty() {
            return Err(DomainError::invalid("comment", "a denial needs a reason"));
        }
        self.votes.push(Vote {
            by: actor.user.clone(),
            approve: false,
            comment: comment.to_owned(),
            at: now,
        });
        self.status = ApprovalStatus::Denied;
        self.updated_at = now;
        Ok(())
    }

    /// Marks it expired if it is past its expiry without being final; returns whether it
    /// changed.
    pub fn expire(&mut self, now: DateTime<Utc>) -> bool {
        if self.status_at(now) == ApprovalStatus::Expired && self.status != ApprovalStatus::Expired
        {
            self.status = ApprovalStatus::Expired;
            self.updated_at = now;
            return true;
        }
        false
    }

    /// Why it cannot cover a call of `agent` on `system`, `action` with `argument_digest` at
    /// `now`; `None` when it can (approved, bound to exactly this call, unexpired, uses left).
    pub fn unusable_for(
        &self,
        agent: &AgentId,
        system: &SystemName,
        action: &ActionName,
        argument_digest: &str,
        now: DateTime<Utc>,
    ) -> Option<String> {
        if self.agent != *agent
            || self.system != *system
            || self.action != *action
            || self.argument_digest != argument_digest
        {
            return Some(format!(
                "approval `{}` is for another call (agent, system, action and arguments must match exactly)",
                self.id
            ));
        }
        match self.status_at(now) {
            ApprovalStatus::Approved => None,
            s => Some(format!("approval `{}` is {}", self.id, s.as_str())),
        }
    }

    /// Uses it for decision `decision_id`: one use fewer, `used` when none is left.
    pub fn consume(&mut self, decision_id: &str, now: DateTime<Utc>) -> Result<(), DomainError> {
        if self.status_at(now) != ApprovalStatus::Approved {
            return Err(DomainError::InvalidTransition {
                entity: "approval request",
                transition: "use",
                state: self.status_at(now).as_str().to_owned(),
            });
        }
        self.used_by.push(decision_id.to_owned());
        if u32::try_from(self.used_by.len()).unwrap_or(u32::MAX) >= self.uses_allowed {
            self.status = ApprovalStatus::Used;
        }
        self.updated_at = now;
        Ok(())
    }
}

/// The key identical requests share: agent, system, action and argument digest.
pub fn binding_key(
    agent: &AgentId,
    system: &SystemName,
    action: &ActionName,
    argument_digest: &str,
) -> String {
    format!("{agent} {system} {action} {argument_digest}")
}

fn check_comment(comment: &str) -> Result<(), DomainError> {
    if comment.len() > MAX_COMMENT_LEN {
        return Err(DomainError::invalid(
            "comment",
            format!("must be at most {MAX_COMMENT_LEN} bytes"),
        ));
    }
    Ok(())
}

/// Masks values under keys that look secret (`password`, `token`, `secret`, `key`, …) and cuts
/// strings longer than 200 characters, so a preview shows approvers what the call does without
/// copying credentials into the approval, its notifications and the audit log.
pub fn redact_preview(arguments: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    const SECRET_WORDS: &[&str] = &[
        "password",
        "passwd",
        "secret",
        "token",
        "key",
        "credential",
        "auth",
        "cookie",
        "session",
        "private",
    ];
    match arguments {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let value = if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
                        Value::String("[redacted]".into())
                    } else {
                        redact_preview(v)
                    };
                    (k.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_preview).collect()),
        Value::String(s) if s.chars().count() > 200 => {
            Value::String(format!("{}…", s.chars().take(200).collect::<String>()))
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;

    fn actor(name: &str, role: Role, teams: &[&str]) -> Actor {
        Actor {
            user: name.parse().unwrap(),
            role,
            teams: teams
                .iter()
                .map(|t| t.parse().unwrap())
                .collect::<BTreeSet<_>>(),
        }
    }

    fn call(required: u32) -> StepUpCall {
        StepUpCall {
            agent: "spiffe://rein.local/agent/payments/bot/prod"
                .parse()
                .unwrap(),
            system: "billing-db".parse().unwrap(),
            action: "refund".parse().unwrap(),
            mutating: true,
            production: true,
            argument_digest: "d1".into(),
            arguments_preview: serde_json::json!({"amount": 10, "api_key": "sk-live"}),
            task_id: Some("t-1".into()),
            intent: Some("refund".into()),
            risk: Some(90),
            confidence: Some(0.5),
            policies: vec!["high-risk".into()],
            policy_version: "v1".into(),
            approvers_required: required,
            decision_id: "dec_1".into(),
            requested_by: "user:alice".into(),
        }
    }

    fn open(required: u32) -> ApprovalRequest {
        ApprovalRequest::open(
            [1; 16],
            call(required),
            vec!["team:billing-approvers".parse().unwrap()],
            Some("olivia".parse().unwrap()),
            DEFAULT_TTL_SECS,
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        )
        .unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn only_approvers_and_the_business_owner_decide_never_the_requester() {
        let mut r = open(1);
        let bob = actor("bob", Role::Member, &["billing-approvers"]);
        let alice = actor("alice", Role::Member, &["billing-approvers"]);
        let mallory = actor("mallory", Role::Member, &[]);
        let admin = actor("root", Role::Admin, &[]);
        assert!(r.may_decide(&bob, false).is_ok());
        assert!(r
            .may_decide(&actor("olivia", Role::Member, &[]), false)
            .is_ok());
        assert!(r.may_decide(&alice, false).is_err(), "the requester");
        assert!(r.may_decide(&mallory, false).is_err());
        assert!(
            r.may_decide(&admin, false).is_err(),
            "admins only when allowed"
        );
        assert!(r.may_decide(&admin, true).is_ok());
        assert!(r.approve(&mallory, false, "", 1, at(1)).is_err());
        r.approve(&bob, false, "ok", 1, at(1)).unwrap();
        assert_eq!(r.status, ApprovalStatus::Approved);
        // Final: no second decision.
        assert!(r
            .deny(&actor("olivia", Role::Member, &[]), false, "no", at(2))
            .is_err());
    }

    #[test]
    fn a_read_or_non_production_call_has_no_business_owner_approver() {
        let mut c = call(1);
        c.mutating = false;
        let r = ApprovalRequest::open(
            [2; 16],
            c,
            vec![],
            Some("olivia".parse().unwrap()),
            60,
            at(0),
        )
        .unwrap();
        assert_eq!(r.business_owner, None);
        assert!(r
            .may_decide(&actor("olivia", Role::Member, &[]), false)
            .is_err());
    }

    #[test]
    fn two_person_rule_needs_distinct_approvers() {
        let mut r = open(2);
        let bob = actor("bob", Role::Member, &["billing-approvers"]);
        r.approve(&bob, false, "", 1, at(1)).unwrap();
        assert_eq!(r.status, ApprovalStatus::Pending);
        assert!(matches!(
            r.approve(&bob, false, "", 1, at(2)),
            Err(DomainError::AlreadyApproved { .. })
        ));
        r.approve(&actor("olivia", Role::Member, &[]), false, "", 3, at(3))
            .unwrap();
        assert_eq!(r.status, ApprovalStatus::Approved);
        assert_eq!(r.uses_allowed, 3);
    }

    #[test]
    fn bound_to_the_exact_call_used_up_and_expiring() {
        let mut r = open(1);
        let bob = actor("bob", Role::Member, &["billing-approvers"]);
        let (agent, system, action) = (r.agent.clone(), r.system.clone(), r.action.clone());
        assert!(
            r.unusable_for(&agent, &system, &action, "d1", at(1))
                .is_some(),
            "pending"
        );
        r.approve(&bob, false, "", 1, at(1)).unwrap();
        assert!(r
            .unusable_for(&agent, &system, &action, "d1", at(2))
            .is_none());
        assert!(r
            .unusable_for(&agent, &system, &action, "other", at(2))
            .is_some());
        let other: AgentId = "spiffe://rein.local/agent/payments/bot2/prod"
            .parse()
            .unwrap();
        assert!(r
            .unusable_for(&other, &system, &action, "d1", at(2))
            .is_some());
        assert!(
            r.unusable_for(&agent, &system, &action, "d1", at(DEFAULT_TTL_SECS))
                .is_some(),
            "expired"
        );
        r.consume("dec_2", at(2)).unwrap();
        assert_eq!(r.status, ApprovalStatus::Used);
        assert!(r.consume("dec_3", at(3)).is_err());
        assert!(r
            .unusable_for(&agent, &system, &action, "d1", at(3))
            .is_some());
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let mut r = open(1);
        let before = r.clone();
        let bob = actor("bob", Role::Member, &["billing-approvers"]);
        let long = "x".repeat(MAX_COMMENT_LEN + 1);
        assert!(r.approve(&bob, false, &long, 1, at(1)).is_err());
        assert!(r.approve(&bob, false, "", 0, at(1)).is_err());
        assert!(r.deny(&bob, false, " ", at(1)).is_err());
        assert!(
            r.approve(&bob, false, "", 1, at(DEFAULT_TTL_SECS)).is_err(),
            "expired"
        );
        assert_eq!(r, before);
        assert!(r.expire(at(DEFAULT_TTL_SECS)));
        assert_eq!(r.status, ApprovalStatus::Expired);
    }

    #[test]
    fn previews_mask_secrets_and_cut_long_values() {
        let p = redact_preview(&serde_json::json!({
            "amount": 10, "API_Key": "sk-live", "nested": {"password": "x", "note": "y".repeat(300)}
        }));
        assert_eq!(p["amount"], 10);
        assert_eq!(p["API_Key"], "[redacted]");
        assert_eq!(p["nested"]["password"], "[redacted]");
        assert_eq!(p["nested"]["note"].as_str().unwrap().chars().count(), 201);
    }
}
