//! Rein's OAuth token logic, pure: no HTTP, no store, no clock (callers pass `now`).
//!
//! - **Agent authentication** without shared secrets: `client_credentials` with
//!   `private_key_jwt` (RFC 7523): [`TokenRequest`] parses the form, [`ClientAssertion`]
//!   verifies the agent's signed JWT against its registered keys (EdDSA or ES256), and
//!   [`ReplayCache`] accepts each `jti` once.
//! - **Task-scoped tokens**: [`mint`] checks that the agent's active grants cover every requested
//!   action now and issues an RFC 9068 JWT (`typ: at+jwt`, EdDSA) bound to one system, with a
//!   lifetime of at most the request (default 300 s), each covering grant's limits and 3600 s.
//! - **The agent's side**: [`ClientKey`] holds an agent's private JWK and signs the client
//!   assertions [`ClientAssertion`] verifies (used by `rein token request`).
//! - **Verification** shared by the gateway and `/v1/authorize`: [`verify_access_token`] /
//!   [`TokenVerifier`], with a [`RevocationCheck`] hook for the in-memory revocation index.
//! - **Publication**: [`jwks`], [`published_keys`] (rotation: retired keys stay until their
//!   tokens expired) and [`authorization_server_metadata`] (RFC 8414).
//!
//! Division of labour with the caller (the token endpoint handler): it looks the agent up by
//! [`ClientAssertion::agent_id`] (unknown agent: `invalid_client`), verifies the assertion,
//! records its `jti`, runs decision step 1 on the agent (active, accountable roles in
//! protected environments, nothing revoked covering it: refuse with
//! [`OAuthError::UnauthorizedClient`]) and checks budgets, then calls [`mint`], writes the audit
//! record (claims and intent, never the token) and returns [`MintedToken::response_body`].
//! Errors carry their OAuth code ([`OAuthError::code`]) and a description safe to return.

pub mod assertion;
pub mod client;
pub mod error;
mod jose;
pub mod metadata;
pub mod request;
pub mod token;

pub use assertion::{AssertionClaims, AssertionPolicy, ClientAssertion, ReplayCache};
pub use client::{ClientKey, ClientKeyError, DEFAULT_ASSERTION_LIFETIME_SECS};
pub use error::{ErrorCode, OAuthError};
pub use jose::MAX_JWT_LEN;
pub use metadata::{authorization_server_metadata, jwks, published_keys, token_endpoint};
pub use request::{system_audience, TaskId, TokenRequest};
pub use token::{
    mint, verify_access_token, AccessTokenClaims, MintRequest, MintedToken, NoRevocation,
    RevocationCheck, TokenSigner, TokenVerifier,
};
