//! Token request form parsing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use rein_oauth::request::JWT_BEARER_ASSERTION_TYPE;
use rein_oauth::{ErrorCode, OAuthError, TokenRequest};

fn fields(assertion: &str) -> Vec<(String, String)> {
    [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
        ("client_assertion", assertion),
        ("resource", "rein:system:billing-db"),
        ("scope", "select_rows insert_row"),
        ("task_id", "inv-2026-06"),
        ("intent", "send the June invoices"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn good() -> String {
    assertion(&AgentSigner::ed(1), &claims())
}

fn set(mut f: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    f.retain(|(k, _)| k != key);
    f.push((key.to_owned(), value.to_owned()));
    f
}

fn unset(mut f: Vec<(String, String)>, key: &str) -> Vec<(String, String)> {
    f.retain(|(k, _)| k != key);
    f
}

fn add(mut f: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    f.push((key.to_owned(), value.to_owned()));
    f
}

#[track_caller]
fn refused(f: Vec<(String, String)>, code: ErrorCode, needle: &str) -> OAuthError {
    let e = TokenRequest::from_pairs(f).unwrap_err();
    assert_eq!(e.code(), code, "{e}");
    assert!(e.description().contains(needle), "{e}");
    e
}

#[test]
fn a_complete_request_parses() {
    let r = TokenRequest::from_pairs(fields(&good())).unwrap();
    assert_eq!(r.system.as_str(), "billing-db");
    assert_eq!(r.actions, actions(&["insert_row", "select_rows"]));
    assert_eq!(r.task_id.as_str(), "inv-2026-06");
    assert_eq!(r.intent, "send the June invoices");
    assert_eq!(r.requested_ttl_secs, None);
    assert_eq!(r.assertion.agent_id().as_str(), AGENT);
    assert!(!format!("{r:?}").contains(&good()));
}

#[test]
fn a_url_encoded_body_parses() {
    let body = form_body(&add(
        set(fields(&good()), "resource", "billing-db"),
        "expires_in",
        "120",
    ));
    let r = TokenRequest::from_form_body(body.as_bytes()).unwrap();
    assert_eq!(r.system.as_str(), "billing-db");
    assert_eq!(r.intent, "send the June invoices");
    assert_eq!(r.requested_ttl_secs, Some(120));
    // `+` is a space in forms.
    let r = TokenRequest::from_form_body(
        body.replace("select_rows%20insert_row", "select_rows+insert_row")
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(r.actions.len(), 2);
    let huge = format!("{body}&pad={}", "x".repeat(17 * 1024));
    let e = TokenRequest::from_form_body(huge.as_bytes()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
}

fn form_body(f: &[(String, String)]) -> String {
    f.iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "%20").replace(':', "%3A")))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn grant_type_must_be_client_credentials() {
    refused(
        unset(fields(&good()), "grant_type"),
        ErrorCode::InvalidRequest,
        "`grant_type` is required",
    );
    refused(
        set(fields(&good()), "grant_type", "password"),
        ErrorCode::UnsupportedGrantType,
        "client_credentials",
    );
}

#[test]
fn client_secret_and_other_authentication_are_refused() {
    refused(
        add(fields(&good()), "client_secret", "hunter2"),
        ErrorCode::InvalidClient,
        "private_key_jwt",
    );
    refused(
        unset(
            unset(fields(&good()), "client_assertion"),
            "client_assertion_type",
        ),
        ErrorCode::InvalidClient,
        "client authentication is required",
    );
    refused(
        set(
            fields(&good()),
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
        ),
        ErrorCode::InvalidClient,
        "client_assertion_type",
    );
    refused(
        unset(fields(&good()), "client_assertion"),
        ErrorCode::InvalidClient,
        "`client_assertion` is required",
    );
    refused(
        set(fields(&good()), "client_assertion", "garbage"),
        ErrorCode::InvalidClient,
        "compact JWS",
    );
    // The secret never shows up in the description.
    let e = TokenRequest::from_pairs(add(fields(&good()), "client_secret", "hunter2")).unwrap_err();
    assert!(!e.to_string().contains("hunter2"));
}

#[test]
fn client_id_must_match_the_assertion() {
    assert!(TokenRequest::from_pairs(add(fields(&good()), "client_id", AGENT)).is_ok());
    refused(
        add(
            fields(&good()),
            "client_id",
            "spiffe://rein.local/agent/payments/other/prod",
        ),
        ErrorCode::InvalidClient,
        "`client_id` does not match",
    );
}

#[test]
fn duplicate_parameters_are_refused() {
    refused(
        add(fields(&good()), "scope", "select_rows"),
        ErrorCode::InvalidRequest,
        "`scope` is given more than once",
    );
    refused(
        add(fields(&good()), "grant_type", "client_credentials"),
        ErrorCode::InvalidRequest,
        "`grant_type` is given more than once",
    );
    refused(
        add(fields(&good()), "resource", "rein:system:crm"),
        ErrorCode::InvalidTarget,
        "exactly one `resource`",
    );
}

#[test]
fn empty_values_count_as_absent_and_unknown_parameters_are_ignored() {
    let f = add(add(fields(&good()), "client_secret", ""), "audience", "x");
    assert!(TokenRequest::from_pairs(f).is_ok());
    refused(
        set(fields(&good()), "task_id", ""),
        ErrorCode::InvalidRequest,
        "`task_id` is required",
    );
}

#[test]
fn resource_is_required_and_must_name_a_system() {
    refused(
        unset(fields(&good()), "resource"),
        ErrorCode::InvalidTarget,
        "`resource` is required",
    );
    refused(
        set(fields(&good()), "resource", "https://billing.example/api"),
        ErrorCode::InvalidTarget,
        "rein:system:<name>",
    );
}

#[test]
fn scope_task_intent_and_ttl_are_checked() {
    refused(
        unset(fields(&good()), "scope"),
        ErrorCode::InvalidScope,
        "`scope` is required",
    );
    refused(
        set(fields(&good()), "scope", "select_rows <script>"),
        ErrorCode::InvalidScope,
        "action names",
    );
    refused(
        set(fields(&good()), "task_id", "has space"),
        ErrorCode::InvalidRequest,
        "`task_id`",
    );
    refused(
        unset(fields(&good()), "intent"),
        ErrorCode::InvalidRequest,
        "`intent` is required",
    );
    refused(
        set(fields(&good()), "intent", "line\nbreak"),
        ErrorCode::InvalidRequest,
        "control characters",
    );
    refused(
        set(fields(&good()), "intent", &"x".repeat(1025)),
        ErrorCode::InvalidRequest,
        "1024 bytes",
    );
    for bad in ["0", "3601", "86400", "-1", "1e3", "soon"] {
        refused(
            add(fields(&good()), "expires_in", bad),
            ErrorCode::InvalidRequest,
            "`expires_in` must be",
        );
    }
    let r = TokenRequest::from_pairs(add(fields(&good()), "expires_in", "3600")).unwrap();
    assert_eq!(r.requested_ttl_secs, Some(3600));
}
