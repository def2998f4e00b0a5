//! Step-up approval requests: opened by the decision point when a guardrail asks for a human,
//! decided by the people the request names, used by the decision that carries them, expired by
//! the sweep. Every change is recorded write-ahead like any other, and told to the observers
//! (waiters, notifications) and to other replicas.

use rein_audit::{Event, EventType};
use rein_core::approval::{binding_key, ApprovalRequest, ApprovalStatus, StepUpCall};
use rein_core::authz::Actor;
use rein_core::user::Role;
use rein_core::DomainError;
use rein_store::{StoreError, Versioned, INITIAL_VERSION};

use crate::{actor, audit, Error, Registry};

/// The decision on a request, as an approver gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Approve, covering this many calls.
    Approve {
        /// Calls it covers (1 to [`rein_core::approval::MAX_USES`]).
        uses: u32,
    },
    /// Deny; final.
    Deny,
}

impl Registry {
    /// Opens the approval request for `call`, or returns the pending one for the same call
    /// (agent, system, action, arguments) with `false`: identical requests are one request.
    pub async fn request_step_up(
        &self,
        call: StepUpCall,
    ) -> Result<(ApprovalRequest, bool), Error> {
        let now = self.now();
        let binding = binding_key(
            &call.agent,
            &call.system,
            &call.action,
            &call.argument_digest,
        );
        let system = self
            .store
            .system(&call.system)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "system",
                key: call.system.to_string(),
            })?
            .value;
        let agent = self.load_agent(&call.agent).await?;
        // Two attempts: a pending request past its expiry is closed first; a request another
        // caller opened meanwhile is joined.
        for _ in 0..2 {
            if let Some(pending) = self.store.pending_approval(&binding).await? {
                if pending.value.status_at(now) == ApprovalStatus::Pending {
                    return Ok((pending.value, false));
                }
                self.expire_approval(&pending.value.id).await?;
            }
            let opened = ApprovalRequest::open(
                *uuid::Uuid::now_v7().as_bytes(),
                call.clone(),
                system.approvers.clone(),
                agent.roles.business_owner.clone(),
                self.config.approval_ttl_secs,
                now,
            )?;
            let event = requested_event(&opened);
            match self
                .create(
                    "approval",
                    &opened.id,
                    event,
                    self.store.insert_approval(&opened),
                )
                .await
            {
                Ok(()) => {
                    self.approval_written(&opened, INITIAL_VERSION);
                    return Ok((opened, true));
                }
                Err(Error::Store(StoreError::AlreadyExists { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::Store(StoreError::Conflict {
            kind: "approval request",
            key: binding,
        }))
    }

    /// Approves or denies request `id` as `actor`, with a comment.
    pub async fn decide_approval(
        &self,
        actor: &Actor,
        id: &str,
        verdict: Verdict,
        comment: &str,
    ) -> Result<ApprovalRequest, Error> {
        let now = self.now();
        let admins = self.config.admins_may_approve;
        self.modify_approval(
            id,
            |a| {
                match verdict {
                    Verdict::Approve { uses } => a.approve(actor, admins, comment, uses, now)?,
                    Verdict::Deny => a.deny(actor, admins, comment, now)?,
                }
                Ok(())
            },
            |a| decided_event(actor, a, comment),
        )
        .await
    }

    /// Uses request `id` for decision `decision_id` of `call`: it must be approved, bound to
    /// exactly this call, unexpired and have a use left. Refused with the reason otherwise.
    pub async fn use_approval(
        &self,
        id: &str,
        decision_id: &str,
        call: &StepUpCall,
    ) -> Result<ApprovalRequest, Error> {
        let now = self.now();
        self.modify_approval(
            id,
            |a| {
                if let Some(why) = a.unusable_for(
                    &call.agent,
                    &call.system,
                    &call.action,
                    &call.argument_digest,
                    now,
                ) {
                    return Err(DomainError::forbidden(why).into());
                }
                a.consume(decision_id, now)?;
                Ok(())
            },
            |a| {
                let mut e = approval_event(EventType::ApprovalUsed, actor::rein(), a);
                e.details
                    .insert("decision_id".into(), decision_id.to_owned());
                e.details.insert("uses".into(), a.used_by.len().to_string());
                e
            },
        )
        .await
    }

    /// Request `id` with its effective status, whoever asks (the decision point checking an
    /// attached approval).
    pub async fn approval_record(&self, id: &str) -> Result<ApprovalRequest, Error> {
        Ok(self.effective_approval(self.load_approval(id).await?.value))
    }

    /// `a` as it stands now: pending or approved past its expiry reads `expired` (the sweep
    /// records it later).
    fn effective_approval(&self, mut a: ApprovalRequest) -> ApprovalRequest {
        a.status = a.status_at(self.now());
        a
    }

    /// Request `id`, for those who may see it: the people who may decide it, admins and
    /// auditors, and the user whose call asked for it.
    pub async fn approval(&self, actor: &Actor, id: &str) -> Result<ApprovalRequest, Error> {
        let a = self.effective_approval(self.load_approval(id).await?.value);
        let asked = a.requested_by == format!("user:{}", actor.user);
        if asked
            || may_see_all(actor)
            || a.may_decide(actor, self.config.admins_may_approve).is_ok()
        {
            return Ok(a);
        }
        Err(DomainError::forbidden("only its approvers, the user who asked, admins and auditors may read an approval request").into())
    }

    /// The requests with `status` (effective status: a pending one past its expiry is
    /// `expired`) that `actor` may decide; admins and auditors see all.
    pub async fn approvals(
        &self,
        actor: &Actor,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<ApprovalRequest>, Error> {
        let now = self.now();
        // Expired ones may still be stored as pending or approved.
        let stored = match status {
            Some(ApprovalStatus::Expired) | None => self.store.approvals(None).await?,
            Some(s) => self.store.approvals(Some(s)).await?,
        };
        let admins = self.config.admins_may_approve;
        Ok(stored
            .into_iter()
            .map(|a| self.effective_approval(a))
            .filter(|a| status.is_none_or(|s| a.status_at(now) == s))
            .filter(|a| may_see_all(actor) || a.may_decide(actor, admins).is_ok())
            .collect())
    }

    /// Records the expiry of every request past its expiry and not final; returns them.
    pub async fn expire_approvals(&self) -> Result<Vec<ApprovalRequest>, Error> {
        let now = self.now();
        let mut expired = Vec::new();
        for status in [ApprovalStatus::Pending, ApprovalStatus::Approved] {
            for a in self.store.approvals(Some(status)).await? {
                if a.status_at(now) == ApprovalStatus::Expired {
                    if let Some(a) = self.expire_approval(&a.id).await? {
                        expired.push(a);
                    }
                }
            }
        }
        Ok(expired)
    }

    /// Records request `id`'s expiry if it is due; `None` when it was not (any more).
    async fn expire_approval(&self, id: &str) -> Result<Option<ApprovalRequest>, Error> {
        let now = self.now();
        let current = self.load_approval(id).await?.value;
        if current.status_at(now) != ApprovalStatus::Expired || current.status.is_final() {
            return Ok(None);
        }
        let written = self
            .modify_approval(
                id,
                |a| {
                    if a.expire(now) {
                        Ok(())
                    } else {
                        Err(DomainError::InvalidTransition {
                            entity: "approval request",
                            transition: "expire",
                            state: a.status.as_str().to_owned(),
                        }
                        .into())
                    }
                },
                |a| approval_event(EventType::ApprovalExpired, actor::rein(), a),
            )
            .await;
        match written {
            Ok(a) => Ok(Some(a)),
            // Decided or expired by someone else meanwhile.
            Err(Error::Domain(DomainError::InvalidTransition { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The compare-and-swap loop on request `id`, then the observers.
    async fn modify_approval<Change, Describe>(
        &self,
        id: &str,
        change: Change,
        describe: Describe,
    ) -> Result<ApprovalRequest, Error>
    where
        Change: FnMut(&mut ApprovalRequest) -> Result<(), Error>,
        Describe: Fn(&ApprovalRequest) -> Event,
    {
        let store = &self.store;
        let written = self
            .modify(
                "approval",
                id,
                || store.approval(id),
                |a, v| async move { store.update_approval(&a, v).await },
                change,
                describe,
            )
            .await?;
        self.approval_written(&written.value, written.version);
        Ok(written.value)
    }

    async fn load_approval(&self, id: &str) -> Result<Versioned<ApprovalRequest>, Error> {
        self.store
            .approval(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "approval request",
                key: id.to_owned(),
            })
    }
}

fn may_see_all(actor: &Actor) -> bool {
    matches!(actor.role, Role::Admin | Role::Auditor)
}

/// An approval event with the call it is about and the people who may decide it.
fn approval_event(event_type: EventType, by: rein_audit::Actor, a: &ApprovalRequest) -> Event {
    let mut e = Event::new(event_type, by, "success");
    e.subject = Some(a.id.clone());
    e.agent = Some(a.agent.to_string());
    e.system = Some(a.system.to_string());
    e.action = Some(a.action.to_string());
    e.task_id = a.task_id.clone();
    e.argument_digest = Some(a.argument_digest.clone());
    e.policy_version = Some(a.policy_version.clone());
    e.determined_by = a.policies.clone();
    e.approvers = a
        .approvers_so_far()
        .iter()
        .map(ToString::to_string)
        .collect();
    e.details
        .insert("status".into(), a.status.as_str().to_owned());
    e.details
        .insert("decision_id".into(), a.decision_id.clone());
    e
}

fn requested_event(a: &ApprovalRequest) -> Event {
    let mut e = approval_event(EventType::ApprovalRequested, actor::rein(), a);
    let mut deciders: Vec<String> = a.approvers.iter().map(ToString::to_string).collect();
    if let Some(owner) = &a.business_owner {
        deciders.push(format!("user:{owner}"));
    }
    e.details.insert("may_decide".into(), deciders.join(" "));
    e.details
        .insert("requested_by".into(), a.requested_by.clone());
    e.details
        .insert("expires_at".into(), a.expires_at.to_rfc3339());
    e.details.insert(
        "approvers_required".into(),
        a.approvers_required.to_string(),
    );
    e
}

fn decided_event(actor: &Actor, a: &ApprovalRequest, comment: &str) -> Event {
    let event_type = if a.status == ApprovalStatus::Denied {
        EventType::ApprovalDenied
    } else {
        EventType::ApprovalGranted
    };
    let mut e = approval_event(event_type, audit::user(actor), a);
    if a.status == ApprovalStatus::Denied {
        e.reason = Some(comment.to_owned());
    } else {
        e.details
            .insert("uses_allowed".into(), a.uses_allowed.to_string());
    }
    e
}
