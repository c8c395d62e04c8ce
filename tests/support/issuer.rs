//! A test issuer shared by the integration tests and the benches (included
//! with `#[path]`: benches cannot import test modules): the test-only keys
//! of `tests/data/jwt/`, its OIDC discovery document and key set served
//! over HTTP, and RS256 tokens signed with `jwt-compact`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jwt_compact::alg::{Rsa, RsaPrivateKey};
use serde_json::{json, Value};
use tokio::net::TcpListener;

#[path = "jws.rs"]
pub mod jws;

const ISSUER_KEY: &str = jws::RSA_A;
const ATTACKER_KEY: &str = jws::RSA_ATTACKER;

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
        let private =
            |text: &str| RsaPrivateKey::try_from(&jws::jwk(text)).expect("an RSA private JWK");
        Keys {
            issuer: private(ISSUER_KEY),
            attacker: private(ATTACKER_KEY),
        }
    })
}

/// The `kid` of the issuer's key.
pub fn issuer_kid() -> String {
    jws::public(ISSUER_KEY)["kid"]
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
    let jwks = json!({ "keys": [jws::public(ISSUER_KEY)] });
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
    let key = match signer {
        Signer::Issuer => &keys().issuer,
        Signer::Attacker => &keys().attacker,
    };
    jws::mint(&Rsa::rs256(), key, header, claims)
}
