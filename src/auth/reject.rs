//! Why a request's credentials were refused, and the RFC 6750 answer for
//! each: the status, the `WWW-Authenticate` challenge and the JSON error.
//!
//! Descriptions are fixed sentences: they say what was wrong and never echo
//! the token or anything taken from it (RFC 6750 §3 also restricts the
//! characters of `error_description`, which fixed text guarantees).

use http::{header, HeaderValue};

use crate::error::{Code, GatewayError};

/// Largest bearer token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token (or its absence) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No `Authorization` header, or one of another scheme (RFC 6750 §3.1:
    /// no error code then).
    MissingToken,
    /// `Authorization: Bearer` without a well-formed token (`invalid_request`).
    MalformedAuthorization,
    TooLarge,
    MalformedStructure,
    MalformedBase64,
    MalformedHeaderJson,
    UnsupportedContentType,
    MalformedClaims,
    AlgNone,
    SymmetricAlgorithm,
    UnsupportedAlgorithm,
    CriticalHeader,
    KeySetUrlHeader,
    CertificateUrlHeader,
    EmbeddedKeyHeader,
    UnknownKid,
    AmbiguousKid,
    AlgorithmMismatch,
    BadSignature,
    MissingExpiry,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongIssuer,
    WrongAudience,
    WrongClientId,
    WrongTokenUse,
    /// No `sub`, and sessions belong to their subject (`SESSION_SCOPE=subject`).
    MissingSubject,
    /// No key set could be obtained from the issuer (503).
    KeysUnavailable,
}

impl Reason {
    /// A stable snake_case name, for log lines (`GatewayError::detail`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::MalformedAuthorization => "malformed_authorization",
            Reason::TooLarge => "token_too_large",
            Reason::MalformedStructure => "malformed_structure",
            Reason::MalformedBase64 => "malformed_base64",
            Reason::MalformedHeaderJson => "malformed_header_json",
            Reason::UnsupportedContentType => "unsupported_content_type",
            Reason::MalformedClaims => "malformed_claims",
            Reason::AlgNone => "alg_none",
            Reason::SymmetricAlgorithm => "symmetric_algorithm",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::CriticalHeader => "critical_header",
            Reason::KeySetUrlHeader => "jku_header",
            Reason::CertificateUrlHeader => "x5u_header",
            Reason::EmbeddedKeyHeader => "embedded_key_header",
            Reason::UnknownKid => "unknown_kid",
            Reason::AmbiguousKid => "ambiguous_kid",
            Reason::AlgorithmMismatch => "algorithm_mismatch",
            Reason::BadSignature => "bad_signature",
            Reason::MissingExpiry => "missing_exp",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::WrongClientId => "wrong_client_id",
            Reason::WrongTokenUse => "wrong_token_use",
            Reason::MissingSubject => "missing_sub",
            Reason::KeysUnavailable => "keys_unavailable",
        }
    }

    /// The client-facing sentence (`error_description` and the JSON message).
    pub fn description(self) -> &'static str {
        match self {
            Reason::MissingToken => "an Authorization: Bearer token is required",
            Reason::MalformedAuthorization => {
                "the Authorization header is not a well-formed Bearer credential"
            }
            Reason::TooLarge => "the token is larger than 16 KiB",
            Reason::MalformedStructure => {
                "the token is not a compact JWS (three dot-separated parts)"
            }
            Reason::MalformedBase64 => "the token is not valid base64url",
            Reason::MalformedHeaderJson => "the token header is not valid JSON",
            Reason::UnsupportedContentType => "the token content type (cty) is not supported",
            Reason::MalformedClaims => "the token claims are not a valid JSON object",
            Reason::AlgNone => "unsigned tokens (alg none) are not accepted",
            Reason::SymmetricAlgorithm => "symmetric (HS*) token algorithms are not accepted",
            Reason::UnsupportedAlgorithm => "the token algorithm (alg) is not supported",
            Reason::CriticalHeader => {
                "the token has critical header extensions (crit), none are supported"
            }
            Reason::KeySetUrlHeader => {
                "the token names a key set URL (jku); only the issuer's keys are trusted"
            }
            Reason::CertificateUrlHeader => {
                "the token names a certificate URL (x5u); only the issuer's keys are trusted"
            }
            Reason::EmbeddedKeyHeader => {
                "the token embeds a key (jwk or x5c); only the issuer's keys are trusted"
            }
            Reason::UnknownKid => "the token key id (kid) is not in the issuer's key set",
            Reason::AmbiguousKid => "the token has no key id (kid) and the issuer has several keys",
            Reason::AlgorithmMismatch => "the token algorithm (alg) does not match its key",
            Reason::BadSignature => "the token signature is invalid",
            Reason::MissingExpiry => "the token has no expiry (exp)",
            Reason::Expired => "the token has expired",
            Reason::NotYetValid => "the token is not valid yet (nbf)",
            Reason::IssuedInFuture => "the token was issued in the future (iat)",
            Reason::WrongIssuer => "the token was not issued by the configured issuer (iss)",
            Reason::WrongAudience => "the token audience (aud) is not accepted",
            Reason::WrongClientId => "the token client_id is not accepted",
            Reason::WrongTokenUse => "the token_use of the token is not accepted",
            Reason::MissingSubject => "the token has no subject (sub), which sessions belong to",
            Reason::KeysUnavailable => {
                "the token cannot be checked: the issuer's keys are unavailable"
            }
        }
    }

    /// The response for this reason.
    pub fn to_error(self) -> GatewayError {
        let (code, challenge) = match self {
            Reason::MissingToken => (Code::MissingToken, "Bearer realm=\"agent-edge\"".to_owned()),
            Reason::MalformedAuthorization => (
                Code::InvalidRequest,
                format!(
                    "Bearer error=\"invalid_request\", error_description=\"{}\"",
                    self.description()
                ),
            ),
            Reason::KeysUnavailable => {
                return GatewayError::new(Code::AuthUnavailable)
                    .with_message(self.description())
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("60"))
                    .with_detail(self.as_str());
            }
            _ => (
                Code::InvalidToken,
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    self.description()
                ),
            ),
        };
        let challenge =
            HeaderValue::from_str(&challenge).expect("descriptions are fixed ASCII text");
        GatewayError::new(code)
            .with_message(self.description())
            .with_header(header::WWW_AUTHENTICATE, challenge)
            .with_detail(self.as_str())
    }
}

/// The token of an `Authorization: Bearer <token>` header value (RFC 6750
/// §2.1: `"Bearer" 1*SP b64token`; the scheme is case-insensitive).
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, Reason> {
    let token = bearer_candidate(authorization)?;
    check_b64token(token)?;
    Ok(token)
}

/// The part of [`bearer_token`] that a verified-token cache hit needs: the
/// scheme and the size. The character check ([`check_b64token`]) can wait
/// for a cache miss, since a cached token equals one that passed it.
pub(crate) fn bearer_candidate(authorization: Option<&str>) -> Result<&str, Reason> {
    let value = authorization.ok_or(Reason::MissingToken)?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Reason::MissingToken);
    }
    let token = rest.trim_start_matches(' ');
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Reason::TooLarge);
    }
    Ok(token)
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
pub(crate) fn check_b64token(token: &str) -> Result<(), Reason> {
    let body = token.trim_end_matches('=');
    let is_b64token = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if is_b64token {
        Ok(())
    } else {
        Err(Reason::MalformedAuthorization)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Reason; 28] = [
        Reason::MissingToken,
        Reason::MalformedAuthorization,
        Reason::TooLarge,
        Reason::MalformedStructure,
        Reason::MalformedBase64,
        Reason::MalformedHeaderJson,
        Reason::UnsupportedContentType,
        Reason::MalformedClaims,
        Reason::AlgNone,
        Reason::SymmetricAlgorithm,
        Reason::UnsupportedAlgorithm,
        Reason::CriticalHeader,
        Reason::KeySetUrlHeader,
        Reason::CertificateUrlHeader,
        Reason::EmbeddedKeyHeader,
        Reason::UnknownKid,
        Reason::AmbiguousKid,
        Reason::AlgorithmMismatch,
        Reason::BadSignature,
        Reason::MissingExpiry,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::WrongClientId,
        Reason::WrongTokenUse,
        Reason::KeysUnavailable,
    ];

    #[test]
    fn descriptions_and_names_are_distinct_and_header_safe() {
        let mut names = std::collections::HashSet::new();
        let mut descriptions = std::collections::HashSet::new();
        for reason in ALL {
            assert!(names.insert(reason.as_str()), "{reason:?}");
            assert!(descriptions.insert(reason.description()), "{reason:?}");
            // RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
            assert!(
                reason
                    .description()
                    .bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'),
                "{reason:?}"
            );
            let error = reason.to_error();
            assert_eq!(error.detail.as_deref(), Some(reason.as_str()));
            assert_eq!(error.message, reason.description());
        }
    }

    #[test]
    fn statuses_and_challenges_follow_rfc_6750() {
        let challenge = |r: Reason| {
            let e = r.to_error();
            let value = e
                .headers
                .iter()
                .find(|(n, _)| n == header::WWW_AUTHENTICATE)
                .map(|(_, v)| v.to_str().unwrap().to_owned());
            (e.status.as_u16(), e.code.as_str(), value)
        };
        assert_eq!(
            challenge(Reason::MissingToken),
            (
                401,
                "missing_token",
                Some("Bearer realm=\"agent-edge\"".into())
            )
        );
        let (status, code, value) = challenge(Reason::MalformedAuthorization);
        assert_eq!((status, code), (400, "invalid_request"));
        assert!(value
            .unwrap()
            .starts_with("Bearer error=\"invalid_request\", error_description=\""));
        let (status, code, value) = challenge(Reason::Expired);
        assert_eq!((status, code), (401, "invalid_token"));
        assert_eq!(
            value.unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
        );
        let unavailable = Reason::KeysUnavailable.to_error();
        assert_eq!(unavailable.status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.blame, crate::error::Blame::Upstream);
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
        assert_eq!(bearer_token(Some("bearer  abc.d-_~+/=")), Ok("abc.d-_~+/="));
        assert_eq!(bearer_token(None), Err(Reason::MissingToken));
        assert_eq!(bearer_token(Some("")), Err(Reason::MissingToken));
        assert_eq!(
            bearer_token(Some("Basic dXNlcjpwYXNz")),
            Err(Reason::MissingToken)
        );
        assert_eq!(bearer_token(Some("Bearertoken")), Err(Reason::MissingToken));
        for malformed in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\tb",
            "Bearer =",
            "Bearer a=b",
            "Bearer \"x\"",
        ] {
            assert_eq!(
                bearer_token(Some(malformed)),
                Err(Reason::MalformedAuthorization),
                "{malformed:?}"
            );
        }
        let big = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(bearer_token(Some(&big)), Err(Reason::TooLarge));
        let limit = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES));
        assert!(bearer_token(Some(&limit)).is_ok());
    }
}
