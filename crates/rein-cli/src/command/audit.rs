//! `rein audit`: read, explain, export and verify the audit log.
//!
//! Reading and exporting go through the server (admins and auditors). `verify` also works
//! without it: on the store of a data directory (`--data-dir`, with the server stopped or
//! running), or on an export file and the checkpoints exported beside it (`--file`), so a copy
//! kept elsewhere can be checked by anyone holding it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use ed25519_dalek::VerifyingKey;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rein_audit::{Checkpoint, Record, Report, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Client, Local};
use crate::config::Overrides;
use crate::data_dir;
use crate::output::{self, col, computed, Output};

/// The error code of a log that does not verify.
const INVALID: &str = "audit-invalid";

/// How long an export may take end to end.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The largest page the server hands out.
const MAX_PAGE: u32 = 1000;

/// `rein audit …`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the latest records; with --follow, keep printing new ones as they are appended.
    /// With --output json, one record per line (JSON Lines).
    Tail {
        /// How many records to show first (1 to 1000).
        #[arg(short = 'n', long = "lines", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        lines: u32,
        /// Keep polling for new records until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// Seconds between polls with --follow.
        #[arg(long, default_value_t = 2, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600), requires = "follow")]
        interval: u64,
        #[command(flatten)]
        filters: Filters,
    },
    /// Show one record.
    Show {
        /// The record's sequence number.
        seq: u64,
    },
    /// For one record: who owns the agent, who approved the access that allowed it, and who
    /// can revoke it.
    Why {
        /// The record's sequence number.
        seq: u64,
    },
    /// Export every record, in sequence order, as JSON Lines.
    Export {
        /// `jsonl`: the records as stored, verifiable with `rein audit verify --file`; `ocsf`:
        /// OCSF events for a SIEM.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// Write to this file instead of standard output (replaced only once complete).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also write the signed checkpoints and their public keys here, for verifying the
        /// export offline (`rein audit verify --file … --checkpoints …`). Keep it elsewhere.
        #[arg(long, value_name = "FILE")]
        checkpoints_out: Option<PathBuf>,
    },
    /// Verify the hash chain and the signed checkpoints; names the first record that was
    /// altered, inserted, deleted or reordered, or a truncation. Exit code 0 when intact, 1
    /// otherwise. Without --data-dir or --file, asks the server to verify its store.
    Verify(VerifyArgs),
}

/// Which records `tail` shows; every filter given must match.
#[derive(Debug, Args)]
pub struct Filters {
    /// The agent concerned (its SPIFFE ID).
    #[arg(long, value_name = "SPIFFE_ID")]
    agent: Option<String>,
    /// The task ID.
    #[arg(long)]
    task: Option<String>,
    /// The target system.
    #[arg(long)]
    system: Option<String>,
    /// The event type, e.g. `grant.approved`.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    event_type: Option<String>,
    /// Who acted: a user name, a SPIFFE ID, or `rein`.
    #[arg(long)]
    actor: Option<String>,
    /// What the event was about: a grant ID, a user name, …
    #[arg(long)]
    subject: Option<String>,
    /// Records appended at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<String>,
    /// Records appended before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<String>,
}

fn parse_type(s: &str) -> Result<String, String> {
    s.parse::<rein_audit::EventType>()?;
    Ok(s.to_owned())
}

fn parse_time(s: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}

impl Filters {
    fn query(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("agent", self.agent.clone()),
            ("task", self.task.clone()),
            ("system", self.system.clone()),
            ("type", self.event_type.clone()),
            ("actor", self.actor.clone()),
            ("subject", self.subject.clone()),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
        ]
    }
}

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The records as stored.
    Jsonl,
    /// OCSF events.
    Ocsf,
}

/// Where `verify` reads the log from.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify the store of this data directory directly (the server may be stopped).
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    data_dir: Option<PathBuf>,
    /// With --data-dir: the PostgreSQL database, if not the one in its `rein.toml`.
    #[arg(long, value_name = "URL", requires = "data_dir")]
    database_url: Option<String>,
    /// Verify an export made with `rein audit export --format jsonl`.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// With --file: the checkpoints and keys written by `rein audit export --checkpoints-out`.
    /// Without them, truncation cannot be detected.
    #[arg(long, value_name = "FILE", requires = "file")]
    checkpoints: Option<PathBuf>,
}

/// What `export --checkpoints-out` writes: the checkpoints and the keys that signed them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    /// Every checkpoint at the time of the export.
    checkpoints: Vec<Checkpoint>,
    /// The checkpoint keys, as the JWKS `/v1/audit/keys` serves.
    keys: Jwks,
}

#[derive(Debug, Serialize, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    kid: String,
    x: String,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// Runs a `rein audit` command.
pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Tail {
            lines,
            follow,
            interval,
            filters,
        } => {
            tail(
                client,
                lines,
                follow,
                Duration::from_secs(interval),
                &filters,
            )
            .await
        }
        Command::Show { seq } => {
            let response = client.get(&format!("/v1/audit/{seq}")).await?;
            client.print(&response, |v| {
                output::record(
                    v,
                    &[
                        "seq",
                        "time",
                        "event.type",
                        "event.actor",
                        "event.subject",
                        "event.agent",
                        "event.outcome",
                    ],
                )
            })
        }
        Command::Why { seq } => {
            let response = client.get(&format!("/v1/audit/{seq}/why")).await?;
            client.print(&response, render_why)
        }
        Command::Export {
            format,
            out,
            checkpoints_out,
        } => export(client, format, out.as_deref(), checkpoints_out.as_deref()).await,
        Command::Verify(args) => verify(client, args).await,
    }
}

// === tail ===

fn print_records(client: &Client, records: &[Value], header: bool) -> anyhow::Result<()> {
    if client.output() == Output::Json {
        let mut stdout = std::io::stdout().lock();
        for r in records {
            writeln!(stdout, "{r}")?;
        }
        return Ok(stdout.flush()?);
    }
    if records.is_empty() {
        return Ok(());
    }
    let table = output::table(
        records,
        &[
            col("SEQ", "seq"),
            col("TIME", "time"),
            col("TYPE", "event.type"),
            col("ACTOR", "event.actor.id"),
            col("SUBJECT", "event.subject"),
            col("OUTCOME", "event.outcome"),
            computed("REASON", |r| {
                r["event"]["reason"].as_str().unwrap_or_default().to_owned()
            }),
        ],
    );
    let mut lines = table.lines();
    if !header {
        lines.next();
    }
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        writeln!(stdout, "{line}")?;
    }
    Ok(stdout.flush()?)
}

fn page_records(page: &Value) -> Vec<Value> {
    page["records"].as_array().cloned().unwrap_or_default()
}

async fn tail(
    client: &Client,
    lines: u32,
    follow: bool,
    interval: Duration,
    filters: &Filters,
) -> anyhow::Result<()> {
    let mut query = filters.query();
    query.push(("latest", Some("true".into())));
    query.push(("limit", Some(lines.to_string())));
    let page = client.get_query("/v1/audit", &query).await?.json()?;
    let records = page_records(&page);
    print_records(client, &records, true)?;
    if !follow {
        return Ok(());
    }
    let mut after = records.last().and_then(|r| r["seq"].as_u64());
    loop {
        let mut query = filters.query();
        query.push(("after", after.map(|a| a.to_string())));
        query.push(("limit", Some(MAX_PAGE.to_string())));
        let page = client.get_query("/v1/audit", &query).await?.json()?;
        let records = page_records(&page);
        print_records(client, &records, false)?;
        if let Some(last) = records.last().and_then(|r| r["seq"].as_u64()) {
            after = Some(last);
        }
        // A full page means more are waiting: read on at once.
        if page["next"].is_null() {
            tokio::time::sleep(interval).await;
        }
    }
}

// === why ===

fn list(value: &Value) -> String {
    let items: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn render_why(why: &Value) -> String {
    let r = &why["record"];
    let e = &r["event"];
    let text = |v: &Value| output::text(v);
    let mut out = vec![format!(
        "record {}: {} by {} {} at {}{}",
        text(&r["seq"]),
        text(&e["type"]),
        text(&e["actor"]["kind"]),
        text(&e["actor"]["id"]),
        text(&r["time"]),
        e["subject"]
            .as_str()
            .map(|s| format!(", about {s}"))
            .unwrap_or_default()
    )];
    out.push(format!("agent:           {}", text(&why["agent"])));
    out.push("who owns it".into());
    out.push(format!(
        "  owner team:     {}",
        text(&why["owner"]["owner_team"])
    ));
    let recorded = why["owner"]["recorded_business_owner"]
        .as_str()
        .map(|o| format!(" (recorded: {o})"))
        .unwrap_or_default();
    out.push(format!(
        "  business owner: {}{recorded}",
        text(&why["owner"]["business_owner"])
    ));
    out.push("who approved the access".into());
    out.push(format!(
        "  recorded:       {}",
        list(&why["approval"]["recorded"])
    ));
    for grant in why["approval"]["grants"].as_array().into_iter().flatten() {
        let approvals: Vec<String> = grant["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                format!(
                    "{} ({}, {})",
                    text(&a["by"]),
                    text(&a["role"]).replace('_', " "),
                    text(&a["at"])
                )
            })
            .collect();
        out.push(format!(
            "  grant {} ({}, requested by {}): {}",
            text(&grant["id"]),
            text(&grant["status"]),
            text(&grant["requested_by"]),
            if approvals.is_empty() {
                "no approvals".to_owned()
            } else {
                approvals.join(", ")
            }
        ));
    }
    out.push("who can revoke it (and any admin)".into());
    out.push(format!(
        "  recorded:       {}",
        list(&why["revocation"]["recorded"])
    ));
    out.push(format!(
        "  agent revokers: {}",
        list(&why["revocation"]["agent_revokers"])
    ));
    out.push(format!(
        "  system approvers: {}",
        list(&why["revocation"]["system_approvers"])
    ));
    out.join("\n")
}

// === export ===

async fn export(
    client: &Client,
    format: Format,
    out: Option<&Path>,
    checkpoints_out: Option<&Path>,
) -> anyhow::Result<()> {
    // Checkpoints first: the export that follows covers every one of them, so the pair
    // verifies (a checkpoint beyond the export's end would read as truncation).
    if let Some(path) = checkpoints_out {
        let checkpoints: Vec<Checkpoint> =
            serde_json::from_value(client.get("/v1/audit/checkpoints").await?.json()?)
                .context("reading the server's checkpoints")?;
        let keys: Jwks = serde_json::from_value(client.get("/v1/audit/keys").await?.json()?)
            .context("reading the server's checkpoint keys")?;
        let doc = serde_json::to_vec_pretty(&CheckpointFile { checkpoints, keys })?;
        write_whole(path, |file| Ok(file.write_all(&doc)?))?;
    }
    let format_name = match format {
        Format::Jsonl => "jsonl",
        Format::Ocsf => "ocsf",
    };
    let mut stream = client
        .get_stream(
            "/v1/audit/export",
            &[("format", Some(format_name.into()))],
            EXPORT_TIMEOUT,
        )
        .await?;
    match out {
        Some(path) => {
            let mut lines = 0usize;
            // The file appears only once the export is complete.
            let mut tmp = tempfile::NamedTempFile::new_in(parent(path))
                .with_context(|| format!("creating a file beside `{}`", path.display()))?;
            {
                let mut writer = std::io::BufWriter::new(tmp.as_file_mut());
                while let Some(chunk) = stream.chunk().await? {
                    let chunk = chunk.as_ref();
                    lines += chunk.iter().filter(|b| **b == b'\n').count();
                    writer.write_all(chunk)?;
                }
                writer.flush()?;
            }
            tmp.as_file().sync_all()?;
            tmp.persist(path)
                .with_context(|| format!("writing `{}`", path.display()))?;
            eprintln!("exported {lines} records to {}", path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            while let Some(chunk) = stream.chunk().await? {
                stdout.write_all(chunk.as_ref())?;
            }
            stdout.flush()?;
        }
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `path` through a temporary file beside it, so it is either whole or untouched.
fn write_whole(
    path: &Path,
    write: impl FnOnce(&mut File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(parent(path))
        .with_context(|| format!("creating a file beside `{}`", path.display()))?;
    write(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing `{}`", path.display()))?;
    Ok(())
}

// === verify ===

/// A progress bar on stderr for a long verification; hidden when stderr is not a terminal or
/// the output is JSON.
fn progress(client: &Client, total: Option<u64>, unit: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    if client.output() == Output::Json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    let template =
        format!("verifying {{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

async fn verify(client: &Client, args: VerifyArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.data_dir {
        let overrides = Overrides {
            database_url: args.database_url.clone(),
            ..Overrides::default()
        };
        let (store, _) = data_dir::open_store(dir, overrides).await?;
        // The head is only the progress bar's length: a head that cannot be read is reported
        // by the verification itself.
        let total = store.head().await.ok().flatten().map(|(seq, _)| seq);
        let bar = progress(client, total, "records");
        let report = rein_registry::verify_audit_chain(store.as_ref(), &mut |seq| {
            bar.set_position(seq);
        })
        .await
        .context("reading the audit log")?;
        bar.finish_and_clear();
        return conclude(client, &report);
    }
    if let Some(file) = &args.file {
        let report = verify_file(client, file, args.checkpoints.as_deref())?;
        return conclude(client, &report);
    }
    // Ask the server to verify its own store.
    let response = client.get("/v1/audit/verify").await?;
    let doc = response.json()?;
    client.print(&response, intact_line)?;
    match doc["message"].as_str() {
        Some(message) if doc["ok"] != Value::Bool(true) => Err(Local::new(INVALID, message).into()),
        _ => Ok(()),
    }
}

/// Reads the checkpoint file: the checkpoints and their verifying keys by key ID.
fn read_checkpoints(
    path: &Path,
) -> anyhow::Result<(Vec<Checkpoint>, HashMap<String, VerifyingKey>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
    let doc: CheckpointFile =
        serde_json::from_str(&text).with_context(|| format!("in `{}`", path.display()))?;
    let mut keys = HashMap::new();
    for jwk in doc.keys.keys {
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
            return Err(Local::new(
                "invalid-input",
                format!(
                    "key `{}` in `{}` is not an Ed25519 key",
                    jwk.kid,
                    path.display()
                ),
            )
            .into());
        }
        let bad = || {
            Local::new(
                "invalid-input",
                format!("key `{}` in `{}` is malformed", jwk.kid, path.display()),
            )
        };
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&jwk.x)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        keys.insert(jwk.kid, key);
    }
    Ok((doc.checkpoints, keys))
}

fn verify_file(client: &Client, file: &Path, checkpoints: Option<&Path>) -> anyhow::Result<Report> {
    let (checkpoints, keys) = match checkpoints {
        Some(path) => read_checkpoints(path)?,
        None => {
            if client.output() == Output::Table {
                eprintln!("note: no --checkpoints given: a truncated export cannot be detected");
            }
            (Vec::new(), HashMap::new())
        }
    };
    let opened = File::open(file).with_context(|| format!("reading `{}`", file.display()))?;
    let total = opened.metadata().ok().map(|m| m.len());
    let bar = progress(client, total, "bytes");
    let mut reader = BufReader::new(opened);
    let mut verifier = Verifier::new(&keys, &checkpoints);
    let mut line = String::new();
    let mut position = 0u64;
    let mut read = 0u64;
    while !verifier.failed() {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("reading `{}`", file.display()))?;
        if n == 0 {
            break;
        }
        position += 1;
        read += n as u64;
        match serde_json::from_str::<Record>(line.trim_end_matches(['\n', '\r'])) {
            Ok(record) => {
                verifier.push(&record);
            }
            Err(e) => verifier.malformed(position, e.to_string()),
        }
        // Drawing is rate-limited by indicatif; updating the position is a cheap store.
        bar.set_position(read);
    }
    bar.finish_and_clear();
    Ok(verifier.finish())
}

/// The report as JSON: `ok`, `message` (the first problem in words) and the report's fields.
fn report_json(report: &Report) -> anyhow::Result<Value> {
    let mut doc = serde_json::to_value(report)?;
    if let Value::Object(map) = &mut doc {
        map.insert("ok".into(), Value::Bool(report.ok()));
        map.insert(
            "message".into(),
            report
                .problem
                .as_ref()
                .map_or(Value::Null, |p| Value::String(p.to_string())),
        );
    }
    Ok(doc)
}

fn intact_line(doc: &Value) -> String {
    if doc["ok"] != Value::Bool(true) {
        return String::new();
    }
    let head = match (doc["head"][0].as_u64(), doc["head"][1].as_str()) {
        (Some(seq), Some(hash)) => format!("head {seq} ({hash})"),
        _ => "empty".into(),
    };
    format!(
        "audit log intact: {} records, {head}, {} checkpoints verified",
        output::text(&doc["records"]),
        output::text(&doc["checkpoints_verified"]),
    )
}

/// Prints the report and fails with the first problem, in one line, if there is one.
fn conclude(client: &Client, report: &Report) -> anyhow::Result<()> {
    let doc = report_json(report)?;
    match client.output() {
        Output::Json => println!("{doc}"),
        Output::Table => {
            let line = intact_line(&doc);
            if !line.is_empty() {
                println!("{line}");
            }
        }
    }
    match &report.problem {
        Some(problem) => Err(Local::new(INVALID, problem.to_string()).into()),
        None => Ok(()),
    }
}
