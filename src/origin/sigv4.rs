//! AWS Signature Version 4 for the origin request, header variant.
//!
//! [`sign`] turns [`SigningInputs`] and a request into signing instructions
//! with the `aws-sigv4` crate and applies them (`x-amz-date`,
//! `authorization`, optionally `x-amz-content-sha256` and
//! `x-amz-security-token`). The gateway, the demo origin's verifier and the
//! conformance suite (`tests/it/sigv4.rs`) all go through this one function.
//!
//! The path is signed the way botocore's `SigV4Auth` (every service but S3)
//! signs it: the request's already percent-encoded path is encoded once more
//! for the canonical request ("double encoding"), so the AgentCore path
//! segment `arn%3Aaws%3A…` is signed as `arn%253Aaws%253A…`. The interop test
//! `tests/it/botocore.rs` checks this against botocore itself.
//!
//! Spec: AWS SigV4, <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>.

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    self as sigv4_http, PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody,
    SignableRequest, SigningSettings, UriPathNormalizationMode,
};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;

use crate::config::AwsCredentials;

/// Everything besides the request that a SigV4 signature depends on.
#[derive(Debug, Clone, Copy)]
pub struct SigningInputs<'a> {
    pub credentials: &'a AwsCredentials,
    pub region: &'a str,
    /// The signing name, e.g. `bedrock-agentcore` or `lambda`.
    pub service: &'a str,
    /// The signing time; `x-amz-date` is derived from it.
    pub time: SystemTime,
    /// Add `x-amz-content-sha256` (the body's SHA-256) as a signed header.
    pub sign_body: bool,
    /// Remove dot segments and duplicate slashes from the canonical path.
    pub normalize_path: bool,
    /// Include `x-amz-security-token` in the signed headers (the usual
    /// case); `false` adds it after signing, as a few services require.
    pub sign_session_token: bool,
}

impl<'a> SigningInputs<'a> {
    /// The settings the gateway uses: body hash signed, path normalized,
    /// session token signed.
    pub fn for_gateway(
        credentials: &'a AwsCredentials,
        region: &'a str,
        service: &'a str,
        time: SystemTime,
    ) -> Self {
        SigningInputs {
            credentials,
            region,
            service,
            time,
            sign_body: true,
            normalize_path: true,
            sign_session_token: true,
        }
    }
}

/// Why a request could not be signed. Never carries a header value, a key
/// or a token: only which part of the request was at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningError {
    /// A header value is not visible ASCII/UTF-8 (the header's name).
    InvalidHeaderValue(String),
    /// The request URI has no host and there is no `host` header.
    MissingHost,
    /// The region, service, credentials or URI were rejected by the signer.
    Rejected,
}

impl fmt::Display for SigningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningError::InvalidHeaderValue(name) => {
                write!(f, "cannot sign: the value of header {name} is not text")
            }
            SigningError::MissingHost => f.write_str("cannot sign: the request has no host"),
            SigningError::Rejected => f.write_str(
                "cannot sign: the signer rejected the region, service, credentials or URI",
            ),
        }
    }
}

impl std::error::Error for SigningError {}

/// Signs `request` in place: adds `x-amz-date`, `authorization` and, as the
/// inputs ask, `x-amz-content-sha256` and `x-amz-security-token`. Every
/// header present (except `authorization`, `user-agent`, `x-amzn-trace-id`
/// and `transfer-encoding`, which proxies change) is signed, `host`
/// included; add headers before signing, never after.
pub fn sign(
    request: &mut http::Request<Bytes>,
    inputs: &SigningInputs<'_>,
) -> Result<(), SigningError> {
    let instructions = signing_instructions(request, inputs)?;
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// The headers [`sign`] would add, without touching the request.
pub fn signing_instructions(
    request: &http::Request<Bytes>,
    inputs: &SigningInputs<'_>,
) -> Result<sigv4_http::SigningInstructions, SigningError> {
    if request.uri().host().is_none() && !request.headers().contains_key(http::header::HOST) {
        return Err(SigningError::MissingHost);
    }
    let mut headers = Vec::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        let value = value
            .to_str()
            .map_err(|_| SigningError::InvalidHeaderValue(name.as_str().to_owned()))?;
        headers.push((name.as_str(), value));
    }
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|_| SigningError::Rejected)?;

    let credentials = inputs.credentials;
    let identity: Identity = Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose(),
        credentials
            .session_token
            .as_ref()
            .map(|token| token.expose().to_owned()),
        None,
        "agent-edge",
    )
    .into();

    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Double;
    settings.payload_checksum_kind = if inputs.sign_body {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    settings.uri_path_normalization_mode = if inputs.normalize_path {
        UriPathNormalizationMode::Enabled
    } else {
        UriPathNormalizationMode::Disabled
    };
    settings.session_token_mode = if inputs.sign_session_token {
        SessionTokenMode::Include
    } else {
        SessionTokenMode::Exclude
    };

    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(inputs.region)
        .name(inputs.service)
        .time(inputs.time)
        .settings(settings)
        .build()
        .map_err(|_| SigningError::Rejected)?
        .into();
    let (instructions, _signature) = sigv4_http::sign(signable, &params)
        .map_err(|_| SigningError::Rejected)?
        .into_parts();
    Ok(instructions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::time::Duration;

    fn credentials(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(Secret::new),
        }
    }

    fn request(path: &str) -> http::Request<Bytes> {
        http::Request::post(format!("https://example.amazonaws.com{path}"))
            .header("host", "example.amazonaws.com")
            .body(Bytes::from_static(b"{}"))
            .unwrap()
    }

    // 2015-08-30T12:36:00Z, the suite's time.
    fn time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    #[test]
    fn signs_body_hash_date_and_token() {
        let creds = credentials(Some("TOKEN"));
        let mut req = request("/");
        sign(
            &mut req,
            &SigningInputs::for_gateway(&creds, "us-east-1", "service", time()),
        )
        .unwrap();
        let h = req.headers();
        assert_eq!(h["x-amz-date"], "20150830T123600Z");
        assert_eq!(
            h["x-amz-content-sha256"],
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(h["x-amz-security-token"], "TOKEN");
        assert!(h["x-amz-security-token"].is_sensitive());
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ));
    }

    #[test]
    fn errors_and_debug_carry_no_secret() {
        let creds = credentials(Some("SESSIONTOKEN"));
        let mut req = request("/");
        req.headers_mut().insert(
            "x-secret",
            http::HeaderValue::from_bytes(b"\xffsecret-value").unwrap(),
        );
        let err = sign(
            &mut req,
            &SigningInputs::for_gateway(&creds, "us-east-1", "service", time()),
        )
        .unwrap_err();
        assert_eq!(err, SigningError::InvalidHeaderValue("x-secret".into()));
        let inputs = SigningInputs::for_gateway(&creds, "us-east-1", "service", time());
        for text in [err.to_string(), format!("{err:?}"), format!("{inputs:?}")] {
            for secret in ["secret-value", "EXAMPLEKEY", "SESSIONTOKEN", "AKIDEXAMPLE"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[test]
    fn missing_host_is_an_error() {
        let creds = credentials(None);
        let mut req = http::Request::post("/x").body(Bytes::new()).unwrap();
        let err = sign(
            &mut req,
            &SigningInputs::for_gateway(&creds, "us-east-1", "service", time()),
        )
        .unwrap_err();
        assert_eq!(err, SigningError::MissingHost);
    }
}
