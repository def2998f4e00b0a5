//! The posture report of the running installation: the registry's agents, systems and grants,
//! their use as the audit log records it (read by `rein_registry::usage`, which access reviews
//! share), and the guardrails in force, evaluated by
//! `rein-posture`.

use chrono::{DateTime, Duration, Utc};
use rein_audit::EventType;
use rein_core::authz::Actor;
use rein_core::id::SystemName;
use rein_posture::{Catalog, GuardrailMode, GuardrailUse, Inventory, PostureConfig, Report};
use rein_store::{AgentFilter, GrantFilter};

use crate::{Error, Pdp};

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
        let usage = &mut inventory.usage;
        rein_registry::usage::scan(&**store, None, since, |u| {
            usage.record_activity(&u.agent, u.at());
            if let Some(env) = environments.get(&u.system) {
                usage.record_context(&u.agent, format!("env:{env}"));
            }
            for action in &u.actions {
                usage.record_use(&u.agent, &u.system, action, u.at());
            }
            if u.kind == EventType::Decision {
                count_matches(&mut guardrails, &u.record.event, u.at());
            }
        })
        .await
        .map_err(failed)?;
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
