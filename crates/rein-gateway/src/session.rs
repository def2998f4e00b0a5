//! One agent's session with one system: its upstream, the requests in flight, and the event
//! streams the client reads (one per request, plus the session's own stream of messages the
//! upstream starts), each kept for a while so a client that lost it can resume it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::sse;
use rein_core::id::{AgentId, SystemName};
use rein_oauth::AccessTokenClaims;
use serde_json::Value;
use subtle::ConstantTimeEq as _;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{self, id_key, Kind};
use crate::upstream::Upstream;
use crate::Error;

/// The ID of the session's own stream (messages the upstream starts).
pub(crate) const SESSION_STREAM: &str = "g";
/// Finished request streams kept for resumption.
const KEPT_STREAMS: usize = 64;
/// How long a stream of a closed session waits for its request's last event.
const CLOSING_GRACE: Duration = Duration::from_millis(500);
/// Events kept on the session's own stream.
const KEPT_EVENTS: usize = 1024;

/// An ordered, resumable stream of messages for the client.
pub(crate) struct EventStream {
    id: String,
    state: Mutex<StreamState>,
    changed: Notify,
}

#[derive(Default)]
struct StreamState {
    events: VecDeque<(u64, Arc<str>)>,
    next: u64,
    done: bool,
    /// Whether a client is reading it now (a second reader is refused).
    attached: bool,
}

impl EventStream {
    fn new(id: String) -> Arc<Self> {
        Arc::new(Self {
            id,
            state: Mutex::new(StreamState::default()),
            changed: Notify::new(),
        })
    }

    /// Appends a message.
    pub(crate) fn push(&self, message: &Value) {
        if let Ok(mut s) = self.state.lock() {
            let seq = s.next;
            s.next += 1;
            s.events.push_back((seq, Arc::from(message.to_string())));
            if s.events.len() > KEPT_EVENTS {
                s.events.pop_front();
            }
        }
        self.changed.notify_waiters();
    }

    /// Ends the stream after what it holds.
    pub(crate) fn finish(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.done = true;
        }
        self.changed.notify_waiters();
    }

    /// Claims the stream for one reader, or `None` if someone reads it already.
    pub(crate) fn attach(self: &Arc<Self>) -> Option<Reader> {
        let mut s = self.state.lock().ok()?;
        if s.attached {
            return None;
        }
        s.attached = true;
        Some(Reader(Arc::clone(self)))
    }

    /// The SSE events after `after` (all when `None`), then the live ones, until the stream
    /// finishes or `closed` is cancelled.
    pub(crate) fn events(
        reader: Reader,
        after: Option<u64>,
        closed: CancellationToken,
    ) -> impl futures_util::Stream<Item = Result<sse::Event, Infallible>> + Send {
        futures_util::stream::unfold(
            (reader, after, closed),
            |(reader, cursor, closed)| async move {
                let stream = Arc::clone(&reader.0);
                loop {
                    let waiting = stream.changed.notified();
                    let next = {
                        let Ok(s) = stream.state.lock() else {
                            return None;
                        };
                        let next = s
                            .events
                            .iter()
                            .find(|(seq, _)| cursor.is_none_or(|c| *seq > c))
                            .cloned();
                        match next {
                            Some(event) => Some(event),
                            None if s.done => return None,
                            None => None,
                        }
                    };
                    if let Some((seq, data)) = next {
                        let event = sse::Event::default()
                            .event("message")
                            .id(format!("{}-{seq}", stream.id))
                            .data(data.as_ref());
                        return Some((Ok(event), (reader, Some(seq), closed)));
                    }
                    // A closing session's requests still write their last word (the error
                    // saying why); the stream ends once that is out, or after a grace period.
                    if closed.is_cancelled() {
                        if tokio::time::timeout(CLOSING_GRACE, waiting).await.is_err() {
                            return None;
                        }
                        continue;
                    }
                    tokio::select! {
                        () = waiting => {}
                        () = closed.cancelled() => {}
                    }
                }
            },
        )
    }
}

/// The one reader of a stream; releases it when dropped (the client disconnected).
pub(crate) struct Reader(Arc<EventStream>);

impl Drop for Reader {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.lock() {
            s.attached = false;
        }
    }
}

/// The streams kept: by ID, and the request streams in the order they were opened.
#[derive(Default)]
struct Streams {
    by_id: HashMap<String, Arc<EventStream>>,
    order: VecDeque<String>,
}

/// The latest token the client presented, and its claims as verified then.
pub(crate) struct Verified {
    /// The token.
    pub(crate) token: String,
    /// Its claims (signature, issuer, audience and lifetime checked).
    pub(crate) claims: AccessTokenClaims,
}

/// A request forwarded upstream, waiting for its response.
struct Pending {
    respond: oneshot::Sender<Value>,
    stream: Arc<EventStream>,
    progress: Option<Value>,
    order: u64,
}

/// A session.
pub(crate) struct Session {
    /// Its ID (`Mcp-Session-Id`): 128 random bits.
    pub(crate) id: String,
    /// The system.
    pub(crate) system: SystemName,
    /// The agent.
    pub(crate) agent: AgentId,
    verified: Mutex<Verified>,
    last_used: Mutex<Instant>,
    upstream: Upstream,
    pending: Mutex<HashMap<String, Pending>>,
    /// Requests in flight by ID, cancelled by the client's `notifications/cancelled`.
    inflight: Mutex<HashMap<String, CancellationToken>>,
    streams: Mutex<Streams>,
    counter: AtomicU64,
    closed: CancellationToken,
    why_closed: Mutex<Option<String>>,
}

impl Session {
    /// A session over `upstream`, routing what the upstream sends from `incoming`.
    pub(crate) fn start(
        system: SystemName,
        verified: Verified,
        upstream: Upstream,
        incoming: mpsc::Receiver<Value>,
    ) -> Arc<Self> {
        let mut streams = Streams::default();
        streams.by_id.insert(
            SESSION_STREAM.to_owned(),
            EventStream::new(SESSION_STREAM.to_owned()),
        );
        let session = Arc::new(Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            system,
            agent: verified.claims.sub.clone(),
            verified: Mutex::new(verified),
            last_used: Mutex::new(Instant::now()),
            upstream,
            pending: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            streams: Mutex::new(streams),
            counter: AtomicU64::new(0),
            closed: CancellationToken::new(),
            why_closed: Mutex::new(None),
        });
        tokio::spawn(route(Arc::downgrade(&session), incoming));
        session
    }

    /// The claims of the latest token the client presented.
    pub(crate) fn claims(&self) -> Option<AccessTokenClaims> {
        self.verified.lock().ok().map(|v| v.claims.clone())
    }

    /// The claims of `token` if it is the token this session last verified (compared in
    /// constant time), so that only its expiry and the facts need checking again.
    pub(crate) fn known_claims(&self, token: &str) -> Option<AccessTokenClaims> {
        let v = self.verified.lock().ok()?;
        bool::from(v.token.as_bytes().ct_eq(token.as_bytes())).then(|| v.claims.clone())
    }

    /// Notes a request with `token` (whose `claims` were just checked): the session is in use,
    /// and from now on checked with that token.
    pub(crate) fn touch(&self, token: &str, claims: &AccessTokenClaims) {
        if let Ok(mut v) = self.verified.lock() {
            if v.token != token {
                *v = Verified {
                    token: token.to_owned(),
                    claims: claims.clone(),
                };
            }
        }
        if let Ok(mut at) = self.last_used.lock() {
            *at = Instant::now();
        }
    }

    /// How long since the last request.
    pub(crate) fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|at| at.elapsed())
            .unwrap_or(Duration::MAX)
    }

    /// Cancelled when the session closes.
    pub(crate) fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Why it closed, once it has.
    pub(crate) fn why_closed(&self) -> String {
        self.why_closed
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .unwrap_or_else(|| "closed".into())
    }

    /// Closes the session: waiters fail, streams end, the upstream stops.
    pub(crate) fn close(&self, why: &str) {
        if let Ok(mut w) = self.why_closed.lock() {
            w.get_or_insert_with(|| why.to_owned());
        }
        self.closed.cancel();
        self.upstream.close();
        if let Some(own) = self.stream(SESSION_STREAM) {
            own.finish();
        }
    }

    /// A new stream for one request's response.
    pub(crate) fn new_stream(&self) -> Arc<EventStream> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let stream = EventStream::new(format!("r{n}"));
        if let Ok(mut s) = self.streams.lock() {
            s.by_id.insert(stream.id.clone(), Arc::clone(&stream));
            s.order.push_back(stream.id.clone());
            while s.order.len() > KEPT_STREAMS {
                if let Some(old) = s.order.pop_front() {
                    s.by_id.remove(&old);
                }
            }
        }
        stream
    }

    /// The stream `id` (`g` for the session's own), if it is still kept.
    pub(crate) fn stream(&self, id: &str) -> Option<Arc<EventStream>> {
        self.streams.lock().ok()?.by_id.get(id).cloned()
    }

    /// Registers an in-flight request; the token is cancelled if the client cancels it.
    pub(crate) fn begin(&self, id: &Value) -> CancellationToken {
        let token = self.closed.child_token();
        if let Ok(mut f) = self.inflight.lock() {
            f.insert(id_key(id), token.clone());
        }
        token
    }

    /// The request is answered (or abandoned).
    pub(crate) fn end(&self, id: &Value) {
        if let Ok(mut f) = self.inflight.lock() {
            f.remove(&id_key(id));
        }
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id_key(id));
        }
    }

    /// The client cancelled request `id`.
    pub(crate) fn cancel(&self, id: &Value) {
        if let Some(t) = self
            .inflight
            .lock()
            .ok()
            .and_then(|f| f.get(&id_key(id)).cloned())
        {
            t.cancel();
        }
    }

    /// Sends `message` upstream as is.
    pub(crate) async fn send(&self, message: Value) -> Result<(), Error> {
        self.upstream.send(message).await
    }

    /// Forwards request `message` (with ID `id`) and waits for the upstream's response, while
    /// what the upstream sends about it (progress, its own requests) goes to `stream`. `None`
    /// if `cancelled` first (by the client, or the session closing).
    pub(crate) async fn forward(
        &self,
        id: &Value,
        message: Value,
        stream: &Arc<EventStream>,
        cancelled: &CancellationToken,
        timeout: Duration,
    ) -> Result<Option<Value>, Error> {
        let (respond, response) = oneshot::channel();
        let pending = Pending {
            respond,
            stream: Arc::clone(stream),
            progress: jsonrpc::progress_token(&message),
            order: self.counter.fetch_add(1, Ordering::Relaxed),
        };
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id_key(id), pending);
        }
        self.upstream.send(message).await?;
        tokio::select! {
            r = response => r.map(Some).map_err(|_| Error::Closed(self.why_closed())),
            () = cancelled.cancelled() => Ok(None),
            () = tokio::time::sleep(timeout) => Err(Error::Upstream("the upstream did not answer in time".into())),
        }
    }

    /// Where a message the upstream starts goes: the stream of the latest request in flight,
    /// or the session's own stream.
    fn target(&self, progress: Option<&Value>) -> Option<Arc<EventStream>> {
        let pending = self.pending.lock().ok()?;
        let by_progress = progress.and_then(|token| {
            pending
                .values()
                .find(|p| p.progress.as_ref() == Some(token))
                .map(|p| Arc::clone(&p.stream))
        });
        by_progress
            .or_else(|| {
                pending
                    .values()
                    .max_by_key(|p| p.order)
                    .map(|p| Arc::clone(&p.stream))
            })
            .or_else(|| self.stream(SESSION_STREAM))
    }
}

/// Routes what the upstream sends: responses to their waiting requests, progress to the stream
/// of the request it is about, everything else to the latest request's stream or the session's
/// own. Closes the session when the upstream ends.
async fn route(session: std::sync::Weak<Session>, mut incoming: mpsc::Receiver<Value>) {
    while let Some(message) = incoming.recv().await {
        let Some(session) = session.upgrade() else {
            return;
        };
        match jsonrpc::kind(&message) {
            Some(Kind::Response { id }) => {
                let waiting = session
                    .pending
                    .lock()
                    .ok()
                    .and_then(|mut p| p.remove(&id_key(&id)));
                match waiting {
                    Some(p) => {
                        let _ = p.respond.send(message);
                    }
                    None => tracing::debug!("the upstream answered a request nobody waits for"),
                }
            }
            Some(Kind::Notification { method }) if method == "notifications/progress" => {
                let token = message.pointer("/params/progressToken");
                if let Some(stream) = session.target(token) {
                    stream.push(&message);
                }
            }
            Some(Kind::Notification { method }) if method.ends_with("/list_changed") => {
                if let Some(stream) = session.stream(SESSION_STREAM) {
                    stream.push(&message);
                }
            }
            Some(_) => {
                if let Some(stream) = session.target(None) {
                    stream.push(&message);
                }
            }
            None => tracing::debug!("the upstream sent something that is not JSON-RPC"),
        }
    }
    if let Some(session) = session.upgrade() {
        session.close("the upstream ended");
    }
}
