//! JSON-RPC 2.0 messages as MCP uses them, kept as JSON values so that whatever the gateway
//! does not govern passes through exactly as it came.

use serde_json::{json, Value};

/// Error codes the gateway answers with.
pub(crate) mod code {
    /// The request is not a valid JSON-RPC request.
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    /// The method is not one the gateway forwards.
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid parameters.
    pub(crate) const INVALID_PARAMS: i64 = -32602;
    /// An internal error (the upstream failed, a record could not be written).
    pub(crate) const INTERNAL: i64 = -32603;
    /// The call was refused by policy (deny, or a step-up that was denied or expired).
    pub(crate) const FORBIDDEN: i64 = -32001;
    /// The session ended (revoked, idle, or closed) while the request was in flight.
    pub(crate) const SESSION_CLOSED: i64 = -32002;
}

/// What a message is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A request: it has a method and an ID.
    Request {
        /// Its ID.
        id: Value,
        /// Its method.
        method: String,
    },
    /// A notification: a method and no ID.
    Notification {
        /// Its method.
        method: String,
    },
    /// A response (result or error) to the request with this ID.
    Response {
        /// The ID it answers.
        id: Value,
    },
}

/// Classifies `message`, or `None` if it is not a JSON-RPC 2.0 message.
pub(crate) fn kind(message: &Value) -> Option<Kind> {
    let object = message.as_object()?;
    if object.get("jsonrpc")?.as_str()? != "2.0" {
        return None;
    }
    let id = object
        .get("id")
        .filter(|id| id.is_string() || id.is_number());
    match (object.get("method").and_then(Value::as_str), id) {
        (Some(method), Some(id)) => Some(Kind::Request {
            id: id.clone(),
            method: method.to_owned(),
        }),
        (Some(method), None) if !object.contains_key("id") => Some(Kind::Notification {
            method: method.to_owned(),
        }),
        (None, Some(id)) if object.contains_key("result") || object.contains_key("error") => {
            Some(Kind::Response { id: id.clone() })
        }
        _ => None,
    }
}

/// A key for an ID: IDs `1` and `"1"` are different requests.
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// An error response to request `id`.
pub(crate) fn error(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// A notification.
pub(crate) fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// The request's `params._meta.progressToken`, if it asked for progress.
pub(crate) fn progress_token(request: &Value) -> Option<Value> {
    request
        .pointer("/params/_meta/progressToken")
        .filter(|t| t.is_string() || t.is_number())
        .cloned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn messages_are_classified() {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert_eq!(
            kind(&request),
            Some(Kind::Request {
                id: json!(1),
                method: "tools/list".into()
            })
        );
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(matches!(kind(&note), Some(Kind::Notification { .. })));
        let response = json!({"jsonrpc": "2.0", "id": "a", "result": {}});
        assert_eq!(kind(&response), Some(Kind::Response { id: json!("a") }));
        for bad in [
            json!({"id": 1, "method": "x"}),
            json!({"jsonrpc": "1.0", "id": 1, "method": "x"}),
            json!({"jsonrpc": "2.0", "id": null, "method": "x"}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!([{"jsonrpc": "2.0", "id": 1, "method": "x"}]),
        ] {
            assert_eq!(kind(&bad), None, "{bad}");
        }
        assert_ne!(id_key(&json!(1)), id_key(&json!("1")));
        let r = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "t", "_meta": {"progressToken": "p1"}}});
        assert_eq!(progress_token(&r), Some(json!("p1")));
    }
}
