//! Rein's outgoing webhooks for step-up approvals: when an agent's action needs a human's
//! approval, and when that approval is decided or expires, configured receivers are told.
//!
//! - **What is sent** ([`event`]): an [`Event`] (`approval.requested`, `approval.decided`,
//!   `approval.expired`) with the caller's approval summary and [`Links`] into Rein, as Rein's
//!   JSON ([`Format::Rein`]) or as a Slack incoming-webhook message ([`Format::Slack`]). The
//!   links only lead to Rein: approving or denying happens in Rein's authenticated API.
//! - **How it is signed** ([`signature`]): every attempt carries a fresh
//!   `rein-signature: t=<unix seconds>,v1=<HMAC-SHA256 hex>` over `"<t>." + body`, the delivery
//!   id (`rein-delivery`, stable across retries, for de-duplication) and the event kind
//!   (`rein-event`). Receivers check it with [`verify`], which refuses forged, altered,
//!   replayed and malformed requests with a distinct [`VerifyError`].
//! - **How it is delivered** ([`delivery`]): [`Dispatcher::notify`] returns at once and sends
//!   from background tasks: POST, 2xx is delivered, a 4xx other than 408/429 fails for good,
//!   anything else is retried with capped exponential backoff and jitter (honouring
//!   `Retry-After`) up to [`RetryPolicy::max_attempts`]. Redirects are never followed. Each
//!   [`Delivery`]'s state is recorded in a [`DeliveryLog`] ([`MemoryLog`] when no store is
//!   attached) on creation and after every attempt, for the API to show.
//!
//! Webhook failures never block or approve anything: the outcome of a delivery is recorded and
//! logged, never fed back into the approval. Neither the secret, the signature nor the webhook
//! URL (a Slack webhook URL is a credential) is logged or kept in a delivery.

pub mod delivery;
pub mod event;
pub mod signature;

pub use delivery::{
    Delivery, DeliveryLog, DeliveryLogError, DeliveryState, Dispatcher, DispatcherError, MemoryLog,
    RetryPolicy, Secret, Webhook,
};
pub use event::{Event, EventKind, Format, Links};
pub use signature::{
    sign, verify, VerifyError, DEFAULT_TOLERANCE_SECS, DELIVERY_HEADER, EVENT_HEADER,
    SIGNATURE_HEADER,
};
