//! Human output: a compact table for lists, a `key: value` listing for single records. Both are
//! rendered from the API's JSON, so they show exactly what the server answered.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// How client commands print responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table for lists, `key: value` lines for one record.
    Table,
    /// The API response body as-is, for scripts.
    Json,
}

/// One table column: a header and how to compute a cell from a row.
pub struct Column {
    header: &'static str,
    cell: Box<dyn Fn(&Value) -> String>,
}

/// A column showing the field at a dotted `path` of each row.
pub fn col(header: &'static str, path: &'static str) -> Column {
    Column {
        header,
        cell: Box::new(move |row| lookup(row, path).map(text).unwrap_or_default()),
    }
}

/// A column computed from each row.
pub fn computed(header: &'static str, cell: impl Fn(&Value) -> String + 'static) -> Column {
    Column {
        header,
        cell: Box::new(cell),
    }
}

/// The value at a dotted path (`roles.business_owner`).
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// The rows of a list response: a JSON array, or an object's `items` array.
pub fn rows(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        Value::Object(map) => match map.get("items") {
            Some(Value::Array(items)) => items,
            _ => &[],
        },
        _ => &[],
    }
}

/// Renders `rows` as a table with a header line; columns are padded to their widest cell.
pub fn table(rows: &[Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| (c.cell)(row)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .chain([c.header.len()])
                .max()
                .unwrap_or_default()
        })
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(columns.iter().map(|c| c.header).collect())];
    out.extend(
        cells
            .iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// Renders one record as `key: value` lines, nested fields flattened with dots, the keys in
/// `first` leading and the rest in alphabetical order.
pub fn record(value: &Value, first: &[&str]) -> String {
    let mut pairs = Vec::new();
    flatten("", value, &mut pairs);
    let rank = |key: &str| {
        first
            .iter()
            .position(|f| key == *f || key.starts_with(&format!("{f}.")))
            .unwrap_or(first.len())
    };
    // Sorted here rather than relying on the JSON map's order, which is insertion order when any
    // crate in the build enables serde_json's `preserve_order`.
    pairs.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| key_order(a, b)));
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| {
            format!("{:<w$} {v}", format!("{k}:"), w = width + 1)
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Orders dotted keys segment by segment, list indexes numerically (`items.2` before
/// `items.10`).
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        let order = match (x.next(), y.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(p), Some(q)) => match (p.parse::<u64>(), q.parse::<u64>()) {
                (Ok(m), Ok(n)) => m.cmp(&n),
                _ => p.cmp(q),
            },
        };
        if order.is_ne() {
            return order;
        }
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&key(k), v, out);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&key(&i.to_string()), item, out);
            }
        }
        other => out.push((prefix.to_owned(), text(other))),
    }
}

/// A JSON value as table text: strings bare (timestamps to the second), lists joined with
/// commas, `null` as `-`.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => match s.parse::<DateTime<Utc>>() {
            Ok(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            Err(_) => s.clone(),
        },
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Object(map) if map.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_pad_columns_and_join_lists() {
        let data = json!([
            {"name": "payments", "members": ["alice", "bob"]},
            {"name": "secops", "members": []},
        ]);
        let t = table(
            rows(&data),
            &[
                col("NAME", "name"),
                col("MEMBERS", "members"),
                computed("N", |r| rows(&r["members"]).len().to_string()),
            ],
        );
        assert_eq!(
            t,
            "NAME      MEMBERS     N\npayments  alice, bob  2\nsecops    -           0"
        );
    }

    #[test]
    fn records_flatten_nested_fields_with_leading_keys_first() {
        let r = json!({
            "status": "active",
            "id": "spiffe://rein.local/agent/a/b/prod",
            "roles": {"business_owner": "carol", "approvers": ["user:carol"]},
            "created_at": "2026-01-02T03:04:05.678901Z",
            "approvals": [{"by": "dave"}],
        });
        assert_eq!(
            record(&r, &["id", "status"]),
            "id:                   spiffe://rein.local/agent/a/b/prod\n\
             status:               active\n\
             approvals.0.by:       dave\n\
             created_at:           2026-01-02T03:04:05Z\n\
             roles.approvers:      user:carol\n\
             roles.business_owner: carol"
        );
    }
}
