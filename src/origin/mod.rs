//! The origin request: what the gateway sends upstream, and its signature.
//!
//! [`build_request`] turns the configured origin and one invocation into a
//! complete `http::Request` ready for any HTTP client:
//! - with an AgentCore runtime, the `InvokeAgentRuntime` call
//!   `POST <base>/runtimes/<ARN as one encoded path segment>/invocations?qualifier=<Q>`;
//! - without one, a `POST` to `ORIGIN_URL` itself (Lambda function URL or
//!   any HTTP origin);
//!
//! and [`build_stop_request`] a runtime's `StopRuntimeSession` call,
//! `POST <base>/runtimes/<ARN>/stopruntimesession?qualifier=<Q>` with the
//! session header and the body `{}`;
//!
//! then authenticates it: SigV4 with the body hash signed ([`sigv4`]), the
//! caller's bearer token, or nothing. The request carries an explicit `host`
//! header because it is a signed header; adapters whose HTTP client derives
//! `Host` itself (e.g. `fetch`) may drop it, the value is the same.
//!
//! Sans-IO: the signing time is an argument, never read here.
//!
//! AgentCore `InvokeAgentRuntime`, <https://docs.aws.amazon.com/bedrock-agentcore/latest/APIReference/API_InvokeAgentRuntime.html>,
//! and `StopRuntimeSession`, <https://docs.aws.amazon.com/bedrock-agentcore/latest/APIReference/API_StopRuntimeSession.html>.

pub mod sigv4;

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub use sigv4::{sign, SigningError, SigningInputs};

use crate::auth::Reason;
use crate::config::{OriginAuth, OriginConfig};
use crate::error::{Code, GatewayError};

/// AgentCore's session header.
pub const SESSION_ID_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";
/// AgentCore's end-user header (needs `InvokeAgentRuntimeForUser`).
pub const USER_ID_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-user-id";
/// What the gateway accepts from the origin.
pub const ACCEPT_VALUE: &str = "text/event-stream, application/json";

/// RFC 3986 unreserved characters stay; everything else, `:` and `/`
/// included, is percent-encoded, as the AWS SDKs encode an HTTP label.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` percent-encoded as a single path segment (or query value):
/// `arn:aws:…:runtime/x` becomes `arn%3Aaws%3A…%3Aruntime%2Fx`.
pub fn encode_path_segment(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// One call to the origin.
#[derive(Clone)]
pub struct Invocation<'a> {
    /// The caller's JSON with the gateway's control fields already removed.
    pub payload: Bytes,
    pub session_id: &'a str,
    /// Sent as `X-Amzn-Bedrock-AgentCore-Runtime-User-Id` when present.
    pub user_id: Option<&'a str>,
    /// The caller's token, used only with [`OriginAuth::JwtPassthrough`].
    pub bearer_token: Option<&'a str>,
}

impl std::fmt::Debug for Invocation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocation")
            .field("payload_bytes", &self.payload.len())
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id.is_some())
            .field("bearer_token", &self.bearer_token.map(|_| "***"))
            .finish()
    }
}

/// The origin request for `invocation`, authenticated as `config` says.
/// `now` is the SigV4 signing time.
pub fn build_request(
    config: &OriginConfig,
    invocation: Invocation<'_>,
    now: SystemTime,
) -> Result<Request<Bytes>, GatewayError> {
    let uri = match &config.runtime {
        Some(_) => runtime_uri(config, "invocations")?,
        None => config.base_url.clone(),
    };
    let mut request = Request::new(invocation.payload);
    *request.uri_mut() = uri;
    request
        .headers_mut()
        .insert(ACCEPT, HeaderValue::from_static(ACCEPT_VALUE));
    if let Some(user_id) = invocation.user_id {
        let value =
            HeaderValue::from_str(user_id).map_err(|_| GatewayError::new(Code::InvalidUserId))?;
        request
            .headers_mut()
            .insert(HeaderName::from_static(USER_ID_HEADER), value);
    }
    finish(
        config,
        request,
        invocation.session_id,
        invocation.bearer_token,
        now,
    )
}

/// The runtime's `StopRuntimeSession` call for `session_id`, authenticated
/// as `config` says; `None` for an origin that is no AgentCore runtime
/// (it has no such call).
pub fn build_stop_request(
    config: &OriginConfig,
    session_id: &str,
    bearer_token: Option<&str>,
    now: SystemTime,
) -> Result<Option<Request<Bytes>>, GatewayError> {
    if config.runtime.is_none() {
        return Ok(None);
    }
    // `clientToken`, the body's only member, is optional.
    let mut request = Request::new(Bytes::from_static(b"{}"));
    *request.uri_mut() = runtime_uri(config, "stopruntimesession")?;
    request
        .headers_mut()
        .insert(ACCEPT, HeaderValue::from_static("application/json"));
    finish(config, request, session_id, bearer_token, now).map(Some)
}

/// What every origin request has: `POST`, `Host`, a JSON body, the session
/// header; then its authentication.
fn finish(
    config: &OriginConfig,
    mut request: Request<Bytes>,
    session_id: &str,
    bearer_token: Option<&str>,
    now: SystemTime,
) -> Result<Request<Bytes>, GatewayError> {
    let host = host_header(request.uri())?;
    *request.method_mut() = Method::POST;
    let headers = request.headers_mut();
    headers.insert(HOST, host);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let session = HeaderValue::from_str(session_id).map_err(|_| {
        GatewayError::new(Code::InvalidSessionId)
            .with_message("the session id must be visible ASCII text")
    })?;
    headers.insert(HeaderName::from_static(SESSION_ID_HEADER), session);

    match &config.auth {
        OriginAuth::SigV4 {
            service,
            region,
            credentials,
        } => {
            let inputs = SigningInputs::for_gateway(credentials, region, service, now);
            sign(&mut request, &inputs).map_err(|err| {
                GatewayError::new(Code::OriginSigningFailed).with_detail(err.to_string())
            })?;
        }
        OriginAuth::JwtPassthrough => {
            // The caller's credentials are refused as authentication refuses them.
            let token = bearer_token.ok_or_else(|| Reason::MissingToken.to_error())?;
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Reason::MalformedAuthorization.to_error())?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        OriginAuth::None => {}
    }
    Ok(request)
}

/// `<base>/runtimes/<ARN>/<operation>?qualifier=<Q>`; only with a runtime.
fn runtime_uri(config: &OriginConfig, operation: &str) -> Result<http::Uri, GatewayError> {
    let base = &config.base_url;
    let runtime = config.runtime.as_ref().ok_or_else(bad_origin)?;
    let prefix = base.path().trim_end_matches('/');
    let path_and_query = format!(
        "{prefix}/runtimes/{}/{operation}?qualifier={}",
        encode_path_segment(&runtime.arn),
        encode_path_segment(&runtime.qualifier)
    );
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|_| bad_origin())?);
    http::Uri::from_parts(parts).map_err(|_| bad_origin())
}

/// `host[:port]`, the port left out when it is the scheme's default (as
/// HTTP clients send it and as AWS expects it signed).
fn host_header(uri: &http::Uri) -> Result<HeaderValue, GatewayError> {
    let host = uri.host().ok_or_else(bad_origin)?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match uri.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).map_err(|_| bad_origin())
}

fn bad_origin() -> GatewayError {
    GatewayError::new(Code::OriginMisconfigured)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentRuntime, AwsCredentials, Secret};
    use sha2::{Digest, Sha256};
    use std::time::Duration;

    const ARN: &str = "arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/demo_agent-AbC123";
    const SESSION: &str = "session-0123456789abcdef0123456789abcdef";

    fn agentcore(auth: OriginAuth) -> OriginConfig {
        let runtime = AgentRuntime::parse(ARN, "DEFAULT".into()).unwrap();
        OriginConfig {
            base_url: runtime.default_endpoint().parse().unwrap(),
            runtime: Some(runtime),
            auth,
        }
    }

    fn sigv4(token: Option<&str>) -> OriginAuth {
        OriginAuth::SigV4 {
            service: "bedrock-agentcore".into(),
            region: "us-west-2".into(),
            credentials: AwsCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                session_token: token.map(Secret::new),
            },
        }
    }

    fn invocation(payload: &'static str) -> Invocation<'static> {
        Invocation {
            payload: Bytes::from_static(payload.as_bytes()),
            session_id: SESSION,
            user_id: None,
            bearer_token: Some("caller.jwt.token"),
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000)
    }

    #[test]
    fn arn_is_one_encoded_path_segment() {
        let req = build_request(&agentcore(sigv4(None)), invocation("{}"), now()).unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.uri().to_string(),
            "https://bedrock-agentcore.us-west-2.amazonaws.com/runtimes/\
             arn%3Aaws%3Abedrock-agentcore%3Aus-west-2%3A123456789012%3Aruntime%2Fdemo_agent-AbC123\
             /invocations?qualifier=DEFAULT"
        );
        assert_eq!(
            req.headers()[HOST],
            "bedrock-agentcore.us-west-2.amazonaws.com"
        );
    }

    #[test]
    fn qualifier_and_base_path_prefix() {
        let mut config = agentcore(OriginAuth::None);
        config.runtime.as_mut().unwrap().qualifier = "v1 beta&x".into();
        config.base_url = "http://127.0.0.1:9000/prefix/".parse().unwrap();
        let req = build_request(&config, invocation("{}"), now()).unwrap();
        assert_eq!(req.uri().path(), "/prefix/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-west-2%3A123456789012%3Aruntime%2Fdemo_agent-AbC123/invocations");
        assert_eq!(req.uri().query(), Some("qualifier=v1%20beta%26x"));
        assert_eq!(req.headers()[HOST], "127.0.0.1:9000");
    }

    #[test]
    fn without_runtime_the_origin_url_is_the_whole_target() {
        let config = OriginConfig {
            base_url: "https://abc.lambda-url.eu-west-1.on.aws:443/run"
                .parse()
                .unwrap(),
            runtime: None,
            auth: OriginAuth::None,
        };
        let req = build_request(&config, invocation("{}"), now()).unwrap();
        assert_eq!(req.uri().path(), "/run");
        assert_eq!(req.uri().query(), None);
        assert_eq!(req.headers()[HOST], "abc.lambda-url.eu-west-1.on.aws");
    }

    #[test]
    fn headers_and_payload() {
        let mut inv = invocation(r#"{"prompt":"hi"}"#);
        inv.user_id = Some("user-42");
        let req = build_request(&agentcore(sigv4(None)), inv, now()).unwrap();
        let h = req.headers();
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(h[ACCEPT], "text/event-stream, application/json");
        assert_eq!(h[SESSION_ID_HEADER], SESSION);
        assert_eq!(h[USER_ID_HEADER], "user-42");
        assert_eq!(req.body().as_ref(), br#"{"prompt":"hi"}"#);
        assert!(!h.contains_key("x-amz-security-token"));
        let auth = h[AUTHORIZATION].to_str().unwrap();
        assert!(
            auth.contains(
                "SignedHeaders=accept;content-type;host;x-amz-content-sha256;x-amz-date;\
                 x-amzn-bedrock-agentcore-runtime-session-id;x-amzn-bedrock-agentcore-runtime-user-id,"
            ),
            "{auth}"
        );
        assert!(auth.contains("/us-west-2/bedrock-agentcore/aws4_request"));
        assert_eq!(h["x-amz-date"], "20251009T085320Z");
    }

    #[test]
    fn payload_hash_header_is_sha256_of_the_body() {
        let body = r#"{"prompt":"hash me","n":[1,2,3]}"#;
        let req = build_request(&agentcore(sigv4(None)), invocation(body), now()).unwrap();
        let expected = hex::encode(Sha256::digest(body.as_bytes()));
        assert_eq!(req.headers()["x-amz-content-sha256"], expected.as_str());
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let req = build_request(
            &agentcore(sigv4(Some("FQoGZXIvYXdz"))),
            invocation("{}"),
            now(),
        )
        .unwrap();
        let h = req.headers();
        assert_eq!(h["x-amz-security-token"], "FQoGZXIvYXdz");
        assert!(h[AUTHORIZATION]
            .to_str()
            .unwrap()
            .contains(";x-amz-security-token;"));
    }

    #[test]
    fn signature_depends_on_time_and_body() {
        let config = agentcore(sigv4(None));
        let sig = |body: &'static str, t: SystemTime| {
            build_request(&config, invocation(body), t)
                .unwrap()
                .headers()[AUTHORIZATION]
                .clone()
        };
        let base = sig("{}", now());
        assert_eq!(base, sig("{}", now()));
        assert_ne!(base, sig("{ }", now()));
        assert_ne!(base, sig("{}", now() + Duration::from_secs(1)));
    }

    /// Known answer from botocore 1.44.5 `SigV4Auth.add_auth` for the same
    /// request and time: it encodes the already-encoded ARN segment again
    /// (`%3A` is signed as `%253A`); a single-encoding signer would differ.
    #[test]
    fn signature_matches_botocore_for_the_arn_path() {
        let req = build_request(
            &agentcore(sigv4(None)),
            invocation(r#"{"prompt":"hi"}"#),
            now(),
        )
        .unwrap();
        assert_eq!(
            req.headers()[AUTHORIZATION],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251009/us-west-2/bedrock-agentcore/aws4_request, \
             SignedHeaders=accept;content-type;host;x-amz-content-sha256;x-amz-date;\
             x-amzn-bedrock-agentcore-runtime-session-id, \
             Signature=632adff38d6eee54ac663c362c9e50064049734dc1c47e3e9f0f7a60b9cc6ed3"
        );
    }

    #[test]
    fn jwt_passthrough_forwards_the_token_and_does_not_sign() {
        let req = build_request(
            &agentcore(OriginAuth::JwtPassthrough),
            invocation("{}"),
            now(),
        )
        .unwrap();
        let h = req.headers();
        assert_eq!(h[AUTHORIZATION], "Bearer caller.jwt.token");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert!(!h.contains_key("x-amz-date"));
        assert!(!h.contains_key("x-amz-content-sha256"));

        let mut no_token = invocation("{}");
        no_token.bearer_token = None;
        let err =
            build_request(&agentcore(OriginAuth::JwtPassthrough), no_token, now()).unwrap_err();
        assert_eq!(err.status, http::StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn no_auth_adds_nothing() {
        let req = build_request(&agentcore(OriginAuth::None), invocation("{}"), now()).unwrap();
        let h = req.headers();
        assert!(!h.contains_key(AUTHORIZATION));
        assert!(!h.contains_key("x-amz-date"));
        assert_eq!(h.len(), 4, "{h:?}");
    }

    #[test]
    fn bad_header_values_are_client_errors_without_echo() {
        let mut inv = invocation("{}");
        inv.session_id = "bad\nsession";
        let err = build_request(&agentcore(sigv4(None)), inv, now()).unwrap_err();
        assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
        assert!(!err.message.contains("bad"));
    }

    #[test]
    fn stop_runtime_session_is_signed_like_an_invocation() {
        let req = build_stop_request(&agentcore(sigv4(None)), SESSION, None, now())
            .unwrap()
            .expect("a runtime");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.uri().to_string(),
            "https://bedrock-agentcore.us-west-2.amazonaws.com/runtimes/\
             arn%3Aaws%3Abedrock-agentcore%3Aus-west-2%3A123456789012%3Aruntime%2Fdemo_agent-AbC123\
             /stopruntimesession?qualifier=DEFAULT"
        );
        let h = req.headers();
        assert_eq!(h[SESSION_ID_HEADER], SESSION);
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(req.body().as_ref(), b"{}");
        assert!(h[AUTHORIZATION].to_str().unwrap().contains(
            "SignedHeaders=accept;content-type;host;x-amz-content-sha256;x-amz-date;\
             x-amzn-bedrock-agentcore-runtime-session-id,"
        ));

        let passthrough = build_stop_request(
            &agentcore(OriginAuth::JwtPassthrough),
            SESSION,
            Some("t.k.n"),
            now(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(passthrough.headers()[AUTHORIZATION], "Bearer t.k.n");

        let url_only = OriginConfig {
            base_url: "https://agent.example.com/run".parse().unwrap(),
            runtime: None,
            auth: OriginAuth::None,
        };
        assert!(build_stop_request(&url_only, SESSION, None, now())
            .unwrap()
            .is_none());
    }

    #[test]
    fn debug_hides_the_token() {
        let text = format!("{:?}", invocation("{}"));
        assert!(!text.contains("caller.jwt.token"), "{text}");
    }
}
