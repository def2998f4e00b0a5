//! Export of records as OCSF 1.8.0 events for SIEMs.
//!
//! Class choices (OCSF has no "token issued" class; see `shared/STANDARDS.md` §6):
//! - decisions, gateway calls and step-up approvals → API Activity (6003), with the decision in
//!   the Security Control profile (`action_id`, `disposition_id`; step-up as 23 Challenge);
//! - token issuance and refusals → Authentication (3002), activity 4 Service Ticket Request, the
//!   agent as a `user` of type 4 Service;
//! - grants and revocations → User Access Management (3005), activity 1 Assign / 2 Revoke
//!   Privileges; access review campaigns and decisions → the same class, activity 99 Other;
//! - agent lifecycle (including a completed review) and API tokens → Account Change (3001);
//! - users, teams, systems, policy sets and secrets → Entity Management (3004).
//!
//! Every event keeps the chain fields (`seq`, `hash`, `prev_hash`) in `unmapped` and the record
//! sequence in `metadata.sequence`, so a SIEM copy can be reconciled with the chain.

use serde_json::{json, Map, Value};

use crate::record::{EventType, Record};

/// OCSF schema version the export targets.
pub const OCSF_VERSION: &str = "1.8.0";

struct Class {
    category_uid: u32,
    class_uid: u32,
    activity_id: u32,
}

fn class_of(t: EventType) -> Class {
    use EventType::*;
    let (category_uid, class_uid, activity_id) = match t {
        Decision | GatewayCall => (6, 6003, 99),
        ApprovalRequested | ApprovalGranted | ApprovalDenied | ApprovalExpired | ApprovalUsed => {
            (6, 6003, 99)
        }
        TokenIssued | TokenRefused => (3, 3002, 4),
        GrantRequested | GrantDenied => (3, 3005, 99),
        GrantApproved => (3, 3005, 1),
        GrantRevoked | GrantExpired | Revocation => (3, 3005, 2),
        AgentCreated => (3, 3001, 1),
        AgentResumed => (3, 3001, 2),
        AgentSuspended => (3, 3001, 5),
        AgentRetired => (3, 3001, 6),
        AgentUpdated | AgentKeyAdded | AgentKeyRemoved | AgentReviewed | ApiTokenIssued
        | ApiTokenRevoked => (3, 3001, 99),
        ReviewOpened | ReviewDecided | ReviewClosed => (3, 3005, 99),
        UserCreated | TeamCreated | SystemCreated => (3, 3004, 1),
        UserUpdated | TeamUpdated | SystemUpdated | PolicySetLoaded | KeyRotated
        | GovernanceApplied | SecretSet => (3, 3004, 3),
        SecretDeleted => (3, 3004, 4),
    };
    Class {
        category_uid,
        class_uid,
        activity_id,
    }
}

/// Security Control profile `(action_id, disposition_id)` for a decision outcome.
fn security_control(r: &Record) -> Option<(u32, u32)> {
    match r.event.event_type {
        EventType::ApprovalGranted => return Some((1, 8)),
        EventType::ApprovalDenied => return Some((2, 25)),
        EventType::ApprovalExpired => return Some((2, 25)),
        EventType::ApprovalRequested => return Some((3, 14)),
        _ => {}
    }
    match r.event.decision.as_deref()? {
        "allow" => Some((1, 1)),
        "deny" => Some((2, 2)),
        "step_up" => Some((3, 23)),
        _ => Some((0, 0)),
    }
}

fn failed(outcome: &str) -> bool {
    !matches!(outcome, "success" | "allowed" | "allow")
}

/// Maps one record to an OCSF event object.
pub fn to_ocsf(r: &Record) -> Value {
    let e = &r.event;
    let c = class_of(e.event_type);
    let failure = failed(&e.outcome);
    let mut o = Map::new();
    o.insert("category_uid".into(), json!(c.category_uid));
    o.insert("class_uid".into(), json!(c.class_uid));
    o.insert("activity_id".into(), json!(c.activity_id));
    o.insert("type_uid".into(), json!(c.class_uid * 100 + c.activity_id));
    o.insert("severity_id".into(), json!(if failure { 3 } else { 1 }));
    o.insert("status_id".into(), json!(if failure { 2 } else { 1 }));
    o.insert("status".into(), json!(e.outcome));
    o.insert("time".into(), json!(r.time.timestamp_millis()));
    o.insert(
        "message".into(),
        json!(e
            .reason
            .clone()
            .unwrap_or_else(|| e.event_type.as_str().to_owned())),
    );
    o.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "product": {"name": "Rein", "vendor_name": "Rein", "version": env!("CARGO_PKG_VERSION")},
            "log_name": "audit",
            "event_code": e.event_type.as_str(),
            "sequence": r.seq,
            "uid": r.hash.to_hex(),
        }),
    );
    let actor_type = match e.actor.kind {
        crate::record::ActorKind::User => 1,
        crate::record::ActorKind::Agent => 4,
        crate::record::ActorKind::Rein => 3,
    };
    let actor_user = json!({"uid": e.actor.id, "name": e.actor.id, "type_id": actor_type});
    o.insert("actor".into(), json!({"user": actor_user}));
    match c.class_uid {
        6003 => {
            let mut api = json!({"operation": e.action.clone().unwrap_or_else(|| e.event_type.as_str().to_owned())});
            if let Some(s) = &e.system {
                api["service"] = json!({"name": s});
            }
            o.insert("api".into(), api);
            o.insert(
                "src_endpoint".into(),
                json!({"svc_name": e.agent.clone().unwrap_or_else(|| e.actor.id.clone())}),
            );
            if let Some(s) = &e.system {
                o.insert("dst_endpoint".into(), json!({"svc_name": s}));
            }
        }
        3002 | 3001 | 3005 => {
            let subject = e
                .agent
                .clone()
                .or_else(|| e.subject.clone())
                .unwrap_or_else(|| e.actor.id.clone());
            let type_id = if subject.starts_with("spiffe://") {
                4
            } else {
                1
            };
            o.insert(
                "user".into(),
                json!({"uid": subject, "name": subject, "type_id": type_id}),
            );
            if c.class_uid == 3005 {
                let privileges: Vec<String> = match (&e.system, &e.action) {
                    (Some(s), Some(a)) => vec![format!("{s}:{a}")],
                    (Some(s), None) => vec![s.clone()],
                    _ => vec![e.subject.clone().unwrap_or_default()],
                };
                o.insert("privileges".into(), json!(privileges));
            }
            if c.class_uid == 3002 {
                if let Some(s) = &e.system {
                    o.insert("service".into(), json!({"name": s}));
                }
            }
        }
        _ => {
            o.insert(
                "entity".into(),
                json!({"uid": e.subject.clone().unwrap_or_default(), "type": e.event_type.as_str().split('.').next().unwrap_or_default()}),
            );
        }
    }
    if let Some((action_id, disposition_id)) = security_control(r) {
        o.insert("action_id".into(), json!(action_id));
        o.insert("disposition_id".into(), json!(disposition_id));
        if let Some(v) = &e.policy_version {
            let policies: Vec<Value> = e
                .determined_by
                .iter()
                .map(|d| json!({"uid": d, "version": v}))
                .collect();
            o.insert(
                "policy".into(),
                json!({"uid": v, "name": "rein guardrails", "version": v}),
            );
            o.insert(
                "authorizations".into(),
                json!([{"decision": e.decision, "policy": policies.first()}]),
            );
        }
    }
    let mut unmapped = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut unmapped {
        m.insert("seq".into(), json!(r.seq));
        m.insert("hash".into(), json!(r.hash.to_hex()));
        m.insert("prev_hash".into(), json!(r.prev_hash.to_hex()));
    }
    o.insert("unmapped".into(), unmapped);
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Actor, ActorKind, Event, Hash};

    #[test]
    fn every_event_type_maps_to_a_class_with_consistent_type_uid() {
        for t in EventType::ALL {
            let e = Event::new(
                *t,
                Actor {
                    kind: ActorKind::User,
                    id: "alice".into(),
                },
                "success",
            );
            let r = Record::chain(1, chrono::Utc::now(), Hash::GENESIS, e);
            let v = to_ocsf(&r);
            let class = v["class_uid"].as_u64().unwrap_or_default();
            let activity = v["activity_id"].as_u64().unwrap_or_default();
            assert_eq!(
                v["type_uid"].as_u64(),
                Some(class * 100 + activity),
                "{t:?}"
            );
            assert_eq!(v["category_uid"].as_u64(), Some(class / 1000), "{t:?}");
            assert_eq!(v["metadata"]["version"], OCSF_VERSION);
            assert!(v["metadata"]["product"]["name"].is_string());
            match class {
                6003 => assert!(v["api"]["operation"].is_string() && v["src_endpoint"].is_object()),
                3001 | 3002 => assert!(v["user"].is_object()),
                3005 => assert!(v["user"].is_object() && v["privileges"].is_array()),
                3004 => assert!(v["entity"].is_object()),
                other => unreachable!("unexpected class {other}"),
            }
        }
    }

    #[test]
    fn step_up_is_a_challenge_and_deny_is_blocked() {
        let mut e = Event::new(
            EventType::Decision,
            Actor {
                kind: ActorKind::Agent,
                id: "spiffe://x/agent/a/b/prod".into(),
            },
            "denied",
        );
        e.decision = Some("step_up".into());
        let v = to_ocsf(&Record::chain(
            1,
            chrono::Utc::now(),
            Hash::GENESIS,
            e.clone(),
        ));
        assert_eq!(
            (v["action_id"].as_u64(), v["disposition_id"].as_u64()),
            (Some(3), Some(23))
        );
        e.decision = Some("deny".into());
        let v = to_ocsf(&Record::chain(1, chrono::Utc::now(), Hash::GENESIS, e));
        assert_eq!(
            (v["action_id"].as_u64(), v["disposition_id"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(v["actor"]["user"]["type_id"].as_u64(), Some(4));
    }
}
