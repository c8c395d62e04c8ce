//! What the gateway answers: preflights, mapped origin failures, stream
//! heads, the chat page, the Host rule, log fields and panics.

use super::*;

#[test]
fn cors_preflight_for_allowed_and_refused_origins() {
    let g = gateway(&[]);
    let h = head(
        "OPTIONS",
        "/invocations",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ],
    );
    let mut c = ctx(&h);
    let mut answer = answer(g.request_filter(&h, &mut c).unwrap());
    finish_headers(answer.headers_mut(), &c);
    assert_eq!(answer.status(), 204);
    let headers = answer.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    // `Allow` as without an `Origin`, and as a 405 says.
    assert_eq!(headers["allow"], "POST, OPTIONS");
    assert_eq!(headers["access-control-allow-methods"], "POST, OPTIONS");
    assert!(headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"));

    let h = head(
        "OPTIONS",
        "/invocations",
        &[("origin", "https://evil.example")],
    );
    let err = g.request_filter(&h, &mut ctx(&h)).unwrap_err();
    assert_eq!(
        (err.status.as_u16(), err.code.as_str()),
        (403, "cors_origin_not_allowed")
    );
}

#[test]
fn origin_failures_map_to_gateway_errors_without_the_origin_body() {
    let parts = |status: u16, headers: &[(&str, &str)]| {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    };
    let cases = [
        (400, 502, "origin_rejected"),
        (403, 502, "origin_auth_failed"),
        (401, 502, "origin_auth_failed"),
        (404, 502, "origin_not_found"),
        (429, 429, "origin_throttled"),
        (500, 502, "origin_error"),
        (503, 502, "origin_error"),
        (504, 504, "origin_timeout"),
        (402, 503, "origin_quota_exceeded"),
        (424, 502, "agent_failed"),
        (409, 502, "origin_rejected"),
    ];
    for (origin, ours, code) in cases {
        let err = map_origin_status(&parts(
            origin,
            &[("x-amzn-errortype", "AccessDeniedException:http://internal/")],
        ));
        assert_eq!(
            (err.status.as_u16(), err.code.as_str()),
            (ours, code),
            "origin {origin}"
        );
    }
    let throttled = map_origin_status(&parts(429, &[("retry-after", "7")]));
    assert_eq!(throttled.to_response().headers()["retry-after"], "7");
    // A quota: the origin's own Retry-After, else a minute.
    let quota = map_origin_status(&parts(402, &[("retry-after", "30")]));
    assert_eq!(quota.to_response().headers()["retry-after"], "30");
    let quota = map_origin_status(&parts(402, &[]));
    assert_eq!(quota.to_response().headers()["retry-after"], "60");
    assert!(!map_origin_status(&parts(424, &[]))
        .to_response()
        .headers()
        .contains_key("retry-after"));
}

#[test]
fn scrub_removes_arn_encoded_arn_and_account() {
    let g = gateway(&[]);
    let encoded = crate::origin::encode_path_segment(ARN);
    let text = format!("denied for {ARN} at /runtimes/{encoded}/ by 123456789012");
    let clean = g.scrubber().scrub(&text);
    assert!(!clean.contains("123456789012"), "{clean}");
    assert!(!clean.contains("runtime/demo"), "{clean}");
}

#[test]
fn uuid_v4_shape() {
    let id = uuid_v4([0xff; 16]);
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
}

#[test]
fn every_stream_is_marked_not_to_be_compressed() {
    let g = gateway(&[]);
    let h = head("POST", "/invocations", &[("accept-encoding", "gzip, br")]);
    let c = ctx(&h);
    for mode in [ResponseMode::Original, ResponseMode::Transformed] {
        for origin_type in ["text/event-stream", "application/json"] {
            let origin = http::Response::builder()
                .header("content-type", origin_type)
                .body(())
                .unwrap()
                .into_parts()
                .0;
            let invocation = InvocationRequest {
                payload: Bytes::from_static(b"{}"),
                mode,
                session_id: "s".repeat(33),
                origin_session_id: "s".repeat(33),
            };
            let start = g.response_filter(&origin, &invocation, &c, 0).ok().unwrap();
            let headers = &start.head.headers;
            assert_eq!(
                headers["content-encoding"], "identity",
                "{mode:?} {origin_type}"
            );
            assert_eq!(
                headers["cache-control"], "no-cache, no-transform",
                "{mode:?} {origin_type}"
            );
        }
    }
}

#[test]
fn the_chat_page_is_served_with_a_strict_policy_unless_ui_is_off() {
    let g = gateway(&[]);
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
    ] {
        let h = head("GET", path, &[]);
        let answer = answer(g.request_filter(&h, &mut ctx(&h)).unwrap());
        assert_eq!(answer.headers()["content-type"], content_type, "{path}");
        let csp = answer.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }
    let h = head("GET", "/", &[]);
    let page = answer(g.request_filter(&h, &mut ctx(&h)).unwrap());
    let html = String::from_utf8(page.body().to_vec()).unwrap();
    assert!(html.contains(r#"data-auth="none""#), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
    // POST / still invokes.
    assert_eq!(filter(&g, &head("POST", "/", &[])), Ok(None));
    let put = filter(&g, &head("PUT", "/", &[])).unwrap_err();
    assert_eq!(
        put.to_response().headers()["allow"],
        "GET, HEAD, POST, OPTIONS"
    );

    let off = gateway(&[("UI", "off")]);
    for (path, status) in [("/", 405), ("/app.js", 404), ("/app.css", 404)] {
        let err = filter(&off, &head("GET", path, &[])).unwrap_err();
        assert_eq!(err.status.as_u16(), status, "{path}");
    }
    let get_root = filter(&off, &head("GET", "/", &[])).unwrap_err();
    assert_eq!(get_root.to_response().headers()["allow"], "POST, OPTIONS");
    assert_eq!(filter(&off, &head("POST", "/", &[])), Ok(None));
}

#[test]
fn the_page_offers_the_development_issuer_only_when_given_one() {
    let mut config = gateway(&[
        ("AUTH", "jwt"),
        ("JWT_ISSUER", "http://127.0.0.1:1"),
        ("JWT_AUDIENCE", "a"),
    ])
    .config()
    .clone();
    config.dev_token_url = Some("http://127.0.0.1:4321/token".to_owned());
    let g = Gateway::new(config);
    let h = head("GET", "/", &[]);
    let page = answer(g.request_filter(&h, &mut ctx(&h)).unwrap());
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("connect-src 'self' http://127.0.0.1:4321;"),
        "{csp}"
    );
    let html = String::from_utf8(page.body().to_vec()).unwrap();
    assert!(html.contains(r#"data-auth="jwt""#), "{html}");
    assert!(
        html.contains(r#"data-dev-token-url="http://127.0.0.1:4321/token""#),
        "{html}"
    );
}

#[test]
fn a_2xx_origin_answer_streams_only_as_an_event_stream_or_json() {
    let g = gateway(&[]);
    let h = head("POST", "/invocations", &[]);
    let mut c = ctx(&h);
    let invocation = g
        .parse_invocation(&h, default_agent(&g), &bytes_of(b"{}"), &mut c)
        .unwrap();
    let answer = |content_type: Option<&str>| {
        let mut b = http::Response::builder().status(200);
        if let Some(value) = content_type {
            b = b.header("content-type", value);
        }
        let origin = b.body(()).unwrap().into_parts().0;
        g.response_filter(&origin, &invocation, &c, 0)
            .map(|start| {
                start.head.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .map_err(|e| (e.status.as_u16(), e.code.as_str()))
    };
    // One row per content type: what an original-mode client gets.
    type Answer<'a> = Result<&'a str, (u16, &'a str)>;
    let cases: &[(Option<&str>, Answer)] = &[
        (Some("text/event-stream"), Ok("text/event-stream")),
        (
            Some("text/event-stream; charset=utf-8"),
            Ok("text/event-stream"),
        ),
        (Some("Text/Event-Stream"), Ok("text/event-stream")),
        (Some("application/json"), Ok("application/json")),
        (Some("application/problem+json"), Ok("application/json")),
        (Some("text/html; charset=utf-8"), Err((502, "origin_error"))),
        (Some("text/plain"), Err((502, "origin_error"))),
        (Some("application/octet-stream"), Err((502, "origin_error"))),
        (None, Err((502, "origin_error"))),
    ];
    for (content_type, expected) in cases {
        let got = answer(*content_type);
        let got = got.as_ref().map(String::as_str).map_err(|e| *e);
        assert_eq!(got, *expected, "{content_type:?}");
    }
}

#[test]
fn host_must_be_present_once_and_valid() {
    let g = gateway(&[]);
    let post = |headers: &[(&str, &str)]| {
        filter(&g, &head("POST", "/invocations", headers)).map_err(|e| (e.status, e.code))
    };
    assert_eq!(post(&[]), Ok(None));
    assert_eq!(post(&[("host", "gateway.test:8787")]), Ok(None));
    let invalid = Err((StatusCode::BAD_REQUEST, Code::InvalidHost));
    assert_eq!(post(&[("host", "a.test"), ("host", "b.test")]), invalid);
    assert_eq!(post(&[("host", "")]), invalid);
    assert_eq!(post(&[("host", "a.test, b.test")]), invalid);
    assert_eq!(post(&[("host", "user@a.test")]), invalid);
    let mut no_host = head("POST", "/invocations", &[]);
    no_host.headers.remove("host");
    assert_eq!(
        filter(&g, &no_host).map_err(|e| e.code),
        Err(Code::InvalidHost)
    );
    // HTTP/1.0 has no Host requirement.
    no_host.version = http::Version::HTTP_10;
    assert_eq!(filter(&g, &no_host).map_err(|e| e.code), Ok(None));
}

#[test]
fn log_fields_taken_from_the_request_are_capped() {
    let long_method = "M".repeat(350_000);
    // `http::Uri` takes up to 64 KiB.
    let long_path = format!("/{}", "p".repeat(60_000));
    let h = head(&long_method, &long_path, &[]);
    let mut c = ctx(&h);
    c.subject = Some("s".repeat(350_000));
    let line = RequestLog::new(&c, StatusCode::NOT_FOUND).to_line();
    assert!(line.len() < 4 * MAX_LOG_FIELD_CHARS, "{} bytes", line.len());
    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed["method"], "M".repeat(MAX_LOG_FIELD_CHARS));
    assert_eq!(parsed["sub"], "s".repeat(MAX_LOG_FIELD_CHARS));
}

#[test]
fn a_panic_is_written_as_one_scrubbed_json_line() {
    use std::sync::{Arc, Mutex};
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        sink.lock()
            .unwrap()
            .push(log::panic_event(info, 7).to_line())
    }));
    let caught = std::panic::catch_unwind(|| {
        panic!("a bug near Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln\nsecond line")
    });
    std::panic::set_hook(previous);
    assert!(caught.is_err());
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(!lines[0].contains('\n'), "one line: {}", lines[0]);
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        (line["event"].as_str(), line["level"].as_str()),
        (Some("panic"), Some("error"))
    );
    let detail = line["detail"].as_str().unwrap();
    assert!(!detail.contains("eyJ"), "{detail}");
    assert!(detail.contains("src/gateway/tests/answers.rs:"), "{detail}");
}
