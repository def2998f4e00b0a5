//! The MCP gateway's added latency on `tools/call`, and how fast a revocation cuts a call in
//! flight.
//!
//! Inside the bench: a minimal upstream MCP server (axum, Streamable HTTP, JSON responses,
//! tools `echo` and `slow`) on loopback, and a Rein server with the gateway over a temporary
//! SQLite store, the 8 example guardrails, a prod system `echo` reached at that upstream, an
//! agent with a registered Ed25519 key and an active grant, all set up through the HTTP API.
//! Every call through the gateway is decided (with its `decision` record durable before the
//! call is forwarded) and leaves a durable `gateway.call` record before its result reaches the
//! agent, as in production.
//!
//! **Added latency.** For each concurrency N, N sessions are opened directly to the upstream
//! and N through the gateway (`/mcp/echo`, with the agent's access token). Each session runs
//! `tools/call echo` in a loop, one call in flight per session; direct and gateway alternate in
//! one-second slices (direct, gateway, direct, …) so both see the same machine. Reported: the
//! p50 and p99 of each, the added latency (gateway − direct at the same percentile), calls/s.
//!
//! **Revocation cut.** Per trial: a fresh token (its own task), a gateway session, and a
//! `tools/call slow` that the upstream holds until its session is deleted. Once the upstream
//! signals the call arrived, the task is revoked through `POST /v1/revocations`; measured is
//! the time from sending the revocation to the client reading the `-32002` response on the
//! call's SSE stream.
//!
//! Knobs: `REIN_BENCH_SECS` (measured seconds per mode and concurrency, default 10),
//! `REIN_BENCH_SESSIONS` (comma-separated, default `1,16,128`), `REIN_BENCH_REVOCATIONS`
//! (trials, default 20).
//!
//! ```sh
//! cargo bench -p rein-server --bench gateway
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use futures_util::StreamExt as _;
use rein_pdp::Pdp;
use rein_registry::{Registry, RegistryConfig, SystemClock};
use rein_server::AppState;
use rein_store::{SqliteStore, Store};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

const PROTOCOL: &str = "2025-11-25";
const SYSTEM: &str = "echo";
const AGENT: &str = "spiffe://rein.local/agent/bench/echo-bot/prod";
const AGENT_PATH: &str = "/v1/agents/bench/echo-bot/prod";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Length of one interleaving slice.
const SLICE: Duration = Duration::from_secs(1);
/// Unrecorded warm-up per mode before each concurrency's measured slices.
const WARM_UP: Duration = Duration::from_millis(500);
/// Longest the bench waits for anything in a revocation trial (a bound, not a sync).
const BOUND: Duration = Duration::from_secs(30);
/// The SPEC's targets.
const TARGET_P50: Duration = Duration::from_millis(1);
const TARGET_P99: Duration = Duration::from_millis(5);
const TARGET_CUT: Duration = Duration::from_millis(100);

// === the upstream: a minimal MCP server over Streamable HTTP ===

/// The upstream's state: its sessions (each with a flag set when the session is deleted), and
/// where it reports that a `slow` call arrived and when it let one go.
#[derive(Clone)]
struct Upstream {
    sessions: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
    next: Arc<AtomicU64>,
    slow_arrived: mpsc::UnboundedSender<String>,
    slow_released: mpsc::UnboundedSender<Instant>,
}

fn rpc_reply(id: &Value, result: Value, session: Option<&str>) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(s) = session {
        response
            .headers_mut()
            .insert("mcp-session-id", HeaderValue::from_str(s).unwrap());
    }
    response
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn upstream_post(State(up): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Notifications (`notifications/initialized`, `notifications/cancelled`) and responses.
    let Some(id) = message.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    if method == "initialize" {
        let session = format!("up-{:016x}", up.next.fetch_add(1, Ordering::Relaxed));
        up.sessions
            .lock()
            .unwrap()
            .insert(session.clone(), watch::channel(false).0);
        let result = json!({
            "protocolVersion": PROTOCOL,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-echo", "version": "1.0.0"},
        });
        return rpc_reply(&id, result, Some(&session));
    }
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(mut deleted) = up
        .sessions
        .lock()
        .unwrap()
        .get(session)
        .map(watch::Sender::subscribe)
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match method {
        "tools/list" => rpc_reply(
            &id,
            json!({"tools": [
                {"name": "echo", "description": "Echoes `text`.",
                 "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
                {"name": "slow", "description": "Answers when its session ends (or after 30 s).",
                 "inputSchema": {"type": "object"}},
            ]}),
            None,
        ),
        "tools/call" => match message.pointer("/params/name").and_then(Value::as_str) {
            Some("echo") => {
                let text = message
                    .pointer("/params/arguments/text")
                    .cloned()
                    .unwrap_or_else(|| json!(""));
                rpc_reply(
                    &id,
                    json!({"content": [{"type": "text", "text": text}]}),
                    None,
                )
            }
            Some("slow") => {
                let _ = up.slow_arrived.send(session.to_owned());
                // Sender dropped or flag set: either way the session is gone.
                let ended = tokio::time::timeout(BOUND, deleted.wait_for(|d| *d))
                    .await
                    .is_ok();
                let _ = up.slow_released.send(Instant::now());
                let text = if ended {
                    "session ended"
                } else {
                    "30 s passed"
                };
                rpc_reply(
                    &id,
                    json!({"content": [{"type": "text", "text": text}]}),
                    None,
                )
            }
            _ => rpc_error(&id, -32602, "unknown tool"),
        },
        "ping" => rpc_reply(&id, json!({}), None),
        _ => rpc_error(&id, -32601, "method not found"),
    }
}

async fn upstream_delete(State(up): State<Upstream>, headers: HeaderMap) -> StatusCode {
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match up.sessions.lock().unwrap().remove(session) {
        Some(flag) => {
            flag.send_replace(true);
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// Serves the upstream on loopback; returns its address.
async fn start_upstream(
    slow_arrived: mpsc::UnboundedSender<String>,
    slow_released: mpsc::UnboundedSender<Instant>,
) -> SocketAddr {
    let state = Upstream {
        sessions: Arc::default(),
        next: Arc::default(),
        slow_arrived,
        slow_released,
    };
    // `GET` (a stream of server-initiated messages) is not offered: axum answers 405.
    let app = axum::Router::new()
        .route("/mcp", post(upstream_post).delete(upstream_delete))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

// === Rein ===

struct Rein {
    addr: SocketAddr,
    admin: String,
    gateway: Arc<rein_gateway::Gateway>,
    _keep: (
        tempfile::TempDir,
        rein_pdp::Upkeep,
        tokio::task::JoinHandle<()>,
    ),
}

/// A Rein server as `rein server` wires it (SQLite store, example guardrails, token issuer,
/// gateway following revocations), on loopback.
async fn start_rein() -> Rein {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("rein.db"))
            .await
            .unwrap(),
    );
    let master = Arc::new(rein_keys::MasterKey::from_bytes(rand::random()));
    let audit = rein_registry::keys::open_audit_log(
        store.clone(),
        &master,
        rein_audit::LogConfig::default(),
    )
    .await
    .unwrap();
    let registry = Registry::new(
        store,
        RegistryConfig::default(),
        Arc::new(SystemClock),
        audit,
    );
    let admin = registry
        .bootstrap_admin(&"admin".parse().unwrap())
        .await
        .unwrap()
        .token;
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let pdp = Pdp::start(registry, Some(policies)).await.unwrap();
    let upkeep = pdp.start_upkeep().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = rein_pdp::Issuer::open(
        pdp.registry(),
        Arc::clone(&master),
        &format!("http://{addr}"),
    )
    .await
    .unwrap();
    let issuer = Arc::new(issuer);
    let gateway = rein_gateway::Gateway::new(
        Arc::clone(&pdp),
        Arc::clone(&issuer),
        Arc::new(rein_server::StoredSecrets::new(
            pdp.registry().clone(),
            Arc::clone(&master),
        )),
        rein_gateway::GatewayConfig::default(),
    );
    let follow = gateway.follow_revocations();
    tokio::spawn(rein_server::serve(
        listener,
        AppState::new(pdp, issuer, master).with_gateway(Arc::clone(&gateway)),
        std::future::pending(),
    ));
    Rein {
        addr,
        admin,
        gateway,
        _keep: (dir, upkeep, follow),
    }
}

/// The HTTP API as a client sees it.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn post(&self, token: &str, path: &str, body: Value, expect: u16) -> Value {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, expect, "POST {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates a user and returns a token for them.
    async fn user(&self, admin: &str, name: &str) -> String {
        self.post(
            admin,
            "/v1/users",
            json!({"name": name, "display_name": name, "role": "member"}),
            201,
        )
        .await;
        let issued = self
            .post(admin, &format!("/v1/users/{name}/tokens"), json!({}), 201)
            .await;
        issued["token"].as_str().unwrap().to_owned()
    }
}

/// The agent's key, registered with Rein.
struct AgentKey {
    key: ed25519_dalek::SigningKey,
    kid: String,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl AgentKey {
    /// A client assertion (RFC 7523) for the token endpoint.
    fn assertion(&self, base: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let claims = json!({
            "iss": AGENT, "sub": AGENT, "aud": format!("{base}/oauth2/token"),
            "iat": now, "exp": now + 120, "jti": format!("a-{:032x}", rand::random::<u128>()),
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }

    /// An access token for the `echo` system in task `task`.
    async fn token(&self, api: &Api, task: &str) -> String {
        let assertion = self.assertion(&api.base);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
            ("resource", "rein:system:echo"),
            ("scope", "echo slow"),
            ("task_id", task),
            ("intent", "gateway benchmark"),
            ("expires_in", "3600"),
        ];
        let r = api
            .client
            .post(format!("{}/oauth2/token", api.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "token: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// Team, users, the MCP system, the agent, its key and an active grant, through the API.
/// Returns the agent's key.
async fn populate(api: &Api, admin: &str, upstream: SocketAddr) -> AgentKey {
    let owner = api.user(admin, "owner").await;
    let approver = api.user(admin, "approver").await;
    api.user(admin, "business").await;
    api.post(
        admin,
        "/v1/teams",
        json!({"name": "bench", "members": ["owner"]}),
        201,
    )
    .await;
    api.post(
        admin,
        "/v1/systems",
        json!({
            "name": SYSTEM, "environment": "prod", "owner_team": "bench",
            "approvers": ["user:approver"], "classification": "internal",
            "actions": {"echo": {"class": "read"}, "slow": {"class": "read"}},
            "mcp": {"transport": "streamable_http", "url": format!("http://{upstream}/mcp")},
        }),
        201,
    )
    .await;
    api.post(
        &owner,
        "/v1/agents",
        json!({
            "team": "bench", "name": "echo-bot", "environment": "prod",
            "description": "Echoes", "use_case": "gateway benchmark",
            "roles": {"business_owner": "business", "approvers": ["user:business"],
                      "revokers": ["user:owner"], "reviewers": ["user:business"],
                      "review_cadence_days": 90},
        }),
        201,
    )
    .await;
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes())});
    let added = api
        .post(&owner, &format!("{AGENT_PATH}/keys"), jwk, 201)
        .await;
    let grant = api
        .post(
            &owner,
            "/v1/grants",
            json!({
                "agent": AGENT, "system": SYSTEM, "actions": ["echo", "slow"],
                "expires_at": (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339(),
                "justification": "gateway benchmark",
            }),
            201,
        )
        .await;
    let id = grant["id"].as_str().unwrap();
    let approved = api
        .post(
            &approver,
            &format!("/v1/grants/{id}/approve"),
            json!({}),
            200,
        )
        .await;
    assert_eq!(approved["status"], "active", "{approved}");
    AgentKey {
        key,
        kid: added["kid"].as_str().unwrap().to_owned(),
    }
}

// === the MCP client ===

/// Where a client sends its messages: the upstream directly, or the gateway with a token.
#[derive(Clone)]
struct Endpoint {
    url: String,
    token: Option<String>,
}

/// An open MCP session.
struct McpSession {
    endpoint: Endpoint,
    id: String,
    next: u64,
}

impl Endpoint {
    fn post(
        &self,
        client: &reqwest::Client,
        session: Option<&str>,
        body: String,
    ) -> reqwest::RequestBuilder {
        let mut req = client
            .post(&self.url)
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(s) = session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", PROTOCOL);
        }
        req
    }

    /// `initialize`, then `notifications/initialized`.
    async fn open(&self, client: &reqwest::Client) -> McpSession {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "rein-bench", "version": "1.0.0"},
        }});
        let r = self
            .post(client, None, init.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "initialize at {}", self.url);
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let (answer, _) = read_response(r, 0).await;
        assert_eq!(answer["result"]["protocolVersion"], PROTOCOL, "{answer}");
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let r = self
            .post(client, Some(&id), note.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        McpSession {
            endpoint: self.clone(),
            id,
            next: 0,
        }
    }
}

impl McpSession {
    /// Sends a request; its response and the moment it was read.
    async fn request(
        &mut self,
        client: &reqwest::Client,
        method: &str,
        params: Value,
    ) -> (Value, Instant) {
        self.next += 1;
        let id = self.next;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let r = self
            .endpoint
            .post(client, Some(&self.id), body.to_string())
            .send()
            .await
            .unwrap();
        read_response(r, id).await
    }

    async fn close(&self, client: &reqwest::Client) {
        let mut req = client
            .delete(&self.endpoint.url)
            .header("mcp-session-id", &self.id);
        if let Some(token) = &self.endpoint.token {
            req = req.bearer_auth(token);
        }
        let _ = req.send().await;
    }
}

/// The JSON-RPC response to request `id`: the body when it is JSON, or the first event carrying
/// it when it is an SSE stream (read to its end afterwards, so the connection is reused; the
/// moment is taken when the response event is parsed).
async fn read_response(r: reqwest::Response, id: u64) -> (Value, Instant) {
    let sse = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !sse {
        let body = r.bytes().await.unwrap();
        let at = Instant::now();
        let value = serde_json::from_slice(&body).unwrap_or_else(
            |_| json!({"error": {"code": 0, "message": String::from_utf8_lossy(&body)}}),
        );
        return (value, at);
    }
    let mut body = r.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut found = None;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            if found.is_some() {
                continue;
            }
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if let Ok(message) = serde_json::from_str::<Value>(&data.join("\n")) {
                let is_response = message.get("result").is_some() || message.get("error").is_some();
                if is_response && message["id"] == id {
                    found = Some((message, Instant::now()));
                }
            }
        }
    }
    found.expect("the SSE stream ended without the response")
}

// === latency ===

#[derive(Default)]
struct Samples {
    /// Latencies of successful calls, in nanoseconds.
    ns: Vec<u64>,
    errors: u64,
    /// Time spent in measured slices.
    busy: Duration,
}

impl Samples {
    fn percentile(&mut self, p: f64) -> Duration {
        self.ns.sort_unstable();
        if self.ns.is_empty() {
            return Duration::ZERO;
        }
        // Nearest rank.
        let rank = ((p * self.ns.len() as f64).ceil() as usize).clamp(1, self.ns.len());
        Duration::from_nanos(self.ns[rank - 1])
    }

    fn rate(&self) -> f64 {
        self.ns.len() as f64 / self.busy.as_secs_f64()
    }
}

/// Every session calls `echo` in a loop until `until`; the sessions come back with their
/// latencies (ns) and error counts.
async fn slice(
    client: &reqwest::Client,
    sessions: Vec<McpSession>,
    until: Instant,
) -> (Vec<McpSession>, Vec<u64>, u64) {
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|mut s| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut ns = Vec::new();
                let mut errors = 0;
                while Instant::now() < until {
                    let text = format!("hello {}", s.next);
                    let started = Instant::now();
                    let (answer, at) = s
                        .request(
                            &client,
                            "tools/call",
                            json!({"name": "echo", "arguments": {"text": text}}),
                        )
                        .await;
                    if answer.pointer("/result/content/0/text") == Some(&json!(text)) {
                        ns.push(u64::try_from((at - started).as_nanos()).unwrap());
                    } else {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("a call failed: {answer}");
                        }
                    }
                }
                (s, ns, errors)
            })
        })
        .collect();
    let mut sessions = Vec::new();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (s, ns, e) = t.await.unwrap();
        sessions.push(s);
        all.extend(ns);
        errors += e;
    }
    (sessions, all, errors)
}

struct Row {
    sessions: usize,
    direct: (Duration, Duration, f64, u64, Duration),
    gateway: (Duration, Duration, f64, u64, Duration),
}

async fn latency_run(
    client: &reqwest::Client,
    direct: &Endpoint,
    gateway: &Endpoint,
    n: usize,
    secs: u64,
) -> Row {
    let open = |e: &Endpoint| {
        let e = e.clone();
        async move { futures_util::future::join_all((0..n).map(|_| e.open(client))).await }
    };
    // [direct, gateway]
    let mut sessions = [open(direct).await, open(gateway).await];
    let mut samples = [Samples::default(), Samples::default()];
    for s in &mut sessions {
        let (back, _, _) = slice(client, std::mem::take(s), Instant::now() + WARM_UP).await;
        *s = back;
    }
    for i in 0..secs * 2 {
        let m = usize::try_from(i % 2).unwrap();
        let started = Instant::now();
        let (back, ns, errors) =
            slice(client, std::mem::take(&mut sessions[m]), started + SLICE).await;
        sessions[m] = back;
        let stats = &mut samples[m];
        stats.busy += started.elapsed();
        stats.ns.extend(ns);
        stats.errors += errors;
    }
    for s in sessions.iter().flatten() {
        s.close(client).await;
    }
    let [mut d, mut g] = samples;
    Row {
        sessions: n,
        direct: (
            d.percentile(0.50),
            d.percentile(0.99),
            d.rate(),
            d.errors,
            d.percentile(1.0),
        ),
        gateway: (
            g.percentile(0.50),
            g.percentile(0.99),
            g.rate(),
            g.errors,
            g.percentile(1.0),
        ),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// `b − a` in milliseconds, signed.
fn added(a: Duration, b: Duration) -> f64 {
    (b.as_secs_f64() - a.as_secs_f64()) * 1e3
}

// === where the time goes ===

/// Latencies (p50, p99) and count of a request sent one at a time for `time`.
async fn probe(
    build: impl Fn() -> reqwest::RequestBuilder,
    time: Duration,
) -> (Duration, Duration, usize) {
    let until = Instant::now() + time;
    let mut v = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let r = build().send().await.unwrap();
        let status = r.status();
        let body = r.bytes().await.unwrap();
        assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
        v.push(started.elapsed());
    }
    let n = v.len();
    let (p50, p99, _) = percentiles(v);
    (p50, p99, n)
}

/// The gateway's own `latency_us` (request arrived → just before its `gateway.call` record is
/// appended: token check, decision with its durable record, the upstream round trip) of the
/// latest 1,000 calls of `task`: p50, p99, records read.
async fn recorded_latency(api: &Api, admin: &str, task: &str) -> (Duration, Duration, usize) {
    let page: Value = api
        .client
        .get(format!(
            "{}/v1/audit?type=gateway.call&task={task}&latest=true&limit=1000",
            api.base
        ))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v: Vec<Duration> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["event"]["latency_us"].as_u64())
        .map(Duration::from_micros)
        .collect();
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO, 0);
    }
    let n = v.len();
    let (p50, p99, _) = percentiles(v);
    (p50, p99, n)
}

// === revocation ===

struct Cut {
    /// Revocation sent → the revocation API answered.
    api: Duration,
    /// Revocation sent → the client read the failing response.
    cut: Duration,
    /// Revocation sent → the upstream saw its session deleted.
    upstream: Option<Duration>,
}

async fn revocation_trial(
    api: &Api,
    admin: &str,
    key: &AgentKey,
    gateway: &Endpoint,
    trial: usize,
    arrived: &mut mpsc::UnboundedReceiver<String>,
    released: &mut mpsc::UnboundedReceiver<Instant>,
) -> Cut {
    let task = format!("revoke-{trial}");
    let endpoint = Endpoint {
        url: gateway.url.clone(),
        token: Some(key.token(api, &task).await),
    };
    let mut session = endpoint.open(&api.client).await;
    let client = api.client.clone();
    let call = tokio::spawn(async move {
        session
            .request(
                &client,
                "tools/call",
                json!({"name": "slow", "arguments": {}}),
            )
            .await
    });
    // The call is in flight once the upstream has it (decided and forwarded by the gateway).
    tokio::time::timeout(BOUND, arrived.recv())
        .await
        .expect("the slow call never reached the upstream")
        .unwrap();
    let sent = Instant::now();
    api.post(
        admin,
        "/v1/revocations",
        json!({"target": {"kind": "task", "agent": AGENT, "task_id": task},
               "reason": "gateway benchmark"}),
        201,
    )
    .await;
    let api_done = sent.elapsed();
    let (answer, at) = tokio::time::timeout(BOUND, call)
        .await
        .expect("the call was not cut")
        .unwrap();
    assert_eq!(answer["error"]["code"], -32002, "{answer}");
    let upstream = tokio::time::timeout(BOUND, released.recv())
        .await
        .ok()
        .flatten()
        .map(|t| t.saturating_duration_since(sent));
    Cut {
        api: api_done,
        cut: at - sent,
        upstream,
    }
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort_unstable();
    let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.50), at(0.99), *v.last().unwrap())
}

fn main() {
    let secs: u64 = std::env::var("REIN_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let concurrency: Vec<usize> = std::env::var("REIN_BENCH_SESSIONS")
        .unwrap_or_else(|_| "1,16,128".into())
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    let trials: usize = std::env::var("REIN_BENCH_REVOCATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    };
    // Three runtimes, as three processes would be: Rein, the upstream, the load generator.
    let server = runtime("rein");
    let upstream_rt = runtime("upstream");
    let client_rt = runtime("client");
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let (released_tx, mut released) = mpsc::unbounded_channel();
    let upstream = upstream_rt.block_on(start_upstream(arrived_tx, released_tx));
    let rein = server.block_on(start_rein());
    client_rt.block_on(async {
        let api = Api {
            base: format!("http://{}", rein.addr),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .build()
                .unwrap(),
        };
        let key = populate(&api, &rein.admin, upstream).await;
        let direct = Endpoint {
            url: format!("http://{upstream}/mcp"),
            token: None,
        };
        let mut gateway = Endpoint {
            url: format!("{}/mcp/{SYSTEM}", api.base),
            token: None,
        };

        println!("tools/call latency, direct vs through the gateway, {secs} s of each per row (1 s slices, interleaved):");
        println!();
        println!("| sessions | direct p50 | direct p99 | direct max | gateway p50 | gateway p99 | gateway max | added p50 | added p99 | direct calls/s | gateway calls/s | errors (d/g) | target |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let probe_secs = 2;
        let probe_time = Duration::from_secs(probe_secs);
        let recorded = concurrency.clone();
        for n in concurrency {
            gateway.token = Some(key.token(&api, &format!("latency-{n}")).await);
            let row = latency_run(&api.client, &direct, &gateway, n, secs).await;
            let (dp50, dp99, drate, derr, dmax) = row.direct;
            let (gp50, gp99, grate, gerr, gmax) = row.gateway;
            let (a50, a99) = (added(dp50, gp50), added(dp99, gp99));
            let met = a50 <= TARGET_P50.as_secs_f64() * 1e3 && a99 <= TARGET_P99.as_secs_f64() * 1e3;
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {a50:+.3} ms | {a99:+.3} ms | {drate:.0} | {grate:.0} | {derr}/{gerr} | {} |",
                row.sessions,
                ms(dp50),
                ms(dp99),
                ms(dmax),
                ms(gp50),
                ms(gp99),
                ms(gmax),
                if met { "met" } else { "**missed**" },
            );
        }
        println!();
        println!("Where the time goes (same run; one request at a time, {probe_secs} s each, except the recorded latencies):");
        println!();
        println!("| path | p50 | p99 | samples |");
        println!("|---|---|---|---|");
        let healthz = probe(|| api.client.get(format!("{}/healthz", api.base)), probe_time).await;
        let authorize_body = json!({"agent": AGENT, "system": SYSTEM, "action": "echo",
            "context": {"task_id": "probe", "intent": "gateway benchmark",
                        "arguments": {"text": "hello"}}});
        let authorize = probe(
            || {
                api.client
                    .post(format!("{}/v1/authorize", api.base))
                    .bearer_auth(&rein.admin)
                    .json(&authorize_body)
            },
            probe_time,
        )
        .await;
        for (name, (p50, p99, n)) in [
            ("Rein `GET /healthz` (HTTP round trip only)", healthz),
            ("Rein `POST /v1/authorize` (API token, decision, durable `decision` record)", authorize),
        ] {
            println!("| {name} | {} | {} | {n} |", ms(p50), ms(p99));
        }
        for n in &recorded {
            let (p50, p99, count) = recorded_latency(&api, &rein.admin, &format!("latency-{n}")).await;
            println!(
                "| gateway's own `latency_us` in `gateway.call` records, {n} session(s), latest {count} | {} | {} | {count} |",
                ms(p50),
                ms(p99)
            );
        }
        println!();
        assert_eq!(
            rein.gateway.session_count(),
            0,
            "the latency sessions were all ended"
        );

        let mut cuts = Vec::new();
        for trial in 0..trials {
            cuts.push(
                revocation_trial(
                    &api,
                    &rein.admin,
                    &key,
                    &gateway,
                    trial,
                    &mut arrived,
                    &mut released,
                )
                .await,
            );
        }
        let open = rein.gateway.session_count();
        let (a50, a99, amax) = percentiles(cuts.iter().map(|c| c.api).collect());
        let (c50, c99, cmax) = percentiles(cuts.iter().map(|c| c.cut).collect());
        let ups: Vec<Duration> = cuts.iter().filter_map(|c| c.upstream).collect();
        println!("revocation of the task of a call in flight through the gateway, {trials} trials (times from sending the revocation):");
        println!();
        println!("| path | p50 | p99 | max |");
        println!("|---|---|---|---|");
        println!("| revocation API answered (201) | {} | {} | {} |", ms(a50), ms(a99), ms(amax));
        println!(
            "| client read the `-32002` response | {} | {} | {} |",
            ms(c50),
            ms(c99),
            ms(cmax)
        );
        if ups.len() == cuts.len() {
            let (u50, u99, umax) = percentiles(ups);
            println!(
                "| upstream saw its session deleted | {} | {} | {} |",
                ms(u50),
                ms(u99),
                ms(umax)
            );
        }
        println!();
        println!(
            "target (cut ≤ 100 ms): {}; gateway sessions left open after the trials: {open}",
            if cmax <= TARGET_CUT { "met (max)" } else if c99 <= TARGET_CUT { "met at p99, not at max" } else { "**missed**" }
        );
    });
}
