//! The properties tickcast's own parsers must keep, one function per fuzz target.
//!
//! Each function takes the raw fuzz input, returns quietly when every property
//! holds, and panics naming the broken property otherwise. The input is never
//! rejected: every byte string means something (see each function for how it is
//! read), so libFuzzer can mutate freely.
//!
//! This file is compiled twice: as the library of the fuzz crate
//! (`scripts/fuzz`, driven by libFuzzer through `scripts/fuzz/run.sh`), and into
//! `tests/fuzz_smoke.rs` with `#[path]`, which replays the seed corpus and
//! deterministic mutations of it on every `cargo test`. So it may use only `std`,
//! `tickcast` and `serde_json`, which both builds have.
//!
//! Where a parser has a clear property (a round trip, a containment, a spec), the
//! check is that property, not just "did not panic".

use std::ffi::OsString;
use std::path::{Component, Path};
use std::time::Duration;

use tickcast::cli::{self, Command};
use tickcast::fuzzing;

/// A property: returns if the input keeps it, panics otherwise.
pub type Property = fn(&[u8]);

/// Every target: its name (also its fuzz binary and its seed folder,
/// `corpus/<name>/`) and its property.
pub const TARGETS: &[(&str, Property)] = &[
    ("cli", cli),
    ("handshake", handshake),
    ("static_path", static_path),
    ("origin", origin),
    ("flash_policy_allow", flash_policy_allow),
    ("json_string", json_string),
    ("lines", lines),
    ("sse_event", sse_event),
    ("publish", publish),
    ("subscription", subscription),
];

/// A user-facing message: not empty, one line, no control characters (the
/// README promises one line naming the flag; a raw escape would reach the
/// terminal).
fn one_line(what: &str, msg: &str) {
    assert!(!msg.is_empty(), "{what}: empty message");
    assert!(
        !msg.chars().any(char::is_control),
        "{what}: message is not one clean line: {msg:?}"
    );
}

// ---------------------------------------------------------------------------
// cli: `--flag value` words, DURATION and BYTES values.

/// The input is the command line, one argument per line (`\n`-separated; the
/// bytes need not be UTF-8). Checks `parse_args` (without the system resolver),
/// `Config::validate` on what it returns, and `parse_duration` / `parse_size` on
/// every word and every `--flag=` value.
pub fn cli(data: &[u8]) {
    let args: Vec<OsString> = data.split(|b| *b == b'\n').map(os_string).collect();
    for arg in &args {
        let text = arg.to_string_lossy();
        let value = text.split_once('=').map_or(&*text, |(_, v)| v);
        for word in [&*text, value] {
            duration(word);
            size(word);
        }
    }
    match fuzzing::parse_args(args) {
        Err(e) => one_line("usage error", &e.0),
        Ok(Command::Help | Command::Version) => {}
        Ok(Command::Run { config, .. }) => {
            assert!(config.max_clients != Some(0), "--max-clients 0 accepted");
            for (flag, bytes) in [
                ("--max-message-size", config.max_message_size),
                ("--max-backlog", config.max_backlog),
                ("--max-header-size", config.max_handshake_size),
            ] {
                assert!(bytes > 0, "{flag} 0 accepted");
            }
            for (flag, every) in [
                ("--interval", config.interval),
                ("--heartbeat", config.heartbeat),
                ("--handshake-timeout", Some(config.handshake_timeout)),
            ] {
                assert!(
                    every.is_none_or(|d| !d.is_zero()),
                    "{flag} of zero accepted"
                );
            }
            for rule in &config.flash_policy_allow {
                assert!(fuzzing::parse_allow(rule).is_ok(), "{rule:?} accepted");
            }
            // The binary hands the config to Server::start, which validates it:
            // that must answer, never panic.
            match config.validate() {
                Ok(()) => {}
                Err(tickcast::Error::InvalidConfig(msg)) => one_line("config error", &msg),
                Err(e) => panic!("validate answered with a non-config error: {e}"),
            }
        }
    }
}

#[cfg(unix)]
fn os_string(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(bytes.to_vec())
}

#[cfg(not(unix))]
fn os_string(bytes: &[u8]) -> OsString {
    String::from_utf8_lossy(bytes).into_owned().into()
}

/// The unit suffixes of DURATION and what each is worth in seconds.
const DURATION_UNITS: [(&str, f64); 3] = [("ms", 0.001), ("s", 1.0), ("m", 60.0)];

/// `parse_duration`: an accepted value is in (0, 1 day], ends in a unit, and the
/// same number with another unit scales by the units' ratio.
fn duration(text: &str) {
    let got = match cli::parse_duration(text) {
        Err(why) => return one_line("parse_duration error", &why),
        Ok(d) => d,
    };
    assert!(
        got > Duration::ZERO && got <= Duration::from_secs(86_400),
        "parse_duration({text:?}) = {got:?}: outside (0, 1 day]"
    );
    let (number, unit_secs) = DURATION_UNITS
        .iter()
        .find_map(|(unit, secs)| Some((text.strip_suffix(unit)?, *secs)))
        .unwrap_or_else(|| panic!("parse_duration({text:?}) accepted a value without a unit"));
    for (other, other_secs) in DURATION_UNITS {
        let Ok(scaled) = cli::parse_duration(&format!("{number}{other}")) else {
            continue;
        };
        let want = got.as_secs_f64() / unit_secs * other_secs;
        // Both sides are rounded to whole nanoseconds; allow for that, scaled.
        let slack = 2e-9 * (1.0 + other_secs / unit_secs) + 1e-12 * want;
        assert!(
            (scaled.as_secs_f64() - want).abs() <= slack,
            "parse_duration({text:?}) = {got:?} but {number}{other} = {scaled:?}"
        );
    }
}

/// `parse_size`: an accepted value is above 0, equals number × unit (B, K/KiB,
/// M/MiB, G/GiB), and its plain byte count parses back to itself.
fn size(text: &str) {
    let got = match cli::parse_size(text) {
        Err(why) => return one_line("parse_size error", &why),
        Ok(n) => n,
    };
    assert!(got > 0, "parse_size({text:?}) = 0");
    let unit = text.trim_start_matches(|c: char| c.is_ascii_digit());
    let number: u128 = text[..text.len() - unit.len()]
        .parse()
        .unwrap_or_else(|_| panic!("parse_size({text:?}) accepted a value without a number"));
    let multiplier: u128 = match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => panic!("parse_size({text:?}) accepted the unit {unit:?}"),
    };
    assert_eq!(got as u128, number * multiplier, "parse_size({text:?})");
    assert_eq!(
        cli::parse_size(&got.to_string()),
        Ok(got),
        "{got} does not parse back"
    );
}

// ---------------------------------------------------------------------------
// handshake: the bytes a client sends on the WebSocket port.

/// Where the request head ends, and how large it may be (the default
/// `--max-header-size`, which `fuzzing::handshake` uses).
const MAX_HEAD: usize = 8 << 10;

/// The input is what a client sends. Every answer is an upgrade, an HTTP
/// refusal (4xx/5xx), or "wait for more" for an unfinished head; an origin list
/// can only turn an answer into 403; the verdict does not depend on how the
/// bytes were split across reads, nor on anything after the head.
pub fn handshake(data: &[u8]) {
    let allowed = [
        "https://example.com".to_string(),
        "http://127.0.0.1:8080".into(),
    ];
    let open = fuzzing::handshake(data, &[]);
    let listed = fuzzing::handshake(data, &allowed);
    for verdict in [open, listed] {
        assert!(
            matches!(verdict, Ok(()) | Err(0 | 400..=599)),
            "answered {verdict:?}: neither an upgrade nor an HTTP error"
        );
    }
    assert!(
        listed == open || listed == Err(403),
        "an origin list changed {open:?} into {listed:?}: it may only refuse with 403"
    );
    for max_read in [1, 7] {
        assert_eq!(
            fuzzing::handshake_trickled(data, &[], max_read),
            open,
            "reads of {max_read} byte(s) changed the verdict"
        );
    }
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match head_end {
        Some(end) if end <= MAX_HEAD => {
            assert_ne!(open, Err(0), "a complete head was left waiting for more");
            assert_eq!(
                fuzzing::handshake(&data[..end], &[]),
                open,
                "bytes after the head (which belong to the WebSocket) changed the verdict"
            );
        }
        Some(_) => assert!(open.is_err(), "a head over {MAX_HEAD} bytes was accepted"),
        None => assert!(open.is_err(), "accepted without a complete head"),
    }
}

// ---------------------------------------------------------------------------
// static_path: URL paths mapped onto files under `--public DIR`.

/// The input is a URL path (lossy UTF-8). A mapped path is relative, made of
/// plain names only, stays inside the public directory, and is exactly the URL
/// path without its leading `/` (nothing dropped or normalised away). A path of
/// plain names is never refused.
pub fn static_path(data: &[u8]) {
    let url = String::from_utf8_lossy(data);
    let Some(relative) = fuzzing::static_path(&url) else {
        let plain = url.strip_prefix('/').is_some_and(|rest| {
            rest.split('/').all(|name| {
                !name.is_empty()
                    && name != "."
                    && name != ".."
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b))
            })
        });
        assert!(!plain, "refused the plain path {url:?}");
        return;
    };
    assert!(relative.is_relative(), "{url:?} -> absolute {relative:?}");
    let names: Vec<String> = relative
        .components()
        .map(|c| match c {
            Component::Normal(name) => name.to_string_lossy().into_owned(),
            other => panic!("{url:?} -> {relative:?} has the component {other:?}"),
        })
        .collect();
    assert_eq!(
        format!("/{}", names.join("/")),
        url,
        "{url:?} -> {relative:?} is not the same path"
    );
    for name in &names {
        assert!(
            !name.contains(['\\', ':', '\0', '%']),
            "{url:?} -> {relative:?}: {name:?} may mean something to a file system"
        );
    }
    let public = Path::new("/srv/public");
    let full = public.join(&relative);
    assert!(
        full.starts_with(public) && !full.components().any(|c| c == Component::ParentDir),
        "{url:?} -> {} escapes {}",
        full.display(),
        public.display()
    );
}

// ---------------------------------------------------------------------------
// origin: the `--allowed-origin` check.

/// The input is an `Origin` value, then the allowed list, one per line. An
/// empty list allows everything; a list allows what one of its entries allows;
/// matching is symmetric, ignores ASCII case and trailing slashes, and never
/// matches a longer or shorter origin (`https://example.com.evil.net` is not
/// `https://example.com`).
pub fn origin(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let origin = lines.next().unwrap_or_default();
    let allowed: Vec<String> = lines.map(str::to_string).collect();
    let allows = |origin: &str, entry: &str| fuzzing::origin_allowed(origin, &[entry.into()]);

    let verdict = fuzzing::origin_allowed(origin, &allowed);
    let any = allowed.iter().any(|entry| allows(origin, entry));
    assert_eq!(
        verdict,
        allowed.is_empty() || any,
        "{origin:?} against {allowed:?}"
    );

    for entry in &allowed {
        let yes = allows(origin, entry);
        assert_eq!(
            yes,
            allows(entry, origin),
            "not symmetric: {origin:?} / {entry:?}"
        );
        if yes {
            assert_eq!(
                origin.trim_end_matches('/').len(),
                entry.trim_end_matches('/').len(),
                "{origin:?} matched {entry:?}, which has another length"
            );
        }
        assert!(allows(entry, entry), "{entry:?} does not allow itself");
        assert!(
            allows(&entry.to_ascii_uppercase(), entry),
            "case matters: {entry:?}"
        );
        assert!(
            allows(&format!("{entry}/"), entry),
            "a slash matters: {entry:?}"
        );
        let bare = entry.trim_end_matches('/');
        for longer in [
            format!("{bare}.evil.example"),
            format!("{bare}:1"),
            format!("{bare}@evil.example"),
            format!("https://evil.example/{bare}"),
        ] {
            assert!(!allows(&longer, entry), "{longer:?} passed as {entry:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// flash_policy_allow: `--flash-policy-allow DOMAIN:PORTS`.

/// The input is the value (lossy UTF-8). An accepted rule is the value split at
/// its last colon; the domain is host-name characters and `*`; the ports are `*`
/// or a list of ports (1-65535, digits only) and ascending ranges; the policy
/// document carries the rule verbatim and nothing else. The CLI accepts exactly
/// the values `parse_allow` accepts.
pub fn flash_policy_allow(data: &[u8]) {
    let value = String::from_utf8_lossy(data).into_owned();
    let parsed = fuzzing::parse_allow(&value);
    let by_cli = fuzzing::parse_args(vec!["--flash-policy-allow".into(), value.clone().into()]);
    assert_eq!(
        by_cli.is_ok(),
        parsed.is_ok(),
        "CLI and parse_allow disagree on {value:?}"
    );
    let (domain, ports) = match parsed {
        Err(why) => return one_line("parse_allow error", &why),
        Ok(rule) => rule,
    };
    assert_eq!(
        format!("{domain}:{ports}"),
        value,
        "the rule is not the value"
    );
    assert!(
        !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"*.-".contains(&b)),
        "domain {domain:?} accepted"
    );
    let port = |p: &str| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
            .filter(|p| (1..=65_535).contains(p))
    };
    let ports_ok = ports == "*"
        || ports.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => port(a).zip(port(b)).is_some_and(|(a, b)| a <= b),
            None => port(part).is_some(),
        });
    assert!(ports_ok, "ports {ports:?} accepted");

    let document = fuzzing::policy_document(&[(domain.clone(), ports.clone())]);
    let empty = fuzzing::policy_document(&[]);
    assert_eq!(
        document.last(),
        Some(&0),
        "the document does not end with NUL"
    );
    assert_eq!(
        document.iter().filter(|b| **b == 0).count(),
        1,
        "a NUL inside"
    );
    let rule = format!("  <allow-access-from domain=\"{domain}\" to-ports=\"{ports}\"/>\n");
    let text = String::from_utf8(document).expect("the document is UTF-8");
    let without_rule = text.replacen(&rule, "", 1).into_bytes();
    assert_eq!(
        without_rule, empty,
        "the document is not the empty one plus the rule"
    );
}

// ---------------------------------------------------------------------------
// json_string: the hand-written JSON escaping of `--stdin` lines.

/// The input is the text (lossy UTF-8). `json_string` is a JSON string literal
/// that a real parser reads back as the same text, with no raw control
/// characters; `line` is exactly `{"type":"line","text":…}`.
pub fn json_string(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let json = fuzzing::json_string(&text);
    assert!(
        !json.chars().any(|c| c < ' '),
        "raw control character in {json:?}"
    );
    let back: String = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("json_string({text:?}) = {json} is not JSON: {e}"));
    assert_eq!(back, text, "json_string does not round-trip");
    let line: serde_json::Value = serde_json::from_str(&fuzzing::line(7, &text))
        .unwrap_or_else(|e| panic!("line({text:?}) is not JSON: {e}"));
    assert_eq!(
        line,
        serde_json::json!({"type": "line", "id": 7, "text": text})
    );
}

// ---------------------------------------------------------------------------
// lines: how `--stdin` cuts its input into lines.

/// The first byte picks `max_line` (1 to 64 bytes, so cuts happen); the rest
/// is the input. Each line comes out without its line ending (`\n` and any
/// `\r` before it); a line longer than `max_line` bytes is cut to at most that
/// many, at a character boundary when the line is valid UTF-8, so valid input
/// is never reported or sent as invalid.
pub fn lines(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let max_line = usize::from(first % 64) + 1;
    let (got, summary) = fuzzing::lines(input, max_line);
    assert_eq!(
        summary.lines,
        got.len() as u64,
        "the summary miscounts lines"
    );

    let mut raw_lines: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    if input.ends_with(b"\n") || input.is_empty() {
        raw_lines.pop(); // after the last line ending: no line
    }
    assert_eq!(
        got.len(),
        raw_lines.len(),
        "{max_line}-byte lines of {input:?}"
    );
    let mut invalid = 0;
    for (line, raw) in got.iter().zip(&raw_lines) {
        let ok = |want: &str| want.trim_end_matches('\r') == line;
        let matched = match std::str::from_utf8(raw) {
            Ok(raw) if raw.len() <= max_line => ok(raw),
            Ok(raw) => {
                let mut cut = max_line;
                while !raw.is_char_boundary(cut) {
                    cut -= 1;
                }
                ok(&raw[..cut])
            }
            Err(_) => {
                invalid += 1;
                let cuts = if raw.len() <= max_line {
                    raw.len()..=raw.len()
                } else {
                    max_line.saturating_sub(3)..=max_line
                };
                cuts.into_iter()
                    .any(|cut| ok(&String::from_utf8_lossy(&raw[..cut])))
            }
        };
        assert!(
            matched,
            "{max_line}-byte line of {:?} came out as {line:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert!(
        summary.invalid_utf8 <= invalid,
        "{} lines reported invalid, {invalid} were (max_line {max_line}, input {input:?})",
        summary.invalid_utf8
    );
}

// ---------------------------------------------------------------------------
// sse_event: one message as a Server-Sent Event.

/// The input is the message text (lossy UTF-8), as `Publisher::publish_text`
/// may send it. Read by a parser that follows the HTML standard's event-stream
/// rules, `sse_event` is exactly one event with our id, our event type and the
/// text as its data (line endings become `\n`, as SSE cannot carry others).
pub fn sse_event(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let want = text.replace("\r\n", "\n").replace('\r', "\n");
    for id in [Some(42), None] {
        for event in [None, Some("line")] {
            let wire = fuzzing::sse_event(id, event, &text);
            let events = parse_event_stream(&wire);
            let expected = vec![SseEvent {
                id: id.map(|id| id.to_string()).unwrap_or_default(),
                kind: event.unwrap_or("message").into(),
                data: want.clone(),
            }];
            assert_eq!(events, expected, "{wire:?}");
        }
    }
}

/// An event as a browser's `EventSource` sees it.
#[derive(Debug, PartialEq, Eq)]
struct SseEvent {
    id: String,
    kind: String,
    data: String,
}

/// Event-stream interpretation, as in the HTML standard (9.2.6): lines end in
/// CRLF, LF or CR; a blank line dispatches; `:` starts a comment.
fn parse_event_stream(stream: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
    let mut rest = stream;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        rest = &rest[end..];
        rest = rest.strip_prefix("\r\n").unwrap_or(&rest[1..]);
        if line.is_empty() {
            if !data.is_empty() {
                data.pop(); // the last line's \n
                events.push(SseEvent {
                    id: id.clone(),
                    kind: if kind.is_empty() {
                        "message".into()
                    } else {
                        kind.clone()
                    },
                    data: std::mem::take(&mut data),
                });
            }
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => kind = value.to_string(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id = value.to_string(),
            _ => {} // retry, and unknown fields, are ignored
        }
    }
    events
}

// ---------------------------------------------------------------------------
// publish: `POST /publish`, from the request's bytes to the message clients get.

/// The token the `publish` target sets when its first byte is odd.
const TOKEN: &str = "s3cret";

/// How deep a JSON value nests (a scalar: 0).
fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The first byte picks whether a token is set (odd) and `--max-message-size`
/// (1 to 128 bytes, so that 413 happens); the rest is what the client sends. A
/// refusal is a 4xx status, or 0 for a request cut short. An accepted request is
/// a POST, with the token when one is set, a topic that follows the rule, and a
/// body of at most the maximum; the message clients get is JSON, of type
/// `message`, with that topic, and the body as `data`: the very JSON value when
/// the body is one (as a real parser reads it), else the text as a string.
/// `is_json` agrees with a real parser (up to its depth limit of 64).
pub fn publish(data: &[u8]) {
    let Some((&first, request)) = data.split_first() else {
        return;
    };
    let token = (first % 2 == 1).then_some(TOKEN);
    let max = usize::from(first / 2 % 128) + 1;
    let published = match fuzzing::publish_request(request, token, max) {
        Ok(published) => published,
        Err(status) => {
            assert!(
                status == 0 || (400..500).contains(&status),
                "publish refused with {status}"
            );
            return;
        }
    };
    // Empty lines before the request line are allowed (RFC 9112, 2.2).
    let start = request.iter().position(|b| !matches!(b, b'\r' | b'\n'));
    assert!(
        request[start.unwrap_or(0)..].starts_with(b"POST "),
        "a publish that is not a POST"
    );
    if token.is_some() {
        let head = String::from_utf8_lossy(request);
        assert!(head.contains(TOKEN), "published without the token");
    }
    let body = &published.body;
    assert!(
        body.len() <= max,
        "a body of {} bytes passed {max}",
        body.len()
    );
    if let Some(topic) = &published.topic {
        assert_eq!(fuzzing::topic(topic).as_deref(), Ok(topic.as_str()));
    }
    json_agrees(body);
    let parsed_body = serde_json::from_str::<serde_json::Value>(body);
    let expected_data = match &parsed_body {
        Ok(value) if depth(value) <= 64 => value.clone(),
        Ok(_) => serde_json::Value::String(body.clone()),
        // A number a real parser cannot hold (1e400) is still JSON: browsers read
        // it as Infinity. Nothing more to compare here.
        Err(_) if fuzzing::is_json(body) => return,
        Err(_) => serde_json::Value::String(body.clone()),
    };
    let message: serde_json::Value = serde_json::from_str(&published.message)
        .unwrap_or_else(|e| panic!("the message {} is not JSON: {e}", published.message));
    let mut expected = serde_json::json!({"type": "message", "id": 1, "data": expected_data});
    if let Some(topic) = &published.topic {
        expected["topic"] = serde_json::Value::String(topic.clone());
    }
    assert_eq!(message, expected, "for body {body:?}");
}

/// `is_json` against a real parser: what it accepts, the parser reads (or finds
/// only a number too large to hold); what the parser reads, nested at most 64
/// deep, it accepts.
fn json_agrees(text: &str) {
    let ours = fuzzing::is_json(text);
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => assert_eq!(
            ours,
            depth(&value) <= 64,
            "is_json({text:?}) = {ours}, for a value {} deep",
            depth(&value)
        ),
        Err(e) => assert!(
            !ours || e.to_string().contains("number out of range"),
            "is_json({text:?}) is true, but a real parser says: {e}"
        ),
    }
}

// ---------------------------------------------------------------------------
// subscription: `?topic=` and `?since=` on a client's URL.

/// The input is a request target (lossy UTF-8). An accepted subscription has at
/// most 16 topics, no repeats, each 1 to 64 characters from `A-Z a-z 0-9 _ - .
/// :`, each named in the target; `since` is there only if the target says
/// `since=`; and a target built back from what was accepted reads the same. A
/// refusal is one line. Every text is also tried as a JSON body (`is_json`
/// against a real parser).
pub fn subscription(data: &[u8]) {
    let target = String::from_utf8_lossy(data);
    json_agrees(&target);
    let (topics, since) = match fuzzing::subscription(&target) {
        Ok(accepted) => accepted,
        Err(why) => {
            one_line("a subscription refusal", &why);
            return;
        }
    };
    assert!(topics.len() <= 16, "{} topics accepted", topics.len());
    for (i, topic) in topics.iter().enumerate() {
        assert!(
            (1..=64).contains(&topic.len())
                && topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c)),
            "topic {topic:?} breaks the rule"
        );
        assert!(!topics[..i].contains(topic), "topic {topic:?} twice");
    }
    if since.is_some() {
        assert!(target.contains("since="), "a since out of nowhere");
    }
    let mut rebuilt: Vec<String> = topics.iter().map(|t| format!("topic={t}")).collect();
    if let Some(since) = since {
        rebuilt.push(format!("since={since}"));
    }
    let rebuilt = format!("/echo?{}", rebuilt.join("&"));
    assert_eq!(
        fuzzing::subscription(&rebuilt),
        Ok((topics, since)),
        "{rebuilt} reads differently"
    );
}
