//! Webhook delivery end to end: a real axum receiver on 127.0.0.1 answers from a script, and
//! every request it gets is handed to the test over a channel. No sleeps synchronise anything:
//! tests await `deliver_now` or the channel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use rein_notify::{
    verify, Delivery, DeliveryState, Dispatcher, Event, EventKind, Format, Links, MemoryLog,
    RetryPolicy, Secret, VerifyError, Webhook, DEFAULT_TOLERANCE_SECS, DELIVERY_HEADER,
    EVENT_HEADER, SIGNATURE_HEADER,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const SECRET: &str = "whsec-test-0123456789";

/// One request as the receiver got it.
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> String {
        self.headers.get(name).unwrap().to_str().unwrap().to_owned()
    }
}

#[derive(Clone)]
struct Receiver {
    /// Statuses to answer, in order; 200 once empty.
    script: Arc<Mutex<VecDeque<u16>>>,
    seen: mpsc::UnboundedSender<Received>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    r.seen.send(Received { headers, body }).unwrap();
    StatusCode::from_u16(status).unwrap()
}

/// Starts a receiver answering `script` then 200; returns its URL and the requests it gets.
async fn receiver(script: &[u16]) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (seen, rx) = mpsc::unbounded_channel();
    let state = Receiver {
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        seen,
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), rx)
}

fn webhook(url: &str, format: Format) -> Webhook {
    Webhook {
        name: "ops".into(),
        url: url.into(),
        secret: Secret::new(SECRET),
        format,
        events: vec![],
    }
}

fn event(kind: EventKind) -> Event {
    Event::new(
        kind,
        json!({
            "id": "ap-42",
            "agent": "spiffe://rein.local/agent/payments/invoice-bot/prod",
            "system": "ledger",
            "action": "payments.refund",
            "environment": "prod",
            "risk": "high",
            "intent": "refund <script>alert(1)</script> & more",
            "expires_at": "2030-01-01T00:00:00Z",
        }),
        Links {
            approval: "https://rein.example/v1/approvals/ap-42".into(),
            approve: "https://rein.example/v1/approvals/ap-42/approve".into(),
            deny: "https://rein.example/v1/approvals/ap-42/deny".into(),
        },
    )
}

fn dispatcher(max_attempts: u32) -> (Dispatcher, Arc<MemoryLog>) {
    let log = Arc::new(MemoryLog::new());
    let policy = RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        attempt_timeout: Duration::from_secs(5),
    };
    (Dispatcher::new(policy, log.clone()).unwrap(), log)
}

#[tokio::test]
async fn signed_body_verifies_and_forgeries_fail_clearly() {
    let (url, mut rx) = receiver(&[]).await;
    let (dispatcher, _) = dispatcher(3);
    let event = event(EventKind::ApprovalRequested);
    let delivery = dispatcher
        .deliver_now(&webhook(&url, Format::Rein), &event)
        .await;
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!((delivery.attempts, delivery.last_status), (1, Some(200)));
    assert_eq!(delivery.subject, "ap-42");

    let got = rx.recv().await.unwrap();
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header(DELIVERY_HEADER), delivery.id);
    assert_eq!(got.header(EVENT_HEADER), "approval.requested");
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["id"], event.id);
    assert_eq!(body["kind"], "approval.requested");
    assert_eq!(body["links"]["approve"], event.links.approve);

    let header = got.header(SIGNATURE_HEADER);
    let now = Utc::now().timestamp();
    let secret = SECRET.as_bytes();
    assert_eq!(
        verify(secret, &header, &got.body, now, DEFAULT_TOLERANCE_SECS),
        Ok(())
    );

    // Forged: signed with another secret.
    let err = verify(
        b"not-the-secret",
        &header,
        &got.body,
        now,
        DEFAULT_TOLERANCE_SECS,
    );
    assert_eq!(err, Err(VerifyError::Mismatch));
    // Tampered body.
    let mut tampered = got.body.to_vec();
    let at = tampered.iter().position(|&b| b == b'4').unwrap();
    tampered[at] = b'5';
    let err = verify(secret, &header, &tampered, now, DEFAULT_TOLERANCE_SECS);
    assert_eq!(err, Err(VerifyError::Mismatch));
    // Replayed later than the tolerance.
    let err = verify(secret, &header, &got.body, now + 301, 300).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Expired {
                tolerance_secs: 300,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("replay"), "{err}");
    // Malformed.
    for bad in ["", "v1=abc", "t=now,v1=00", "sha256=deadbeef"] {
        let err = verify(secret, bad, &got.body, now, 300).unwrap_err();
        assert!(matches!(err, VerifyError::Malformed(_)), "{bad:?}: {err}");
        assert!(
            err.to_string()
                .starts_with("malformed rein-signature header"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let (url, mut rx) = receiver(&[500, 500]).await;
    let (dispatcher, log) = dispatcher(6);
    let delivery = dispatcher
        .deliver_now(
            &webhook(&url, Format::Rein),
            &event(EventKind::ApprovalRequested),
        )
        .await;
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!(delivery.attempts, 3);
    assert_eq!(
        (delivery.last_status, delivery.last_error.as_deref()),
        (Some(200), None)
    );
    assert_eq!(delivery.next_attempt_at, None);

    // Three requests, one delivery id, each with a valid signature.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let got = rx.recv().await.unwrap();
        let header = got.header(SIGNATURE_HEADER);
        verify(
            SECRET.as_bytes(),
            &header,
            &got.body,
            Utc::now().timestamp(),
            300,
        )
        .unwrap();
        ids.push(got.header(DELIVERY_HEADER));
    }
    assert!(ids.iter().all(|id| *id == delivery.id));
    assert!(rx.try_recv().is_err());
    assert_eq!(log.deliveries(), vec![delivery]);
}

#[tokio::test]
async fn client_errors_fail_at_once() {
    let (url, mut rx) = receiver(&[400]).await;
    let (dispatcher, log) = dispatcher(6);
    let delivery = dispatcher
        .deliver_now(
            &webhook(&url, Format::Rein),
            &event(EventKind::ApprovalExpired),
        )
        .await;
    assert_eq!(delivery.state, DeliveryState::Failed);
    assert_eq!((delivery.attempts, delivery.last_status), (1, Some(400)));
    assert!(delivery.last_error.as_deref().unwrap().contains("400"));
    rx.recv().await.unwrap();
    assert!(rx.try_recv().is_err());
    assert_eq!(log.get(&delivery.id), Some(delivery));
}

#[tokio::test]
async fn throttling_is_retried() {
    let (url, _rx) = receiver(&[429, 408]).await;
    let (dispatcher, _) = dispatcher(6);
    let delivery = dispatcher
        .deliver_now(
            &webhook(&url, Format::Rein),
            &event(EventKind::ApprovalRequested),
        )
        .await;
    assert_eq!(
        (delivery.state, delivery.attempts),
        (DeliveryState::Delivered, 3)
    );
}

#[tokio::test]
async fn unreachable_receiver_fails_after_max_attempts() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let (dispatcher, log) = dispatcher(3);
    let mut hook = webhook(&url, Format::Rein);
    hook.url = format!("{url}?token=very-secret-token");
    let delivery = dispatcher
        .deliver_now(&hook, &event(EventKind::ApprovalRequested))
        .await;
    assert_eq!(delivery.state, DeliveryState::Failed);
    assert_eq!((delivery.attempts, delivery.last_status), (3, None));
    let error = delivery.last_error.clone().unwrap();
    assert!(!error.contains("very-secret-token"), "{error}");
    assert_eq!(log.deliveries(), vec![delivery]);
}

#[tokio::test]
async fn invalid_url_fails_without_retrying() {
    let (dispatcher, _) = dispatcher(6);
    let hook = webhook("not a url", Format::Rein);
    let delivery = dispatcher
        .deliver_now(&hook, &event(EventKind::ApprovalRequested))
        .await;
    assert_eq!(
        (delivery.state, delivery.attempts),
        (DeliveryState::Failed, 1)
    );
}

#[tokio::test]
async fn slack_format_summarises_links_and_escapes() {
    let (url, mut rx) = receiver(&[]).await;
    let (dispatcher, _) = dispatcher(1);
    let event = event(EventKind::ApprovalRequested);
    let delivery = dispatcher
        .deliver_now(&webhook(&url, Format::Slack), &event)
        .await;
    assert_eq!(delivery.state, DeliveryState::Delivered);

    let got = rx.recv().await.unwrap();
    verify(
        SECRET.as_bytes(),
        &got.header(SIGNATURE_HEADER),
        &got.body,
        Utc::now().timestamp(),
        300,
    )
    .unwrap();
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("Rein: Approval requested"), "{text}");
    assert!(
        text.contains("payments.refund") && text.contains("ledger"),
        "{text}"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty());

    let raw = String::from_utf8(got.body.to_vec()).unwrap();
    assert!(raw.contains(&event.links.approve) && raw.contains(&event.links.deny));
    assert!(raw.contains("Approve in Rein") && raw.contains("Deny in Rein"));
    assert!(!raw.contains("<script>"), "{raw}");
    assert!(
        raw.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
        "{raw}"
    );
    for field in [
        "Agent",
        "System",
        "Action",
        "Environment",
        "Risk",
        "Intent",
        "Expires",
    ] {
        assert!(
            raw.contains(&format!("*{field}*")),
            "{field} missing: {raw}"
        );
    }
    assert!(
        !raw.contains("Decided by"),
        "absent fields are omitted: {raw}"
    );
}

#[tokio::test]
async fn notify_returns_at_once_and_filters_by_event_kind() {
    let (url, mut rx) = receiver(&[]).await;
    let (dispatcher, log) = dispatcher(3);
    let mut wanted = webhook(&url, Format::Rein);
    wanted.name = "wanted".into();
    wanted.events = vec![EventKind::ApprovalRequested];
    let mut skipped = webhook(&url, Format::Rein);
    skipped.name = "decisions-only".into();
    skipped.events = vec![EventKind::ApprovalDecided, EventKind::ApprovalExpired];

    let event = event(EventKind::ApprovalRequested);
    let deliveries: Vec<Delivery> = dispatcher.notify(&[skipped.clone(), wanted], &event);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].webhook, "wanted");
    assert_eq!(deliveries[0].state, DeliveryState::Pending);
    assert_eq!(deliveries[0].attempts, 0);
    assert!(!skipped.accepts(EventKind::ApprovalRequested));

    // The spawned task delivers it (the timeout only bounds a broken test).
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.header(DELIVERY_HEADER), deliveries[0].id);
    assert!(log.deliveries().iter().all(|d| d.webhook == "wanted"));
}

#[test]
fn notify_outside_a_runtime_fails_instead_of_panicking() {
    let (dispatcher, log) = dispatcher(3);
    let deliveries = dispatcher.notify(
        &[webhook("http://127.0.0.1:9/", Format::Rein)],
        &event(EventKind::ApprovalExpired),
    );
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].state, DeliveryState::Failed);
    assert!(log.deliveries().is_empty(), "nothing ran");
}

#[test]
fn debug_output_never_shows_secrets() {
    let hook = webhook(
        "https://hooks.slack.com/services/T000/B000/XXXXSECRETPATH",
        Format::Slack,
    );
    let shown = format!("{hook:?} {:?}", hook.secret);
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("XXXXSECRETPATH"), "{shown}");
    assert!(
        shown.contains("[redacted]") && shown.contains("https://hooks.slack.com"),
        "{shown}"
    );
}
