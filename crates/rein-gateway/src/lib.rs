//! Rein's MCP gateway: the enforcement point in front of agents' tool calls.
//!
//! Each system registered with an `mcp` upstream is served at `/mcp/{system}` over MCP
//! Streamable HTTP (protocol versions 2025-06-18 and 2025-11-25, and 2025-03-26 clients):
//! `POST` carries one JSON-RPC message, answered as an SSE stream for requests (so progress,
//! approvals and the upstream's own requests can flow before the response), `GET` opens the
//! session's stream of server-initiated messages, `DELETE` ends the session. Every event has an
//! ID; a client that lost a stream resumes it with `Last-Event-ID`.
//!
//! An agent authenticates with a Rein access token whose audience is the system
//! (`rein:system:{name}`); without one it gets `401` with a `WWW-Authenticate` header naming the
//! RFC 9728 protected-resource metadata (`/.well-known/oauth-protected-resource/mcp/{system}`),
//! which names Rein as the authorization server. `Origin` and `Host` are checked against the
//! configured ones (DNS-rebinding protection).
//!
//! Each session starts its own upstream: a local process over stdio, or a session with a
//! remote Streamable HTTP server. The upstream's credentials are resolved from stored secrets
//! into its environment or headers at that moment; the agent never sees them and they are
//! never logged.
//!
//! Everything passes through as it is (notifications, progress, logging, cancellation, the
//! upstream's sampling, elicitation and roots requests, pagination, content of any type)
//! except what governance needs ([`enforce`]): `tools/list` lists only the tools the agent may
//! call; `tools/call`, `resources/read`, `resources/subscribe` and `prompts/get` are decided by
//! the decision point, each with its durable decision record before anything is forwarded.
//! A `step_up` opens (or joins) an approval request and the call waits, sending progress
//! notifications, until it is approved (then it is forwarded once), denied or expired. After
//! each call a `gateway.call` record names the agent, task, system, tool, argument digest,
//! decision, approvers, outcome and latency.
//!
//! Sessions follow the decision point's facts: when a write or a revocation lands, every
//! session's token is checked again, and a session whose token no longer holds (token, agent,
//! task, team, environment revoked; agent suspended; grant revoked) is closed at once: its
//! streams end, its in-flight calls fail, its upstream is stopped.

mod enforce;
mod http;
mod jsonrpc;
mod session;
mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rein_core::id::SystemName;
use rein_core::mcp::SecretName;
pub use rein_keys::SecretValue;
use rein_oauth::AccessTokenClaims;
use rein_pdp::{Issuer, Pdp};

pub use http::router;

use session::Session;

/// The MCP protocol versions the gateway speaks.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// Where the gateway finds an upstream's credentials by name.
#[async_trait]
pub trait SecretSource: Send + Sync + 'static {
    /// The value of the secret `name`; an error if it does not exist or cannot be opened.
    async fn reveal(&self, name: &SecretName) -> Result<SecretValue, Error>;
}

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `Origin` values a browser-based client may send (the server's own origin is always
    /// accepted); requests with any other `Origin` are refused.
    pub allowed_origins: Vec<String>,
    /// `Host` values accepted besides the server's own (e.g. a load balancer's name).
    pub allowed_hosts: Vec<String>,
    /// Most sessions open at once on this node; an `initialize` beyond it is refused.
    pub max_sessions: usize,
    /// Most sessions one agent may have open at once on this node (each runs an upstream).
    pub max_sessions_per_agent: usize,
    /// A session with no request for this long is closed and its upstream stopped.
    pub idle_timeout: Duration,
    /// How long to wait for an upstream to answer one request.
    pub upstream_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_sessions: 1024,
            max_sessions_per_agent: 16,
            idle_timeout: Duration::from_secs(30 * 60),
            upstream_timeout: Duration::from_secs(300),
        }
    }
}

/// Why the gateway could not do something. Never carries a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upstream could not be started or reached, or broke the protocol.
    #[error("upstream: {0}")]
    Upstream(String),
    /// A secret the upstream needs is missing or cannot be opened.
    #[error("secret `{0}` is unavailable")]
    Secret(String),
    /// The session is closed (ended, idle, or its access revoked).
    #[error("the session is closed: {0}")]
    Closed(String),
}

/// The gateway: its sessions, and what it needs to decide and record each call.
pub struct Gateway {
    pdp: Arc<Pdp>,
    issuer: Arc<Issuer>,
    secrets: Arc<dyn SecretSource>,
    config: GatewayConfig,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// For Streamable HTTP upstreams: no redirects (a redirect could carry the upstream's
    /// credentials elsewhere).
    client: reqwest::Client,
}

impl Gateway {
    /// A gateway deciding with `pdp`, verifying tokens issued by `issuer`, resolving upstream
    /// credentials from `secrets`. Call [`Gateway::follow_revocations`] to cut sessions off
    /// when access is revoked.
    pub fn new(
        pdp: Arc<Pdp>,
        issuer: Arc<Issuer>,
        secrets: Arc<dyn SecretSource>,
        config: GatewayConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            pdp,
            issuer,
            secrets,
            config,
            sessions: Mutex::new(HashMap::new()),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        })
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or_default()
    }

    /// How many sessions `agent` has open.
    fn sessions_of(&self, agent: &rein_core::id::AgentId) -> usize {
        self.sessions
            .lock()
            .map(|s| {
                s.values()
                    .filter(|x| x.agent == *agent && !x.closed().is_cancelled())
                    .count()
            })
            .unwrap_or(usize::MAX)
    }

    /// The token audience of `system`'s endpoint.
    fn audience(system: &SystemName) -> String {
        rein_oauth::system_audience(system)
    }

    /// Verifies `token` for `system` against the signing keys and the current facts.
    fn verify(&self, token: &str, system: &SystemName) -> Option<AccessTokenClaims> {
        self.pdp
            .verify_agent_token(&self.issuer, token, &Self::audience(system))
            .ok()
    }

    /// Closes every session whose token stopped holding, each time the decision point's
    /// facts change (a write on this node, another replica's announcement, a reload) and at
    /// least every 30 s (tokens expire), and sessions idle past the timeout. The session's
    /// token is checked as [`Pdp::token_still_holds`] checks it (its signature was verified
    /// when it was presented), so a check of every session is cheap. Runs until the gateway is
    /// dropped.
    pub fn follow_revocations(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let mut changed = self.pdp.facts().watch();
        // Also on a clock: a token expires without any write.
        let tick =
            (self.config.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                let woke = tokio::time::timeout(tick, changed.changed()).await;
                if matches!(woke, Ok(Err(_))) {
                    return;
                }
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                gateway.recheck();
            }
        })
    }

    /// Closes the sessions whose access no longer holds, or that sat idle too long, and drops
    /// the ones that ended on their own.
    fn recheck(&self) {
        let sessions: Vec<Arc<Session>> = match self.sessions.lock() {
            Ok(s) => s.values().cloned().collect(),
            // A poisoned table: close everything rather than keep what cannot be checked.
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        };
        for session in sessions {
            if session.closed().is_cancelled() {
                // Ended on its own (its upstream exited): only the table still holds it.
                self.close(&session, "ended");
                continue;
            }
            let valid = session
                .claims()
                .is_some_and(|c| self.pdp.token_still_holds(&c));
            if !valid {
                self.close(&session, "access revoked");
            } else if session.idle_for() > self.config.idle_timeout {
                self.close(&session, "idle");
            }
        }
    }

    /// The open session `id`; a session found closed (its upstream ended) is dropped.
    fn session(&self, id: &str) -> Option<Arc<Session>> {
        let mut sessions = self.sessions.lock().ok()?;
        let session = sessions.get(id).cloned()?;
        if session.closed().is_cancelled() {
            sessions.remove(id);
            return None;
        }
        Some(session)
    }

    /// Ends a session: its in-flight requests fail, its streams end, its upstream stops.
    fn close(&self, session: &Arc<Session>, why: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(&session.id);
        }
        session.close(why);
    }
}
