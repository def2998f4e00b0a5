//! The request a decision is about, its context, and the canonical form of its arguments.

use chrono::{DateTime, Utc};
use rein_core::id::{ActionName, AgentId, SystemName};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::PolicyError;

/// Longest accepted canonical JSON of a call's arguments, in bytes (64 KiB).
pub const MAX_ARGUMENTS_BYTES: usize = 64 * 1024;

/// Deepest accepted nesting of objects and arrays in a call's arguments; the arguments object
/// itself is depth 1.
pub const MAX_ARGUMENTS_DEPTH: usize = 16;

/// Longest accepted `task_id` and `approval_id`, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Longest accepted `intent`, in bytes.
pub const MAX_INTENT_LEN: usize = 4096;

/// One call to decide on: `agent` calls `action` on `system` at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The calling agent.
    pub agent: AgentId,
    /// The target system.
    pub system: SystemName,
    /// The action (tool) called.
    pub action: ActionName,
    /// What the agent says about the call.
    pub context: RequestContext,
    /// The server's time of the decision; the engine reads no clock.
    pub now: DateTime<Utc>,
}

/// What the agent states about a call. Checked by [`RequestContext::validate`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestContext {
    /// The task the call belongs to, at most [`MAX_ID_LEN`] bytes.
    pub task_id: Option<String>,
    /// The task's stated intent, at most [`MAX_INTENT_LEN`] bytes.
    pub intent: Option<String>,
    /// Caller-assessed risk, 0 to 100.
    pub risk: Option<u8>,
    /// Caller-assessed confidence, 0.0 to 1.0.
    pub confidence: Option<f64>,
    /// The call's arguments: a JSON object, or `null` for none (treated as `{}`).
    pub arguments: Value,
    /// The approval the agent attaches after a `step_up`, at most [`MAX_ID_LEN`] bytes.
    pub approval_id: Option<String>,
}

impl RequestContext {
    /// Checks every field: risk 0–100, confidence a number in 0–1, arguments an object (or
    /// null) whose canonical JSON is at most [`MAX_ARGUMENTS_BYTES`] and nested at most
    /// [`MAX_ARGUMENTS_DEPTH`] deep, ids and intent within their lengths. The HTTP layer calls
    /// it to answer 4xx; [`crate::decide`] calls it again and denies with rule `error`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.canonical_arguments().map(|_| ())
    }

    /// Validates and returns the canonical JSON of the arguments.
    pub(crate) fn canonical_arguments(&self) -> Result<String, PolicyError> {
        if self.risk.is_some_and(|r| r > 100) {
            return Err(PolicyError::context("risk", "must be 0 to 100"));
        }
        if let Some(c) = self.confidence {
            if !(0.0..=1.0).contains(&c) {
                return Err(PolicyError::context("confidence", "must be 0.0 to 1.0"));
            }
        }
        check_len("task_id", self.task_id.as_deref(), MAX_ID_LEN)?;
        check_len("approval_id", self.approval_id.as_deref(), MAX_ID_LEN)?;
        check_len("intent", self.intent.as_deref(), MAX_INTENT_LEN)?;
        match &self.arguments {
            Value::Null => Ok("{}".to_owned()),
            v @ Value::Object(_) => canonical_json(v),
            _ => Err(PolicyError::context("arguments", "must be a JSON object")),
        }
    }

    /// The confidence as a whole percentage, rounded down: `floor(confidence × 100)`, with a
    /// tolerance of 1e-9 so that binary floating point does not turn `0.29` into 28.
    pub fn confidence_pct(&self) -> Option<i64> {
        self.confidence
            .map(|c| ((c * 100.0 + 1e-9).floor() as i64).clamp(0, 100))
    }
}

fn check_len(field: &'static str, value: Option<&str>, max: usize) -> Result<(), PolicyError> {
    match value {
        Some("") => Err(PolicyError::context(field, "must not be empty")),
        Some(v) if v.len() > max => Err(PolicyError::context(
            field,
            format!("must be at most {max} bytes"),
        )),
        _ => Ok(()),
    }
}

/// The canonical JSON text of `value`, the form Rein digests and shows to guardrails:
///
/// - no whitespace anywhere;
/// - object members sorted by key, comparing the keys' UTF-8 bytes (whatever order the input
///   kept: `serde_json`'s `preserve_order` is on in this workspace);
/// - strings escaped as `serde_json` writes them: `"` and `\` backslash-escaped, the control
///   characters U+0000–U+001F as `\b \t \n \f \r` or `\u00xx` (lowercase hex), everything else,
///   `/` and non-ASCII included, written as is (UTF-8);
/// - numbers as `serde_json` writes them: integers in decimal, other numbers in the shortest
///   form that reads back to the same `f64`, exponent signed (`1.5`, `1e+100`);
/// - `true`, `false`, `null`.
///
/// Fails when the text would exceed [`MAX_ARGUMENTS_BYTES`] or nesting [`MAX_ARGUMENTS_DEPTH`].
pub fn canonical_json(value: &Value) -> Result<String, PolicyError> {
    let mut out = String::new();
    write_canonical(value, 1, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, depth: usize, out: &mut String) -> Result<(), PolicyError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out)?,
        Value::Array(items) => {
            check_depth(depth)?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, depth + 1, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            check_depth(depth)?;
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out)?;
                out.push(':');
                write_canonical(item, depth + 1, out)?;
            }
            out.push('}');
        }
    }
    if out.len() > MAX_ARGUMENTS_BYTES {
        return Err(PolicyError::context(
            "arguments",
            format!("canonical JSON must be at most {MAX_ARGUMENTS_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Integers in decimal; any other number through `f64`, so the text does not depend on
/// whether `serde_json`'s `arbitrary_precision` feature is on in the build.
fn write_number(n: &serde_json::Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else {
        let f = n.as_f64().and_then(serde_json::Number::from_f64);
        out.push_str(&f.map_or_else(|| "null".to_owned(), |f| f.to_string()));
    }
}

fn check_depth(depth: usize) -> Result<(), PolicyError> {
    if depth > MAX_ARGUMENTS_DEPTH {
        Err(PolicyError::context(
            "arguments",
            format!("must be nested at most {MAX_ARGUMENTS_DEPTH} levels deep"),
        ))
    } else {
        Ok(())
    }
}

fn write_string(s: &str, out: &mut String) -> Result<(), PolicyError> {
    let quoted =
        serde_json::to_string(s).map_err(|e| PolicyError::context("arguments", e.to_string()))?;
    out.push_str(&quoted);
    Ok(())
}

/// SHA-256 of `text`, lowercase hex.
pub(crate) fn sha256_hex(text: &[u8]) -> String {
    hex::encode(Sha256::digest(text))
}

/// The argument digest of a context: SHA-256 hex of [`canonical_json`] of its arguments (`{}`
/// for `null`). An approval is bound to this digest.
pub fn argument_digest(context: &RequestContext) -> Result<String, PolicyError> {
    context
        .canonical_arguments()
        .map(|text| sha256_hex(text.as_bytes()))
}
