//! `rein policy`: guardrails offline, and the set a server has in force.
//!
//! Offline (files only, no server or token): `check` validates a directory of Cedar
//! guardrails; `test` runs YAML test cases (a registry fixture, requests, the decisions they
//! must get) through `rein_policy::decide`, the function the server decides with; `explain`
//! shows why one case gets its decision, step by step and guardrail by guardrail. The case
//! format is documented in `examples/policies/README.md`.
//!
//! Against the server: `status` shows the guardrail set in force (`GET /v1/policies`), and
//! `reload` makes the server read its policies directory again (`POST /v1/policies/reload`,
//! admins); an invalid set is refused and the previous one stays in force.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args as ClapArgs, Subcommand};
use rein_policy::{
    decide, explain, Decision, Explanation, GuardrailStatus, Guardrails, Mode, PolicyFileError,
    SkippedBy, StepStatus,
};
use serde_json::{json, Value};

use crate::client::{Client, Local};
use crate::output::{col, table, Output};

mod cases;

/// The error code of an invalid policy set.
const INVALID_POLICY: &str = "invalid-policy";
/// The error code of an invalid case file.
const INVALID_CASE: &str = "invalid-case";
/// The error code of a failing test case.
const TEST_FAILED: &str = "policy-test-failed";

/// `rein policy …`
#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The `rein policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a directory of guardrails (offline).
    ///
    /// Validates every `*.cedar` guardrail file in DIR against Rein's schema: prints the policy
    /// set's version and each guardrail, or every error as `file:line:column: message`. Exit
    /// code 0 when valid, 1 otherwise.
    Check {
        /// The directory of `*.cedar` files.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Run policy test cases (offline).
    ///
    /// Runs the test cases in every `*.yaml`/`*.yml` file under DIR (recursively) against the
    /// guardrails in DIR (or --policies), through the engine the server decides with. Prints
    /// PASS or FAIL per case, what differs on failure, and a summary. Exit code 0 when every
    /// case passes, 1 when one fails or a file is invalid.
    Test {
        /// The directory holding the case files (and, without --policies, the `*.cedar`
        /// files).
        dir: PathBuf,
        /// The directory of `*.cedar` files, if not DIR.
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
    },
    /// Explain one test case's decision (offline).
    ///
    /// Shows each step (context, agent, grant, budget, guardrails) with what it looked at, and
    /// every guardrail of the set with what happened to it (not applicable, not matched,
    /// matched, error). Exit code 0 whatever the decision.
    Explain {
        /// The case file.
        #[arg(long, value_name = "FILE")]
        case: PathBuf,
        /// The case's name; needed when the file has more than one.
        #[arg(long)]
        name: Option<String>,
        /// The directory of `*.cedar` files; default: the nearest directory holding some,
        /// from the case file's own upwards.
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
    },
    /// Show the guardrail set the server has in force.
    ///
    /// Prints its version, when and from where it was loaded, and each guardrail with its
    /// mode, step-up and location (`GET /v1/policies`).
    Status,
    /// Make the server reload its policies directory (admins).
    ///
    /// An invalid set is refused, naming every error as `file:line:column: message`, and the
    /// previous set stays in force (exit code 1). Prints the set now in force
    /// (`POST /v1/policies/reload`).
    Reload,
}

/// Runs a `rein policy` command in `output`. `check`, `test` and `explain` are offline: they
/// read files and never call `client`; `status` and `reload` ask the server through it.
pub async fn run(
    args: Args,
    output: Output,
    client: impl FnOnce() -> anyhow::Result<Client>,
) -> anyhow::Result<()> {
    match args.command {
        Command::Status => {
            let client = client()?;
            let response = client.get("/v1/policies").await?;
            client.print(&response, render_status)
        }
        Command::Reload => {
            let client = client()?;
            let response = client.post("/v1/policies/reload", &json!({})).await?;
            client.print(&response, |status| {
                format!("reloaded\n{}", render_status(status))
            })
        }
        Command::Check { dir } => check(&dir, output),
        Command::Test { dir, policies } => test(&dir, policies.as_deref().unwrap_or(&dir), output),
        Command::Explain {
            case,
            name,
            policies,
        } => {
            let policies = match policies {
                Some(p) => p,
                None => nearest_policies(&case)?,
            };
            explain_case(&case, name.as_deref(), &policies, output)
        }
    }
}

/// The `*.cedar` files of `dir`, as (file name, text), sorted by name.
pub(crate) fn read_policies(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading `{}`", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading `{}`", dir.display()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "cedar") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading `{}`", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, text));
        }
    }
    files.sort();
    Ok(files)
}

/// `file:line:column: message`, the file under `dir`.
pub(crate) fn error_line(dir: &Path, e: &PolicyFileError) -> String {
    let file = if e.file.is_empty() {
        dir.display().to_string()
    } else {
        dir.join(&e.file).display().to_string()
    };
    if e.line == 0 {
        format!("{file}: {}", e.message)
    } else {
        format!("{file}:{}:{}: {}", e.line, e.column, e.message)
    }
}

/// Loads the guardrails of `dir`, or fails naming every error (printed on stdout, one per line,
/// with the first in the error itself).
fn load(dir: &Path, output: Output) -> anyhow::Result<Guardrails> {
    let files = read_policies(dir)?;
    if files.is_empty() {
        return Err(Local::new(
            INVALID_POLICY,
            format!("no `*.cedar` file in `{}`", dir.display()),
        )
        .into());
    }
    Guardrails::load(&files).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| error_line(dir, e)).collect();
        match output {
            Output::Json => println!(
                "{}",
                json!({
                    "ok": false,
                    "errors": errors.iter().zip(&lines).map(|(e, line)| json!({
                        "file": dir.join(&e.file).display().to_string(),
                        "line": e.line,
                        "column": e.column,
                        "message": e.message,
                        "text": line,
                    })).collect::<Vec<_>>(),
                })
            ),
            Output::Table => {
                for line in &lines {
                    println!("{line}");
                }
            }
        }
        Local::new(
            INVALID_POLICY,
            format!(
                "the guardrails in `{}` are invalid ({} error(s)): {}",
                dir.display(),
                lines.len(),
                lines.first().map_or("", String::as_str)
            ),
        )
        .into()
    })
}

fn mode(mode: Mode, step_up: Option<u32>) -> String {
    let effect = match step_up {
        Some(n) => format!("step_up({n})"),
        None => "deny".to_owned(),
    };
    match mode {
        Mode::Enforce => effect,
        Mode::Shadow => format!("shadow {effect}"),
    }
}

/// The set in force (`GET /v1/policies`): version, load time, directory, then one row per
/// guardrail.
fn render_status(status: &Value) -> String {
    let text = |k: &str| status[k].as_str().unwrap_or("").to_owned();
    let guardrails = crate::output::rows(&status["guardrails"]);
    let mut out = format!("version:    {}\n", text("version"));
    out.push_str(&format!("loaded_at:  {}\n", text("loaded_at")));
    if let Some(dir) = status["dir"].as_str() {
        out.push_str(&format!("dir:        {dir}\n"));
    }
    out.push_str(&format!("guardrails: {}\n", guardrails.len()));
    if !guardrails.is_empty() {
        out.push_str(&table(
            guardrails,
            &[
                col("ID", "id"),
                col("MODE", "mode"),
                col("STEP_UP", "step_up"),
                col("LOCATION", "location"),
            ],
        ));
    }
    out
}

// === check ===

fn check(dir: &Path, output: Output) -> anyhow::Result<()> {
    let set = load(dir, output)?;
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "ok": true,
                "version": set.version(),
                "guardrails": set.guardrails(),
            })
        ),
        Output::Table => {
            println!(
                "{} guardrail(s) valid, version {}",
                set.guardrails().len(),
                set.version()
            );
            let rows: Vec<Value> = set
                .guardrails()
                .iter()
                .map(|g| {
                    json!({
                        "id": g.id,
                        "mode": mode(g.mode, g.step_up),
                        "at": format!("{}:{}", dir.join(&g.file).display(), g.line),
                    })
                })
                .collect();
            println!(
                "{}",
                crate::output::table(
                    &rows,
                    &[
                        crate::output::col("ID", "id"),
                        crate::output::col("MODE", "mode"),
                        crate::output::col("FILE", "at"),
                    ]
                )
            );
        }
    }
    Ok(())
}

// === test ===

/// One case's result.
struct CaseResult {
    file: String,
    name: String,
    decision: Option<Decision>,
    determined_by: Vec<String>,
    /// The decision's reason, fixture grants named `grant:<name>`.
    reason: String,
    failures: Vec<String>,
}

fn test(dir: &Path, policies: &Path, output: Output) -> anyhow::Result<()> {
    let set = load(policies, output)?;
    let files = cases::find(dir).with_context(|| format!("reading `{}`", dir.display()))?;
    if files.is_empty() {
        return Err(Local::new(
            INVALID_CASE,
            format!("no `*.yaml` or `*.yml` case file under `{}`", dir.display()),
        )
        .into());
    }
    let mut results: Vec<CaseResult> = Vec::new();
    let mut invalid: Vec<String> = Vec::new();
    for path in &files {
        let shown = path.display().to_string();
        let file = match cases::read(path) {
            Ok(f) => f,
            Err(problem) => {
                invalid.push(problem);
                continue;
            }
        };
        let built = match file.fixture.build() {
            Ok(b) => b,
            Err(problem) => {
                invalid.push(format!("{shown}: fixture: {problem}"));
                continue;
            }
        };
        for case in &file.cases {
            let ready = match built.ready(&file, case) {
                Ok(r) => r,
                Err(problem) => {
                    invalid.push(format!("{shown}: case `{}`: {problem}", case.name));
                    continue;
                }
            };
            let decision = decide(&ready.request, &ready.facts(), &set);
            let failures = cases::check(case.expect(), &decision, &built);
            results.push(CaseResult {
                file: shown.clone(),
                name: case.name.clone(),
                determined_by: built.labels(&decision.determined_by),
                reason: built.label_text(&decision.reason),
                decision: Some(decision),
                failures,
            });
        }
    }
    let passed = results.iter().filter(|r| r.failures.is_empty()).count();
    let failed = results.len() - passed;
    match output {
        Output::Json => {
            let cases: Vec<Value> = results
                .iter()
                .map(|r| {
                    json!({
                        "file": r.file,
                        "name": r.name,
                        "passed": r.failures.is_empty(),
                        "failures": r.failures,
                        "determined_by": r.determined_by,
                        "decision": r.decision,
                    })
                })
                .collect();
            println!(
                "{}",
                json!({
                    "policy_version": set.version(),
                    "passed": passed,
                    "failed": failed,
                    "invalid": invalid,
                    "cases": cases,
                })
            );
        }
        Output::Table => {
            for r in &results {
                let verdict = if r.failures.is_empty() {
                    "PASS"
                } else {
                    "FAIL"
                };
                let got = r.decision.as_ref().map_or("", |d| d.outcome.as_str());
                println!("{verdict} {}: {} ({got})", r.file, r.name);
                for f in &r.failures {
                    println!("     {f}");
                }
                if !r.failures.is_empty() {
                    if let Some(d) = &r.decision {
                        println!(
                            "     got: {} by {} [{}]: {}",
                            d.outcome.as_str(),
                            d.rule.as_str(),
                            r.determined_by.join(", "),
                            r.reason
                        );
                    }
                }
            }
            for problem in &invalid {
                println!("INVALID {problem}");
            }
            println!(
                "{passed} passed, {failed} failed, {} invalid file(s) ({} case file(s), policy version {})",
                invalid.len(),
                files.len(),
                set.version()
            );
        }
    }
    if let Some(first) = invalid.first() {
        return Err(Local::new(INVALID_CASE, first.clone()).into());
    }
    if failed > 0 {
        let names: Vec<String> = results
            .iter()
            .filter(|r| !r.failures.is_empty())
            .map(|r| format!("`{}`", r.name))
            .collect();
        return Err(Local::new(
            TEST_FAILED,
            format!(
                "{failed} of {} case(s) failed: {}",
                results.len(),
                names.join(", ")
            ),
        )
        .into());
    }
    Ok(())
}

// === explain ===

/// The nearest directory holding `*.cedar` files, from the case file's own upwards.
fn nearest_policies(case: &Path) -> anyhow::Result<PathBuf> {
    let start = case
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let start = if start.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        start
    };
    let mut dir = Some(start.as_path());
    while let Some(d) = dir {
        let has = std::fs::read_dir(d).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "cedar"))
        });
        if has {
            return Ok(d.to_path_buf());
        }
        dir = d.parent().filter(|p| !p.as_os_str().is_empty());
    }
    Err(Local::new(
        INVALID_POLICY,
        format!(
            "no `*.cedar` file beside `{}` or above it: give --policies",
            case.display()
        ),
    )
    .into())
}

fn explain_case(
    path: &Path,
    name: Option<&str>,
    policies: &Path,
    output: Output,
) -> anyhow::Result<()> {
    let set = load(policies, output)?;
    let file = cases::read(path).map_err(|p| Local::new(INVALID_CASE, p))?;
    let shown = path.display().to_string();
    let case = match name {
        Some(n) => file.cases.iter().find(|c| c.name == n).ok_or_else(|| {
            Local::new(
                INVALID_CASE,
                format!(
                    "{shown}: no case named `{n}`; the cases are: {}",
                    names(&file.cases)
                ),
            )
        })?,
        None => match file.cases.as_slice() {
            [one] => one,
            _ => {
                return Err(Local::new(
                    INVALID_CASE,
                    format!(
                        "{shown} has {} cases: choose one with --name: {}",
                        file.cases.len(),
                        names(&file.cases)
                    ),
                )
                .into())
            }
        },
    };
    let built = file
        .fixture
        .build()
        .map_err(|p| Local::new(INVALID_CASE, format!("{shown}: fixture: {p}")))?;
    let ready = built
        .ready(&file, case)
        .map_err(|p| Local::new(INVALID_CASE, format!("{shown}: case `{}`: {p}", case.name)))?;
    let x = explain(&ready.request, &ready.facts(), &set);
    // The engine's own answer; the explanation agrees with it by construction and by test.
    let decision = decide(&ready.request, &ready.facts(), &set);
    let failures = cases::check(case.expect(), &decision, &built);
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "case": case.name,
                "file": shown,
                "expectation_met": failures.is_empty(),
                "failures": failures,
                "decision": decision,
                "explanation": x,
            })
        ),
        Output::Table => {
            println!(
                "{}",
                render(&shown, &case.name, &ready.request, &x, &built, &failures)
            );
            if decision.outcome != x.outcome || decision.determined_by != x.determined_by {
                println!(
                    "warning: the engine decided {} ({}); the explanation disagrees, please report it",
                    decision.outcome.as_str(),
                    decision.determined_by.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn names(cases: &[cases::Case]) -> String {
    cases
        .iter()
        .map(|c| format!("`{}`", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render(
    file: &str,
    name: &str,
    req: &rein_policy::Request,
    x: &Explanation,
    built: &cases::Built,
    failures: &[String],
) -> String {
    let mut out = vec![
        format!("case:      {name} ({file})"),
        format!(
            "request:   {} calls `{}` on `{}` at {}",
            req.agent,
            req.action,
            req.system,
            req.now.to_rfc3339()
        ),
        format!(
            "decision:  {} (rule {}), determined by {}",
            x.outcome.as_str(),
            x.rule.as_str(),
            built.labels(&x.determined_by).join(", ")
        ),
        format!("reason:    {}", built.label_text(&x.reason)),
    ];
    if let Some(s) = &x.step_up {
        out.push(format!(
            "step-up:   {} approver(s) for {}",
            s.approvers_required,
            s.policies.join(", ")
        ));
    }
    if !x.shadow.is_empty() {
        let shadow: Vec<String> = x
            .shadow
            .iter()
            .map(|s| {
                let v = serde_json::to_value(&s.verdict).unwrap_or(Value::Null);
                format!("{} (would {})", s.policy, crate::output::text(&v["effect"]))
            })
            .collect();
        out.push(format!("shadow:    {}", shadow.join(", ")));
    }
    out.push(format!("policies:  {}", x.policy_version));
    out.push(if failures.is_empty() {
        "expected:  met".to_owned()
    } else {
        format!("expected:  NOT met: {}", failures.join("; "))
    });
    out.push(String::new());
    for (i, step) in x.steps.iter().enumerate() {
        let status = match step.status {
            StepStatus::Pass => "pass",
            StepStatus::Fail => "FAIL",
            StepStatus::NotReached => "-",
        };
        out.push(format!(
            "{}. {:<11} {:<5} {}",
            i,
            step.step.as_str(),
            status,
            built.label_text(&step.summary)
        ));
        if step.step == rein_policy::Step::Guardrails && !x.guardrails.is_empty() {
            for g in &x.guardrails {
                let what = match (g.status, g.skipped_by) {
                    (GuardrailStatus::NotApplicable, Some(SkippedBy::Index)) => {
                        "not applicable (skipped by the index)".to_owned()
                    }
                    (GuardrailStatus::NotApplicable, _) => {
                        "not applicable (skipped by the pre-filter)".to_owned()
                    }
                    (GuardrailStatus::NotMatched, _) => "evaluated, not matched".to_owned(),
                    (GuardrailStatus::Matched, _) => {
                        format!("MATCHED: {}", g.reason.as_deref().unwrap_or("(no @reason)"))
                    }
                    (GuardrailStatus::Error, _) => {
                        format!("ERROR: {}", g.error.as_deref().unwrap_or("(no message)"))
                    }
                };
                out.push(format!(
                    "     {} [{}] {}:{}: {what}",
                    g.id,
                    mode(g.mode, g.step_up),
                    g.file,
                    g.line
                ));
            }
            for d in step.details.iter().filter(|d| d.starts_with("approval:")) {
                out.push(format!("     {d}"));
            }
        } else {
            for d in &step.details {
                out.push(format!("     {}", built.label_text(d)));
            }
        }
    }
    out.join("\n")
}
