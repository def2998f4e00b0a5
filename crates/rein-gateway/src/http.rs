//! The Streamable HTTP front: `POST`, `GET` and `DELETE` on `/mcp/{system}`, and the RFC 9728
//! protected-resource metadata of each endpoint.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rein_core::id::SystemName;
use rein_oauth::AccessTokenClaims;
use serde_json::{json, Value};

use crate::enforce::Call;
use crate::jsonrpc::{self, code, Kind};
use crate::session::{EventStream, Session, Verified, SESSION_STREAM};
use crate::{upstream, Gateway, PROTOCOL_VERSIONS};

/// The session header.
const SESSION: &str = "mcp-session-id";
/// The protocol version header.
const VERSION: &str = "mcp-protocol-version";
/// The resumption header.
const LAST_EVENT_ID: &str = "last-event-id";
/// The largest message accepted.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// The gateway's routes: `/mcp/{system}` and its protected-resource metadata.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/mcp/{system}", get(open_stream).post(post).delete(delete))
        .route(
            "/.well-known/oauth-protected-resource/mcp/{system}",
            get(metadata),
        )
        .layer(DefaultBodyLimit::max(MAX_MESSAGE))
        .with_state(gateway)
}

/// Who is calling: the system, the bearer token, its claims, and the open session of that
/// system the request names, if any.
struct Caller {
    system: SystemName,
    token: String,
    claims: AccessTokenClaims,
    session: Option<Arc<Session>>,
}

/// A refusal on its way out (boxed: a response is large).
type Refused = Box<Response>;

/// [`refuse`], boxed.
fn refused(status: StatusCode, message: &str) -> Refused {
    Box::new(refuse(status, message))
}

/// A plain HTTP refusal (before any JSON-RPC exchange).
fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": code::INVALID_REQUEST, "message": message}})
            .to_string(),
    )
        .into_response()
}

impl Gateway {
    /// The public base URL (Rein's issuer), without a trailing slash.
    fn base(&self) -> String {
        self.issuer.issuer().trim_end_matches('/').to_owned()
    }

    /// The endpoint of `system`.
    fn resource(&self, system: &str) -> String {
        format!("{}/mcp/{system}", self.base())
    }

    fn metadata_url(&self, system: &str) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/mcp/{system}",
            self.base()
        )
    }

    /// `401` asking for a token, naming where to learn how to get one.
    fn unauthorized(&self, system: &str, presented: bool) -> Response {
        let mut challenge = format!("Bearer resource_metadata=\"{}\"", self.metadata_url(system));
        if presented {
            challenge.push_str(", error=\"invalid_token\", error_description=\"the access token is invalid, expired, revoked, or not for this system\"");
        }
        let mut response = refuse(
            StatusCode::UNAUTHORIZED,
            "a Rein access token for this system is required",
        );
        if let Ok(v) = HeaderValue::try_from(challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }

    /// DNS-rebinding protection: the `Host` must be this server's (or a configured one), and an
    /// `Origin`, when a browser sends one, must be this server's (or a configured one).
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let base = self.base();
        let authority = base.split("://").nth(1).unwrap_or_default();
        let loopback_port = ["127.0.0.1:", "localhost:", "[::1]:"]
            .iter()
            .find_map(|p| authority.strip_prefix(p));
        let host_ok = |host: &str| {
            host == authority
                || self.config.allowed_hosts.iter().any(|h| h == host)
                || loopback_port.is_some_and(|port| {
                    ["127.0.0.1", "localhost", "[::1]"]
                        .iter()
                        .any(|h| host == format!("{h}:{port}"))
                })
        };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !host_ok(host) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "this Host is not served here",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let scheme = base.split("://").next().unwrap_or("http");
            let own = origin
                .strip_prefix(&format!("{scheme}://"))
                .is_some_and(host_ok);
            if !(own || self.config.allowed_origins.iter().any(|o| o == origin)) {
                return Err(refused(
                    StatusCode::FORBIDDEN,
                    "this Origin may not call the gateway",
                ));
            }
        }
        Ok(())
    }

    /// The bearer token, its verified claims for `system` and the open session the request
    /// names (if any), or the `401` to answer.
    fn authenticate(&self, headers: &HeaderMap, system: &str) -> Result<Caller, Refused> {
        let Ok(name) = system.parse::<SystemName>() else {
            return Err(refused(StatusCode::NOT_FOUND, "no such MCP system"));
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return Err(Box::new(self.unauthorized(system, false)));
        };
        // The token a session verified last needs only its expiry and the facts checked
        // again: its signature, issuer and audience cannot have changed.
        let session = headers
            .get(SESSION)
            .and_then(|h| h.to_str().ok())
            .and_then(|id| self.session(id))
            .filter(|s| s.system == name);
        let claims = match session.as_ref().and_then(|s| s.known_claims(token)) {
            Some(c) => self.pdp.token_still_holds(&c).then_some(c),
            None => self.verify(token, &name),
        };
        match claims {
            Some(claims) => Ok(Caller {
                system: name,
                token: token.to_owned(),
                claims,
                session,
            }),
            None => Err(Box::new(self.unauthorized(system, true))),
        }
    }

    /// For a request within a session: the session the request names, checked against the
    /// token's agent.
    fn named_session(&self, headers: &HeaderMap, caller: &Caller) -> Result<Arc<Session>, Refused> {
        if !headers.contains_key(SESSION) {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "missing Mcp-Session-Id: send `initialize` first",
            ));
        }
        let session = caller
            .session
            .clone()
            .ok_or_else(|| refused(StatusCode::NOT_FOUND, "no such session: initialize again"))?;
        if session.agent != caller.claims.sub {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "the session belongs to another agent",
            ));
        }
        session.touch(&caller.token, &caller.claims);
        Ok(session)
    }

    /// For a request within a session (`GET`, `DELETE`): origin, token and session checked.
    fn request_session(&self, headers: &HeaderMap, system: &str) -> Result<Arc<Session>, Refused> {
        self.check_origin(headers)?;
        let caller = self.authenticate(headers, system)?;
        self.named_session(headers, &caller)
    }

    /// Starts a session: the upstream, then its `initialize` exchange.
    async fn initialize(
        self: &Arc<Self>,
        system: SystemName,
        token: String,
        claims: AccessTokenClaims,
        id: Value,
        message: Value,
    ) -> Response {
        let upstream_config = self
            .pdp
            .facts()
            .lookup(&claims.sub, &system)
            .ok()
            .and_then(|l| l.system)
            .and_then(|s| s.mcp.clone());
        let Some(config) = upstream_config else {
            return refuse(
                StatusCode::NOT_FOUND,
                "this system is not an MCP server registered with Rein",
            );
        };
        if self.session_count() >= self.config.max_sessions {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many gateway sessions; try again later",
            );
        }
        if self.sessions_of(&claims.sub) >= self.config.max_sessions_per_agent {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "this agent has as many sessions open as it may; end one (DELETE) first",
            );
        }
        let (upstream, incoming) = match upstream::connect(
            &config,
            self.secrets.as_ref(),
            &self.client,
        )
        .await
        {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(system = %system, error = %e, "an MCP upstream could not be started");
                return json_response(
                    StatusCode::BAD_GATEWAY,
                    &jsonrpc::error(&id, code::INTERNAL, &e.to_string(), None),
                    None,
                );
            }
        };
        let session = Session::start(
            system.clone(),
            Verified {
                token,
                claims: claims.clone(),
            },
            upstream,
            incoming,
        );
        let message = negotiate(message);
        let stream = session.new_stream();
        let cancelled = session.begin(&id);
        let timeout = self.config.upstream_timeout;
        let answer = session
            .forward(&id, message, &stream, &cancelled, timeout)
            .await;
        session.end(&id);
        let spoken = |r: &Value| {
            r.pointer("/result/protocolVersion")
                .and_then(Value::as_str)
                .is_some_and(|v| PROTOCOL_VERSIONS.contains(&v))
        };
        let response = match answer {
            Ok(Some(r)) if spoken(&r) => r,
            Ok(Some(r)) if r.get("result").is_some() => {
                session.close("initialize failed");
                let why =
                    "the upstream answered with an MCP protocol version the gateway does not speak";
                return json_response(
                    StatusCode::BAD_GATEWAY,
                    &jsonrpc::error(&id, code::INTERNAL, why, None),
                    None,
                );
            }
            Ok(Some(r)) => {
                session.close("initialize failed");
                return json_response(StatusCode::OK, &r, None);
            }
            other => {
                session.close("initialize failed");
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "the upstream did not answer".to_owned(),
                };
                return json_response(
                    StatusCode::BAD_GATEWAY,
                    &jsonrpc::error(&id, code::INTERNAL, &why, None),
                    None,
                );
            }
        };
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(session.id.clone(), Arc::clone(&session));
        }
        tracing::info!(agent = %claims.sub, system = %system, session = %session.id, "gateway session opened");
        json_response(StatusCode::OK, &response, Some(&session.id))
    }
}

/// The client's `initialize`, asking for the newest version the gateway speaks when the client
/// asked for one it does not (the upstream then answers with a version both ends speak).
fn negotiate(mut message: Value) -> Value {
    let asked = message
        .pointer("/params/protocolVersion")
        .and_then(Value::as_str);
    if !asked.is_some_and(|v| PROTOCOL_VERSIONS.contains(&v)) {
        if let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) {
            params.insert("protocolVersion".into(), json!(PROTOCOL_VERSIONS[0]));
        }
    }
    message
}

fn json_response(status: StatusCode, body: &Value, session: Option<&str>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(id) = session.and_then(|s| HeaderValue::try_from(s).ok()) {
        response.headers_mut().insert(SESSION, id);
    }
    response
}

/// An SSE response reading `stream` after `after`.
fn sse(session: &Session, stream: &Arc<EventStream>, after: Option<u64>) -> Response {
    let Some(reader) = stream.attach() else {
        return refuse(StatusCode::CONFLICT, "this stream is being read already");
    };
    let events = EventStream::events(reader, after, session.closed().clone());
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `POST /mcp/{system}`: one JSON-RPC message from the client.
async fn post(
    State(gateway): State<Arc<Gateway>>,
    Path(system): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gateway.check_origin(&headers) {
        return *r;
    }
    let caller = match gateway.authenticate(&headers, &system) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    if let Some(v) = headers.get(VERSION).and_then(|v| v.to_str().ok()) {
        if !PROTOCOL_VERSIONS.contains(&v) {
            return refuse(StatusCode::BAD_REQUEST, "unsupported MCP-Protocol-Version");
        }
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let Some(kind) = jsonrpc::kind(&message) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the body is not one JSON-RPC 2.0 message (batches are not supported)",
        );
    };
    if let Kind::Request { id, method } = &kind {
        if method == "initialize" {
            if headers.contains_key(SESSION) {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "`initialize` starts a new session: send it without Mcp-Session-Id",
                );
            }
            return gateway
                .initialize(
                    caller.system,
                    caller.token,
                    caller.claims,
                    id.clone(),
                    message,
                )
                .await;
        }
    }
    let session = match gateway.named_session(&headers, &caller) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match kind {
        Kind::Request { id, method } => {
            let stream = session.new_stream();
            let cancelled = session.begin(&id);
            let response = sse(&session, &stream, None);
            let call = Call {
                gateway: Arc::clone(&gateway),
                session: Arc::clone(&session),
                claims: caller.claims,
                id,
                method,
                message,
                stream,
                cancelled,
                started: std::time::Instant::now(),
            };
            tokio::spawn(call.run());
            response
        }
        Kind::Notification { method } => {
            if method == "notifications/cancelled" {
                if let Some(id) = message.pointer("/params/requestId") {
                    session.cancel(id);
                }
            }
            forward_one_way(&session, message).await
        }
        Kind::Response { .. } => forward_one_way(&session, message).await,
    }
}

/// Passes a notification or a response on; `202 Accepted`.
async fn forward_one_way(session: &Session, message: Value) -> Response {
    match session.send(message).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => refuse(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

/// `GET /mcp/{system}`: the session's stream of messages the upstream starts, or the
/// resumption of a stream after `Last-Event-ID`.
async fn open_stream(
    State(gateway): State<Arc<Gateway>>,
    Path(system): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match gateway.request_session(&headers, &system) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let resume = headers
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit_once('-'))
        .and_then(|(stream, seq)| Some((stream.to_owned(), seq.parse::<u64>().ok()?)));
    match resume {
        Some((stream, seq)) => match session.stream(&stream) {
            Some(s) => sse(&session, &s, Some(seq)),
            None => refuse(
                StatusCode::NOT_FOUND,
                "that stream can no longer be resumed",
            ),
        },
        None => match session.stream(SESSION_STREAM) {
            Some(s) => sse(&session, &s, None),
            None => refuse(StatusCode::NOT_FOUND, "no such stream"),
        },
    }
}

/// `DELETE /mcp/{system}`: ends the session.
async fn delete(
    State(gateway): State<Arc<Gateway>>,
    Path(system): Path<String>,
    headers: HeaderMap,
) -> Response {
    match gateway.request_session(&headers, &system) {
        Ok(session) => {
            gateway.close(&session, "ended by the client");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => *r,
    }
}

/// `GET /.well-known/oauth-protected-resource/mcp/{system}` (RFC 9728).
async fn metadata(State(gateway): State<Arc<Gateway>>, Path(system): Path<String>) -> Response {
    let Ok(name) = system.parse::<SystemName>() else {
        return refuse(StatusCode::NOT_FOUND, "no such MCP system");
    };
    let scopes: Vec<String> = gateway
        .pdp
        .facts()
        .system(&name)
        .filter(|s| s.mcp.is_some())
        .map(|s| s.actions.keys().map(ToString::to_string).collect())
        .unwrap_or_default();
    if scopes.is_empty() {
        return refuse(StatusCode::NOT_FOUND, "no such MCP system");
    }
    let body = json!({
        "resource": gateway.resource(&system),
        "authorization_servers": [gateway.base()],
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes,
        "resource_name": format!("Rein MCP gateway: {system}"),
        "rein_audience": rein_oauth::system_audience(&name),
    });
    json_response(StatusCode::OK, &body, None)
}
