//! What the audit log says about agents' use of their access: the one reading of decisions and
//! token issuances that the posture report and access reviews share.
//!
//! An allowed `decision` record is one use of its action; a `token.issued` record is a use of
//! every action in its scope. Both name the grants that allowed them in `determined_by`, so a use
//! is attributed to the exact grant, not guessed from the actions.

use chrono::{DateTime, Utc};
use rein_audit::{EventType, Record};
use rein_core::id::{ActionName, AgentId, SystemName};
use rein_store::{AuditFilter, AuditStore, StoreError};

/// Audit records read per page.
const PAGE: u32 = 2000;

/// One decision or token issuance about an agent on a system.
#[derive(Debug)]
pub struct Use<'a> {
    /// The record (for its time and any other field a caller reads).
    pub record: &'a Record,
    /// `decision` or `token.issued`.
    pub kind: EventType,
    /// The agent.
    pub agent: AgentId,
    /// The system.
    pub system: SystemName,
    /// What was used: an allowed decision's action, or an issued token's scope; empty for a
    /// decision that did not allow.
    pub actions: Vec<ActionName>,
    /// What determined it: grant IDs (and for decisions policy IDs, rules, approvals).
    pub determined_by: &'a [String],
}

impl Use<'_> {
    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        self.record.time
    }

    /// Whether the grant with ID `grant` allowed it.
    pub fn by_grant(&self, grant: &str) -> bool {
        self.determined_by.iter().any(|d| d == grant)
    }
}

/// Calls `visit` with every decision, then every token issuance, recorded at or after `since`
/// (of `agent` only, when given), in sequence order. Records that name no parseable agent and
/// system are skipped (they are about nothing an agent used).
pub async fn scan(
    store: &dyn AuditStore,
    agent: Option<&AgentId>,
    since: DateTime<Utc>,
    mut visit: impl FnMut(&Use<'_>),
) -> Result<(), StoreError> {
    for kind in [EventType::Decision, EventType::TokenIssued] {
        let filter = AuditFilter {
            event_type: Some(kind),
            agent: agent.map(ToString::to_string),
            since: Some(since),
            ..AuditFilter::default()
        };
        let mut after = None;
        loop {
            let page = store.audit_records(&filter, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            for record in &page {
                if let Some(u) = read(kind, record) {
                    visit(&u);
                }
            }
        }
    }
    Ok(())
}

fn read(kind: EventType, record: &Record) -> Option<Use<'_>> {
    let e = &record.event;
    let agent = e.agent.as_deref()?.parse::<AgentId>().ok()?;
    let system = e.system.as_deref()?.parse::<SystemName>().ok()?;
    let used: Vec<&str> = match kind {
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
    Some(Use {
        record,
        kind,
        agent,
        system,
        actions: used.into_iter().filter_map(|a| a.parse().ok()).collect(),
        determined_by: &e.determined_by,
    })
}
