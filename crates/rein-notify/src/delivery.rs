//! Sending events to webhooks: one [`Delivery`] per event and webhook, retried with backoff,
//! its state recorded in a [`DeliveryLog`] after every attempt.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, Format};
use crate::signature::{sign, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};

/// A webhook's signing secret. Its `Debug` prints `[redacted]`; it is never serialised.
#[derive(Clone, Deserialize)]
#[serde(from = "String")]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The secret bytes, for signing.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value.into_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A configured receiver. Its `Debug` shows neither the secret nor the URL's path and query
/// (a Slack incoming-webhook URL is itself a credential).
#[derive(Clone, Deserialize)]
pub struct Webhook {
    /// Name shown in deliveries and logs (never the URL).
    pub name: String,
    /// Where the signed body is POSTed. Redirects are not followed: a receiver must not bounce
    /// the signed body elsewhere, so a 3xx answer counts as a failed attempt.
    pub url: String,
    /// Key of the HMAC-SHA256 signature.
    pub secret: Secret,
    /// Body format.
    #[serde(default)]
    pub format: Format,
    /// Events sent to this webhook; empty means all.
    #[serde(default)]
    pub events: Vec<EventKind>,
}

impl Webhook {
    /// Whether this webhook wants events of `kind`.
    pub fn accepts(&self, kind: EventKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = reqwest::Url::parse(&self.url)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_else(|_| "[invalid url]".to_owned());
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &format_args!("{origin}/[redacted]"))
            .field("secret", &self.secret)
            .field("format", &self.format)
            .field("events", &self.events)
            .finish()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet delivered; another attempt is due at `next_attempt_at` (or the first is running).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: a permanent refusal, or every attempt failed.
    Failed,
}

/// One event sent to one webhook, as shown in the API. Never carries the URL, secret or
/// signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Delivery id (UUID v7), sent in the [`DELIVERY_HEADER`] on every attempt.
    pub id: String,
    /// The webhook's name.
    pub webhook: String,
    /// The event's id.
    pub event_id: String,
    /// The event's kind.
    pub event: EventKind,
    /// The approval's id (`approval["id"]`).
    pub subject: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// HTTP status of the last attempt, if the receiver answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When the next attempt is due, while pending after a failed attempt.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the delivery was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Delivery {
    /// A pending delivery of `event` to `webhook`, no attempt made.
    fn new(webhook: &Webhook, event: &Event) -> Self {
        let now = Utc::now();
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            webhook: webhook.name.clone(),
            event_id: event.id.clone(),
            event: event.kind,
            subject: event.subject(),
            state: DeliveryState::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A delivery log could not record a delivery's state.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryLogError {
    /// The log's backend failed.
    #[error("delivery log backend failed: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
}

/// Where delivery state is kept so the API can show it. Called when a delivery is created and
/// after every attempt, with the whole current state (an upsert by id). A failure is logged and
/// does not stop the delivery.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Records `delivery`'s current state, replacing any earlier state of the same id.
    async fn record(&self, delivery: &Delivery) -> Result<(), DeliveryLogError>;
}

/// The delivery log used when no store is attached: the latest state of each delivery, in
/// memory, lost on restart. Bounded: when full, the least recently updated finished delivery
/// (or, failing that, the least recently updated one) makes room.
#[derive(Debug)]
pub struct MemoryLog {
    deliveries: Mutex<HashMap<String, Delivery>>,
    capacity: usize,
}

impl MemoryLog {
    /// Default number of deliveries kept.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// An empty log keeping at most [`Self::DEFAULT_CAPACITY`] deliveries.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty log keeping at most `capacity` (at least 1) deliveries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            deliveries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Every delivery kept, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        let map = self
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Delivery> = map.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// The delivery with id `id`, if kept.
    pub fn get(&self, id: &str) -> Option<Delivery> {
        let map = self
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(id).cloned()
    }
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl DeliveryLog for MemoryLog {
    async fn record(&self, delivery: &Delivery) -> Result<(), DeliveryLogError> {
        let mut map = self
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(&delivery.id) && map.len() >= self.capacity {
            let evict = map
                .values()
                .min_by_key(|d| (d.state == DeliveryState::Pending, d.updated_at))
                .map(|d| d.id.clone());
            if let Some(id) = evict {
                map.remove(&id);
            }
        }
        map.insert(delivery.id.clone(), delivery.clone());
        Ok(())
    }
}

/// How hard to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before giving up (at least 1 is made). Default 6.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; it doubles after each one. Default 1 s.
    pub initial_backoff: Duration,
    /// Longest wait between attempts, also capping `Retry-After`. Default 5 min.
    pub max_backoff: Duration,
    /// Time limit of one attempt, connection to response headers. Default 5 s.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Wait after `failed` attempts: `initial_backoff · 2^(failed-1)`, capped at `max_backoff`,
    /// with jitter (a uniform pick in its upper half) so receivers are not hit in lockstep.
    fn backoff(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        let full = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let full_ms = u64::try_from(full.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(full_ms / 2..=full_ms))
    }
}

/// The dispatcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    /// The HTTP client could not be initialised (TLS backend).
    #[error("could not build the webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Sends events to webhooks. Cheap to clone (shares its HTTP client and log).
///
/// Webhook failures never block or decide anything: [`Dispatcher::notify`] returns at once and
/// the outcome of a delivery is only recorded, never fed back into an approval.
#[derive(Clone)]
pub struct Dispatcher {
    client: reqwest::Client,
    policy: RetryPolicy,
    log: Arc<dyn DeliveryLog>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    Permanent,
    Retry(Option<Duration>),
}

impl Dispatcher {
    /// A dispatcher with its own HTTP client (rustls; redirects never followed, so a signed
    /// body cannot be bounced to another URL).
    pub fn new(policy: RetryPolicy, log: Arc<dyn DeliveryLog>) -> Result<Self, DispatcherError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rein-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(DispatcherError::Client)?;
        Ok(Self {
            client,
            policy,
            log,
        })
    }

    /// Starts delivering `event` to every webhook in `webhooks` that accepts its kind, one tokio
    /// task each, and returns the pending deliveries at once. Outside a tokio runtime nothing
    /// can be sent (nor recorded): the deliveries are returned as failed, and an error logged.
    pub fn notify(&self, webhooks: &[Webhook], event: &Event) -> Vec<Delivery> {
        let runtime = tokio::runtime::Handle::try_current();
        let mut deliveries = Vec::new();
        for webhook in webhooks.iter().filter(|w| w.accepts(event.kind)) {
            let mut delivery = Delivery::new(webhook, event);
            match &runtime {
                Ok(runtime) => {
                    let (this, webhook, event) = (self.clone(), webhook.clone(), event.clone());
                    let pending = delivery.clone();
                    runtime.spawn(async move { this.run(&webhook, &event, pending).await });
                }
                Err(_) => {
                    tracing::error!(webhook = %webhook.name, "no tokio runtime: webhook not sent");
                    delivery.state = DeliveryState::Failed;
                    delivery.last_error = Some("no async runtime to send from".to_owned());
                }
            }
            deliveries.push(delivery);
        }
        deliveries
    }

    /// Delivers `event` to `webhook` and returns once the delivery is delivered or failed,
    /// after up to `max_attempts` attempts. The webhook's event filter is not applied.
    pub async fn deliver_now(&self, webhook: &Webhook, event: &Event) -> Delivery {
        self.run(webhook, event, Delivery::new(webhook, event))
            .await
    }

    async fn run(&self, webhook: &Webhook, event: &Event, mut delivery: Delivery) -> Delivery {
        self.record(&delivery).await;
        let body = match event.body(webhook.format) {
            Ok(body) => body,
            Err(err) => {
                delivery.state = DeliveryState::Failed;
                delivery.last_error = Some(format!("could not encode the body: {err}"));
                delivery.updated_at = Utc::now();
                self.record(&delivery).await;
                return delivery;
            }
        };
        loop {
            delivery.attempts += 1;
            let outcome = self.attempt(webhook, &mut delivery, &body).await;
            let now = Utc::now();
            delivery.updated_at = now;
            delivery.next_attempt_at = None;
            let wait = match outcome {
                Outcome::Delivered => {
                    delivery.state = DeliveryState::Delivered;
                    None
                }
                Outcome::Permanent => {
                    delivery.state = DeliveryState::Failed;
                    None
                }
                Outcome::Retry(_) if delivery.attempts >= self.policy.max_attempts.max(1) => {
                    delivery.state = DeliveryState::Failed;
                    None
                }
                Outcome::Retry(retry_after) => {
                    let wait = retry_after.map_or_else(
                        || self.policy.backoff(delivery.attempts),
                        |after| after.min(self.policy.max_backoff),
                    );
                    delivery.next_attempt_at = chrono::Duration::from_std(wait)
                        .ok()
                        .and_then(|wait| now.checked_add_signed(wait));
                    Some(wait)
                }
            };
            self.log_attempt(&delivery);
            self.record(&delivery).await;
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return delivery,
            }
        }
    }

    /// One signed POST; sets `last_status` and `last_error`.
    async fn attempt(&self, webhook: &Webhook, delivery: &mut Delivery, body: &[u8]) -> Outcome {
        let Some(signature) = sign(webhook.secret.expose(), Utc::now().timestamp(), body) else {
            delivery.last_status = None;
            delivery.last_error = Some("the webhook secret cannot key HMAC-SHA256".to_owned());
            return Outcome::Permanent;
        };
        let sent = self
            .client
            .post(&webhook.url)
            .timeout(self.policy.attempt_timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_HEADER, &delivery.id)
            .header(EVENT_HEADER, delivery.event.as_str())
            .body(body.to_vec())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                delivery.last_status = None;
                delivery.last_error = Some(describe(err));
                return if delivery.last_error.as_deref() == Some(INVALID_URL) {
                    Outcome::Permanent
                } else {
                    Outcome::Retry(None)
                };
            }
        };
        let status = response.status();
        delivery.last_status = Some(status.as_u16());
        if status.is_success() {
            delivery.last_error = None;
            return Outcome::Delivered;
        }
        delivery.last_error = Some(if status.is_redirection() {
            format!("HTTP {status}: redirects are not followed")
        } else {
            format!("HTTP {status}")
        });
        match status.as_u16() {
            408 | 429 => {}
            400..=499 => return Outcome::Permanent,
            _ => {}
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Outcome::Retry(retry_after)
    }

    fn log_attempt(&self, d: &Delivery) {
        let (id, webhook, attempt, status, error) = (
            &d.id,
            &d.webhook,
            d.attempts,
            d.last_status,
            d.last_error.as_deref(),
        );
        match d.state {
            DeliveryState::Delivered => {
                tracing::info!(delivery = %id, %webhook, attempt, ?status, "webhook delivered");
            }
            DeliveryState::Failed => {
                tracing::warn!(delivery = %id, %webhook, attempt, ?status, ?error, "webhook delivery failed");
            }
            DeliveryState::Pending => {
                tracing::debug!(delivery = %id, %webhook, attempt, ?status, ?error, "webhook attempt failed, will retry");
            }
        }
    }

    async fn record(&self, delivery: &Delivery) {
        if let Err(err) = self.log.record(delivery).await {
            tracing::warn!(delivery = %delivery.id, error = %err, "could not record webhook delivery state");
        }
    }
}

const INVALID_URL: &str = "invalid webhook URL";

/// A transport error as text, without the URL (which may itself be a credential).
fn describe(err: reqwest::Error) -> String {
    if err.is_builder() {
        return INVALID_URL.to_owned();
    }
    let err = err.without_url();
    let mut text = if err.is_timeout() {
        "timed out".to_owned()
    } else {
        err.to_string()
    };
    let mut source = err.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
