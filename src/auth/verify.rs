//! One token's verification: parse (RFC 7515 compact form), refuse headers
//! that point at keys other than the issuer's (RFC 8725 §3.1, §3.10), check
//! the signature with the key's own algorithm through `jwt-compact` (RSA
//! through [`super::rsa_key`]'s backend for the target), then the
//! claims (RFC 7519 §4.1, OIDC Core §3.1.3.7, Cognito's `token_use` and
//! `client_id`).
//!
//! The time claims are compared here on unix seconds rather than through
//! `jwt-compact`'s chrono-based `TimeOptions`: the clock is a plain `u64`
//! input, each failure needs its own description, and the verified-token
//! cache re-runs the very same comparison ([`Validity::check`]).

use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::{AlgorithmExt as _, Claims, ParseError, UntrustedToken, ValidationError};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::algorithm::JwsAlgorithm;
use super::jwks::{Key, PublicKey};
use super::platform_rsa::SignatureCheck;
use super::reject::Reason;
use super::rsa_key;
use super::token_cache::Validity;
use super::Verified;
use crate::config::{JwtConfig, TokenUse};

/// Header members `jwt-compact`'s `Header` does not model but we must see.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct HeaderExtras {
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

pub(crate) type Untrusted<'a> = UntrustedToken<'a, HeaderExtras>;

/// Parses a token and checks its header: the algorithm it claims, and no
/// `crit`, `jku`, `x5u`, `jwk` or `x5c`.
pub(crate) fn parse(token: &str) -> Result<(Untrusted<'_>, JwsAlgorithm), Reason> {
    let untrusted = Untrusted::try_from(token).map_err(|e| match e {
        ParseError::InvalidTokenStructure => Reason::MalformedStructure,
        ParseError::InvalidBase64Encoding => Reason::MalformedBase64,
        ParseError::UnsupportedContentType(_) => Reason::UnsupportedContentType,
        _ => Reason::MalformedHeaderJson,
    })?;
    let name = untrusted.algorithm();
    if name.eq_ignore_ascii_case("none") {
        return Err(Reason::AlgNone);
    }
    let header = untrusted.header();
    if header.other_fields.crit {
        return Err(Reason::CriticalHeader);
    }
    if header.key_set_url.is_some() {
        return Err(Reason::KeySetUrlHeader);
    }
    if header.certificate_url.is_some() {
        return Err(Reason::CertificateUrlHeader);
    }
    if header.other_fields.jwk || header.other_fields.x5c {
        return Err(Reason::EmbeddedKeyHeader);
    }
    if name.starts_with("HS") {
        return Err(Reason::SymmetricAlgorithm);
    }
    let alg = JwsAlgorithm::from_name(name).ok_or(Reason::UnsupportedAlgorithm)?;
    Ok((untrusted, alg))
}

type ClaimSet = Claims<Map<String, Value>>;

/// Checks the signature with `key`, which must allow `alg`.
pub(crate) fn verify_signature(
    token: &Untrusted<'_>,
    alg: JwsAlgorithm,
    key: &Key,
) -> Result<ClaimSet, Reason> {
    if !key.allows(alg) {
        return Err(Reason::AlgorithmMismatch);
    }
    let result = match (&key.public, alg) {
        (PublicKey::Rsa(public), _) => {
            let rsa = rsa_key::algorithm(alg).ok_or(Reason::AlgorithmMismatch)?;
            rsa.validator(public).validate(token)
        }
        (PublicKey::P256(public), JwsAlgorithm::Es256) => Es256.validator(public).validate(token),
        (PublicKey::Ed25519(public), JwsAlgorithm::EdDsa) => {
            Ed25519.validator(public).validate(token)
        }
        _ => return Err(Reason::AlgorithmMismatch),
    };
    match result {
        Ok(token) => Ok(token.into_parts().1),
        Err(ValidationError::MalformedClaims(_)) => Err(Reason::MalformedClaims),
        Err(_) => Err(Reason::BadSignature),
    }
}

/// The claims of a token whose signature the platform found good
/// ([`super::platform_rsa`]).
pub(crate) fn trusted_claims(token: &Untrusted<'_>) -> Result<ClaimSet, Reason> {
    token
        .deserialize_claims_unchecked()
        .map_err(|_| Reason::MalformedClaims)
}

/// What the platform needs to check `token`'s RSA signature with `key`
/// (whose public half is `public`).
pub(crate) fn signature_check(
    token: &str,
    untrusted: &Untrusted<'_>,
    alg: JwsAlgorithm,
    key: &Key,
    public: &rsa_key::RsaKey,
    token_digest: [u8; 32],
) -> SignatureCheck {
    let (modulus, exponent) = rsa_key::components(public);
    // A parsed token has its two dots.
    let signed_data = token.rsplit_once('.').map_or(token, |(data, _)| data);
    SignatureCheck {
        alg,
        key_thumbprint: key.thumbprint,
        modulus,
        exponent,
        signed_data: signed_data.as_bytes().to_vec(),
        signature: untrusted.signature_bytes().to_vec(),
        token_digest,
    }
}

/// Checks the claims of a token whose signature is good.
pub(crate) fn check_claims(
    claims: &ClaimSet,
    config: &JwtConfig,
    now: u64,
) -> Result<(Verified, Validity), Reason> {
    let custom = &claims.custom;
    let text = |name: &str| custom.get(name).and_then(Value::as_str);

    if text("iss") != Some(config.issuer.as_str()) {
        return Err(Reason::WrongIssuer);
    }

    let token_use = match custom.get("token_use") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Reason::WrongTokenUse),
    };
    let token_use_allowed = match config.token_use {
        TokenUse::Id => token_use == Some("id"),
        TokenUse::Access => token_use == Some("access"),
        TokenUse::Any => matches!(token_use, None | Some("id" | "access")),
    };
    if !token_use_allowed {
        return Err(Reason::WrongTokenUse);
    }

    let accepted = |s: &str| config.audiences.iter().any(|a| a == s);
    let aud_matches = match custom.get("aud") {
        None => None,
        Some(Value::String(aud)) => Some(accepted(aud)),
        Some(Value::Array(auds)) => Some(auds.iter().filter_map(Value::as_str).any(accepted)),
        Some(_) => Some(false),
    };
    let is_access = token_use == Some("access");
    let client_id_matches = is_access && text("client_id").is_some_and(accepted);
    if aud_matches != Some(true) && !client_id_matches {
        return Err(if is_access && aud_matches.is_none() {
            Reason::WrongClientId
        } else {
            Reason::WrongAudience
        });
    }

    // Times before 1970 count as 0 (an expired `exp`, a past `nbf`).
    let seconds = |t: i64| u64::try_from(t).unwrap_or(0);
    let validity = Validity {
        expires_at: claims
            .expiration
            .map(|t| seconds(t.timestamp()))
            .ok_or(Reason::MissingExpiry)?,
        not_before: claims.not_before.map(|t| seconds(t.timestamp())),
        issued_at: claims.issued_at.map(|t| seconds(t.timestamp())),
    };
    validity.check(now, config.leeway_seconds)?;

    let user_id = config
        .user_id_claim
        .as_deref()
        .and_then(|name| match custom.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let subject = text("sub").map(str::to_owned);
    if config.require_subject && subject.is_none() {
        return Err(Reason::MissingSubject);
    }
    let claims = config
        .gate_claims
        .iter()
        .filter_map(|name| Some((name.clone(), claim_values(custom.get(name)?))))
        .collect();
    Ok((
        Verified {
            subject,
            user_id,
            claims,
            expires_at: validity.expires_at,
        },
        validity,
    ))
}

/// A claim's values as `requireClaims` compares them: a string, number or
/// boolean as its text; a list, each such member.
fn claim_values(value: &Value) -> Vec<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Value::Array(members) => members.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}
