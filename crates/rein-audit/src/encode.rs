//! A direct writer for the canonical encoding (version 1) and the stored record document.
//!
//! Both are defined as what `serde_json` produces for [`Record`](crate::Record) and its hashed
//! part; this module writes the same bytes without going through serde's data model: strings that
//! need no escaping (nearly all of them) are copied in one go, numbers, times and hashes are
//! formatted on the stack. Every path here must stay byte-identical to `serde_json`'s output: the
//! golden vectors pin the canonical form, and the tests at the bottom compare both writers with
//! `serde_json` on records that exercise every field, escape and unusual time.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

use crate::record::{Actor, ActorKind, Event, Hash};

/// Appends the canonical encoding of a record's hashed part, or with `hash` the stored document
/// (`{"seq","time","prev_hash","hash","event"}`, i.e. `serde_json::to_vec(&record)`).
pub(crate) fn write_record(
    out: &mut Vec<u8>,
    seq: u64,
    time: &DateTime<Utc>,
    prev_hash: &Hash,
    hash: Option<&Hash>,
    event: &Event,
) {
    out.extend_from_slice(b"{\"seq\":");
    write_u64(out, seq);
    out.extend_from_slice(b",\"time\":\"");
    write_time(out, time);
    out.extend_from_slice(b"\",\"prev_hash\":\"");
    write_hash(out, prev_hash);
    if let Some(hash) = hash {
        out.extend_from_slice(b"\",\"hash\":\"");
        write_hash(out, hash);
    }
    out.extend_from_slice(b"\",\"event\":");
    write_event(out, event);
    out.push(b'}');
}

/// The event's fields in declaration order, optional ones omitted when absent or empty (as its
/// `skip_serializing_if` attributes say). The destructuring names every field: adding one to
/// [`Event`] does not compile until it is encoded here too (and the encoding versioned).
fn write_event(out: &mut Vec<u8>, e: &Event) {
    let Event {
        event_type,
        actor: Actor { kind, id },
        subject,
        agent,
        task_id,
        system,
        action,
        decision,
        determined_by,
        policy_version,
        approvers,
        revokers,
        argument_digest,
        outcome,
        reason,
        latency_us,
        details,
        synthetic,
    } = e;
    out.extend_from_slice(b"{\"type\":");
    write_str(out, event_type.as_str());
    out.extend_from_slice(b",\"actor\":{\"kind\":");
    write_str(
        out,
        match kind {
            ActorKind::User => "user",
            ActorKind::Agent => "agent",
            ActorKind::Rein => "rein",
        },
    );
    out.extend_from_slice(b",\"id\":");
    write_str(out, id);
    out.push(b'}');
    opt_str(out, "subject", subject.as_deref());
    opt_str(out, "agent", agent.as_deref());
    opt_str(out, "task_id", task_id.as_deref());
    opt_str(out, "system", system.as_deref());
    opt_str(out, "action", action.as_deref());
    opt_str(out, "decision", decision.as_deref());
    list(out, "determined_by", determined_by);
    opt_str(out, "policy_version", policy_version.as_deref());
    list(out, "approvers", approvers);
    list(out, "revokers", revokers);
    opt_str(out, "argument_digest", argument_digest.as_deref());
    out.extend_from_slice(b",\"outcome\":");
    write_str(out, outcome);
    opt_str(out, "reason", reason.as_deref());
    if let Some(latency) = latency_us {
        out.extend_from_slice(b",\"latency_us\":");
        write_u64(out, *latency);
    }
    if !details.is_empty() {
        out.extend_from_slice(b",\"details\":{");
        for (i, (key, value)) in details.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, key);
            out.push(b':');
            write_str(out, value);
        }
        out.push(b'}');
    }
    if *synthetic {
        out.extend_from_slice(b",\"synthetic\":true");
    }
    out.push(b'}');
}

/// `,"name":"value"` if set. Field names are plain ASCII and need no escaping.
fn opt_str(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        field(out, name);
        write_str(out, value);
    }
}

/// `,"name":["a","b"]` if not empty.
fn list(out: &mut Vec<u8>, name: &str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    field(out, name);
    out.push(b'[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, value);
    }
    out.push(b']');
}

fn field(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Whether `serde_json` escapes this byte: `"`, `\` and the control characters below 0x20.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// A JSON string exactly as `serde_json` writes it: `"`, `\`, and `\b \t \n \f \r` escaped by
/// name, other control characters as `\u00XX` with lowercase hex, everything else (including
/// `/`, DEL and non-ASCII) copied.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    // No early exit, so this loop vectorises; the strings are short.
    if !bytes.iter().fold(false, |acc, &b| acc | needs_escape(b)) {
        out.extend_from_slice(bytes);
    } else {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if !needs_escape(b) {
                continue;
            }
            out.extend_from_slice(&bytes[start..i]);
            start = i + 1;
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x09 => out.extend_from_slice(b"\\t"),
                0x0a => out.extend_from_slice(b"\\n"),
                0x0c => out.extend_from_slice(b"\\f"),
                0x0d => out.extend_from_slice(b"\\r"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
            }
        }
        out.extend_from_slice(&bytes[start..]);
    }
    out.push(b'"');
}

/// Decimal, as `serde_json` (itoa) writes integers.
fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is below 10.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Lowercase hex.
fn write_hash(out: &mut Vec<u8>, hash: &Hash) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in hash.0 {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// Two decimal digits of a value below 100.
fn two(out: &mut Vec<u8>, n: u32) {
    // Callers pass calendar and clock fields, all below 100.
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// `chrono`'s `to_rfc3339_opts(SecondsFormat::Micros, true)`: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
/// Years outside 0–9999 and leap seconds take `chrono`'s own path.
fn write_time(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        out.extend_from_slice(t.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        return;
    }
    // `year` is in 0..=9999 here.
    let year = year.unsigned_abs();
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, t.month());
    out.push(b'-');
    two(out, t.day());
    out.push(b'T');
    two(out, t.hour());
    out.push(b':');
    two(out, t.minute());
    out.push(b':');
    two(out, t.second());
    out.push(b'.');
    let micros = nanos / 1000;
    two(out, micros / 10_000);
    two(out, micros / 100 % 100);
    two(out, micros % 100);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;
    use crate::record::{EventType, Record};

    fn canonical_via_serde(r: &Record) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Hashed<'a> {
            seq: u64,
            time: String,
            prev_hash: &'a Hash,
            event: &'a Event,
        }
        serde_json::to_vec(&Hashed {
            seq: r.seq,
            time: r.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            prev_hash: &r.prev_hash,
            event: &r.event,
        })
        .unwrap_or_default()
    }

    fn check(r: &Record) {
        let mut canonical = Vec::new();
        write_record(&mut canonical, r.seq, &r.time, &r.prev_hash, None, &r.event);
        assert_eq!(
            String::from_utf8_lossy(&canonical),
            String::from_utf8_lossy(&canonical_via_serde(r))
        );
        let mut document = Vec::new();
        write_record(
            &mut document,
            r.seq,
            &r.time,
            &r.prev_hash,
            Some(&r.hash),
            &r.event,
        );
        assert_eq!(
            String::from_utf8_lossy(&document),
            serde_json::to_string(r).unwrap_or_default()
        );
    }

    fn every_field(text: &str) -> Event {
        let mut e = Event::new(
            EventType::GatewayCall,
            Actor {
                kind: ActorKind::User,
                id: text.to_owned(),
            },
            text,
        );
        e.subject = Some(text.to_owned());
        e.agent = Some(text.to_owned());
        e.task_id = Some(text.to_owned());
        e.system = Some(text.to_owned());
        e.action = Some(text.to_owned());
        e.decision = Some(text.to_owned());
        e.determined_by = vec![text.to_owned(), String::new(), "b".to_owned()];
        e.policy_version = Some(text.to_owned());
        e.approvers = vec![text.to_owned()];
        e.revokers = vec!["x".to_owned(), text.to_owned()];
        e.argument_digest = Some(text.to_owned());
        e.reason = Some(text.to_owned());
        e.latency_us = Some(u64::MAX);
        e.details = BTreeMap::from([
            (text.to_owned(), text.to_owned()),
            ("a".to_owned(), String::new()),
            (String::new(), "z".to_owned()),
        ]);
        e.synthetic = true;
        e
    }

    #[test]
    fn matches_serde_json_on_every_field_and_escape() {
        let mut nasty: String = (0u8..0x80).map(char::from).collect();
        nasty.push_str("é…😀\u{7f}\u{2028}/\\\"");
        let times = [
            Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).single(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).single(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).single(),
        ];
        let mut checked = 0;
        for (i, time) in times.into_iter().flatten().enumerate() {
            for micros in [0, 1, 999_999, 123_456] {
                let time = time + chrono::Duration::microseconds(micros);
                for text in ["", "plain", nasty.as_str(), "\"", "\u{1f}"] {
                    for kind in [ActorKind::User, ActorKind::Agent, ActorKind::Rein] {
                        let mut event = every_field(text);
                        event.actor.kind = kind;
                        check(&Record::chain(i as u64, time, Hash([0xa5; 32]), event));
                        let minimal = Event::new(
                            EventType::Decision,
                            Actor {
                                kind,
                                id: text.to_owned(),
                            },
                            text,
                        );
                        check(&Record::chain(u64::MAX, time, Hash::GENESIS, minimal));
                        checked += 2;
                    }
                }
            }
        }
        assert_eq!(checked, 5 * 4 * 5 * 3 * 2);
        // A leap second (nanoseconds ≥ 10⁹) takes chrono's path.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 1_500_000))
            .map(|t| t.and_utc());
        assert!(leap.is_some());
        if let Some(leap) = leap {
            check(&Record::chain(7, leap, Hash::GENESIS, every_field("x")));
        }
    }

    #[test]
    fn every_event_type_matches_serde_json() {
        for &t in EventType::ALL {
            let event = Event::new(
                t,
                Actor {
                    kind: ActorKind::Rein,
                    id: "rein".to_owned(),
                },
                "success",
            );
            check(&Record::chain(1, Utc::now(), Hash::GENESIS, event));
        }
    }
}
