//! The AWS SigV4 test suite (aws-c-auth layout, `tests/data/sigv4/v4`), header
//! variant, run through `agent_edge::origin::sign`: the function the gateway
//! signs origin requests with. Each case directory is one case; the test
//! reports every failing case by name.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use agent_edge::config::{AwsCredentials, Secret};
use agent_edge::origin::{sign, SigningInputs};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Cases whose `request.txt` is not a request any HTTP client can send, so
/// they cannot be expressed as an `http::Request`. The test asserts they
/// still fail to parse, so this list cannot go stale.
const UNREPRESENTABLE: &[(&str, &str)] = &[
    (
        "get-space-normalized",
        "the request line has a raw space in the path (`GET /example space/ HTTP/1.1`), which \
         is not a valid request target; sent as `/example%20space/` it is a different request \
         whose correct (double-encoded) canonical path is `/example%2520space/`",
    ),
    (
        "get-space-unnormalized",
        "same raw space in the path as get-space-normalized",
    ),
];

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4/v4")
}

#[test]
fn aws_sigv4_suite_header_variant() {
    let mut names: Vec<String> = std::fs::read_dir(suite_dir())
        .expect("tests/data/sigv4/v4")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 38, "the suite has 38 cases");

    let mut failures = Vec::new();
    let mut passed = 0;
    for name in &names {
        let dir = suite_dir().join(name);
        if let Some((_, reason)) = UNREPRESENTABLE.iter().find(|(case, _)| case == name) {
            if parse_request(&read(&dir, "request.txt")).is_ok() {
                failures.push(format!(
                    "{name}: listed as unrepresentable ({reason}) but now parses: run it"
                ));
            }
            continue;
        }
        match run_case(&dir) {
            Ok(()) => passed += 1,
            Err(why) => failures.push(format!("{name}: {why}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(passed, names.len() - UNREPRESENTABLE.len());
}

fn run_case(dir: &Path) -> Result<(), String> {
    let context: serde_json::Value =
        serde_json::from_str(&read(dir, "context.json")).map_err(|e| e.to_string())?;
    let creds = &context["credentials"];
    let credentials = AwsCredentials {
        access_key_id: creds["access_key_id"].as_str().unwrap().to_owned(),
        secret_access_key: Secret::new(creds["secret_access_key"].as_str().unwrap()),
        session_token: creds["token"].as_str().map(Secret::new),
    };
    let inputs = SigningInputs {
        credentials: &credentials,
        region: context["region"].as_str().unwrap(),
        service: context["service"].as_str().unwrap(),
        time: parse_timestamp(context["timestamp"].as_str().unwrap()),
        sign_body: context["sign_body"].as_bool().unwrap(),
        normalize_path: context["normalize"].as_bool().unwrap(),
        sign_session_token: !context["omit_session_token"].as_bool().unwrap_or(false),
    };

    let mut request = parse_request(&read(dir, "request.txt"))?;
    sign(&mut request, &inputs).map_err(|e| format!("sign failed: {e}"))?;

    let authorization = request.headers()["authorization"].to_str().unwrap();
    let signature = authorization.rsplit("Signature=").next().unwrap();
    let expected_signature = read(dir, "header-signature.txt");
    if signature != expected_signature.trim() {
        return Err(format!(
            "signature {signature}, expected {}",
            expected_signature.trim()
        ));
    }

    let expected = parse_request(&read(dir, "header-signed-request.txt"))?;
    if request.method() != expected.method() || request.uri() != expected.uri() {
        return Err(format!(
            "request line changed to {} {}",
            request.method(),
            request.uri()
        ));
    }
    if request.headers() != expected.headers() {
        return Err(format!(
            "signed headers differ:\n  got      {:?}\n  expected {:?}",
            sorted(request.headers()),
            sorted(expected.headers())
        ));
    }
    if request.body() != expected.body() {
        return Err("body changed".into());
    }
    Ok(())
}

/// Parses the suite's `request.txt` format: an HTTP/1.1 request with LF
/// line ends, headers `Name:value` (the value's whitespace kept: trimming
/// is the signer's job), obsolete line folding (a line starting with
/// whitespace continues the previous value, replaced by a space as RFC 9112
/// 5.2 allows), and the body after the first empty line.
fn parse_request(text: &str) -> Result<http::Request<Bytes>, String> {
    let (head, body) = match text.split_once("\n\n") {
        Some((head, body)) => (head, body),
        None => (text.trim_end_matches('\n'), ""),
    };
    let mut lines = head.split('\n');
    let request_line = lines.next().ok_or("empty request")?;
    let (method, rest) = request_line.split_once(' ').ok_or("no method")?;
    let (target, _version) = rest.rsplit_once(' ').ok_or("no HTTP version")?;

    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let (_, value) = fields.last_mut().ok_or("continuation before any header")?;
            value.push(' ');
            value.push_str(line);
        } else {
            let (name, value) = line.split_once(':').ok_or("header without colon")?;
            fields.push((name.to_owned(), value.to_owned()));
        }
    }
    let host = fields
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim().to_owned())
        .ok_or("no Host header")?;

    let uri: http::Uri = format!("https://{host}{target}")
        .parse()
        .map_err(|e| format!("request target {target:?} is not a valid URI: {e}"))?;
    let mut request = http::Request::new(Bytes::from(body.to_owned()));
    *request.method_mut() = method.parse().map_err(|_| "bad method")?;
    *request.uri_mut() = uri;
    for (name, value) in fields {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
        request.headers_mut().append(name, value);
    }
    Ok(request)
}

/// `YYYY-MM-DDTHH:MM:SSZ` to a `SystemTime`.
fn parse_timestamp(text: &str) -> SystemTime {
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    let (year, month, day) = (n(0..4), n(5..7), n(8..10));
    let seconds = n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    // Days from civil, Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    SystemTime::UNIX_EPOCH + Duration::from_secs((days * 86_400 + seconds) as u64)
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

fn sorted(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut all: Vec<_> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn timestamp_parser() {
    assert_eq!(
        parse_timestamp("2015-08-30T12:36:00Z"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    );
}
