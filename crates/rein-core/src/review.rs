//! Access reviews: an agent's reviewers re-certify its grants on its cadence.
//!
//! A campaign ([`ReviewCampaign`], `rvw_…`) covers the agents due for review, everywhere or in
//! one team. Each agent is one [`ReviewItem`], stored on its own so that reviewers of different
//! agents never contend: its reviewers when the campaign opened, the period reviewed (from its
//! last review, or its creation, to the opening), and every grant live at the opening with its
//! use in that period. A reviewer decides each grant, keep or revoke; a decision is final within
//! the campaign. When every grant is decided (an agent without grants is certified by an empty
//! decision) the item is complete, and the agent's `last_review` becomes that time.
//!
//! Who may decide: the agent's reviewers (a listed user, or a member of a listed team), never an
//! admin by role alone (re-certifying access is a business decision, not an IAM one), never an
//! auditor. Keeping a grant is also refused to the person who requested it: nobody certifies
//! access they asked for themselves (revoking it is always allowed).
//!
//! A `revoke` decision revokes the grant as its reviewer, even one not listed among the grant's
//! revokers: [`ReviewItem::revocation`] is that exception, and it covers exactly the grants this
//! item holds with a `revoke` decision, nothing else.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentStatus};
use crate::authz::Actor;
use crate::grant::{Grant, GrantStatus};
use crate::id::{ActionName, AgentId, GrantId, PrincipalRef, SystemName, TeamName, UserName};
use crate::user::Role;
use crate::DomainError;

/// Days past the cadence before a review counts as overdue, unless configured.
pub const DEFAULT_GRACE_DAYS: u32 = 14;
/// Longest grace period accepted.
pub const MAX_GRACE_DAYS: u32 = 366;
/// Longest comment on a decision, in bytes.
pub const MAX_COMMENT_LEN: usize = 2000;

/// When an agent's access is next due for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewSchedule {
    /// Days between reviews.
    pub cadence_days: u32,
    /// The last review, or the agent's creation when it was never reviewed.
    pub since: DateTime<Utc>,
    /// When the next review is due: `since` plus the cadence.
    pub due: DateTime<Utc>,
}

impl ReviewSchedule {
    /// The schedule of `agent`; `None` when it has no cadence or is retired (nothing to review).
    pub fn of(agent: &Agent) -> Option<Self> {
        if agent.status == AgentStatus::Retired {
            return None;
        }
        let cadence_days = agent.roles.review_cadence_days?;
        let since = agent.last_review.unwrap_or(agent.created_at);
        Some(Self {
            cadence_days,
            since,
            due: plus_days(since, cadence_days),
        })
    }

    /// Whether the review is due at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.due <= now
    }

    /// From when the review counts as overdue: the due date plus `grace_days`.
    pub fn overdue_from(&self, grace_days: u32) -> DateTime<Utc> {
        plus_days(self.due, grace_days)
    }

    /// Whether the review is overdue at `now`: due for longer than `grace_days`.
    pub fn is_overdue(&self, grace_days: u32, now: DateTime<Utc>) -> bool {
        self.overdue_from(grace_days) < now
    }
}

fn plus_days(t: DateTime<Utc>, n: u32) -> DateTime<Utc> {
    t.checked_add_signed(Duration::days(i64::from(n)))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Which agents a campaign covers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewScope {
    /// Only this team's agents; every team's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub team: Option<TeamName>,
    /// Also agents not yet due (every agent with a review cadence that is not retired).
    #[serde(default)]
    pub all: bool,
}

impl ReviewScope {
    /// Whether `agent` belongs in a campaign of this scope opened at `now`.
    pub fn covers(&self, agent: &Agent, now: DateTime<Utc>) -> bool {
        let in_team = self.team.as_ref().is_none_or(|t| t == agent.owner_team());
        let schedule = ReviewSchedule::of(agent);
        in_team && schedule.is_some_and(|s| self.all || s.is_due(now))
    }

    /// Who may open a campaign of this scope: admins; for one team's agents, also its members.
    /// Auditors change nothing.
    pub fn may_open(&self, actor: &Actor) -> Result<(), DomainError> {
        if actor.role == Role::Auditor {
            return Err(DomainError::forbidden("auditors are read-only"));
        }
        match &self.team {
            _ if actor.is_admin() => Ok(()),
            Some(team) if actor.teams.contains(team) => Ok(()),
            Some(team) => Err(DomainError::forbidden(format!(
                "only admins and members of team `{team}` may open a review of its agents"
            ))),
            None => Err(DomainError::forbidden(
                "only admins may open a review of every team's agents; name your team",
            )),
        }
    }
}

/// Whether a campaign takes decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CampaignStatus {
    /// Reviewers decide its items.
    Open,
    /// Every item is complete, or an admin closed it; final.
    Closed,
}

impl CampaignStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// Who closed a campaign, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Closure {
    /// An admin, or Rein when the last item completed.
    #[schema(value_type = String)]
    pub by: UserName,
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

/// An access review campaign. Its items are stored separately ([`ReviewItem`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewCampaign {
    /// `rvw_` and 32 hex digits.
    pub id: String,
    /// Which agents it covers.
    pub scope: ReviewScope,
    /// The agents it holds an item for, in ID order.
    #[schema(value_type = Vec<String>)]
    pub agents: Vec<AgentId>,
    /// Who opened it.
    #[schema(value_type = String)]
    pub opened_by: UserName,
    /// When; the end of every item's review period.
    pub opened_at: DateTime<Utc>,
    /// Open or closed.
    pub status: CampaignStatus,
    /// The closing, once closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closure>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl ReviewCampaign {
    /// Opens a campaign of `scope` over `agents`, by `by`.
    pub fn open(
        id: [u8; 16],
        scope: ReviewScope,
        mut agents: Vec<AgentId>,
        by: &UserName,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        if agents.is_empty() {
            return Err(DomainError::invalid(
                "scope",
                if scope.all {
                    "no agent in scope has a review cadence (retired agents are not reviewed)"
                } else {
                    "no agent in scope is due for review (`all` also takes agents not yet due)"
                },
            ));
        }
        agents.sort();
        agents.dedup();
        Ok(Self {
            id: id.iter().fold(String::from("rvw_"), |mut s, b| {
                s.push_str(&format!("{b:02x}"));
                s
            }),
            scope,
            agents,
            opened_by: by.clone(),
            opened_at: now,
            status: CampaignStatus::Open,
            closed: None,
            updated_at: now,
        })
    }

    /// Refuses a change unless the campaign is open.
    pub fn require_open(&self, transition: &'static str) -> Result<(), DomainError> {
        match self.status {
            CampaignStatus::Open => Ok(()),
            s => Err(DomainError::InvalidTransition {
                entity: "review campaign",
                transition,
                state: s.as_str().to_owned(),
            }),
        }
    }

    /// Closes it; final. An explicit close is an admin's; `by` Rein when the last item
    /// completed.
    pub fn close(
        &mut self,
        by: &UserName,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.require_open("close")?;
        check_comment("reason", reason)?;
        self.status = CampaignStatus::Closed;
        self.closed = Some(Closure {
            by: by.clone(),
            at: now,
            reason: reason.to_owned(),
        });
        self.updated_at = now;
        Ok(())
    }
}

/// How one grant was used in the review period, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantUsage {
    /// Allowed calls under the grant, per action (only actions with calls are listed).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub calls: BTreeMap<ActionName, u64>,
    /// Access tokens issued under the grant.
    pub tokens_issued: u64,
    /// The last allowed call or token issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<DateTime<Utc>>,
}

impl GrantUsage {
    /// Counts an allowed call of `action` at `at`.
    pub fn record_call(&mut self, action: &ActionName, at: DateTime<Utc>) {
        *self.calls.entry(action.clone()).or_default() += 1;
        self.used_at(at);
    }

    /// Counts a token issued at `at`.
    pub fn record_token(&mut self, at: DateTime<Utc>) {
        self.tokens_issued += 1;
        self.used_at(at);
    }

    fn used_at(&mut self, at: DateTime<Utc>) {
        self.last_used = Some(self.last_used.map_or(at, |last| last.max(at)));
    }

    /// Allowed calls of every action.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// Keep or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReviewVerdict {
    /// The grant stays: its access is re-certified.
    Keep,
    /// The grant is revoked.
    Revoke,
}

impl ReviewVerdict {
    /// The verdict as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Revoke => "revoke",
        }
    }
}

/// A reviewer's decision on one grant, or the certification of a whole item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecision {
    /// Who decided.
    #[schema(value_type = String)]
    pub by: UserName,
    /// When.
    pub at: DateTime<Utc>,
    /// Their comment.
    #[serde(default)]
    pub comment: String,
}

/// One grant under review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewedGrant {
    /// The grant.
    pub grant: GrantId,
    /// Its system.
    #[schema(value_type = String)]
    pub system: SystemName,
    /// Its actions.
    #[schema(value_type = Vec<String>)]
    pub actions: BTreeSet<ActionName>,
    /// Its effective status when the campaign opened (`requested` or `active`).
    pub status: GrantStatus,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Who requested it (they may not keep it).
    #[schema(value_type = String)]
    pub requested_by: UserName,
    /// Its use in the review period.
    pub usage: GrantUsage,
    /// Keep or revoke, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<ReviewVerdict>,
    /// Who decided, when, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ReviewDecision>,
}

/// One agent's review within a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewItem {
    /// `<campaign ID> <agent SPIFFE ID>`.
    pub id: String,
    /// The campaign.
    pub campaign: String,
    /// The agent.
    #[schema(value_type = String)]
    pub agent: AgentId,
    /// Who may decide: the agent's reviewers when the campaign opened.
    #[schema(value_type = Vec<String>)]
    pub reviewers: Vec<PrincipalRef>,
    /// The agent's review cadence then, in days.
    pub review_cadence_days: u32,
    /// Start of the period reviewed: the agent's last review, or its creation.
    pub period_start: DateTime<Utc>,
    /// End of the period reviewed: the campaign's opening.
    pub period_end: DateTime<Utc>,
    /// The grants live (requested or active) at the opening, in ID order.
    pub grants: Vec<ReviewedGrant>,
    /// Set when every grant is decided (for an agent without grants, by an empty decision):
    /// who completed it, when, and the comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<ReviewDecision>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The key of an item: its campaign and agent.
pub fn item_id(campaign: &str, agent: &AgentId) -> String {
    format!("{campaign} {agent}")
}

impl ReviewItem {
    /// The item of `agent` in `campaign`, reviewing `grants` (those not live at `now` are left
    /// out) with the use recorded for each in `usage`. `None` when the agent has nothing to
    /// review (no cadence, or retired).
    pub fn open(
        campaign: &ReviewCampaign,
        agent: &Agent,
        grants: &[Grant],
        usage: &BTreeMap<GrantId, GrantUsage>,
    ) -> Option<Self> {
        let now = campaign.opened_at;
        let schedule = ReviewSchedule::of(agent)?;
        let mut reviewed: Vec<ReviewedGrant> = grants
            .iter()
            .filter(|g| g.agent == agent.id)
            .filter_map(|g| {
                let status = g.status_at(now);
                matches!(status, GrantStatus::Requested | GrantStatus::Active).then(|| {
                    ReviewedGrant {
                        grant: g.id.clone(),
                        system: g.system.clone(),
                        actions: g.actions.clone(),
                        status,
                        expires_at: g.expires_at,
                        requested_by: g.requested_by.clone(),
                        usage: usage.get(&g.id).cloned().unwrap_or_default(),
                        verdict: None,
                        decision: None,
                    }
                })
            })
            .collect();
        reviewed.sort_by(|a, b| a.grant.cmp(&b.grant));
        Some(Self {
            id: item_id(&campaign.id, &agent.id),
            campaign: campaign.id.clone(),
            agent: agent.id.clone(),
            reviewers: agent.roles.reviewers.clone(),
            review_cadence_days: schedule.cadence_days,
            period_start: schedule.since,
            period_end: now,
            grants: reviewed,
            completed: None,
            updated_at: now,
        })
    }

    /// Whether every grant is decided (and an agent without grants certified).
    pub fn is_complete(&self) -> bool {
        self.completed.is_some()
    }

    /// Whether `actor` may decide it: one of its reviewers, and not an auditor. An admin is
    /// not a reviewer unless named as one.
    pub fn may_decide(&self, actor: &Actor) -> Result<(), DomainError> {
        if actor.role == Role::Auditor {
            return Err(DomainError::forbidden("auditors are read-only"));
        }
        if actor.is_any(&self.reviewers) {
            return Ok(());
        }
        Err(DomainError::forbidden(format!(
            "only the reviewers of agent `{}` may decide its review",
            self.agent
        )))
    }

    /// Checks `decisions` against this item as `actor` would make them, changing nothing: the
    /// actor reviews it, every grant is under review here and undecided, nobody keeps a grant
    /// they requested, the comment fits, and an empty set only certifies an agent without
    /// grants.
    pub fn check(
        &self,
        actor: &Actor,
        decisions: &BTreeMap<GrantId, ReviewVerdict>,
        comment: &str,
    ) -> Result<(), DomainError> {
        self.may_decide(actor)?;
        check_comment("comment", comment)?;
        if decisions.is_empty() {
            if self.is_complete() {
                return Err(self.decided());
            }
            if !self.grants.is_empty() {
                return Err(DomainError::invalid(
                    "decisions",
                    "name at least one grant under review, with `keep` or `revoke`",
                ));
            }
            return Ok(());
        }
        for (id, verdict) in decisions {
            let g = self.grants.iter().find(|g| g.grant == *id).ok_or_else(|| {
                DomainError::invalid(
                    "decisions",
                    format!(
                        "grant `{id}` is not under review for agent `{}` in this campaign",
                        self.agent
                    ),
                )
            })?;
            if g.verdict.is_some() {
                return Err(DomainError::InvalidTransition {
                    entity: "reviewed grant",
                    transition: "decide",
                    state: format!("decided ({id})"),
                });
            }
            if *verdict == ReviewVerdict::Keep && g.requested_by == actor.user {
                return Err(DomainError::forbidden(format!(
                    "`{}` requested grant `{id}` and may not re-certify it; another reviewer must keep it",
                    actor.user
                )));
            }
        }
        Ok(())
    }

    fn decided(&self) -> DomainError {
        DomainError::InvalidTransition {
            entity: "review item",
            transition: "decide",
            state: "complete".into(),
        }
    }

    /// Records `actor`'s `verdict` on `grant`; the item completes with its last decision.
    /// Returns whether it completed.
    pub fn decide(
        &mut self,
        actor: &Actor,
        grant: &GrantId,
        verdict: ReviewVerdict,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DomainError> {
        self.check(actor, &BTreeMap::from([(grant.clone(), verdict)]), comment)?;
        let decision = ReviewDecision {
            by: actor.user.clone(),
            at: now,
            comment: comment.to_owned(),
        };
        for g in self.grants.iter_mut().filter(|g| g.grant == *grant) {
            g.verdict = Some(verdict);
            g.decision = Some(decision.clone());
        }
        self.updated_at = now;
        if self.grants.iter().all(|g| g.verdict.is_some()) {
            self.completed = Some(decision);
            return Ok(true);
        }
        Ok(false)
    }

    /// Certifies an agent that had no grants to decide; completes the item.
    pub fn certify_empty(
        &mut self,
        actor: &Actor,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.check(actor, &BTreeMap::new(), comment)?;
        self.completed = Some(ReviewDecision {
            by: actor.user.clone(),
            at: now,
            comment: comment.to_owned(),
        });
        self.updated_at = now;
        Ok(())
    }

    /// The decision that revokes `grant` within this review: the reviewer's exception to the
    /// grant's list of revokers. Only a grant this item holds with a `revoke` verdict.
    pub fn revocation(&self, grant: &GrantId) -> Result<&ReviewDecision, DomainError> {
        self.grants
            .iter()
            .find(|g| g.grant == *grant && g.verdict == Some(ReviewVerdict::Revoke))
            .and_then(|g| g.decision.as_ref())
            .ok_or_else(|| {
                DomainError::forbidden(format!(
                    "grant `{grant}` has no `revoke` decision in review `{}`",
                    self.campaign
                ))
            })
    }

    /// The grants decided `revoke`, with their decisions.
    pub fn revoked(&self) -> impl Iterator<Item = (&GrantId, &ReviewDecision)> {
        self.grants
            .iter()
            .filter_map(|g| match (g.verdict, &g.decision) {
                (Some(ReviewVerdict::Revoke), Some(d)) => Some((&g.grant, d)),
                _ => None,
            })
    }
}

fn check_comment(field: &'static str, comment: &str) -> Result<(), DomainError> {
    if comment.len() > MAX_COMMENT_LEN {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {MAX_COMMENT_LEN} bytes"),
        ));
    }
    Ok(())
}

/// Records that `agent` was reviewed at `at` (its `last_review` moves forward, never back).
/// Returns whether it changed; a retired agent never changes.
pub fn mark_reviewed(agent: &mut Agent, at: DateTime<Utc>) -> bool {
    if agent.status == AgentStatus::Retired || agent.last_review.is_some_and(|t| t >= at) {
        return false;
    }
    agent.last_review = Some(at);
    agent.updated_at = at;
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::agent::{AccountableRoles, Budgets};
    use crate::grant::GrantStatus;

    fn t(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::days(days)
    }

    fn actor(name: &str, role: Role, teams: &[&str]) -> Actor {
        Actor {
            user: name.parse().unwrap(),
            role,
            teams: teams.iter().map(|t| t.parse().unwrap()).collect(),
        }
    }

    fn agent(team: &str, cadence: Option<u32>) -> Agent {
        Agent {
            id: format!("spiffe://rein.local/agent/{team}/bot/prod")
                .parse()
                .unwrap(),
            description: String::new(),
            use_case: "x".into(),
            roles: AccountableRoles {
                reviewers: vec!["team:sec".parse().unwrap()],
                review_cadence_days: cadence,
                ..AccountableRoles::default()
            },
            last_review: None,
            status: AgentStatus::Active,
            status_reason: None,
            keys: vec![],
            budgets: Budgets::default(),
            created_by: "alice".parse().unwrap(),
            created_at: t(0),
            updated_at: t(0),
        }
    }

    fn grant(n: u8, agent: &Agent, status: GrantStatus) -> Grant {
        Grant {
            id: GrantId::from_bytes([n; 16]),
            agent: agent.id.clone(),
            system: "db".parse().unwrap(),
            actions: ["read".parse().unwrap()].into(),
            expires_at: t(400),
            schedule: None,
            max_token_ttl_secs: None,
            justification: "j".into(),
            requested_by: "alice".parse().unwrap(),
            requested_at: t(0),
            status,
            mutates_production: false,
            approvers: vec![],
            business_owner_approver: None,
            approvals: vec![],
            revokers: vec![],
            closed: None,
            updated_at: t(0),
        }
    }

    fn campaign(agents: Vec<AgentId>, at: DateTime<Utc>) -> ReviewCampaign {
        ReviewCampaign::open(
            [7; 16],
            ReviewScope::default(),
            agents,
            &"root".parse().unwrap(),
            at,
        )
        .unwrap()
    }

    #[test]
    fn due_and_overdue_follow_the_cadence_and_the_grace() {
        let mut a = agent("payments", Some(90));
        let s = ReviewSchedule::of(&a).unwrap();
        assert!(!s.is_due(t(89)));
        assert!(s.is_due(t(90)));
        assert!(!s.is_overdue(14, t(104)));
        assert!(s.is_overdue(14, t(105)));
        assert!(mark_reviewed(&mut a, t(100)));
        assert!(!mark_reviewed(&mut a, t(99)), "never backwards");
        assert!(!ReviewSchedule::of(&a).unwrap().is_due(t(150)));
        a.status = AgentStatus::Retired;
        assert!(ReviewSchedule::of(&a).is_none());
        assert!(!mark_reviewed(&mut a, t(300)));
        assert!(ReviewSchedule::of(&agent("payments", None)).is_none());
    }

    #[test]
    fn scopes_take_due_agents_of_their_team_and_only_admins_open_everything() {
        let a = agent("payments", Some(30));
        let due = ReviewScope::default();
        assert!(!due.covers(&a, t(10)));
        assert!(due.covers(&a, t(30)));
        let all = ReviewScope {
            team: Some("payments".parse().unwrap()),
            all: true,
        };
        assert!(all.covers(&a, t(10)));
        let other = ReviewScope {
            team: Some("growth".parse().unwrap()),
            all: true,
        };
        assert!(!other.covers(&a, t(30)));
        let member = actor("dave", Role::Member, &["payments"]);
        assert!(due.may_open(&member).is_err());
        assert!(all.may_open(&member).is_ok());
        assert!(other.may_open(&member).is_err());
        assert!(due.may_open(&actor("root", Role::Admin, &[])).is_ok());
        assert!(all
            .may_open(&actor("eve", Role::Auditor, &["payments"]))
            .is_err());
        assert!(
            ReviewCampaign::open([1; 16], due, vec![], &"root".parse().unwrap(), t(0)).is_err()
        );
    }

    #[test]
    fn reviewers_decide_each_grant_once_and_the_last_decision_completes_the_item() {
        let a = agent("payments", Some(30));
        let c = campaign(vec![a.id.clone()], t(40));
        let (used, unused) = (
            grant(1, &a, GrantStatus::Active),
            grant(2, &a, GrantStatus::Active),
        );
        let gone = grant(3, &a, GrantStatus::Revoked);
        let mut usage = BTreeMap::new();
        let mut u = GrantUsage::default();
        u.record_call(&"read".parse().unwrap(), t(35));
        u.record_token(t(36));
        usage.insert(used.id.clone(), u);
        let mut item =
            ReviewItem::open(&c, &a, &[used.clone(), unused.clone(), gone], &usage).unwrap();
        assert_eq!(item.grants.len(), 2, "only live grants");
        assert_eq!(item.grants[0].usage.total_calls(), 1);
        assert_eq!(item.grants[0].usage.last_used, Some(t(36)));
        assert_eq!((item.period_start, item.period_end), (t(0), t(40)));

        let reviewer = actor("frank", Role::Member, &["sec"]);
        let admin = actor("root", Role::Admin, &[]);
        let requester = actor("alice", Role::Member, &["sec"]);
        assert!(item.may_decide(&admin).is_err(), "admins only when named");
        assert!(item
            .may_decide(&actor("eve", Role::Auditor, &["sec"]))
            .is_err());
        assert!(
            item.decide(&requester, &used.id, ReviewVerdict::Keep, "", t(41))
                .is_err(),
            "no self-certification"
        );
        let unknown = GrantId::from_bytes([9; 16]);
        assert!(matches!(
            item.decide(&reviewer, &unknown, ReviewVerdict::Keep, "", t(41)),
            Err(DomainError::InvalidField { .. })
        ));
        assert!(item.certify_empty(&reviewer, "", t(41)).is_err());
        assert!(!item
            .decide(&reviewer, &used.id, ReviewVerdict::Keep, "in use", t(41))
            .unwrap());
        assert!(matches!(
            item.decide(&reviewer, &used.id, ReviewVerdict::Revoke, "", t(42)),
            Err(DomainError::InvalidTransition { .. })
        ));
        assert!(item.revocation(&unused.id).is_err());
        assert!(item
            .decide(
                &requester,
                &unused.id,
                ReviewVerdict::Revoke,
                "unused",
                t(42)
            )
            .unwrap());
        assert!(item.is_complete());
        assert_eq!(item.revocation(&unused.id).unwrap().by.as_str(), "alice");
        assert_eq!(item.revoked().count(), 1);
        assert!(item.revocation(&used.id).is_err());
    }

    #[test]
    fn an_agent_without_grants_is_certified_by_an_empty_decision() {
        let a = agent("payments", Some(30));
        let c = campaign(vec![a.id.clone()], t(40));
        let mut item = ReviewItem::open(&c, &a, &[], &BTreeMap::new()).unwrap();
        let reviewer = actor("frank", Role::Member, &["sec"]);
        let long = "x".repeat(MAX_COMMENT_LEN + 1);
        assert!(item.certify_empty(&reviewer, &long, t(41)).is_err());
        item.certify_empty(&reviewer, "nothing granted", t(41))
            .unwrap();
        assert!(item.is_complete());
        assert!(item.certify_empty(&reviewer, "", t(42)).is_err());
    }

    #[test]
    fn a_closed_campaign_is_final() {
        let mut c = campaign(vec![agent("payments", Some(1)).id], t(0));
        let root: UserName = "root".parse().unwrap();
        c.close(&root, "done", t(1)).unwrap();
        assert_eq!(c.status, CampaignStatus::Closed);
        assert!(c.close(&root, "again", t(2)).is_err());
        assert!(c.require_open("decide").is_err());
    }
}
