//! Access reviews: campaigns opened by admins (or a team for its own agents), decided per grant
//! by each agent's reviewers, enforced at once, and the overdue sweep.
//!
//! Every write is recorded write-ahead like any other: `review.opened` (the campaign and all its
//! items in one transaction), one `review.decided` per decision (campaign, agent, grant, verdict,
//! reviewer), `grant.revoked` for a `revoke` (through the same path as a revoker's revocation,
//! with the reviewer as actor and the campaign in the reason), `agent.reviewed` when an item
//! completes (the agent's `last_review` moves to that time) and `review.closed` when the last
//! item completes or an admin closes the campaign.
//!
//! Finishing a completed item (its revocations, the agent's `last_review`, closing the campaign)
//! is idempotent: if it is interrupted (the store or the audit log failed after the decisions
//! were recorded), the periodic sweep ([`Registry::sweep_overdue_reviews`]) finishes it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rein_audit::{Event, EventType};
use rein_core::agent::{Agent, AgentStatus};
use rein_core::authz::Actor;
use rein_core::grant::Grant;
use rein_core::id::{AgentId, GrantId, PrincipalRef, UserName};
use rein_core::review::{
    mark_reviewed, CampaignStatus, GrantUsage, ReviewCampaign, ReviewItem, ReviewSchedule,
    ReviewScope, ReviewVerdict,
};
use rein_core::user::Role;
use rein_core::DomainError;
use rein_store::{AgentFilter, GrantFilter, Versioned};
use serde::{Deserialize, Serialize};

use crate::audit::{self, joined};
use crate::{usage, Error, Registry};

/// A campaign with the items the caller may see.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignView {
    /// The campaign.
    pub campaign: ReviewCampaign,
    /// Its items the caller may see (all, for admins, auditors and whoever opened it), by agent.
    pub items: Vec<ReviewItem>,
}

/// A reviewer's decisions on one agent's item.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecisions {
    /// Grant ID → `keep` or `revoke`. Empty only to certify an agent without grants.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, ReviewVerdict>)]
    pub decisions: BTreeMap<String, ReviewVerdict>,
    /// Why (at most 2000 bytes); recorded with each decision.
    #[serde(default)]
    pub comment: String,
}

/// An agent whose access review is overdue beyond the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Overdue {
    /// The agent.
    #[schema(value_type = String)]
    pub agent: AgentId,
    /// Its status (after the sweep, when the sweep suspended it).
    pub status: AgentStatus,
    /// Its reviewers.
    #[schema(value_type = Vec<String>)]
    pub reviewers: Vec<PrincipalRef>,
    /// Its review cadence, in days.
    pub review_cadence_days: u32,
    /// Its last review; never reviewed when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_review: Option<DateTime<Utc>>,
    /// When the review was due.
    pub due: DateTime<Utc>,
    /// From when it counts as overdue: due plus the grace period.
    pub overdue_since: DateTime<Utc>,
    /// Whole days since it was due.
    pub days_overdue: i64,
    /// Whether this sweep suspended it.
    pub suspended_now: bool,
}

fn may_see_all(actor: &Actor) -> bool {
    matches!(actor.role, Role::Admin | Role::Auditor)
}

/// Whether `actor` sees every item of `campaign`: admins, auditors, whoever opened it, and for a
/// team's campaign that team's members.
fn sees_whole(actor: &Actor, campaign: &ReviewCampaign) -> bool {
    may_see_all(actor)
        || campaign.opened_by == actor.user
        || campaign
            .scope
            .team
            .as_ref()
            .is_some_and(|t| actor.teams.contains(t))
}

impl Registry {
    /// Opens a campaign over the agents `scope` covers now (admins; a team's members for their
    /// team's agents). Agents under review in another open campaign are left out. Each item
    /// holds the agent's live grants with their use since its last review, from the audit log.
    pub async fn open_review(
        &self,
        actor: &Actor,
        scope: ReviewScope,
    ) -> Result<CampaignView, Error> {
        scope.may_open(actor)?;
        if let Some(team) = &scope.team {
            if self.store.team(team).await?.is_none() {
                return Err(Error::NotFound {
                    kind: "team",
                    key: team.to_string(),
                });
            }
        }
        let now = self.now();
        let busy = self.agents_under_review().await?;
        let agents: Vec<Agent> = self
            .store
            .agents(&AgentFilter {
                team: scope.team.clone(),
                ..AgentFilter::default()
            })
            .await?
            .into_iter()
            .filter(|a| scope.covers(a, now) && !busy.contains(&a.id))
            .collect();
        let campaign = ReviewCampaign::open(
            *uuid::Uuid::now_v7().as_bytes(),
            scope,
            agents.iter().map(|a| a.id.clone()).collect(),
            &actor.user,
            now,
        )?;
        let mut items = Vec::with_capacity(agents.len());
        for agent in &agents {
            if let Some(item) = self.open_item(&campaign, agent).await? {
                items.push(item);
            }
        }
        items.sort_by(|a, b| a.agent.cmp(&b.agent));
        let mut event = campaign_event(EventType::ReviewOpened, audit::user(actor), &campaign);
        event.details.insert(
            "grants".into(),
            items
                .iter()
                .map(|i| i.grants.len())
                .sum::<usize>()
                .to_string(),
        );
        self.create(
            "review",
            &campaign.id,
            event,
            self.store.insert_review(&campaign, &items),
        )
        .await?;
        Ok(CampaignView { campaign, items })
    }

    /// The agents with an incomplete item in an open campaign.
    async fn agents_under_review(&self) -> Result<BTreeSet<AgentId>, Error> {
        let mut busy = BTreeSet::new();
        for c in self.store.reviews(Some(CampaignStatus::Open)).await? {
            for item in self.store.review_items(&c.id).await? {
                if !item.is_complete() {
                    busy.insert(item.agent);
                }
            }
        }
        Ok(busy)
    }

    /// `agent`'s item in `campaign`: its grants and their use in the period under review.
    async fn open_item(
        &self,
        campaign: &ReviewCampaign,
        agent: &Agent,
    ) -> Result<Option<ReviewItem>, Error> {
        let Some(schedule) = ReviewSchedule::of(agent) else {
            return Ok(None);
        };
        let grants: Vec<Grant> = self
            .store
            .grants(&GrantFilter {
                agent: Some(agent.id.clone()),
                ..GrantFilter::default()
            })
            .await?;
        let until = campaign.opened_at;
        let mut used: BTreeMap<GrantId, GrantUsage> = BTreeMap::new();
        usage::scan(&*self.store, Some(&agent.id), schedule.since, |u| {
            if u.at() > until {
                return;
            }
            for g in grants.iter().filter(|g| u.by_grant(g.id.as_str())) {
                let entry = used.entry(g.id.clone()).or_default();
                match u.kind {
                    EventType::TokenIssued => entry.record_token(u.at()),
                    _ => {
                        for action in u.actions.iter().filter(|a| g.actions.contains(*a)) {
                            entry.record_call(action, u.at());
                        }
                    }
                }
            }
        })
        .await?;
        Ok(ReviewItem::open(campaign, agent, &grants, &used))
    }

    /// The campaigns `actor` may see (a campaign they opened, of their team, or holding an item
    /// they review; admins and auditors: all), oldest first.
    pub async fn reviews(&self, actor: &Actor) -> Result<Vec<ReviewCampaign>, Error> {
        let mut visible = Vec::new();
        for c in self.store.reviews(None).await? {
            if sees_whole(actor, &c) || !self.visible_items(actor, &c).await?.is_empty() {
                visible.push(c);
            }
        }
        Ok(visible)
    }

    /// Campaign `id` with the items `actor` may see; refused when they may see none of it.
    pub async fn review(&self, actor: &Actor, id: &str) -> Result<CampaignView, Error> {
        let campaign = self.load_review(id).await?.value;
        let items = self.visible_items(actor, &campaign).await?;
        if items.is_empty() && !sees_whole(actor, &campaign) {
            return Err(DomainError::forbidden(
                "only the reviewers of its agents, whoever opened it, admins and auditors may read this access review",
            )
            .into());
        }
        Ok(CampaignView { campaign, items })
    }

    /// `agent`'s item in campaign `id`, for its reviewers and those who see the whole campaign.
    pub async fn review_item(
        &self,
        actor: &Actor,
        id: &str,
        agent: &AgentId,
    ) -> Result<ReviewItem, Error> {
        let campaign = self.load_review(id).await?.value;
        let item = self.load_item(id, agent).await?.value;
        if sees_whole(actor, &campaign) || actor.is_any(&item.reviewers) {
            return Ok(item);
        }
        Err(DomainError::forbidden(format!(
            "only the reviewers of agent `{agent}`, whoever opened the review, admins and auditors may read its review"
        ))
        .into())
    }

    async fn visible_items(
        &self,
        actor: &Actor,
        campaign: &ReviewCampaign,
    ) -> Result<Vec<ReviewItem>, Error> {
        let whole = sees_whole(actor, campaign);
        Ok(self
            .store
            .review_items(&campaign.id)
            .await?
            .into_iter()
            .filter(|i| whole || actor.is_any(&i.reviewers))
            .collect())
    }

    /// Records `actor`'s decisions on `agent`'s item in campaign `id` (one of the agent's
    /// reviewers), then enforces them: each `revoke` revokes its grant at once, and the item's
    /// completion moves the agent's `last_review` and may close the campaign. Every decision is
    /// checked before any is recorded; a grant decided already (here or concurrently) is
    /// refused.
    pub async fn decide_review(
        &self,
        actor: &Actor,
        id: &str,
        agent: &AgentId,
        decisions: &ReviewDecisions,
    ) -> Result<ReviewItem, Error> {
        let parsed: BTreeMap<GrantId, ReviewVerdict> = decisions
            .decisions
            .iter()
            .map(|(g, v)| Ok((g.parse::<GrantId>()?, *v)))
            .collect::<Result<_, DomainError>>()?;
        let comment = decisions.comment.as_str();
        self.load_review(id).await?.value.require_open("decide")?;
        let mut item = self.load_item(id, agent).await?.value;
        item.check(actor, &parsed, comment)?;
        let now = self.now();
        if parsed.is_empty() {
            item = self
                .modify_item(
                    id,
                    agent,
                    |i| Ok(i.certify_empty(actor, comment, now)?),
                    |i| decided_event(actor, i, None, comment),
                )
                .await?;
        }
        for (grant, verdict) in &parsed {
            item = self
                .modify_item(
                    id,
                    agent,
                    |i| {
                        i.decide(actor, grant, *verdict, comment, now)?;
                        Ok(())
                    },
                    |i| decided_event(actor, i, Some((grant, *verdict)), comment),
                )
                .await?;
        }
        self.finish_item(&item).await?;
        Ok(item)
    }

    /// Applies what `item`'s decisions imply, idempotently: revokes the grants decided
    /// `revoke` that are still live, and once it is complete moves the agent's `last_review`
    /// and closes the campaign if it was its last open item.
    async fn finish_item(&self, item: &ReviewItem) -> Result<(), Error> {
        for (grant, decision) in item.revoked() {
            let reason = if decision.comment.trim().is_empty() {
                format!(
                    "access review {}: revoked by reviewer {}",
                    item.campaign, decision.by
                )
            } else {
                format!(
                    "access review {}: revoked by reviewer {}: {}",
                    item.campaign, decision.by, decision.comment
                )
            };
            let revoked = self
                .revoke_grant_as(&decision.by, grant, &reason, |g| {
                    if g.agent != item.agent {
                        return Err(DomainError::forbidden(format!(
                            "grant `{}` is not agent `{}`'s",
                            g.id, item.agent
                        )));
                    }
                    item.revocation(&g.id).map(|_| ())
                })
                .await;
            match revoked {
                // Revoked, expired or denied already: nothing is left to take away.
                Ok(_) | Err(Error::Domain(DomainError::InvalidTransition { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(completed) = &item.completed else {
            return Ok(());
        };
        // Whether it would change (already recorded, or retired: nothing to write).
        let mut current = self.load_agent(&item.agent).await?;
        if mark_reviewed(&mut current, completed.at) {
            let at = completed.at;
            let written = self
                .modify_agent(
                    &item.agent,
                    |a| {
                        if mark_reviewed(a, at) {
                            Ok(())
                        } else {
                            Err(DomainError::InvalidTransition {
                                entity: "agent",
                                transition: "record the review of",
                                state: "reviewed since".into(),
                            }
                            .into())
                        }
                    },
                    |a| {
                        let mut e = audit::agent_event_by(
                            EventType::AgentReviewed,
                            audit::user_named(&completed.by),
                            a,
                            None,
                        );
                        e.details.insert("review".into(), item.campaign.clone());
                        e.details.insert("last_review".into(), at.to_rfc3339());
                        e
                    },
                )
                .await;
            match written {
                Ok(_) | Err(Error::Domain(DomainError::InvalidTransition { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        self.close_if_complete(&item.campaign).await
    }

    /// Closes campaign `id` on Rein's authority when every item is complete.
    async fn close_if_complete(&self, id: &str) -> Result<(), Error> {
        let campaign = self.load_review(id).await?.value;
        if campaign.status != CampaignStatus::Open {
            return Ok(());
        }
        let items = self.store.review_items(id).await?;
        if !items.iter().all(ReviewItem::is_complete) {
            return Ok(());
        }
        let now = self.now();
        let rein = UserName::rein();
        let reason = "every item is complete";
        let closed = self
            .modify_review(
                id,
                |c| Ok(c.close(&rein, reason, now)?),
                |c| {
                    let mut e = campaign_event(EventType::ReviewClosed, audit::rein(), c);
                    e.reason = Some(reason.into());
                    e
                },
            )
            .await;
        match closed {
            Ok(_) | Err(Error::Domain(DomainError::InvalidTransition { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Closes campaign `id` before every item is complete (admins); final. Agents whose items
    /// are incomplete stay due.
    pub async fn close_review(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<CampaignView, Error> {
        actor.require_admin("close an access review")?;
        let reason = if reason.trim().is_empty() {
            "closed by an admin"
        } else {
            reason
        };
        let now = self.now();
        self.modify_review(
            id,
            |c| Ok(c.close(&actor.user, reason, now)?),
            |c| {
                let mut e = campaign_event(EventType::ReviewClosed, audit::user(actor), c);
                e.reason = Some(reason.to_owned());
                e
            },
        )
        .await?;
        self.review(actor, id).await
    }

    /// The agents whose access review is overdue beyond the grace period now, most overdue
    /// first (every authenticated user may read the registry).
    pub async fn overdue_reviews(&self, _actor: &Actor) -> Result<Vec<Overdue>, Error> {
        self.overdue().await
    }

    async fn overdue(&self) -> Result<Vec<Overdue>, Error> {
        let now = self.now();
        let grace = self.config.review_grace_days;
        let mut overdue: Vec<Overdue> = self
            .store
            .agents(&AgentFilter::default())
            .await?
            .into_iter()
            .filter_map(|a| {
                let s = ReviewSchedule::of(&a)?;
                s.is_overdue(grace, now).then(|| Overdue {
                    status: a.status,
                    reviewers: a.roles.reviewers.clone(),
                    review_cadence_days: s.cadence_days,
                    last_review: a.last_review,
                    due: s.due,
                    overdue_since: s.overdue_from(grace),
                    days_overdue: (now - s.due).num_days(),
                    suspended_now: false,
                    agent: a.id,
                })
            })
            .collect();
        overdue.sort_by(|a, b| a.due.cmp(&b.due).then_with(|| a.agent.cmp(&b.agent)));
        Ok(overdue)
    }

    /// The periodic review sweep: lists the agents overdue beyond the grace period and, when
    /// `suspend_overdue_reviews` is configured, suspends each that is active, with Rein as the
    /// actor and the reason recorded on the agent and in the audit log. Also finishes completed
    /// items of open campaigns whose enforcement was interrupted.
    pub async fn sweep_overdue_reviews(&self) -> Result<Vec<Overdue>, Error> {
        for c in self.store.reviews(Some(CampaignStatus::Open)).await? {
            for item in self.store.review_items(&c.id).await? {
                if item.is_complete() {
                    self.finish_item(&item).await?;
                }
            }
        }
        let mut overdue = self.overdue().await?;
        if !self.config.suspend_overdue_reviews {
            return Ok(overdue);
        }
        let grace = self.config.review_grace_days;
        for o in overdue
            .iter_mut()
            .filter(|o| o.status == AgentStatus::Active)
        {
            let reason = format!(
                "access review overdue since {}: cadence {} days, grace {grace} days",
                o.overdue_since
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                o.review_cadence_days
            );
            let agent = self.trip_breaker(&o.agent, &reason).await?;
            o.suspended_now = agent.status == AgentStatus::Suspended;
            o.status = agent.status;
        }
        Ok(overdue)
    }

    async fn load_review(&self, id: &str) -> Result<Versioned<ReviewCampaign>, Error> {
        self.store.review(id).await?.ok_or_else(|| Error::NotFound {
            kind: "review",
            key: id.to_owned(),
        })
    }

    async fn load_item(&self, id: &str, agent: &AgentId) -> Result<Versioned<ReviewItem>, Error> {
        self.store
            .review_item(id, agent)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "review item",
                key: format!("{id} {agent}"),
            })
    }

    /// The compare-and-swap loop on campaign `id`.
    async fn modify_review<Change, Describe>(
        &self,
        id: &str,
        change: Change,
        describe: Describe,
    ) -> Result<ReviewCampaign, Error>
    where
        Change: FnMut(&mut ReviewCampaign) -> Result<(), Error>,
        Describe: Fn(&ReviewCampaign) -> Event,
    {
        let store = &self.store;
        Ok(self
            .modify(
                "review",
                id,
                || store.review(id),
                |c, v| async move { store.update_review(&c, v).await },
                change,
                describe,
            )
            .await?
            .value)
    }

    /// The compare-and-swap loop on `agent`'s item in campaign `id`.
    async fn modify_item<Change, Describe>(
        &self,
        id: &str,
        agent: &AgentId,
        change: Change,
        describe: Describe,
    ) -> Result<ReviewItem, Error>
    where
        Change: FnMut(&mut ReviewItem) -> Result<(), Error>,
        Describe: Fn(&ReviewItem) -> Event,
    {
        let store = &self.store;
        let key = rein_core::review::item_id(id, agent);
        Ok(self
            .modify(
                "review item",
                &key,
                || store.review_item(id, agent),
                |i, v| async move { store.update_review_item(&i, v).await },
                change,
                describe,
            )
            .await?
            .value)
    }
}

/// A campaign event: its scope and the agents it covers.
fn campaign_event(event_type: EventType, by: rein_audit::Actor, c: &ReviewCampaign) -> Event {
    let mut e = Event::new(event_type, by, "success");
    e.subject = Some(c.id.clone());
    e.details
        .insert("status".into(), c.status.as_str().to_owned());
    e.details.insert(
        "team".into(),
        c.scope
            .team
            .as_ref()
            .map_or_else(|| "*".to_owned(), ToString::to_string),
    );
    e.details.insert("all".into(), c.scope.all.to_string());
    e.details.insert("agents".into(), joined(&c.agents));
    e
}

/// One decision: the campaign, the agent, the grant and its verdict (none when certifying an
/// agent without grants), the reviewer, and whether it completed the item.
fn decided_event(
    actor: &Actor,
    item: &ReviewItem,
    decision: Option<(&GrantId, ReviewVerdict)>,
    comment: &str,
) -> Event {
    let mut e = Event::new(EventType::ReviewDecided, audit::user(actor), "success");
    e.subject = Some(item.campaign.clone());
    e.agent = Some(item.agent.to_string());
    e.details
        .insert("reviewers".into(), joined(&item.reviewers));
    if let Some((grant, verdict)) = decision {
        e.details.insert("grant".into(), grant.to_string());
        e.details
            .insert("decision".into(), verdict.as_str().to_owned());
        if let Some(g) = item.grants.iter().find(|g| g.grant == *grant) {
            e.system = Some(g.system.to_string());
            e.details.insert("actions".into(), joined(&g.actions));
            e.details
                .insert("calls".into(), g.usage.total_calls().to_string());
            e.details
                .insert("tokens_issued".into(), g.usage.tokens_issued.to_string());
        }
    } else {
        e.details.insert("decision".into(), "certify".into());
    }
    if !comment.is_empty() {
        e.reason = Some(comment.to_owned());
    }
    e.details
        .insert("item_complete".into(), item.is_complete().to_string());
    e
}
