//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! `ToSchema` derives of the core and registry types.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::Modify;

use crate::error::{Problem, PROBLEM_JSON};
use crate::routes::{
    agents, approvals, audit, decisions, governance, grants, keys, posture, reviews, revocations,
    secrets, systems, teams, users,
};

/// The name of the bearer-token security scheme (also spelled out in `security(...)` below).
const BEARER: &str = "bearer";

/// The name of the shared error response.
const PROBLEM_RESPONSE: &str = "Problem";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Rein",
        description = "Governance control plane for AI agents: who owns each agent, who approved its access, who can revoke it, who reviews what it did.",
    ),
    paths(
        crate::routes::openapi_json,
        users::whoami,
        users::create, users::list, users::get, users::update,
        users::issue_token, users::list_tokens, users::revoke_token,
        teams::create, teams::list, teams::get, teams::update,
        systems::create, systems::list, systems::get, systems::update,
        agents::create, agents::list, agents::get, agents::update,
        agents::suspend, agents::resume, agents::retire,
        agents::add_key, agents::remove_key,
        grants::request, grants::list, grants::get,
        grants::approve, grants::deny, grants::revoke,
        decisions::authorize, decisions::authorize_batch, decisions::policies, decisions::reload,
        revocations::create, revocations::list, revocations::lift, revocations::propagation,
        posture::posture,
        governance::plan, governance::apply,
        approvals::list, approvals::get, approvals::wait, approvals::approve, approvals::deny, approvals::deliveries,
        reviews::open, reviews::list, reviews::get, reviews::close, reviews::item, reviews::decide, reviews::overdue,
        keys::rotate,
        secrets::set, secrets::list, secrets::get, secrets::delete,
        audit::list, audit::get, audit::why, audit::checkpoints, audit::keys,
        audit::export, audit::verify,
    ),
    components(schemas(Problem)),
    security(("bearer" = [])),
    modifiers(&Conventions),
    tags(
        (name = "users", description = "Users and who is calling"),
        (name = "tokens", description = "Personal API tokens"),
        (name = "teams", description = "Teams and their members"),
        (name = "systems", description = "Target systems and their classified actions"),
        (name = "agents", description = "Agent identities, lifecycle and public keys"),
        (name = "grants", description = "Grants and their approval path"),
        (name = "decisions", description = "Policy decisions (allow, deny, step-up) and the guardrail set in force"),
        (name = "posture", description = "The posture report: findings mapped to OWASP NHI, OWASP Agentic, NIST AI RMF, NIST CSF and MAESTRO controls"),
        (name = "governance", description = "Governance as code: plan and apply a set of manifests, all or nothing, never approving"),
        (name = "approvals", description = "Step-up approval requests: deciding them, waiting for them, their webhook deliveries"),
        (name = "reviews", description = "Access reviews: reviewers re-certify each agent's grants on its cadence; overdue reviews"),
        (name = "revocations", description = "Revoking tokens, tasks, teams, environments, or every token issued before a time"),
        (name = "keys", description = "Rein's own signing keys"),
        (name = "secrets", description = "Secrets for MCP upstreams (admins): set and rotated by value, shown only as metadata, injected by the gateway, never returned"),
        (name = "audit", description = "The tamper-evident audit log: records, why, checkpoints, export and verification (admins and auditors only)"),
        (name = "meta", description = "About the API itself"),
    ),
)]
struct ApiDoc;

/// What holds for every operation, added once here rather than on each handler: the bearer
/// security scheme, and the problem document as the response for every error status.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            BEARER.to_owned(),
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.responses.insert(
            PROBLEM_RESPONSE.to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(
                        "An RFC 9457 problem; `code` is the stable error code, `status` the HTTP status",
                    )
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            ),
        );
        for item in api.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                operation.responses.responses.insert(
                    "default".to_owned(),
                    RefOr::Ref(Ref::from_response_name(PROBLEM_RESPONSE)),
                );
            }
        }
    }
}

/// The OpenAPI document.
pub(crate) fn document() -> OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}
