//! What is notified, and the two body formats: Rein's own JSON and a Slack incoming webhook.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What happened to a step-up approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// An agent's action needs a human's approval.
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    /// A human approved or denied it.
    #[serde(rename = "approval.decided")]
    ApprovalDecided,
    /// Nobody decided before it expired.
    #[serde(rename = "approval.expired")]
    ApprovalExpired,
}

impl EventKind {
    /// The wire name, e.g. `approval.requested` (also sent in the [`crate::EVENT_HEADER`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApprovalRequested => "approval.requested",
            Self::ApprovalDecided => "approval.decided",
            Self::ApprovalExpired => "approval.expired",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the approval lives in Rein. These are links only: approving or denying happens in
/// Rein's API, authenticated; following a link never decides anything by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// URL of the approval in Rein's API.
    pub approval: String,
    /// URL where an authenticated approver approves it.
    pub approve: String,
    /// URL where an authenticated approver denies it.
    pub deny: String,
}

/// One notification about one approval, the same for every webhook it is sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event id (UUID v7), independent of deliveries: every webhook and every attempt sees the
    /// same one.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The approval's summary as the caller gives it. The Slack format reads `id`, `agent`,
    /// `system`, `action`, `environment`, `risk`, `intent`, `expires_at`, `status` and
    /// `decided_by` when present. It must not carry tokens, keys or raw arguments.
    pub approval: Value,
    /// Links to the approval in Rein.
    pub links: Links,
}

impl Event {
    /// A new event with a fresh UUID v7 id, occurring now.
    pub fn new(kind: EventKind, approval: Value, links: Links) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            occurred_at: Utc::now(),
            approval,
            links,
        }
    }

    /// The approval's id (`approval["id"]`), or an empty string when the summary has none.
    pub fn subject(&self) -> String {
        field(&self.approval, "id").unwrap_or_default()
    }

    /// The request body in `format`.
    pub fn body(&self, format: Format) -> Result<Vec<u8>, serde_json::Error> {
        match format {
            Format::Rein => serde_json::to_vec(self),
            Format::Slack => serde_json::to_vec(&self.slack()),
        }
    }

    /// The Slack incoming-webhook message: a one-line `text` (also the notification text) and
    /// blocks with the summary fields and buttons linking to the approval in Rein.
    fn slack(&self) -> Value {
        let get = |name: &str| field(&self.approval, name).map(|v| escape(&truncate(&v)));
        let title = match (self.kind, get("status")) {
            (EventKind::ApprovalRequested, _) => "Approval requested".to_owned(),
            (EventKind::ApprovalDecided, Some(status)) => format!("Approval {status}"),
            (EventKind::ApprovalDecided, None) => "Approval decided".to_owned(),
            (EventKind::ApprovalExpired, _) => "Approval expired".to_owned(),
        };
        let mut text = format!("Rein: {title}");
        let parts: Vec<String> = [
            ("agent", "agent "),
            ("action", "wants "),
            ("system", "on "),
            ("environment", "in "),
        ]
        .iter()
        .filter_map(|(name, prefix)| get(name).map(|v| format!("{prefix}{v}")))
        .collect();
        if !parts.is_empty() {
            text = format!("{text}: {}", parts.join(" "));
        }
        let fields: Vec<Value> = [
            ("agent", "Agent"),
            ("system", "System"),
            ("action", "Action"),
            ("environment", "Environment"),
            ("risk", "Risk"),
            ("intent", "Intent"),
            ("expires_at", "Expires"),
            ("status", "Status"),
            ("decided_by", "Decided by"),
        ]
        .iter()
        .filter_map(|(name, label)| {
            get(name).map(|v| json!({"type": "mrkdwn", "text": format!("*{label}*\n{v}")}))
        })
        .collect();
        let mut blocks = vec![json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*{title}*")},
        })];
        if !fields.is_empty() {
            blocks.push(json!({"type": "section", "fields": fields}));
        }
        let button = |label: &str, url: &str| json!({"type": "button", "text": {"type": "plain_text", "text": label}, "url": url});
        let mut approve = button("Approve in Rein", &self.links.approve);
        approve["style"] = json!("primary");
        let mut deny = button("Deny in Rein", &self.links.deny);
        deny["style"] = json!("danger");
        let mut actions = vec![button("View in Rein", &self.links.approval)];
        if self.kind == EventKind::ApprovalRequested {
            actions.splice(0..0, [approve, deny]);
        }
        blocks.push(json!({"type": "actions", "elements": actions}));
        let mut context = format!("{} · event {}", self.kind, escape(&self.id));
        if let Some(id) = get("id") {
            context = format!("approval {id} · {context}");
        }
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
        json!({"text": text, "blocks": blocks})
    }
}

/// The body format a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The [`Event`] as JSON.
    #[default]
    Rein,
    /// A Slack incoming-webhook message (`text` and `blocks`).
    Slack,
}

/// A summary field rendered as text: strings as they are, numbers and booleans printed, other
/// JSON compact; absent, null and empty values are `None`.
fn field(approval: &Value, name: &str) -> Option<String> {
    match approval.get(name)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Longest value shown in Slack (a field's text is limited to 2000 characters).
const MAX_FIELD_CHARS: usize = 300;

fn truncate(value: &str) -> String {
    match value.char_indices().nth(MAX_FIELD_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

/// Escapes Slack mrkdwn control characters so a value cannot form links or mentions.
fn escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kinds_serialise_as_their_wire_names() {
        for kind in [
            EventKind::ApprovalRequested,
            EventKind::ApprovalDecided,
            EventKind::ApprovalExpired,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.to_string()));
        }
        assert_eq!(serde_json::to_value(Format::Slack).unwrap(), json!("slack"));
    }

    #[test]
    fn slack_decided_omits_missing_fields_and_buttons() {
        let links = Links {
            approval: "https://rein/a/1".into(),
            approve: "https://rein/a/1/approve".into(),
            deny: "https://rein/a/1/deny".into(),
        };
        let approval = json!({"id": "ap-1", "status": "denied", "decided_by": "bob", "risk": 3});
        let event = Event::new(EventKind::ApprovalDecided, approval, links);
        let body: Value = serde_json::from_slice(&event.body(Format::Slack).unwrap()).unwrap();
        assert_eq!(body["text"], "Rein: Approval denied");
        let fields = body["blocks"][1]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0]["text"], "*Risk*\n3");
        let buttons = body["blocks"][2]["elements"].as_array().unwrap();
        assert_eq!(buttons.len(), 1, "no approve/deny once decided");
        assert_eq!(event.subject(), "ap-1");
        assert_eq!(
            truncate(&"é".repeat(400)).chars().count(),
            MAX_FIELD_CHARS + 1
        );
    }
}
