//! Phase-level tests of the gateway, without any I/O: the request filter
//! and the body here, the answers in [`answers`].

use super::*;
use std::collections::HashMap;

const ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/demo-AbC123";

fn gateway(extra: &[(&str, &str)]) -> Gateway {
    let mut vars: HashMap<String, String> = [
        ("AGENT_RUNTIME_ARN", ARN),
        ("ORIGIN_URL", "http://127.0.0.1:9"),
        ("ORIGIN_AUTH", "none"),
        ("AUTH", "none"),
        ("CORS_ALLOW_ORIGINS", "https://app.example.com"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    Gateway::new(Config::from_lookup(|n| vars.get(n).cloned()).unwrap())
}

/// A request head; `Host: gateway.test` unless `headers` name a host, and
/// for a POST `Content-Type: application/json` unless they name a type.
fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().method(method).uri(uri);
    let names = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !names("host") {
        builder = builder.header("host", "gateway.test");
    }
    if method == "POST" && !names("content-type") {
        builder = builder.header("content-type", "application/json");
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(()).unwrap().into_parts().0
}

/// The agent of `AGENT_RUNTIME_ARN`.
fn default_agent(g: &Gateway) -> &Agent {
    g.config().agents.default_agent().expect("a default agent")
}

fn ctx(head: &http::request::Parts) -> RequestContext {
    RequestContext::new(head, [7; 32], 0, 0)
}

/// The route decided, as `Ok(None)` for `Invoke` and the answer's status
/// for `Answered`.
fn filter(g: &Gateway, h: &http::request::Parts) -> Result<Option<u16>, GatewayError> {
    g.request_filter(h, &mut ctx(h)).map(|route| match route {
        Route::Answered(answer) => Some(answer.status().as_u16()),
        _ => None,
    })
}

fn answer(route: Route) -> Response<Bytes> {
    match route {
        Route::Answered(answer) => answer,
        other => panic!("not answered: {other:?}"),
    }
}

#[test]
fn routes_and_methods() {
    let g = gateway(&[]);
    assert_eq!(filter(&g, &head("POST", "/invocations", &[])), Ok(None));
    assert_eq!(filter(&g, &head("POST", "/", &[])), Ok(None));
    assert_eq!(filter(&g, &head("GET", "/ping", &[])), Ok(Some(200)));
    let not_found = filter(&g, &head("POST", "/other", &[])).unwrap_err();
    assert_eq!(
        (not_found.status.as_u16(), not_found.code.as_str()),
        (404, "not_found")
    );
    let wrong_method = filter(&g, &head("GET", "/invocations", &[])).unwrap_err();
    assert_eq!(wrong_method.status.as_u16(), 405);
    assert_eq!(
        wrong_method.to_response().headers()["allow"],
        "POST, OPTIONS"
    );
}

#[test]
fn ping_answers_healthy() {
    let g = gateway(&[]);
    let h = head("GET", "/ping", &[]);
    let answer = answer(g.request_filter(&h, &mut ctx(&h)).unwrap());
    assert_eq!(answer.body().as_ref(), br#"{"status":"Healthy"}"#);
}

#[test]
fn content_type_must_be_json() {
    let g = gateway(&[]);
    for ok in [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.x+json",
    ] {
        assert!(filter(&g, &head("POST", "/invocations", &[("content-type", ok)])).is_ok());
    }
    let err = filter(
        &g,
        &head("POST", "/invocations", &[("content-type", "text/plain")]),
    )
    .unwrap_err();
    assert_eq!(
        (err.status.as_u16(), err.code.as_str()),
        (415, "unsupported_media_type")
    );
}

#[test]
fn declared_length_over_the_limit_is_413_before_reading() {
    let g = gateway(&[("MAX_BODY_BYTES", "10")]);
    let err = filter(
        &g,
        &head("POST", "/invocations", &[("content-length", "11")]),
    )
    .unwrap_err();
    assert_eq!(
        (err.status.as_u16(), err.code.as_str()),
        (413, "body_too_large")
    );
    assert!(filter(
        &g,
        &head("POST", "/invocations", &[("content-length", "10")])
    )
    .is_ok());
    // Without a declared length the body itself is measured.
    let h = head("POST", "/invocations", &[]);
    let err = g
        .parse_invocation(
            &h,
            default_agent(&g),
            &bytes_of(br#"{"prompt":"12345678"}"#),
            &mut ctx(&h),
        )
        .unwrap_err();
    assert_eq!(err.status.as_u16(), 413);
}

#[test]
fn control_fields_are_removed_and_values_forwarded_unchanged() {
    let g = gateway(&[]);
    let h = head("POST", "/invocations", &[]);
    let session = "s".repeat(40);
    let body = format!(
        r#"{{"prompt":"h\u00e9llo", "response":"transformed","n":1.50e3,"nested":{{"a":[1, 2]}},"runtimeSessionId":"{session}"}}"#
    );
    let inv = g
        .parse_invocation(
            &h,
            default_agent(&g),
            &bytes_of(body.as_bytes()),
            &mut ctx(&h),
        )
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&inv.payload).unwrap(),
        r#"{"prompt":"h\u00e9llo","n":1.50e3,"nested":{"a":[1, 2]}}"#
    );
    assert_eq!(inv.mode, ResponseMode::Transformed);
    assert_eq!(inv.session_id, session);
}

#[test]
fn a_body_without_control_fields_is_forwarded_as_sent() {
    let g = gateway(&[]);
    let h = head("POST", "/invocations", &[]);
    let body = b"{ \"prompt\" : \"hi\" }";
    let inv = g
        .parse_invocation(&h, default_agent(&g), &bytes_of(body), &mut ctx(&h))
        .unwrap();
    assert_eq!(inv.payload.as_ref(), body);
}

#[test]
fn malformed_bodies_are_400_with_distinct_codes() {
    let g = gateway(&[]);
    let h = head("POST", "/invocations", &[]);
    let cases: &[(&[u8], &str)] = &[
        (b"{\"prompt\":", "invalid_json"),
        (b"not json", "invalid_json"),
        (b"[1,2]", "invalid_body"),
        (b"\"text\"", "invalid_body"),
        (b"{\"response\":1}", "invalid_field"),
        (b"{\"response\":\"fancy\"}", "invalid_response_mode"),
        (b"{\"runtimeSessionId\":\"short\"}", "invalid_session_id"),
        (b"{\"runtimeSessionId\":7}", "invalid_field"),
    ];
    for (body, code) in cases {
        let err = g
            .parse_invocation(&h, default_agent(&g), &bytes_of(body), &mut ctx(&h))
            .unwrap_err();
        assert_eq!(
            (err.status.as_u16(), err.code.as_str()),
            (400, *code),
            "{body:?}"
        );
        // The body is the documented JSON shape.
        let json: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(json["error"]["code"], *code);
        assert!(json["error"]["message"].as_str().unwrap().len() > 5);
    }
}

/// One row of the response mode's precedence: body field, then
/// `?response=`, then `Accept: text/plain`, then `DEFAULT_RESPONSE_MODE`.
struct ModeCase {
    default: &'static str,
    uri: &'static str,
    accept: Option<&'static str>,
    body: &'static str,
    expected: ResponseMode,
}

const MODE_CASES: &[ModeCase] = {
    use ResponseMode::*;
    const fn case(
        default: &'static str,
        uri: &'static str,
        accept: Option<&'static str>,
        body: &'static str,
        expected: ResponseMode,
    ) -> ModeCase {
        ModeCase {
            default,
            uri,
            accept,
            body,
            expected,
        }
    }
    &[
        case("original", "/invocations", None, "{}", Original),
        case("transformed", "/", None, "{}", Transformed),
        case(
            "original",
            "/invocations",
            Some("text/plain"),
            "{}",
            Transformed,
        ),
        case(
            "original",
            "/invocations",
            Some("text/event-stream, text/plain;q=0.5"),
            "{}",
            Transformed,
        ),
        case(
            "original",
            "/invocations?response=original",
            Some("text/plain"),
            "{}",
            Original,
        ),
        case(
            "transformed",
            "/invocations?response=original",
            None,
            "{}",
            Original,
        ),
        case(
            "original",
            "/invocations?response=original",
            None,
            r#"{"response":"transformed"}"#,
            Transformed,
        ),
        case(
            "original",
            "/invocations?response=transformed",
            Some("text/plain"),
            r#"{"response":"original"}"#,
            Original,
        ),
    ]
};

#[test]
fn response_mode_precedence_body_then_query_then_accept_then_default() {
    for case in MODE_CASES {
        let g = gateway(&[("DEFAULT_RESPONSE_MODE", case.default)]);
        let headers: Vec<(&str, &str)> = case.accept.map(|a| ("accept", a)).into_iter().collect();
        let h = head("POST", case.uri, &headers);
        let mode = g
            .parse_invocation(
                &h,
                default_agent(&g),
                &bytes_of(case.body.as_bytes()),
                &mut ctx(&h),
            )
            .unwrap()
            .mode;
        assert_eq!(
            mode, case.expected,
            "default {}, {} with Accept {:?} and body {}",
            case.default, case.uri, case.accept, case.body
        );
    }
}

#[test]
fn session_id_from_body_then_header_else_generated() {
    let g = gateway(&[]);
    let from_header = "h".repeat(33);
    let h = head("POST", "/", &[(SESSION_HEADER, from_header.as_str())]);
    assert_eq!(
        g.parse_invocation(&h, default_agent(&g), &bytes_of(b"{}"), &mut ctx(&h))
            .unwrap()
            .session_id,
        from_header
    );
    let from_body = "b".repeat(256);
    let body = format!(r#"{{"runtimeSessionId":"{from_body}"}}"#);
    assert_eq!(
        g.parse_invocation(
            &h,
            default_agent(&g),
            &bytes_of(body.as_bytes()),
            &mut ctx(&h)
        )
        .unwrap()
        .session_id,
        from_body
    );
    let too_long = format!(r#"{{"runtimeSessionId":"{}"}}"#, "b".repeat(257));
    assert!(g
        .parse_invocation(
            &h,
            default_agent(&g),
            &bytes_of(too_long.as_bytes()),
            &mut ctx(&h)
        )
        .is_err());

    let h = head("POST", "/", &[]);
    let mut c1 = RequestContext::new(&h, [1; 32], 0, 0);
    let mut c2 = RequestContext::new(&h, [2; 32], 0, 0);
    let a = g
        .parse_invocation(&h, default_agent(&g), &bytes_of(b"{}"), &mut c1)
        .unwrap()
        .session_id;
    let b = g
        .parse_invocation(&h, default_agent(&g), &bytes_of(b"{}"), &mut c2)
        .unwrap()
        .session_id;
    assert!(a.len() >= 33 && b.len() >= 33);
    assert_ne!(a, b);
    assert_eq!(c1.session_id.as_deref(), Some(a.as_str()));
}

#[test]
fn the_request_id_is_ours_and_a_sane_client_id_is_echoed_beside_it() {
    let h = head("POST", "/", &[(REQUEST_ID_HEADER, "abc-123")]);
    let c = ctx(&h);
    assert_eq!(c.request_id.len(), 36);
    assert_eq!(c.client_request_id.as_deref(), Some("abc-123"));
    let line: serde_json::Value =
        serde_json::from_str(&RequestLog::new(&c, StatusCode::OK).to_line()).unwrap();
    assert_eq!(line["request_id"], c.request_id.as_str());
    assert_eq!(line["client_request_id"], "abc-123");
    let mut headers = HeaderMap::new();
    finish_headers(&mut headers, &c);
    assert_eq!(headers[REQUEST_ID_HEADER], "abc-123");

    let h = head("POST", "/", &[(REQUEST_ID_HEADER, "has space")]);
    let c = ctx(&h);
    assert_eq!(c.client_request_id, None);
    let mut headers = HeaderMap::new();
    finish_headers(&mut headers, &c);
    assert_eq!(headers[REQUEST_ID_HEADER], c.request_id.as_str());
}

#[test]
fn a_post_without_a_json_content_type_is_415() {
    let g = gateway(&[]);
    let mut h = head("POST", "/invocations", &[]);
    h.headers.remove("content-type");
    assert_eq!(
        filter(&g, &h).map_err(|e| (e.status.as_u16(), e.code)),
        Err((415, Code::UnsupportedMediaType))
    );
    for simple in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let h = head("POST", "/invocations", &[("content-type", simple)]);
        assert_eq!(
            filter(&g, &h).map_err(|e| e.code),
            Err(Code::UnsupportedMediaType)
        );
    }
    // JSON and something else: not declared as JSON.
    let mut h = head("POST", "/invocations", &[]);
    h.headers
        .append("content-type", HeaderValue::from_static("text/plain"));
    assert_eq!(
        filter(&g, &h).map_err(|e| e.code),
        Err(Code::UnsupportedMediaType)
    );
}

#[test]
fn a_loopback_listener_answers_to_its_own_names_and_public_hosts_only() {
    let mut config = gateway(&[("PUBLIC_HOSTS", "Agent.Example.com, edge.test")])
        .config()
        .clone();
    config.loopback_listener = true;
    let g = Gateway::new(config);
    let get = |host: &str| {
        filter(&g, &head("GET", "/ping", &[("host", host)]))
            .map_err(|e| (e.status.as_u16(), e.code))
    };
    for host in [
        "localhost",
        "LOCALHOST:8787",
        "127.0.0.1:1",
        "[::1]:8787",
        "agent.example.com",
        "edge.test:443",
    ] {
        assert_eq!(get(host), Ok(Some(200)), "{host}");
    }
    for host in [
        "evil.example",
        "127.0.0.2",
        "localhost.evil.example:8787",
        "[::2]",
    ] {
        assert_eq!(get(host), Err((421, Code::MisdirectedRequest)), "{host}");
    }
    // Nothing names this machine: an HTTP/1.0 request without Host, or an
    // absolute-form target naming another host.
    let mut no_host = head("GET", "/ping", &[]);
    no_host.headers.remove("host");
    no_host.version = http::Version::HTTP_10;
    assert_eq!(
        filter(&g, &no_host).map_err(|e| e.code),
        Err(Code::MisdirectedRequest)
    );
    let absolute = head("GET", "http://evil.example/ping", &[("host", "localhost")]);
    assert_eq!(
        filter(&g, &absolute).map_err(|e| e.code),
        Err(Code::MisdirectedRequest)
    );
    let absolute = head(
        "GET",
        "http://localhost:8787/ping",
        &[("host", "localhost")],
    );
    assert_eq!(filter(&g, &absolute), Ok(Some(200)));
    // The same names on a public listener: any valid host.
    assert_eq!(
        filter(
            &gateway(&[]),
            &head("GET", "/ping", &[("host", "evil.example")])
        ),
        Ok(Some(200))
    );
}

#[test]
fn an_unknown_expectation_is_417() {
    let g = gateway(&[]);
    let post = |expect: &str| {
        filter(&g, &head("POST", "/invocations", &[("expect", expect)]))
            .map_err(|e| (e.status.as_u16(), e.code))
    };
    assert_eq!(post("100-continue"), Ok(None));
    assert_eq!(post("100-Continue"), Ok(None));
    assert_eq!(post("200-ok"), Err((417, Code::ExpectationFailed)));
    assert_eq!(post(""), Err((417, Code::ExpectationFailed)));
}

#[test]
fn cors_answers_vary_on_origin_whenever_a_list_is_configured() {
    let answer_headers = |g: &Gateway, origin: Option<&str>| {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        let h = head("GET", "/ping", &headers);
        let mut c = ctx(&h);
        let mut response = answer(g.request_filter(&h, &mut c).unwrap());
        finish_headers(response.headers_mut(), &c);
        response.headers().clone()
    };
    let listed = gateway(&[]);
    for origin in [
        Some("https://app.example.com"),
        Some("https://other.example"),
        None,
    ] {
        let headers = answer_headers(&listed, origin);
        assert_eq!(headers["vary"], "Origin", "{origin:?}");
        let allowed = headers.get("access-control-allow-origin");
        match origin {
            Some("https://app.example.com") => {
                assert_eq!(allowed.unwrap(), "https://app.example.com")
            }
            _ => assert_eq!(allowed, None, "{origin:?}"),
        }
    }
    let any = gateway(&[("CORS_ALLOW_ORIGINS", "*")]);
    for origin in [Some("https://other.example"), Some("null"), None] {
        let headers = answer_headers(&any, origin);
        assert_eq!(headers["access-control-allow-origin"], "*", "{origin:?}");
        assert_eq!(headers.get("vary"), None);
    }
    let off = gateway(&[("CORS_ALLOW_ORIGINS", "")]);
    let headers = answer_headers(&off, Some("https://app.example.com"));
    assert_eq!(headers.get("vary"), None);
    assert_eq!(headers.get("access-control-allow-origin"), None);
}

#[test]
fn the_last_response_in_the_query_wins_as_in_the_body() {
    let g = gateway(&[]);
    let h = head(
        "POST",
        "/invocations?response=original&response=transformed",
        &[],
    );
    let inv = g
        .parse_invocation(&h, default_agent(&g), &bytes_of(b"{}"), &mut ctx(&h))
        .unwrap();
    assert_eq!(inv.mode, ResponseMode::Transformed);
    let body = br#"{"response":"transformed","response":"original"}"#;
    let inv = g
        .parse_invocation(&h, default_agent(&g), &bytes_of(body), &mut ctx(&h))
        .unwrap();
    assert_eq!(
        inv.mode,
        ResponseMode::Original,
        "the body wins over the query"
    );
}

fn bytes_of(body: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(body.as_ref())
}

mod answers;
