//! SigV4 signature verification, as AgentCore does it: the `Authorization`
//! header is parsed, its scope and date checked, and the signature
//! recomputed with the demo credentials from the received method, path,
//! query, signed headers and body through [`crate::origin::sign`];
//! `x-amz-content-sha256` must be signed and equal the body's SHA-256, and
//! `x-amz-date` must be within [`MAX_CLOCK_SKEW`] of the clock. Failures are
//! AgentCore's 403s (`InvalidSignatureException`,
//! `UnrecognizedClientException`, `IncompleteSignatureException`,
//! `MissingAuthenticationTokenException`).

use crate::civil::{civil_from_days, days_from_civil};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, AUTHORIZATION, HOST};
use http::{Request, Uri};
use sha2::{Digest, Sha256};

use super::{AwsError, DemoOriginSettings, MAX_CLOCK_SKEW, SERVICE};
use crate::config::Secret;
use crate::origin::{self, SigningInputs};

pub(super) const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// Recomputes the request's SigV4 signature with the demo credentials.
pub(super) fn verify_signature(
    settings: &DemoOriginSettings,
    head: &http::request::Parts,
    body: &Bytes,
    now: SystemTime,
) -> Result<(), AwsError> {
    let incomplete = |message: &str| AwsError::forbidden("IncompleteSignatureException", message);
    let Some(authorization) = head.headers.get(AUTHORIZATION) else {
        return Err(AwsError::forbidden(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let authorization = authorization
        .to_str()
        .map_err(|_| incomplete("The Authorization header is not text."))?;
    let auth = parse_authorization(authorization).ok_or_else(|| {
        incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters \
             with the AWS4-HMAC-SHA256 algorithm.",
        )
    })?;

    let credentials = &settings.credentials;
    if auth.access_key_id != credentials.access_key_id {
        return Err(AwsError::forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if auth.region != settings.region {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region, not '{}'.",
                auth.region
            ),
        ));
    }
    if auth.service != SERVICE {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{SERVICE}'."),
        ));
    }

    let amz_date = head
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        incomplete("The X-Amz-Date header is not in the form YYYYMMDD'T'HHMMSS'Z'.")
    })?;
    if !amz_date.starts_with(auth.date) {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            "The credential scope date does not match X-Amz-Date.",
        ));
    }
    if signed_at + MAX_CLOCK_SKEW < now {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                format_amz_date(now - MAX_CLOCK_SKEW),
                format_amz_date(now)
            ),
        ));
    }
    if signed_at > now + MAX_CLOCK_SKEW {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
                format_amz_date(now + MAX_CLOCK_SKEW),
                format_amz_date(now)
            ),
        ));
    }

    for required in ["host", "x-amz-date", "x-amz-content-sha256"] {
        if !auth.signed_headers.contains(&required) {
            return Err(AwsError::forbidden(
                "InvalidSignatureException",
                format!("The demo origin requires '{required}' to be a signed header (the body hash must be signed)."),
            ));
        }
    }
    for name in &auth.signed_headers {
        if !head.headers.contains_key(*name) {
            return Err(incomplete(&format!(
                "The signed header '{name}' is missing from the request."
            )));
        }
    }
    let body_hash = hex::encode(Sha256::digest(body));
    if head.headers["x-amz-content-sha256"] != body_hash.as_str() {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    let signs_token = auth.signed_headers.contains(&"x-amz-security-token");
    let sent_token = head
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    if sent_token != credentials.session_token.as_ref().map(Secret::expose) {
        return Err(AwsError::forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }

    // Rebuild the request as the client had it before signing: its signed
    // headers, minus the ones the signer adds again from time, body and
    // credentials.
    let host = head.headers[HOST]
        .to_str()
        .map_err(|_| incomplete("The Host header is not text."))?;
    let path_and_query = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = format!("http://{host}{path_and_query}")
        .parse()
        .map_err(|_| incomplete("The Host header is not a valid authority."))?;
    let mut rebuilt = Request::new(body.clone());
    *rebuilt.method_mut() = head.method.clone();
    *rebuilt.uri_mut() = uri;
    for name in &auth.signed_headers {
        if matches!(
            *name,
            "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
        ) {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| incomplete("SignedHeaders lists an invalid header name."))?;
        for value in head.headers.get_all(&name) {
            rebuilt.headers_mut().append(name.clone(), value.clone());
        }
    }
    let inputs = SigningInputs {
        credentials,
        region: &settings.region,
        service: SERVICE,
        time: signed_at,
        sign_body: true,
        normalize_path: true,
        sign_session_token: signs_token,
    };
    origin::sign(&mut rebuilt, &inputs)
        .map_err(|_| AwsError::forbidden("InvalidSignatureException", SIGNATURE_MISMATCH))?;
    let expected = rebuilt.headers()[AUTHORIZATION].as_bytes();
    if !constant_time_eq(expected, authorization.as_bytes()) {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            SIGNATURE_MISMATCH,
        ));
    }
    Ok(())
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
}

/// `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => return None,
        }
    }
    signature.filter(|s| s.len() == 64)?;
    let mut scope = credential?.split('/');
    let parsed = Authorization {
        access_key_id: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed_headers?.split(';').collect(),
    };
    (scope.next()? == "aws4_request" && scope.next().is_none()).then_some(parsed)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` to a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

pub(super) fn format_amz_date(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OriginAuth, OriginConfig};
    use crate::demo::origin::test_support::{fast, rejection, send, signed, start};

    /// What a case's answer must say.
    enum Expect {
        /// 200: the request was accepted.
        Accepted,
        /// This status and AWS error type, and a message that satisfies
        /// the check.
        Rejected(u16, &'static str, fn(&str) -> bool),
    }

    /// One signature case: the demo's settings, the request sent, the answer.
    struct Case {
        name: &'static str,
        session_token: Option<&'static str>,
        request: fn(&OriginConfig) -> Request<Bytes>,
        expect: Expect,
    }

    fn with_credentials(
        config: &OriginConfig,
        change: fn(&mut crate::config::AwsCredentials),
    ) -> OriginConfig {
        let mut config = config.clone();
        if let OriginAuth::SigV4 { credentials, .. } = &mut config.auth {
            change(credentials);
        }
        config
    }

    fn any(_: &str) -> bool {
        true
    }

    fn mismatch(message: &str) -> bool {
        message == SIGNATURE_MISMATCH
    }

    const CASES: &[Case] = &[
        Case {
            name: "tampered body",
            session_token: None,
            request: |config| {
                let mut request = signed(config, r#"{"prompt":"a"}"#, SystemTime::now());
                *request.body_mut() = Bytes::from_static(br#"{"prompt":"b"}"#);
                request
            },
            expect: Expect::Rejected(403, "InvalidSignatureException", |m| {
                m.contains("x-amz-content-sha256")
            }),
        },
        Case {
            // Body and hash header both replaced: only the signature catches it.
            name: "tampered body with a matching hash",
            session_token: None,
            request: |config| {
                let mut request = signed(config, r#"{"prompt":"a"}"#, SystemTime::now());
                let forged = Bytes::from_static(br#"{"prompt":"b"}"#);
                let hash = hex::encode(Sha256::digest(&forged));
                request
                    .headers_mut()
                    .insert("x-amz-content-sha256", hash.parse().unwrap());
                *request.body_mut() = forged;
                request
            },
            expect: Expect::Rejected(403, "InvalidSignatureException", mismatch),
        },
        Case {
            name: "wrong secret key",
            session_token: None,
            request: |config| {
                let config = with_credentials(config, |c| {
                    c.secret_access_key = Secret::new("not-the-demo-secret")
                });
                signed(&config, "{}", SystemTime::now())
            },
            expect: Expect::Rejected(403, "InvalidSignatureException", mismatch),
        },
        Case {
            name: "unknown access key",
            session_token: None,
            request: |config| {
                let config = with_credentials(config, |c| c.access_key_id = "AKIAOTHER".into());
                signed(&config, "{}", SystemTime::now())
            },
            expect: Expect::Rejected(403, "UnrecognizedClientException", any),
        },
        Case {
            name: "unsigned body hash",
            session_token: None,
            request: |config| {
                let OriginAuth::SigV4 {
                    credentials,
                    region,
                    service,
                } = &config.auth
                else {
                    unreachable!("the demo signs with SigV4")
                };
                let unsigned = OriginConfig {
                    auth: OriginAuth::None,
                    ..config.clone()
                };
                let mut request = signed(&unsigned, "{}", SystemTime::now());
                let inputs = SigningInputs {
                    sign_body: false,
                    ..SigningInputs::for_gateway(credentials, region, service, SystemTime::now())
                };
                origin::sign(&mut request, &inputs).unwrap();
                assert!(!request.headers().contains_key("x-amz-content-sha256"));
                request
            },
            expect: Expect::Rejected(403, "InvalidSignatureException", |m| {
                m.contains("'x-amz-content-sha256' to be a signed header")
            }),
        },
        Case {
            name: "a date 6 minutes old",
            session_token: None,
            request: |config| {
                signed(
                    config,
                    "{}",
                    SystemTime::now() - Duration::from_secs(6 * 60),
                )
            },
            expect: Expect::Rejected(403, "InvalidSignatureException", |m| {
                m.starts_with("Signature expired: ")
            }),
        },
        Case {
            name: "a date 6 minutes ahead",
            session_token: None,
            request: |config| {
                signed(
                    config,
                    "{}",
                    SystemTime::now() + Duration::from_secs(6 * 60),
                )
            },
            expect: Expect::Rejected(403, "InvalidSignatureException", |m| {
                m.starts_with("Signature not yet current: ")
            }),
        },
        Case {
            name: "a date 4 minutes old",
            session_token: None,
            request: |config| {
                signed(
                    config,
                    "{}",
                    SystemTime::now() - Duration::from_secs(4 * 60),
                )
            },
            expect: Expect::Accepted,
        },
        Case {
            name: "no Authorization",
            session_token: None,
            request: |config| {
                let unsigned = OriginConfig {
                    auth: OriginAuth::None,
                    ..config.clone()
                };
                signed(&unsigned, "{}", SystemTime::now())
            },
            expect: Expect::Rejected(403, "MissingAuthenticationTokenException", any),
        },
        Case {
            name: "the expected session token",
            session_token: Some("demo-session-token"),
            request: |config| signed(config, "{}", SystemTime::now()),
            expect: Expect::Accepted,
        },
        Case {
            name: "no session token where one is expected",
            session_token: Some("demo-session-token"),
            request: |config| {
                let config = with_credentials(config, |c| c.session_token = None);
                signed(&config, "{}", SystemTime::now())
            },
            expect: Expect::Rejected(403, "UnrecognizedClientException", any),
        },
    ];

    async fn run(case: &Case) {
        let mut settings = fast();
        settings.credentials.session_token = case.session_token.map(Secret::new);
        let origin = start(settings).await;
        let response = send((case.request)(&origin.origin_config())).await;
        match case.expect {
            Expect::Accepted => assert_eq!(response.status(), 200, "{}", case.name),
            Expect::Rejected(status, error_type, message_ok) => {
                let (got_status, got_type, message) = rejection(response).await;
                assert_eq!(
                    (got_status, got_type.as_str()),
                    (status, error_type),
                    "{}: {message}",
                    case.name
                );
                assert!(message_ok(&message), "{}: {message}", case.name);
            }
        }
    }

    #[tokio::test]
    async fn signature_cases() {
        for case in CASES {
            run(case).await;
        }
    }

    #[test]
    fn amz_dates_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(t));
        assert_eq!(parse_amz_date("20150830T123600"), None);
        assert_eq!(parse_amz_date("2015-08-30T12:36"), None);
        let leap = parse_amz_date("20240229T000000Z").unwrap();
        assert_eq!(format_amz_date(leap), "20240229T000000Z");
    }
}
