//! Rein's HTTP API: the `/v1` management API over the [`Registry`], the audit log (`/v1/audit…`,
//! admins and auditors only), health and readiness, Prometheus metrics and the OpenAPI document.
//!
//! This crate only translates. A handler authenticates the caller (the `Authenticated`
//! extractor, first argument of every `/v1` handler except the public OpenAPI document), parses
//! the path and body, calls one registry method, and returns the record. Permission checks and
//! domain rules live in the registry and the core.
//!
//! Every error is an RFC 9457 `application/problem+json` [`Problem`] with a stable `code`,
//! including axum's own rejections (malformed JSON, unknown fields, wrong content type, oversized
//! body) and unknown routes and methods; the status of each code is decided in one match
//! (`error::classify`). Server errors are logged with their cause and answered with a generic
//! detail.
//!
//! Nothing logs headers: the `Authorization` header is also marked sensitive, so even a debug
//! dump of a request would not show the token. The only response that contains a token is the
//! one that issues it. Nothing logs bodies either: a secret's value (`PUT /v1/secrets/{name}`)
//! goes into the registry sealed and is never in a response, a log line or an audit record.

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header::AUTHORIZATION;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::serve::ListenerExt;
use axum::Router;
use rein_keys::MasterKey;
use rein_pdp::{Issuer, Pdp};
use rein_registry::Registry;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

mod error;
mod extract;
mod metrics;
mod openapi;
mod routes;

pub use error::Problem;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes::{
    agents, approvals, audit, decisions, governance, grants, keys, oauth, posture, reviews,
    revocations, secrets, systems, teams, users,
};

/// The largest request body accepted, in bytes (1 MiB); larger bodies get 413.
const BODY_LIMIT: usize = 1024 * 1024;

/// The largest governance set a plan or apply accepts (a whole repository of manifests).
const GOVERNANCE_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Everything the handlers share: the registry, the decision point, the master key and the
/// metrics. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    registry: Registry,
    pdp: Arc<Pdp>,
    issuer: Arc<Issuer>,
    master: Arc<MasterKey>,
    metrics: Arc<Metrics>,
    gateway: Option<Arc<rein_gateway::Gateway>>,
}

impl AppState {
    /// The state for a server around `pdp` and its registry ([`Pdp::registry`], the one that
    /// keeps the decision point's facts current), issuing agent tokens as `issuer`, sealing
    /// secrets under `master` (the key the issuer's was opened with), with fresh metrics.
    pub fn new(pdp: Arc<Pdp>, issuer: Arc<Issuer>, master: Arc<MasterKey>) -> Self {
        Self {
            registry: pdp.registry().clone(),
            pdp,
            issuer,
            master,
            metrics: Arc::new(Metrics::new()),
            gateway: None,
        }
    }

    /// This state, also serving the MCP gateway at `/mcp/{system}`.
    #[must_use]
    pub fn with_gateway(mut self, gateway: Arc<rein_gateway::Gateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }
}

/// The whole application: `/healthz`, `/readyz`, `/metrics`, and the `/v1` API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/openapi.json", get(routes::openapi_json))
        .route("/v1/whoami", get(users::whoami))
        .route("/v1/users", post(users::create).get(users::list))
        .route("/v1/users/{name}", get(users::get).patch(users::update))
        .route(
            "/v1/users/{name}/tokens",
            post(users::issue_token).get(users::list_tokens),
        )
        .route("/v1/users/{name}/tokens/{id}", delete(users::revoke_token))
        .route("/v1/teams", post(teams::create).get(teams::list))
        .route("/v1/teams/{name}", get(teams::get).patch(teams::update))
        .route("/v1/systems", post(systems::create).get(systems::list))
        .route(
            "/v1/systems/{name}",
            get(systems::get).patch(systems::update),
        )
        .route("/v1/agents", post(agents::create).get(agents::list))
        .route(
            "/v1/agents/{team}/{name}/{environment}",
            get(agents::get).patch(agents::update),
        )
        .route(
            "/v1/agents/{team}/{name}/{environment}/suspend",
            post(agents::suspend),
        )
        .route(
            "/v1/agents/{team}/{name}/{environment}/resume",
            post(agents::resume),
        )
        .route(
            "/v1/agents/{team}/{name}/{environment}/retire",
            post(agents::retire),
        )
        .route(
            "/v1/agents/{team}/{name}/{environment}/keys",
            post(agents::add_key),
        )
        .route(
            "/v1/agents/{team}/{name}/{environment}/keys/{kid}",
            delete(agents::remove_key),
        )
        .route("/v1/grants", post(grants::request).get(grants::list))
        .route("/v1/grants/{id}", get(grants::get))
        .route("/v1/grants/{id}/approve", post(grants::approve))
        .route("/v1/grants/{id}/deny", post(grants::deny))
        .route("/v1/grants/{id}/revoke", post(grants::revoke))
        .route(
            "/v1/revocations",
            post(revocations::create).get(revocations::list),
        )
        .route("/v1/revocations/{id}/lift", post(revocations::lift))
        .route("/v1/posture", get(posture::posture))
        .route(
            "/v1/governance/plan",
            post(governance::plan).layer(DefaultBodyLimit::max(GOVERNANCE_BODY_LIMIT)),
        )
        .route(
            "/v1/governance/apply",
            post(governance::apply).layer(DefaultBodyLimit::max(GOVERNANCE_BODY_LIMIT)),
        )
        .route("/v1/reviews", post(reviews::open).get(reviews::list))
        .route("/v1/reviews/overdue", get(reviews::overdue))
        .route("/v1/reviews/{id}", get(reviews::get))
        .route("/v1/reviews/{id}/close", post(reviews::close))
        .route(
            "/v1/reviews/{id}/agents/{team}/{name}/{environment}",
            get(reviews::item),
        )
        .route(
            "/v1/reviews/{id}/agents/{team}/{name}/{environment}/decide",
            post(reviews::decide),
        )
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{id}", get(approvals::get))
        .route("/v1/approvals/{id}/wait", get(approvals::wait))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/deny", post(approvals::deny))
        .route("/v1/approvals/{id}/deliveries", get(approvals::deliveries))
        .route(
            "/v1/revocations/{id}/propagation",
            get(revocations::propagation),
        )
        .route("/v1/keys/rotate", post(keys::rotate))
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{name}",
            get(secrets::get).put(secrets::set).delete(secrets::delete),
        )
        .route("/v1/authorize", post(decisions::authorize))
        .route("/v1/authorize/batch", post(decisions::authorize_batch))
        .route("/v1/policies", get(decisions::policies))
        .route("/v1/policies/reload", post(decisions::reload))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/checkpoints", get(audit::checkpoints))
        .route("/v1/audit/keys", get(audit::keys))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/{seq}", get(audit::get))
        .route("/v1/audit/{seq}/why", get(audit::why));

    let layers = ServiceBuilder::new()
        // Outermost: nothing below, including the trace layer, may print the token.
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));

    let app = v1
        .route("/oauth2/token", post(oauth::token))
        .route("/oauth2/introspect", post(oauth::introspect))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(metrics::expose))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::route_not_found)
        .with_state(state.clone());
    let app = match &state.gateway {
        Some(gateway) => app.merge(rein_gateway::router(Arc::clone(gateway))),
        None => app,
    };
    app.layer(layers)
}

/// The span of one request: method, matched route, path and request ID. Never headers or the
/// query string.
fn request_span<B>(req: &Request<B>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %req.method(),
        route,
        path = req.uri().path(),
        request_id,
    )
}

/// Serves the application on `listener` until `shutdown` completes, then drains open
/// connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // Small JSON responses on keep-alive connections must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The OpenAPI 3.1 document of the API, as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document()
}

/// The gateway's secret source: secrets stored in the registry, opened with the master key.
pub struct StoredSecrets {
    registry: Registry,
    master: Arc<rein_keys::MasterKey>,
}

impl StoredSecrets {
    /// Secrets of `registry`, sealed under `master`.
    pub fn new(registry: Registry, master: Arc<rein_keys::MasterKey>) -> Self {
        Self { registry, master }
    }
}

#[async_trait::async_trait]
impl rein_gateway::SecretSource for StoredSecrets {
    async fn reveal(
        &self,
        name: &rein_core::mcp::SecretName,
    ) -> Result<rein_gateway::SecretValue, rein_gateway::Error> {
        self.registry
            .reveal_secret(&self.master, name)
            .await
            .map_err(|e| {
                tracing::warn!(secret = %name, error = %e, "an MCP upstream's secret could not be opened");
                rein_gateway::Error::Secret(name.to_string())
            })
    }
}
