//! The posture report of the running installation: the registry's agents, systems and grants,
//! their use as the audit log records it, and the guardrails in force, evaluated by
//! `rein-posture`.

use chrono::{DateTime, Duration, Utc};
use rein_audit::EventType;
use rein_core::authz::Actor;
use rein_core::id::{ActionName, AgentId, SystemName};
use rein_posture::{Catalog, GuardrailMode, GuardrailUse, Inventory, PostureConfig, Report};
use rein_store::{AgentFilter, AuditFilter, GrantFilter};

use crate::{Error, Pdp};

/// Audit records read per page while collecting use.
const PAGE: u32 = 2000;

impl Pdp {
    /// Evaluates every agent and system against the posture rules (admins and auditors: the
    /// report reads the audit log). Use is collected from the decisions and token issuances of
    /// the longest window any rule looks at; findings name controls of `catalog`.
    pub async fn posture(
        &self,
        actor: &Actor,
        config: &PostureConfig,
        catalog: &Catalog,
    ) -> Result<Report, Error> {
        actor.require_audit_reader()?;
        let store = self.registry.store();
        let failed = |e: rein_store::StoreError| Error::Registry(e.into());
        let now = self.registry.now();
        let mut inventory = Inventory::new(now);
        inventory.agents = store
            .agents(&AgentFilter::default())
            .await
            .map_err(failed)?;
        inventory.systems = store.systems().await.map_err(failed)?;
        inventory.grants = store
            .grants(&GrantFilter::default())
            .await
            .map_err(failed)?;
        let registry = self.registry.config();
        inventory.production_environments = registry.production_environments.clone();
        inventory.protected_environments = registry.protected_environments.clone();

        let status = self.policy_status();
        let mut guardrails: Vec<GuardrailUse> = status
            .guardrails
            .iter()
            .map(|g| GuardrailUse {
                id: g.id.clone(),
                mode: if g.mode == "shadow" {
                    GuardrailMode::Shadow
                } else {
                    GuardrailMode::Enforce
                },
                loaded_since: status.loaded_at,
                matches: 0,
            })
            .collect();

        let days = [
            config.unused_grant_days,
            config.inactive_agent_days,
            config.never_matched_days,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let since = now - Duration::days(i64::from(days));
        let environments: std::collections::HashMap<SystemName, String> = inventory
            .systems
            .iter()
            .map(|s| (s.name.clone(), s.environment.to_string()))
            .collect();
        for event_type in [EventType::Decision, EventType::TokenIssued] {
            let filter = AuditFilter {
                event_type: Some(event_type),
                since: Some(since),
                ..AuditFilter::default()
            };
            let mut after = None;
            loop {
                let page = store
                    .audit_records(&filter, after, PAGE)
                    .await
                    .map_err(failed)?;
                let Some(last) = page.last() else { break };
                after = Some(last.seq);
                for r in &page {
                    let e = &r.event;
                    let parsed = (
                        e.agent.as_deref().and_then(|a| a.parse::<AgentId>().ok()),
                        e.system
                            .as_deref()
                            .and_then(|s| s.parse::<SystemName>().ok()),
                    );
                    let (Some(agent), Some(system)) = parsed else {
                        continue;
                    };
                    let usage = &mut inventory.usage;
                    usage.record_activity(&agent, r.time);
                    if let Some(env) = environments.get(&system) {
                        usage.record_context(&agent, format!("env:{env}"));
                    }
                    let used: Vec<&str> = match event_type {
                        EventType::Decision if e.decision.as_deref() == Some("allow") => {
                            e.action.as_deref().into_iter().collect()
                        }
                        EventType::TokenIssued => e
                            .details
                            .get("scope")
                            .map(|s| s.split(' ').collect())
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    for action in used.iter().filter_map(|a| a.parse::<ActionName>().ok()) {
                        usage.record_use(&agent, &system, &action, r.time);
                    }
                    if event_type == EventType::Decision {
                        count_matches(&mut guardrails, e, r.time);
                    }
                }
            }
        }
        inventory.guardrails = guardrails;
        Ok(rein_posture::evaluate(&inventory, config, catalog))
    }
}

/// Counts the guardrails a decision names as matching: those that decided it, and shadow ones
/// whose would-be effect it records; only matches since the guardrail was loaded.
fn count_matches(guardrails: &mut [GuardrailUse], e: &rein_audit::Event, at: DateTime<Utc>) {
    let shadow = e.details.get("shadow").map(String::as_str).unwrap_or("");
    for g in guardrails.iter_mut().filter(|g| at >= g.loaded_since) {
        let quoted = format!("\"{}\"", g.id);
        if e.determined_by.contains(&g.id) || shadow.contains(&quoted) {
            g.matches += 1;
        }
    }
}
