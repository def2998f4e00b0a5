//! `/v1/audit`: reading, explaining, exporting and verifying the audit log. Admins and auditors
//! only; everyone else gets 403 `forbidden`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rein_audit::{Checkpoint, EventType, Record, Report};
use rein_core::authz::Actor;
use rein_core::DomainError;
use rein_registry::{AuditPage, Registry, Why};
use rein_store::AuditFilter;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{Authenticated, Path, Query};
use crate::AppState;

/// Records per page when `limit` is not given.
const DEFAULT_LIMIT: u32 = 100;

/// Records read from the store per chunk of an export.
const EXPORT_PAGE: u32 = 1000;

/// The media type of JSON Lines.
const JSONL: &str = "application/jsonl";

/// Filters and the cursor for listing audit records; an absent or empty filter does not
/// filter, set filters must all match.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// The agent concerned (SPIFFE ID).
    agent: Option<String>,
    /// The task ID.
    task: Option<String>,
    /// The target system.
    system: Option<String>,
    /// The event type, e.g. `grant.approved`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Who acted: a user name, a SPIFFE ID, or `rein`.
    actor: Option<String>,
    /// What the event was about: a grant ID, a user name, …
    subject: Option<String>,
    /// Records appended at or after this time (RFC 3339).
    since: Option<String>,
    /// Records appended before this time (RFC 3339).
    until: Option<String>,
    /// Cursor: only records with a sequence number above this (the `next` of the previous page).
    after: Option<u64>,
    /// Records per page, 1 to 1000; default 100.
    limit: Option<u32>,
    /// `true`: the last `limit` matching records instead of the first ones after `after` (what
    /// `rein audit tail` shows). Not combined with `after`.
    latest: Option<bool>,
}

fn text(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

fn time(field: &'static str, value: Option<&String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(value)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            DomainError::invalid(field, format!("`{value}` is not an RFC 3339 time")).into()
        })
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, ApiError> {
        let event_type = match self.event_type.as_deref().filter(|v| !v.is_empty()) {
            Some(t) => Some(
                t.parse::<EventType>()
                    .map_err(|e| ApiError::from(DomainError::invalid("type", e)))?,
            ),
            None => None,
        };
        Ok(AuditFilter {
            agent: text(self.agent.as_ref()),
            task_id: text(self.task.as_ref()),
            system: text(self.system.as_ref()),
            event_type,
            actor: text(self.actor.as_ref()),
            subject: text(self.subject.as_ref()),
            since: time("since", self.since.as_ref())?,
            until: time("until", self.until.as_ref())?,
        })
    }
}

/// Lists audit records by ascending sequence number, filtered, a page at a time: pass a
/// response's `next` as `after` for the next page. Admins and auditors only (403 otherwise).
#[utoipa::path(get, path = "/v1/audit", operation_id = "listAuditRecords", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, description = "A page of matching records", body = AuditPage),
        (status = 403, description = "The caller is neither an admin nor an auditor"),
    ))]
pub(crate) async fn list(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let filter = query.filter()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let page = if query.latest.unwrap_or(false) {
        if query.after.is_some() {
            return Err(DomainError::invalid("latest", "cannot be combined with `after`").into());
        }
        let records = state.registry.audit_latest(&actor, &filter, limit).await?;
        AuditPage {
            records,
            next: None,
        }
    } else {
        state
            .registry
            .audit_records(&actor, &filter, query.after, limit)
            .await?
    };
    Ok(axum::Json(page))
}

fn parse_seq(seq: &str) -> Result<u64, ApiError> {
    seq.parse::<u64>().map_err(|_| {
        DomainError::invalid("seq", format!("`{seq}` is not a sequence number")).into()
    })
}

/// Reads one audit record. Admins and auditors only.
#[utoipa::path(get, path = "/v1/audit/{seq}", operation_id = "getAuditRecord", tag = "audit",
    params(("seq" = u64, Path, description = "The record's sequence number")),
    responses(
        (status = 200, description = "The record", body = Record),
        (status = 403, description = "The caller is neither an admin nor an auditor"),
    ))]
pub(crate) async fn get(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(seq): Path<String>,
) -> Result<axum::Json<Record>, ApiError> {
    let seq = parse_seq(&seq)?;
    Ok(axum::Json(state.registry.audit_record(&actor, seq).await?))
}

/// For one audit record: who owns the agent, who approved the access that allowed the action,
/// and who can revoke it, as the record names them and as they are now. Admins and auditors
/// only.
#[utoipa::path(get, path = "/v1/audit/{seq}/why", operation_id = "explainAuditRecord", tag = "audit",
    params(("seq" = u64, Path, description = "The record's sequence number")),
    responses(
        (status = 200, description = "Who owns, approved and can revoke", body = Why),
        (status = 403, description = "The caller is neither an admin nor an auditor"),
    ))]
pub(crate) async fn why(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Path(seq): Path<String>,
) -> Result<axum::Json<Why>, ApiError> {
    let seq = parse_seq(&seq)?;
    Ok(axum::Json(state.registry.audit_why(&actor, seq).await?))
}

/// Lists the signed checkpoints, by ascending sequence number: export them and keep them
/// elsewhere to detect truncation or rewriting later. Admins and auditors only.
#[utoipa::path(get, path = "/v1/audit/checkpoints", operation_id = "listAuditCheckpoints", tag = "audit",
    responses(
        (status = 200, description = "Every checkpoint", body = Vec<Checkpoint>),
        (status = 403, description = "The caller is neither an admin nor an auditor"),
    ))]
pub(crate) async fn checkpoints(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<Checkpoint>>, ApiError> {
    Ok(axum::Json(state.registry.audit_checkpoints(&actor).await?))
}

/// One checkpoint verification key as a JWK (RFC 8037: `OKP`, `Ed25519`).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct CheckpointKey {
    /// Always `OKP`.
    kty: String,
    /// Always `Ed25519`.
    crv: String,
    /// The key ID checkpoints name in `key_id`.
    kid: String,
    /// The public key, base64url without padding.
    x: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    use_: String,
    /// Always `EdDSA`.
    alg: String,
}

/// A JSON Web Key Set (RFC 7517).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct CheckpointKeys {
    /// The keys.
    keys: Vec<CheckpointKey>,
}

/// The public keys that sign checkpoints, as a JWKS, for verifying checkpoints offline.
/// Admins and auditors only.
#[utoipa::path(get, path = "/v1/audit/keys", operation_id = "listAuditKeys", tag = "audit",
    responses(
        (status = 200, description = "The checkpoint keys", body = CheckpointKeys),
        (status = 403, description = "The caller is neither an admin nor an auditor"),
    ))]
pub(crate) async fn keys(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<CheckpointKeys>, ApiError> {
    let keys = state.registry.audit_keys(&actor).await?;
    Ok(axum::Json(CheckpointKeys {
        keys: keys
            .into_iter()
            .map(|(kid, key)| CheckpointKey {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                kid,
                x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
                use_: "sig".into(),
                alg: "EdDSA".into(),
            })
            .collect(),
    }))
}

/// The export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Format {
    /// The records as stored, one JSON object per line.
    #[default]
    Jsonl,
    /// One OCSF event per line.
    Ocsf,
}

/// The export format parameter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// `jsonl` (the records, verifiable with the checkpoints) or `ocsf` (OCSF 1.8.0 events for
    /// SIEMs); default `jsonl`.
    format: Option<String>,
}

/// Where an export stands between chunks.
enum Export {
    /// This page is to be sent next.
    Page(AuditPage),
    /// Reading the next page failed; the body ends with an error, so the client cannot take a
    /// partial export for a whole one.
    Failed(std::io::Error),
    /// Everything was sent.
    Done,
}

fn encode(records: &[Record], format: Format) -> Result<Bytes, std::io::Error> {
    let mut out = Vec::with_capacity(records.len() * 512);
    for record in records {
        match format {
            Format::Jsonl => serde_json::to_writer(&mut out, record)?,
            Format::Ocsf => serde_json::to_writer(&mut out, &rein_audit::ocsf::to_ocsf(record))?,
        }
        out.push(b'\n');
    }
    Ok(Bytes::from(out))
}

async fn next_page(registry: &Registry, actor: &Actor, after: u64) -> Export {
    match registry
        .audit_records(actor, &AuditFilter::default(), Some(after), EXPORT_PAGE)
        .await
    {
        Ok(page) => Export::Page(page),
        Err(e) => {
            tracing::error!(error = %e, after, "audit export failed after record");
            Export::Failed(std::io::Error::other(
                "the audit export failed; the cause has been logged",
            ))
        }
    }
}

/// Streams every record in sequence order as JSON Lines: the records as stored (`jsonl`), or
/// OCSF events (`ocsf`). The log is read a page at a time, never whole; if reading fails midway,
/// the response ends abnormally rather than looking complete. Admins and auditors only.
#[utoipa::path(get, path = "/v1/audit/export", operation_id = "exportAuditLog", tag = "audit", params(ExportQuery),
    responses(
        (status = 200, description = "One record (or OCSF event) per line", content_type = "application/jsonl", body = String),
        (status = 403, description = "The caller is neither an admin nor an auditor"),
    ))]
pub(crate) async fn export(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = match query.format.as_deref().filter(|f| !f.is_empty()) {
        None | Some("jsonl") => Format::Jsonl,
        Some("ocsf") => Format::Ocsf,
        Some(other) => {
            return Err(DomainError::invalid(
                "format",
                format!("`{other}` is not an export format: use `jsonl` or `ocsf`"),
            )
            .into())
        }
    };
    // The first page is read before the response starts, so refusals are problem documents.
    let first = state
        .registry
        .audit_records(&actor, &AuditFilter::default(), None, EXPORT_PAGE)
        .await?;
    let registry = state.registry.clone();
    let chunks = futures_util::stream::unfold(Export::Page(first), move |export| {
        let registry = registry.clone();
        let actor = actor.clone();
        async move {
            match export {
                Export::Done => None,
                Export::Failed(e) => Some((Err(e), Export::Done)),
                Export::Page(page) => {
                    let chunk = encode(&page.records, format);
                    let next = match page.next {
                        Some(after) if chunk.is_ok() => next_page(&registry, &actor, after).await,
                        _ => Export::Done,
                    };
                    Some((chunk, next))
                }
            }
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSONL));
    Ok(response)
}

/// The outcome of verifying the stored chain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Verification {
    /// Whether the chain verified.
    ok: bool,
    /// The first problem, in words (`null` when intact).
    message: Option<String>,
    /// The verifier's report: `records` verified, `head` (`[seq, hash]`),
    /// `checkpoints_verified`, and `problem` (the first finding, with its `kind`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    report: Report,
}

/// Verifies the stored chain from its first record against the stored checkpoints and their
/// keys, and names the first record that was altered, inserted, deleted or reordered, or a
/// truncation. Admins and auditors only. For verification independent of this server, export
/// the log and its checkpoints and run `rein audit verify --file`.
#[utoipa::path(get, path = "/v1/audit/verify", operation_id = "verifyAuditLog", tag = "audit",
    responses(
        (status = 200, description = "The verification report (also when it found a problem)", body = Verification),
        (status = 403, description = "The caller is neither an admin nor an auditor"),
    ))]
pub(crate) async fn verify(
    Authenticated(actor): Authenticated,
    State(state): State<AppState>,
) -> Result<axum::Json<Verification>, ApiError> {
    let report = state.registry.verify_audit(&actor).await?;
    Ok(axum::Json(Verification {
        ok: report.ok(),
        message: report.problem.as_ref().map(ToString::to_string),
        report,
    }))
}
