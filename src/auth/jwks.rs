//! JSON Web Key Sets (RFC 7517), the signature algorithms each key allows
//! (RFC 7518 §3, RFC 8037), the OpenID discovery document, and the
//! `Cache-Control` lifetime of a fetched key set.
//!
//! A key's algorithm comes from the key, never from a token (RFC 8725 §3.1):
//! an RSA key allows only RSA algorithms (exactly its `alg` when the JWK has
//! one), a P-256 key only `ES256`, an Ed25519 key only `EdDSA`. Keys that fit
//! none of these (unknown `kty` or curve, `use` other than `sig`, symmetric,
//! RSA under 2048 bits) are skipped, with a reason, without failing the set.
//! The key material itself is decoded by `jwt-compact`'s JWK conversions
//! (RSA keys by `super::rsa_key`).

use std::fmt;

use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::jwk::JsonWebKey;
use serde_json::Value;
use sha2::Sha256;

use super::algorithm::JwsAlgorithm;
use super::rsa_key::{self, RsaKey};

/// Largest key set or discovery document we parse.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// Shortest RSA modulus accepted (RFC 7518 §3.3).
const MIN_RSA_BITS: usize = 2048;

/// Decoded public key material.
pub(crate) enum PublicKey {
    Rsa(RsaKey),
    P256(<Es256 as jwt_compact::Algorithm>::VerifyingKey),
    Ed25519(<Ed25519 as jwt_compact::Algorithm>::VerifyingKey),
}

/// One usable verification key of a key set.
pub struct Key {
    kid: Option<String>,
    /// Bit set of [`JwsAlgorithm`]s this key verifies.
    allowed: u8,
    pub(crate) public: PublicKey,
    /// RFC 7638 thumbprint: identifies the key across refreshes.
    pub(crate) thumbprint: [u8; 32],
}

impl Key {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn allows(&self, alg: JwsAlgorithm) -> bool {
        self.allowed & alg.bit() != 0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<&str> = [JwsAlgorithm::Es256, JwsAlgorithm::EdDsa]
            .into_iter()
            .chain(JwsAlgorithm::RSA)
            .filter(|a| self.allows(*a))
            .map(JwsAlgorithm::name)
            .collect();
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &algs)
            .finish()
    }
}

/// The usable keys of a JWKS document, and why the others were skipped.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    /// One line per skipped key, for the log.
    pub skipped: Vec<String>,
}

/// What looking a token's key up in a [`KeySet`] found.
#[derive(Debug)]
pub(crate) enum KeyMatch<'a> {
    Found(&'a Key),
    /// No key has this `kid`.
    UnknownKid,
    /// A key has this `kid` but does not allow the token's algorithm.
    AlgorithmMismatch,
    /// The token has no `kid` and the set has several keys for its algorithm.
    AmbiguousKid,
}

impl KeySet {
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn contains_thumbprint(&self, thumbprint: &[u8; 32]) -> bool {
        self.keys.iter().any(|k| &k.thumbprint == thumbprint)
    }

    /// The key for a token's `kid` and `alg`. Without a `kid`, the only key
    /// allowing `alg` is used (issuers with one key often omit `kid`).
    pub(crate) fn find(&self, kid: Option<&str>, alg: JwsAlgorithm) -> KeyMatch<'_> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return KeyMatch::UnknownKid;
                }
                named
                    .find(|k| k.allows(alg))
                    .map_or(KeyMatch::AlgorithmMismatch, KeyMatch::Found)
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.allows(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => KeyMatch::Found(key),
                    (Some(_), Some(_)) => KeyMatch::AmbiguousKid,
                    (None, _) if self.keys.is_empty() => KeyMatch::UnknownKid,
                    (None, _) => KeyMatch::AlgorithmMismatch,
                }
            }
        }
    }
}

/// Parses a JWKS document (`{"keys":[...]}`). Fails only when the document
/// itself is malformed; unusable keys are skipped and listed in `skipped`.
pub fn parse_key_set(document: &[u8]) -> Result<KeySet, String> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "key set document is larger than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    let value: Value = serde_json::from_slice(document)
        .map_err(|e| format!("key set document is not JSON: {e}"))?;
    let entries = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("key set document has no \"keys\" array")?;
    let mut set = KeySet::default();
    for (index, entry) in entries.iter().enumerate() {
        match parse_key(entry) {
            Ok(key) => set.keys.push(key),
            Err(reason) => {
                let kid = entry.get("kid").and_then(Value::as_str).map_or_else(
                    || format!("#{index}"),
                    |kid| format!("{:?}", truncate(kid, 64)),
                );
                set.skipped.push(format!("key {kid}: {reason}"));
            }
        }
    }
    Ok(set)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn parse_key(entry: &Value) -> Result<Key, &'static str> {
    let object = entry.as_object().ok_or("not a JSON object")?;
    let text = |name: &str| -> Result<Option<&str>, &'static str> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err("a member that must be a string is not"),
        }
    };
    if text("use")?.is_some_and(|u| u != "sig") {
        return Err("\"use\" is not \"sig\"");
    }
    if let Some(ops) = object.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err("\"key_ops\" does not include \"verify\"");
        }
    }
    let declared = match text("alg")? {
        None => None,
        Some(name) => Some(JwsAlgorithm::from_name(name).ok_or("unsupported \"alg\"")?),
    };
    let kid = text("kid")?.map(str::to_owned);

    let jwk: JsonWebKey<'static> = serde_json::from_value(entry.clone())
        .map_err(|_| "unsupported \"kty\" or malformed key")?;
    let (family, public): (&[JwsAlgorithm], PublicKey) = match &jwk {
        JsonWebKey::Rsa { modulus, .. } => {
            if modulus_bits(modulus) < MIN_RSA_BITS {
                return Err("RSA modulus shorter than 2048 bits");
            }
            let key = rsa_key::decode(&jwk)?;
            (&JwsAlgorithm::RSA, PublicKey::Rsa(key))
        }
        JsonWebKey::EllipticCurve { curve, .. } => {
            if curve != "P-256" {
                return Err("unsupported elliptic curve");
            }
            let key = TryFrom::try_from(&jwk).map_err(|_| "malformed P-256 key")?;
            (&[JwsAlgorithm::Es256], PublicKey::P256(key))
        }
        JsonWebKey::KeyPair { curve, .. } => {
            if curve != "Ed25519" {
                return Err("unsupported OKP curve");
            }
            let key = TryFrom::try_from(&jwk).map_err(|_| "malformed Ed25519 key")?;
            (&[JwsAlgorithm::EdDsa], PublicKey::Ed25519(key))
        }
        JsonWebKey::Symmetric { .. } => return Err("symmetric keys are never trusted"),
        _ => return Err("unsupported \"kty\""),
    };
    let allowed = match declared {
        Some(alg) if family.contains(&alg) => alg.bit(),
        Some(_) => return Err("\"alg\" does not fit the key type"),
        None => family.iter().fold(0, |bits, alg| bits | alg.bit()),
    };
    Ok(Key {
        kid,
        allowed,
        public,
        thumbprint: jwk.thumbprint::<Sha256>().into(),
    })
}

/// Bit length of a big-endian unsigned integer.
fn modulus_bits(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|&b| b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    bytes.len() * 8 - bytes[0].leading_zeros() as usize
}

/// The `jwks_uri` of an OpenID Connect discovery document, checked to belong
/// to `issuer` (OpenID Connect Discovery 1.0 §4.3).
pub fn parse_discovery(document: &[u8], issuer: &str) -> Result<String, String> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "discovery document is larger than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    let value: Value = serde_json::from_slice(document)
        .map_err(|e| format!("discovery document is not JSON: {e}"))?;
    let found_issuer = value.get("issuer").and_then(Value::as_str);
    if found_issuer.map(|i| i.trim_end_matches('/')) != Some(issuer.trim_end_matches('/')) {
        return Err(format!(
            "discovery document names issuer {:?}, not the configured JWT_ISSUER",
            found_issuer.map(|i| truncate(i, 200))
        ));
    }
    let jwks_uri = value
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("discovery document has no \"jwks_uri\"")?;
    let is_absolute_http = jwks_uri
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !is_absolute_http {
        return Err("discovery document's \"jwks_uri\" is not an absolute http(s) URL".into());
    }
    Ok(jwks_uri.to_owned())
}

/// Default key set lifetime without `Cache-Control: max-age` (10 minutes).
pub const DEFAULT_MAX_AGE: u64 = 600;
/// Longest lifetime honoured, so that keys are re-read at least daily.
pub const MAX_MAX_AGE: u64 = 24 * 3600;

/// The lifetime in seconds a `Cache-Control` header value gives a response:
/// `max-age`, `0` for `no-cache`/`no-store`, else [`DEFAULT_MAX_AGE`];
/// capped at [`MAX_MAX_AGE`].
pub fn max_age(cache_control: Option<&str>) -> u64 {
    let mut max_age = None;
    for directive in cache_control.unwrap_or("").split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return 0;
        }
        if name.eq_ignore_ascii_case("max-age") {
            // RFC 9111 §1.2.2: an overlarge delta-seconds counts as "very large".
            max_age = value.and_then(|v| {
                v.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| v.parse::<u64>().unwrap_or(u64::MAX))
            });
        }
    }
    max_age.unwrap_or(DEFAULT_MAX_AGE).min(MAX_MAX_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::auth::test_jws::{public, ED25519, P256, RSA_A, RSA_B, RSA_WEAK};

    fn set(keys: Vec<Value>) -> KeySet {
        parse_key_set(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn each_key_type_allows_only_its_algorithms() {
        let set = set(vec![public(RSA_A), public(P256), public(ED25519)]);
        assert!(set.skipped.is_empty(), "{:?}", set.skipped);
        let [rsa, ec, ed] = set.keys() else {
            panic!("{set:?}")
        };
        assert!(rsa.allows(JwsAlgorithm::Rs256));
        assert!(!rsa.allows(JwsAlgorithm::Rs384), "alg RS256 was declared");
        assert!(!rsa.allows(JwsAlgorithm::Es256));
        assert!(ec.allows(JwsAlgorithm::Es256) && !ec.allows(JwsAlgorithm::Rs256));
        assert!(ed.allows(JwsAlgorithm::EdDsa) && !ed.allows(JwsAlgorithm::Es256));
    }

    #[test]
    fn rsa_key_without_alg_allows_the_rsa_family_only() {
        let mut jwk = public(RSA_A);
        jwk.as_object_mut().unwrap().remove("alg");
        let set = set(vec![jwk]);
        let key = &set.keys()[0];
        for alg in JwsAlgorithm::RSA {
            assert!(key.allows(alg), "{alg:?}");
        }
        assert!(!key.allows(JwsAlgorithm::Es256) && !key.allows(JwsAlgorithm::EdDsa));
    }

    #[test]
    fn unusable_keys_are_skipped_without_failing_the_set() {
        let mut encryption = public(RSA_B);
        encryption["use"] = json!("enc");
        let mut mismatched = public(P256);
        mismatched["alg"] = json!("RS256");
        let mut unknown_alg = public(RSA_B);
        unknown_alg["alg"] = json!("RSA-OAEP");
        let mut p384 = public(P256);
        p384["crv"] = json!("P-384");
        let mut no_verify = public(RSA_B);
        no_verify["key_ops"] = json!(["encrypt"]);
        let set = set(vec![
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            json!({"kty": "XYZ", "kid": "future"}),
            encryption,
            mismatched,
            unknown_alg,
            p384,
            no_verify,
            public(RSA_WEAK),
            json!("not an object"),
            public(RSA_A),
        ]);
        assert_eq!(set.keys().len(), 1, "{:?}", set.skipped);
        assert_eq!(set.keys()[0].kid(), Some("rsa-a"));
        assert_eq!(set.skipped.len(), 9, "{:?}", set.skipped);
        assert!(set.skipped.iter().any(|s| s.contains("\"hmac\"")));
        assert!(set.skipped.iter().any(|s| s.contains("2048")));
    }

    #[test]
    fn malformed_documents_fail() {
        for doc in [&b"not json"[..], b"{}", b"{\"keys\":{}}", b"[]"] {
            assert!(parse_key_set(doc).is_err(), "{doc:?}");
        }
        assert!(parse_key_set(&vec![b' '; MAX_DOCUMENT_BYTES + 1]).is_err());
    }

    #[test]
    fn find_matches_kid_then_algorithm() {
        let set = set(vec![public(RSA_A), public(RSA_B), public(P256)]);
        let found = |kid, alg| match set.find(kid, alg) {
            KeyMatch::Found(k) => Ok(k.kid().unwrap().to_owned()),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(found(Some("rsa-b"), JwsAlgorithm::Rs256).unwrap(), "rsa-b");
        assert_eq!(found(None, JwsAlgorithm::Es256).unwrap(), "p256");
        assert_eq!(
            found(Some("nope"), JwsAlgorithm::Rs256).unwrap_err(),
            "UnknownKid"
        );
        assert_eq!(
            found(Some("rsa-a"), JwsAlgorithm::Es256).unwrap_err(),
            "AlgorithmMismatch"
        );
        assert_eq!(
            found(None, JwsAlgorithm::Rs256).unwrap_err(),
            "AmbiguousKid"
        );
        assert_eq!(
            found(None, JwsAlgorithm::EdDsa).unwrap_err(),
            "AlgorithmMismatch"
        );
    }

    #[test]
    fn thumbprints_identify_keys_across_parses() {
        let first = set(vec![public(RSA_A)]);
        let second = set(vec![public(RSA_B), public(RSA_A)]);
        assert!(second.contains_thumbprint(&first.keys()[0].thumbprint));
        assert!(!first.contains_thumbprint(&second.keys()[0].thumbprint));
    }

    #[test]
    fn discovery_gives_jwks_uri_of_the_same_issuer() {
        let issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc";
        let doc = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/.well-known/jwks.json")});
        assert_eq!(
            parse_discovery(doc.to_string().as_bytes(), issuer).unwrap(),
            format!("{issuer}/.well-known/jwks.json")
        );
        let other = json!({"issuer": "https://evil.example", "jwks_uri": "https://evil.example/k"});
        assert!(parse_discovery(other.to_string().as_bytes(), issuer)
            .unwrap_err()
            .contains("JWT_ISSUER"));
        let relative = json!({"issuer": issuer, "jwks_uri": "/keys"});
        assert!(parse_discovery(relative.to_string().as_bytes(), issuer).is_err());
        assert!(parse_discovery(b"<html>", issuer).is_err());
    }

    #[test]
    fn cache_control_gives_the_lifetime() {
        assert_eq!(max_age(None), DEFAULT_MAX_AGE);
        assert_eq!(max_age(Some("public, max-age=3600")), 3600);
        assert_eq!(max_age(Some("Max-Age=\"120\"")), 120);
        assert_eq!(max_age(Some("max-age=0")), 0);
        assert_eq!(max_age(Some("no-cache")), 0);
        assert_eq!(
            max_age(Some("max-age=99999999999999999999999")),
            MAX_MAX_AGE
        );
        assert_eq!(max_age(Some("max-age=soon")), DEFAULT_MAX_AGE);
        assert_eq!(max_age(Some("public")), DEFAULT_MAX_AGE);
    }
}
