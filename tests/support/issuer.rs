//! A test issuer shared by the integration tests and the benches (included
//! with `#[path]`: benches cannot import test modules): the test-only keys
//! of `tests/data/jwt/`, its OIDC discovery document and key set served
//! over HTTP, and RS256 tokens signed with `jwt-compact`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jwt_compact::alg::{Rsa, RsaPrivateKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmSignature as _};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const ISSUER_KEY: &str = include_str!("../data/jwt/rsa-a.private.jwk.json");
const ATTACKER_KEY: &str = include_str!("../data/jwt/rsa-attacker.private.jwk.json");
const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// Which key signs a token.
#[derive(Debug, Clone, Copy)]
pub enum Signer {
    /// The issuer's published key.
    Issuer,
    /// A key the issuer never published.
    Attacker,
}

struct Keys {
    issuer: RsaPrivateKey,
    attacker: RsaPrivateKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let private = |text: &str| {
            let jwk: JsonWebKey<'_> = serde_json::from_str(text).expect("a JWK");
            RsaPrivateKey::try_from(&jwk).expect("an RSA private JWK")
        };
        Keys {
            issuer: private(ISSUER_KEY),
            attacker: private(ATTACKER_KEY),
        }
    })
}

/// The public half of a private JWK.
fn public_jwk(private: &str) -> Value {
    let mut jwk: Value = serde_json::from_str(private).expect("JSON");
    let object = jwk.as_object_mut().expect("a JWK object");
    for member in PRIVATE_MEMBERS {
        object.remove(member);
    }
    jwk
}

/// The `kid` of the issuer's key.
pub fn issuer_kid() -> String {
    public_jwk(ISSUER_KEY)["kid"]
        .as_str()
        .expect("kid")
        .to_owned()
}

/// The issuer at `url`'s documents, each with its path: the OIDC discovery
/// document and the key set.
pub fn issuer_documents(url: &str) -> Vec<(String, Value)> {
    let discovery = json!({
        "issuer": url,
        "jwks_uri": format!("{url}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let jwks = json!({ "keys": [public_jwk(ISSUER_KEY)] });
    vec![
        ("/.well-known/openid-configuration".into(), discovery),
        ("/.well-known/jwks.json".into(), jwks),
    ]
}

/// Serves each JSON document at its path (GET), 404 elsewhere, until the
/// runtime ends.
pub fn serve_documents(listener: TcpListener, documents: Vec<(String, Value)>) -> SocketAddr {
    let addr = listener.local_addr().expect("address");
    let documents = Arc::new(documents);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let documents = documents.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let found = documents
                        .iter()
                        .find(|(path, _)| path == request.uri().path())
                        .map(|(_, body)| body.to_string());
                    async move {
                        let response = match found {
                            Some(body) => http::Response::builder()
                                .header("content-type", "application/json")
                                .header("cache-control", "max-age=600")
                                .body(Full::new(Bytes::from(body))),
                            None => http::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::new())),
                        };
                        Ok::<_, Infallible>(response.expect("static response"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The RS256 header of the issuer's key.
pub fn header() -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": issuer_kid() })
}

/// A compact JWS over exactly this header and these claims.
pub fn mint(signer: Signer, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let key = match signer {
        Signer::Issuer => &keys().issuer,
        Signer::Attacker => &keys().attacker,
    };
    let signature = Rsa::rs256().sign(key, input.as_bytes());
    format!("{input}.{}", B64.encode(signature.as_bytes()))
}
