//! Renderers: an aligned text table, JSON, SARIF 2.1.0 and a self-contained HTML report.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::finding::{Finding, Report, Severity};
use crate::rules::RULES;
use crate::PostureError;

/// The `$schema` URI written into SARIF logs: the OASIS SARIF 2.1.0 schema (errata 01).
pub const SARIF_SCHEMA_URI: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// Replaces control characters (newlines, escapes) so a cell stays on its line and cannot drive
/// the terminal.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The report as an aligned text table (severity, rule, entity, title), one finding a line,
/// followed by the counts by severity.
pub fn table(report: &Report) -> String {
    const HEADERS: [&str; 4] = ["SEVERITY", "RULE", "ENTITY", "FINDING"];
    let rows: Vec<[String; 4]> = report
        .findings
        .iter()
        .map(|f| {
            [
                f.severity.as_str().to_owned(),
                f.rule.to_string(),
                one_line(&f.entity.to_string()),
                one_line(&f.title),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 4]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let pad = w.saturating_sub(cell.chars().count()) + 2;
                l.push_str(cell);
                l.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    if rows.is_empty() {
        out.push_str("No findings.\n");
    } else {
        line(HEADERS);
        for row in &rows {
            line([&row[0], &row[1], &row[2], &row[3]]);
        }
        out.push('\n');
    }
    let counts: Vec<String> = report
        .by_severity
        .iter()
        .map(|c| format!("{} {}", c.count, c.severity))
        .collect();
    let _ = writeln!(
        out,
        "{} findings: {}",
        report.findings.len(),
        counts.join(", ")
    );
    out
}

/// The report as pretty-printed JSON.
pub fn json(report: &Report) -> Result<String, PostureError> {
    serde_json::to_string_pretty(report).map_err(|e| PostureError::Render(e.to_string()))
}

/// SARIF `level` for a severity: critical and high are errors, medium warnings, the rest notes.
pub fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning's `security-severity` score for a severity.
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// The report as a SARIF 2.1.0 log: one run of the `rein-posture` tool with every rule (tagged
/// with its control IDs) and one result per finding. A finding with a [`crate::Location`] gets a
/// physical location (file and start line) so code scanning shows it on the manifest line;
/// others get a logical location naming the entity.
pub fn sarif(report: &Report, catalog: &Catalog) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            let controls: Vec<Value> = r
                .controls
                .iter()
                .map(|id| match catalog.get(id) {
                    Some(c) => json!({"id": c.id, "framework": c.framework, "title": c.title}),
                    None => json!({"id": id}),
                })
                .collect();
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": {"text": r.name},
                "fullDescription": {"text": r.description},
                "defaultConfiguration": {"level": sarif_level(r.severity)},
                "properties": {
                    "tags": r.controls,
                    "security-severity": security_severity(r.severity),
                    "controls": controls,
                },
            })
        })
        .collect();
    let results: Vec<Value> = report.findings.iter().map(sarif_result).collect();
    json!({
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "rein-posture",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
            "properties": {"generatedAt": report.generated_at},
        }]
    })
}

fn sarif_result(f: &Finding) -> Value {
    let location = match &f.location {
        Some(loc) => json!({
            "physicalLocation": {
                "artifactLocation": {"uri": loc.file},
                "region": {"startLine": loc.line.max(1)},
            },
            "logicalLocations": [logical_location(f)],
        }),
        None => json!({"logicalLocations": [logical_location(f)]}),
    };
    let mut result = json!({
        "ruleId": f.rule,
        "level": sarif_level(f.severity),
        "message": {"text": format!("{}. {} Fix: {}", f.title, f.evidence, f.fix)},
        "locations": [location],
        "partialFingerprints": {
            "reinPostureFinding/v1": format!("{}|{}|{}", f.rule, f.entity.kind.as_str(), f.entity.id),
        },
        "properties": {
            "severity": f.severity,
            "entity": f.entity,
            "fix": f.fix,
            "tags": f.controls,
        },
    });
    if let (Some(index), Some(obj)) = (
        RULES.iter().position(|r| r.id == f.rule),
        result.as_object_mut(),
    ) {
        obj.insert("ruleIndex".to_owned(), json!(index));
    }
    result
}

fn logical_location(f: &Finding) -> Value {
    json!({
        "name": f.entity.id,
        "fullyQualifiedName": format!("{}:{}", f.entity.kind.as_str(), f.entity.id),
        "kind": "resource",
    })
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn severity_color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#7f1d1d",
        Severity::High => "#dc2626",
        Severity::Medium => "#f59e0b",
        Severity::Low => "#2563eb",
        Severity::Info => "#6b7280",
    }
}

/// A horizontal bar chart as inline SVG. Labels are escaped here.
fn bar_chart(id: &str, title: &str, rows: &[(String, usize, &str)]) -> String {
    const LABEL: usize = 340;
    const BAR: usize = 300;
    const ROW: usize = 26;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let height = ROW * rows.len().max(1) + 8;
    let width = LABEL + BAR + 60;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{id}" class="chart" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>{t}</title>"#,
        t = escape_html(title)
    );
    if rows.is_empty() {
        let _ = write!(svg, r#"<text x="0" y="18">no findings</text>"#);
    }
    for (i, (label, count, color)) in rows.iter().enumerate() {
        let y = i * ROW + 4;
        let w = if *count == 0 {
            0
        } else {
            (count * BAR / max).max(2)
        };
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{label}</text><rect x="{bx}" y="{y}" width="{w}" height="{h}" fill="{color}"><title>{label}: {count}</title></rect><text x="{cx}" y="{ty}">{count}</text>"#,
            lx = LABEL - 8,
            ty = y + 15,
            label = escape_html(label),
            bx = LABEL,
            h = ROW - 8,
            cx = LABEL + w + 6,
        );
    }
    svg.push_str("</svg>");
    svg
}

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#111827;background:#fff}\
h1{margin-bottom:.2rem}.meta{color:#6b7280;margin-top:0}\
.charts{display:flex;flex-wrap:wrap;gap:2rem}.charts section{flex:1 1 600px}\
svg.chart text{font-size:12px;fill:#111827}\
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border:1px solid #e5e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}\
th{background:#f3f4f6}code{font-size:12px;word-break:break-all}\
.sev{display:inline-block;padding:0 .4rem;border-radius:3px;color:#fff;font-weight:600}\
.ctl{display:inline-block;margin:0 .2rem .2rem 0;padding:0 .3rem;border:1px solid #d1d5db;border-radius:3px;white-space:nowrap}";

/// The report as one self-contained HTML document: inline CSS, inline SVG bar charts of findings
/// by severity and by framework, the findings table and the controls it cites. No scripts and no
/// external assets; every dynamic string is escaped.
pub fn html(report: &Report, catalog: &Catalog) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>Rein posture report</title>\n<style>");
    out.push_str(CSS);
    out.push_str("</style>\n</head>\n<body>\n<h1>Rein posture report</h1>\n");
    let _ = writeln!(
        out,
        "<p class=\"meta\">Generated {} &middot; {} findings</p>",
        escape_html(&report.generated_at.to_rfc3339()),
        report.findings.len()
    );

    let severity_rows: Vec<(String, usize, &str)> = report
        .by_severity
        .iter()
        .map(|c| (c.severity.to_string(), c.count, severity_color(c.severity)))
        .collect();
    let framework_rows: Vec<(String, usize, &str)> = report
        .by_framework
        .iter()
        .map(|c| (c.framework.clone(), c.count, "#4b5563"))
        .collect();
    out.push_str("<div class=\"charts\">\n<section><h2>Findings by severity</h2>\n");
    out.push_str(&bar_chart(
        "chart-severity",
        "Findings by severity",
        &severity_rows,
    ));
    out.push_str("\n</section>\n<section><h2>Findings by framework</h2>\n");
    out.push_str(&bar_chart(
        "chart-framework",
        "Findings by framework",
        &framework_rows,
    ));
    out.push_str("\n</section>\n</div>\n<h2>Findings</h2>\n");

    if report.findings.is_empty() {
        out.push_str("<p>No findings.</p>\n");
    } else {
        out.push_str("<table>\n<thead><tr><th>Severity</th><th>Rule</th><th>Entity</th><th>Finding</th><th>Evidence</th><th>Fix</th><th>Controls</th></tr></thead>\n<tbody>\n");
        for f in &report.findings {
            let controls: String = f
                .controls
                .iter()
                .map(|id| {
                    let tip = catalog
                        .get(id)
                        .map(|c| format!("{}: {}", c.framework, c.title))
                        .unwrap_or_default();
                    format!(
                        "<span class=\"ctl\" title=\"{}\">{}</span>",
                        escape_html(&tip),
                        escape_html(id)
                    )
                })
                .collect();
            let details = if f.details.is_null() {
                String::new()
            } else {
                let pretty = serde_json::to_string_pretty(&f.details).unwrap_or_default();
                format!(
                    "<details><summary>details</summary><pre>{}</pre></details>",
                    escape_html(&pretty)
                )
            };
            let location = f
                .location
                .as_ref()
                .map(|l| format!("<br><code>{}:{}</code>", escape_html(&l.file), l.line))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "<tr><td><span class=\"sev\" style=\"background:{color}\">{sev}</span></td><td><code>{rule}</code></td><td>{kind} <code>{id}</code>{location}</td><td>{title}</td><td>{evidence}{details}</td><td>{fix}</td><td>{controls}</td></tr>",
                color = severity_color(f.severity),
                sev = f.severity,
                rule = escape_html(&f.rule),
                kind = f.entity.kind.as_str(),
                id = escape_html(&f.entity.id),
                title = escape_html(&f.title),
                evidence = escape_html(&f.evidence),
                fix = escape_html(&f.fix),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }

    // The controls cited, in catalog order.
    let cited_ids: std::collections::HashSet<&str> = report
        .findings
        .iter()
        .flat_map(|f| f.controls.iter().map(|c| &**c))
        .collect();
    let cited: Vec<_> = catalog
        .controls()
        .iter()
        .filter(|c| cited_ids.contains(c.id.as_str()))
        .collect();
    if !cited.is_empty() {
        out.push_str("<h2>Controls cited</h2>\n<table>\n<thead><tr><th>Framework</th><th>ID</th><th>Title</th><th>Summary</th></tr></thead>\n<tbody>\n");
        for c in cited {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape_html(&c.framework),
                escape_html(&c.id),
                escape_html(&c.title),
                escape_html(&c.summary)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}
