//! Step-up at decision time: an attached approval is checked and used; a `step_up` without one
//! opens (or joins) an approval request; agents and users wait for a decision without polling;
//! webhooks announce requests, decisions and expiries.

use std::sync::Arc;
use std::time::Duration;

use rein_core::approval::{redact_preview, ApprovalRequest, ApprovalStatus, StepUpCall};
use rein_policy::{ApprovalEvidence, Decision, Outcome, Request};
use rein_registry::Observer;
use rein_store::Version;
use serde::{Deserialize, Serialize};

use crate::{Error, Lookup, Pdp};

/// Longest wait for a decision in one call, in seconds.
pub const MAX_WAIT_SECS: u64 = 120;

/// The approval request a `step_up` decision opened or joined, or the one a decision used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRef {
    /// Its ID: wait on `GET /v1/approvals/{id}/wait`, then attach it as
    /// `context.approval_id` to the same call.
    pub id: String,
    /// Its status when the decision was made.
    #[schema(value_type = String, example = "pending")]
    pub status: ApprovalStatus,
    /// Until when it may be decided and used.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Who approved it (for a decision that used it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
}

impl ApprovalRef {
    fn of(a: &ApprovalRequest) -> Self {
        Self {
            id: a.id.clone(),
            status: a.status,
            expires_at: a.expires_at,
            approvers: a
                .approvers_so_far()
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}

impl Pdp {
    /// What the approval attached to `request` is worth: valid for it (approved, bound to this
    /// exact call, unexpired, a use left) or nothing. A store failure counts as nothing (the
    /// call then needs a step-up, never an allow).
    pub(crate) async fn approval_evidence(&self, request: &Request) -> ApprovalEvidence {
        let Some(id) = &request.context.approval_id else {
            return ApprovalEvidence::None;
        };
        let Ok(digest) = rein_policy::argument_digest(&request.context) else {
            return ApprovalEvidence::None;
        };
        match self.registry.approval_record(id).await {
            Ok(a)
                if a.unusable_for(
                    &request.agent,
                    &request.system,
                    &request.action,
                    &digest,
                    request.now,
                )
                .is_none() =>
            {
                ApprovalEvidence::ValidFor {
                    approval_id: a.id.clone(),
                    approvers: a
                        .approvers_so_far()
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                }
            }
            Ok(_) => ApprovalEvidence::None,
            Err(e) => {
                tracing::warn!(approval = %id, error = %e, "an attached approval could not be read");
                ApprovalEvidence::None
            }
        }
    }

    /// After the engine decided: uses the approval an `allow` relied on, or opens the request a
    /// `step_up` asks for. Either failing turns the decision into a deny (fail closed).
    pub(crate) async fn settle_approval(
        &self,
        by: &rein_audit::Actor,
        decision_id: &str,
        request: &Request,
        lookup: &Lookup,
        decision: &mut Decision,
    ) -> Option<ApprovalRef> {
        let used = request.context.approval_id.as_ref().filter(|id| {
            decision.outcome == Outcome::Allow
                && decision
                    .determined_by
                    .iter()
                    .any(|d| d.strip_prefix("approval:") == Some(id))
        });
        if decision.outcome != Outcome::StepUp && used.is_none() {
            return None;
        }
        let call = self.step_up_call(by, decision_id, request, lookup, decision);
        let settled = match used {
            Some(id) => self.registry.use_approval(id, decision_id, &call).await,
            None => self.registry.request_step_up(call).await.map(|(a, _)| a),
        };
        match settled {
            Ok(a) => Some(ApprovalRef::of(&a)),
            Err(e) => {
                let what = if used.is_some() { "used" } else { "requested" };
                tracing::warn!(decision_id, error = %e, "approval could not be {what}; denied");
                decision.outcome = Outcome::Deny;
                decision.rule = rein_policy::Rule::Error;
                decision.determined_by = vec!["rule:error".into()];
                decision.reason = format!("the approval could not be {what}: {e}");
                decision.step_up = None;
                None
            }
        }
    }

    fn step_up_call(
        &self,
        by: &rein_audit::Actor,
        decision_id: &str,
        request: &Request,
        lookup: &Lookup,
        decision: &Decision,
    ) -> StepUpCall {
        let system = lookup.system.as_deref();
        let production = system.is_some_and(|s| {
            self.registry
                .config()
                .production_environments
                .contains(&s.environment)
        });
        let mutating = system
            .and_then(|s| s.class_of(&request.action).ok())
            .is_none_or(|c| c.is_mutating());
        let step_up = decision.step_up.as_ref();
        StepUpCall {
            agent: request.agent.clone(),
            system: request.system.clone(),
            action: request.action.clone(),
            mutating,
            production,
            argument_digest: decision.argument_digest.clone(),
            arguments_preview: redact_preview(&request.context.arguments),
            task_id: request.context.task_id.clone(),
            intent: request.context.intent.clone(),
            risk: request.context.risk,
            confidence: request.context.confidence,
            policies: step_up.map(|s| s.policies.clone()).unwrap_or_default(),
            policy_version: decision.policy_version.clone(),
            approvers_required: step_up.map_or(1, |s| s.approvers_required),
            decision_id: decision_id.to_owned(),
            requested_by: match by.kind {
                rein_audit::ActorKind::User => format!("user:{}", by.id),
                _ => by.id.clone(),
            },
        }
    }

    /// Waits up to `timeout` for request `id` to leave `pending` (decided or expired), woken
    /// by each write this node applies (its own, or another replica's announcement); returns
    /// it as it then stands. `read` reads it with the caller's rights.
    pub async fn wait_approval<F, Fut, E>(
        &self,
        timeout: Duration,
        read: F,
    ) -> Result<ApprovalRequest, E>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<ApprovalRequest, E>>,
        E: From<Error>,
    {
        if timeout > Duration::from_secs(MAX_WAIT_SECS) {
            return Err(Error::invalid(
                "timeout",
                format!("must be at most {MAX_WAIT_SECS} seconds"),
            )
            .into());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.facts.watch();
        loop {
            changed.borrow_and_update();
            let a = read().await?;
            let now = self.registry.now();
            if a.status_at(now) != ApprovalStatus::Pending {
                return Ok(a);
            }
            // Wake at the deadline, at a change, or when it expires.
            let until_expiry = (a.expires_at - now).to_std().unwrap_or_default();
            let wake = deadline.min(tokio::time::Instant::now() + until_expiry);
            if tokio::time::Instant::now() >= deadline {
                return Ok(a);
            }
            let _ = tokio::time::timeout_at(wake, changed.changed()).await;
        }
    }
}

/// Sends webhook notifications about approval requests: opened, decided (approved or
/// denied), expired. A registry [`Observer`]; delivery runs in the background and never blocks
/// or changes a decision.
pub struct Notifier {
    dispatcher: rein_notify::Dispatcher,
    webhooks: Vec<rein_notify::Webhook>,
    base_url: String,
}

impl Notifier {
    /// Notifies `webhooks`, linking to Rein at `base_url`, recording deliveries in `store`.
    pub fn new(
        webhooks: Vec<rein_notify::Webhook>,
        base_url: &str,
        store: Arc<dyn rein_store::Store>,
        retry: rein_notify::RetryPolicy,
    ) -> Result<Self, Error> {
        let dispatcher = rein_notify::Dispatcher::new(retry, Arc::new(StoreDeliveryLog(store)))
            .map_err(|e| Error::invalid("webhooks", e.to_string()))?;
        Ok(Self {
            dispatcher,
            webhooks,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The event to send for `a` having just been written at `version`, if any.
    fn event_for(&self, a: &ApprovalRequest, version: Version) -> Option<rein_notify::Event> {
        use rein_notify::EventKind;
        let kind = match a.status {
            ApprovalStatus::Pending if version == rein_store::INITIAL_VERSION => {
                EventKind::ApprovalRequested
            }
            ApprovalStatus::Approved if a.used_by.is_empty() => EventKind::ApprovalDecided,
            ApprovalStatus::Denied => EventKind::ApprovalDecided,
            ApprovalStatus::Expired => EventKind::ApprovalExpired,
            _ => return None,
        };
        let mut summary = serde_json::to_value(a).ok()?;
        if let Some(map) = summary.as_object_mut() {
            map.insert("environment".into(), a.agent.environment().as_str().into());
            let deciders: Vec<String> = a.votes.iter().map(|v| v.by.to_string()).collect();
            if !deciders.is_empty() {
                map.insert("decided_by".into(), deciders.join(", ").into());
            }
        }
        let base = format!("{}/v1/approvals/{}", self.base_url, a.id);
        Some(rein_notify::Event::new(
            kind,
            summary,
            rein_notify::Links {
                approval: base.clone(),
                approve: format!("{base}/approve"),
                deny: format!("{base}/deny"),
            },
        ))
    }
}

impl Observer for Notifier {
    fn agent_written(&self, _: &rein_core::agent::Agent, _: Version) {}
    fn system_written(&self, _: &rein_core::system::System, _: Version) {}
    fn grant_written(&self, _: &rein_core::grant::Grant, _: Version) {}
    fn revocation_written(&self, _: &rein_core::revocation::Revocation, _: Version) {}

    fn approval_written(&self, approval: &ApprovalRequest, version: Version) {
        if let Some(event) = self.event_for(approval, version) {
            self.dispatcher.notify(&self.webhooks, &event);
        }
    }
}

/// Keeps webhook deliveries in the store, so their state shows in the API on every replica.
struct StoreDeliveryLog(Arc<dyn rein_store::Store>);

#[async_trait::async_trait]
impl rein_notify::DeliveryLog for StoreDeliveryLog {
    async fn record(
        &self,
        delivery: &rein_notify::Delivery,
    ) -> Result<(), rein_notify::DeliveryLogError> {
        let doc = serde_json::to_string(delivery)
            .map_err(|e| rein_notify::DeliveryLogError::Backend(Box::new(e)))?;
        self.0
            .record_delivery(&delivery.id, &delivery.subject, &doc, delivery.updated_at)
            .await
            .map_err(|e| rein_notify::DeliveryLogError::Backend(Box::new(e)))
    }
}
