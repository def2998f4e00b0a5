//! Grants: requested by the agent's team, approved by the system's approvers (and the business
//! owner for production writes), revoked by revokers.

use rein_core::authz::Actor;
use rein_core::grant::{Grant, GrantRequest, GrantStatus};
use rein_core::id::GrantId;
use rein_store::GrantFilter;
use rein_store::INITIAL_VERSION;

use rein_audit::EventType;

use crate::{audit, Error, Registry};

impl Registry {
    fn effective(&self, mut grant: Grant) -> Grant {
        grant.status = grant.status_at(self.now());
        grant
    }

    async fn load_grant(&self, id: &GrantId) -> Result<Grant, Error> {
        Ok(self
            .store
            .grant(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "grant",
                key: id.to_string(),
            })?
            .value)
    }

    async fn system_approvers(
        &self,
        grant: &Grant,
    ) -> Result<Vec<rein_core::id::PrincipalRef>, Error> {
        Ok(self
            .store
            .system(&grant.system)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "system",
                key: grant.system.to_string(),
            })?
            .value
            .approvers)
    }

    /// Requests a grant for an agent (members of the agent's team).
    pub async fn request_grant(&self, actor: &Actor, req: GrantRequest) -> Result<Grant, Error> {
        actor.require_team_member(req.agent.team(), "request grants for its agents")?;
        let agent = self
            .store
            .agent(&req.agent)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "agent",
                key: req.agent.to_string(),
            })?
            .value;
        let system = self
            .store
            .system(&req.system)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "system",
                key: req.system.to_string(),
            })?
            .value;
        let production = self.is_production(&system.environment);
        let id = GrantId::from_bytes(*uuid::Uuid::now_v7().as_bytes());
        let grant = Grant::request(
            id,
            req,
            &agent,
            &system,
            production,
            &actor.user,
            self.now(),
        )?;
        let event = audit::grant_event(EventType::GrantRequested, actor, &grant, None);
        self.create(
            "grant",
            grant.id.as_str(),
            event,
            self.store.insert_grant(&grant),
        )
        .await?;
        self.grant_written(&grant, INITIAL_VERSION);
        Ok(grant)
    }

    /// Reads a grant, with its effective status.
    pub async fn grant(&self, _actor: &Actor, id: &GrantId) -> Result<Grant, Error> {
        Ok(self.effective(self.load_grant(id).await?))
    }

    /// Lists grants, with their effective status; a status filter applies to the effective one.
    pub async fn grants(&self, _actor: &Actor, filter: &GrantFilter) -> Result<Vec<Grant>, Error> {
        let wanted = filter.status;
        let stored = GrantFilter {
            status: wanted.filter(|s| *s != GrantStatus::Expired),
            ..filter.clone()
        };
        let grants = self.store.grants(&stored).await?;
        Ok(grants
            .into_iter()
            .map(|g| self.effective(g))
            .filter(|g| wanted.is_none_or(|w| g.status == w))
            .collect())
    }

    /// Approves a grant in the capacity the actor holds; it turns `active` with its last
    /// required approval.
    pub async fn approve_grant(
        &self,
        actor: &Actor,
        id: &GrantId,
        comment: &str,
    ) -> Result<Grant, Error> {
        let approvers = self.system_approvers(&self.load_grant(id).await?).await?;
        let now = self.now();
        let grant = self
            .modify_grant(
                id,
                |g| {
                    g.approve(actor, &approvers, comment, now)?;
                    Ok(())
                },
                |g| audit::grant_event(EventType::GrantApproved, actor, g, None),
            )
            .await?;
        Ok(self.effective(grant))
    }

    /// Denies a pending grant; final.
    pub async fn deny_grant(
        &self,
        actor: &Actor,
        id: &GrantId,
        reason: &str,
    ) -> Result<Grant, Error> {
        let approvers = self.system_approvers(&self.load_grant(id).await?).await?;
        let now = self.now();
        let grant = self
            .modify_grant(
                id,
                |g| Ok(g.deny(actor, &approvers, reason, now)?),
                |g| audit::grant_event(EventType::GrantDenied, actor, g, Some(reason)),
            )
            .await?;
        Ok(self.effective(grant))
    }

    /// Revokes a requested or active grant (the agent's revokers, the system's approvers, or an
    /// admin); final.
    pub async fn revoke_grant(
        &self,
        actor: &Actor,
        id: &GrantId,
        reason: &str,
    ) -> Result<Grant, Error> {
        let grant = self.load_grant(id).await?;
        let agent = self
            .store
            .agent(&grant.agent)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "agent",
                key: grant.agent.to_string(),
            })?
            .value;
        let system = self
            .store
            .system(&grant.system)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "system",
                key: grant.system.to_string(),
            })?
            .value;
        self.revoke_grant_as(&actor.user, id, reason, |g| {
            actor.require_grant_revoker(&agent, &system, &g.revokers)
        })
        .await
    }

    /// Revokes grant `id` as user `by` once `may` allowed it on the grant as it stands: the one
    /// path every revocation of a single grant takes (a revoker's, a reviewer's within an
    /// access review), recorded as `grant.revoked` by `by` and told to the observers, so the
    /// decision point denies at once.
    pub(crate) async fn revoke_grant_as(
        &self,
        by: &rein_core::id::UserName,
        id: &GrantId,
        reason: &str,
        may: impl Fn(&Grant) -> Result<(), rein_core::DomainError>,
    ) -> Result<Grant, Error> {
        let now = self.now();
        let grant = self
            .modify_grant(
                id,
                |g| {
                    may(g)?;
                    Ok(g.revoke(by, reason, now)?)
                },
                |g| audit::grant_event_by_user(EventType::GrantRevoked, by, g, Some(reason)),
            )
            .await?;
        Ok(self.effective(grant))
    }

    /// Records and persists the expiry of every requested or active grant past `expires_at`;
    /// returns how many expired. Run periodically: a grant is already treated as expired at
    /// read and decision time, this makes it visible in the audit log and the store.
    pub async fn expire_grants(&self) -> Result<usize, Error> {
        let now = self.now();
        let store = &self.store;
        let mut expired = 0;
        for status in [GrantStatus::Requested, GrantStatus::Active] {
            let due = store
                .grants(&GrantFilter {
                    status: Some(status),
                    ..GrantFilter::default()
                })
                .await?;
            for g in due.into_iter().filter(|g| g.expires_at <= now) {
                let done = self
                    .modify_grant(
                        &g.id,
                        |g| Ok(g.expire(now)?),
                        |g| {
                            audit::grant_event_by_rein(
                                EventType::GrantExpired,
                                g,
                                Some("reached expires_at"),
                            )
                        },
                    )
                    .await;
                match done {
                    Ok(_) => expired += 1,
                    Err(Error::Domain(_)) => {} // changed meanwhile (revoked, already expired)
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(expired)
    }
}
