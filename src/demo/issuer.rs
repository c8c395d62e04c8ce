//! The development JWT issuer behind `agent-edge dev`: an ephemeral RS256
//! key generated at start, its JWKS and OpenID discovery document served on
//! loopback, and Cognito-shaped ID tokens minted on demand.
//!
//! Routes (all on the issuer URL, `http://127.0.0.1:<port>`):
//! - `GET /.well-known/openid-configuration`: `issuer` and `jwks_uri`;
//! - `GET /.well-known/jwks.json`: the public key, `Cache-Control: max-age=600`;
//! - `POST /token`: a fresh token (text/plain) for `demo-user`, valid an hour.
//!   Loopback only and for development: anyone who can reach it gets a token.
//!   Browsers may read it only from the page origins given to
//!   [`spawn_for_pages`] (the chat page of `agent-edge dev`), by CORS.
//!
//! Native only (tokio, hyper); it reads the clock, the core does not.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jwt_compact::alg::{Rsa, RsaPrivateKey};
use jwt_compact::{AlgorithmExt, Claims, Header};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{Code, GatewayError};

/// The audience (app client id) of development tokens: `JWT_AUDIENCE` of `dev`.
pub const DEV_AUDIENCE: &str = "agent-edge-dev-client";
/// The key id of the development key.
pub const DEV_KEY_ID: &str = "agent-edge-dev-rs256";

/// An RS256 signing key and what is published about it.
pub struct DevIssuer {
    key: RsaPrivateKey,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevIssuer(***)")
    }
}

impl DevIssuer {
    /// A fresh 2048-bit key from the OS random source.
    pub fn generate() -> Self {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .expect("RSA key generation with the OS random source");
        DevIssuer { key }
    }

    /// The JWKS document with the public key.
    pub fn jwks(&self) -> serde_json::Value {
        use rsa::traits::PublicKeyParts;
        let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        json!({
            "keys": [{
                "kty": "RSA",
                "kid": DEV_KEY_ID,
                "use": "sig",
                "alg": "RS256",
                "n": b64(self.key.n().to_bytes_be()),
                "e": b64(self.key.e().to_bytes_be()),
            }]
        })
    }

    /// A Cognito-shaped ID token for `subject`, issued by `issuer_url`.
    pub fn mint(&self, issuer_url: &str, subject: &str, ttl: Duration, now: SystemTime) -> String {
        let iat = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims::new(json!({
            "sub": subject,
            "iss": issuer_url,
            "aud": DEV_AUDIENCE,
            "token_use": "id",
            "cognito:username": subject,
            "auth_time": iat,
            "iat": iat,
            "exp": iat + ttl.as_secs(),
        }));
        let header = Header::empty().with_key_id(DEV_KEY_ID);
        Rsa::rs256()
            .token(&header, &claims, &self.key)
            .expect("serializing JSON claims")
    }
}

/// The issuer's HTTP server. Dropping it stops the server.
pub struct DevIssuerServer {
    pub addr: SocketAddr,
    issuer: Arc<DevIssuer>,
    task: JoinHandle<()>,
}

impl DevIssuerServer {
    /// `http://<addr>`: the `iss` of its tokens, `JWT_ISSUER` of the gateway.
    pub fn issuer_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token of this issuer for `subject`.
    pub fn mint(&self, subject: &str, ttl: Duration, now: SystemTime) -> String {
        self.issuer.mint(&self.issuer_url(), subject, ttl, now)
    }
}

impl Drop for DevIssuerServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `issuer` on `listener` in the background.
pub async fn spawn(issuer: DevIssuer, listener: TcpListener) -> io::Result<DevIssuerServer> {
    spawn_for_pages(issuer, listener, Vec::new()).await
}

/// The same, and pages on `page_origins` (`http://host:port`) may fetch
/// tokens from a browser.
pub async fn spawn_for_pages(
    issuer: DevIssuer,
    listener: TcpListener,
    page_origins: Vec<String>,
) -> io::Result<DevIssuerServer> {
    let addr = listener.local_addr()?;
    let issuer = Arc::new(issuer);
    let shared = issuer.clone();
    let page_origins = Arc::new(page_origins);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let issuer = shared.clone();
            let page_origins = page_origins.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let issuer = issuer.clone();
                    let page_origins = page_origins.clone();
                    async move {
                        Ok::<_, Infallible>(with_cors(
                            &page_origins,
                            &request,
                            route(&issuer, addr, &request),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(DevIssuerServer { addr, issuer, task })
}

/// `Access-Control-Allow-Origin` for the allowed page origins, and their
/// preflight (a `POST` without a body is a simple request, but a page may
/// still send one).
fn with_cors(
    page_origins: &[String],
    request: &Request<Incoming>,
    response: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            page_origins
                .iter()
                .any(|allowed| allowed.as_bytes() == o.as_bytes())
        })
        .cloned();
    let Some(origin) = origin else {
        return response;
    };
    let mut response = if request.method() == Method::OPTIONS {
        let mut preflight = Response::new(Full::new(Bytes::new()));
        *preflight.status_mut() = StatusCode::NO_CONTENT;
        preflight.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::HeaderValue::from_static("GET, POST"),
        );
        preflight
    } else {
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, header::HeaderValue::from_static("Origin"));
    response
}

fn route(
    issuer: &DevIssuer,
    addr: SocketAddr,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let issuer_url = format!("http://{addr}");
    // On loopback, a page elsewhere must not reach us under its own name
    // (DNS rebinding) and mint tokens.
    let misdirected = addr.ip().is_loopback()
        && !request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()?.parse::<http::uri::Authority>().ok())
            .is_some_and(|a| crate::config::is_loopback_host(a.host()));
    let route = if misdirected {
        None
    } else {
        Some((request.method(), request.uri().path()))
    };
    let (status, content_type, cache, body) = match route {
        None => (
            StatusCode::MISDIRECTED_REQUEST,
            "application/json",
            "no-store",
            String::from_utf8_lossy(
                GatewayError::new(Code::MisdirectedRequest)
                    .to_response()
                    .body(),
            )
            .into_owned(),
        ),
        Some((&Method::GET, "/.well-known/openid-configuration")) => (
            StatusCode::OK,
            "application/json",
            "max-age=600",
            json!({
                "issuer": issuer_url,
                "jwks_uri": format!("{issuer_url}/.well-known/jwks.json"),
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["token"],
                "subject_types_supported": ["public"],
            })
            .to_string(),
        ),
        Some((&Method::GET, "/.well-known/jwks.json")) => (
            StatusCode::OK,
            "application/json",
            "max-age=600",
            issuer.jwks().to_string(),
        ),
        Some((&Method::POST, "/token")) => (
            StatusCode::OK,
            "text/plain",
            "no-store",
            issuer.mint(
                &issuer_url,
                "demo-user",
                Duration::from_secs(3600),
                SystemTime::now(),
            ),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            "no-store",
            r#"{"error":"not_found"}"#.to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(cache),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Authenticator, Check};
    use crate::config::{JwtConfig, TokenUse};

    #[tokio::test]
    async fn minted_tokens_verify_against_the_served_key_set() {
        let server = spawn(
            DevIssuer::generate(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .unwrap();
        let client = reqwest::Client::new();
        let discovery = client
            .get(format!(
                "{}/.well-known/openid-configuration",
                server.issuer_url()
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let discovery: serde_json::Value = serde_json::from_slice(&discovery).unwrap();
        assert_eq!(discovery["issuer"], server.issuer_url());
        let minted = client
            .post(format!("{}/token", server.issuer_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();

        let mut auth = Authenticator::new(JwtConfig {
            issuer: server.issuer_url(),
            audiences: vec![DEV_AUDIENCE.to_owned()],
            jwks_url: None,
            token_use: TokenUse::Id,
            leeway_seconds: 60,
            user_id_claim: None,
            gate_claims: Vec::new(),
            require_subject: false,
        });
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = format!("Bearer {minted}");
        let verified = loop {
            match auth.check(Some(&header), now) {
                Check::Verified(v) => break v,
                Check::Rejected(e) => panic!("{e:?}"),
                Check::VerifySignature(_) => panic!("in-process verification by default"),
                Check::Fetch(request) => {
                    let response = client.get(&request.url).send().await.unwrap();
                    let cache_control = response
                        .headers()
                        .get("cache-control")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let status = response.status().as_u16();
                    let body = response.bytes().await.unwrap();
                    auth.on_fetched(
                        &request,
                        Ok(crate::auth::FetchResponse {
                            status,
                            cache_control,
                            body,
                        }),
                        now,
                    );
                }
            }
        };
        assert_eq!(verified.subject.as_deref(), Some("demo-user"));
    }
}
