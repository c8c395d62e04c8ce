//! The test issuer, the one of every integration test and bench (included
//! with `#[path]`: benches cannot import test modules): an OIDC discovery
//! document and a key set served over HTTP, with knobs (a delay, down,
//! `Cache-Control`, key rotation) and a record of what it was asked; and
//! RS256 tokens signed with `jwt-compact` by the test-only keys of
//! `tests/data/jwt/`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jwt_compact::alg::{Rsa, RsaPrivateKey};
use serde_json::{json, Value};
use tokio::net::TcpListener;

#[path = "jws.rs"]
pub mod jws;

/// Where the issuer serves its discovery document.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where its discovery document says the key set is: not the well-known
/// path, so that a gateway that guessed it instead of reading
/// `jwks_uri` would fail.
pub const JWKS_PATH: &str = "/keys";

/// Which key signs a token.
#[derive(Debug, Clone, Copy)]
pub enum Signer {
    /// The key the issuer publishes (until [`Issuer::rotate`]).
    Issuer,
    /// The key it publishes after [`Issuer::rotate`].
    Rotated,
    /// A key the issuer never published.
    Attacker,
}

impl Signer {
    fn private_jwk(self) -> &'static str {
        match self {
            Signer::Issuer => jws::RSA_A,
            Signer::Rotated => jws::RSA_B,
            Signer::Attacker => jws::RSA_ATTACKER,
        }
    }

    fn key(self) -> &'static RsaPrivateKey {
        static KEYS: OnceLock<[RsaPrivateKey; 3]> = OnceLock::new();
        let keys = KEYS.get_or_init(|| {
            [Signer::Issuer, Signer::Rotated, Signer::Attacker].map(|signer| {
                RsaPrivateKey::try_from(&jws::jwk(signer.private_jwk()))
                    .expect("an RSA private JWK")
            })
        });
        &keys[self as usize]
    }

    /// The `kid` of this key.
    pub fn kid(self) -> String {
        jws::public(self.private_jwk())["kid"]
            .as_str()
            .expect("kid")
            .to_owned()
    }
}

/// The RS256 header naming the issuer's key.
pub fn header() -> Value {
    header_of(Signer::Issuer)
}

/// The RS256 header naming `signer`'s key.
pub fn header_of(signer: Signer) -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": signer.kid() })
}

/// A compact JWS over exactly this header and these claims.
pub fn mint(signer: Signer, header: &Value, claims: &Value) -> String {
    jws::mint(&Rsa::rs256(), signer.key(), header, claims)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// ID token claims of `issuer_url` for `subject` and `audience`, valid for
/// two hours.
pub fn id_claims(issuer_url: &str, audience: &str, subject: &str) -> Value {
    let now = unix_now();
    json!({
        "sub": subject,
        "iss": issuer_url,
        "aud": audience,
        "token_use": "id",
        "iat": now - 5,
        "exp": now + 7200,
    })
}

/// `base` (a demo origin's variables, say) with those that make a gateway
/// trust the issuer at `issuer_url` for `audience` (`AUTH=jwt`, any
/// `token_use`), then `extra`; a later value replaces an earlier one.
pub fn jwt_gateway_vars(
    base: Vec<(&'static str, String)>,
    issuer_url: &str,
    audience: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let jwt = [
        ("AUTH", "jwt"),
        ("JWT_ISSUER", issuer_url),
        ("JWT_AUDIENCE", audience),
        ("JWT_TOKEN_USE", "any"),
    ];
    let mut vars: Vec<(String, String)> = Vec::new();
    let changes = base.iter().map(|(name, value)| (*name, value.as_str()));
    for (name, value) in changes.chain(jwt).chain(extra.iter().copied()) {
        vars.retain(|(n, _)| n != name);
        vars.push((name.to_owned(), value.to_owned()));
    }
    vars
}

/// A running issuer; it serves until its runtime ends.
pub struct Issuer {
    pub url: String,
    state: Arc<State>,
}

/// The knobs, and what the issuer was asked.
struct State {
    delay_ms: AtomicU64,
    down: AtomicBool,
    cache_control: Mutex<String>,
    /// The key set document.
    keys: Mutex<Value>,
    /// Each request's path, and whether the issuer was down for it.
    requests: Mutex<Vec<(String, bool)>>,
}

impl Issuer {
    /// An issuer on a free loopback port, publishing [`Signer::Issuer`]'s
    /// key with `Cache-Control: max-age=600`, at once, never down.
    pub async fn spawn() -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the issuer");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(State {
            delay_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
            cache_control: Mutex::new("max-age=600".to_owned()),
            keys: Mutex::new(key_set(Signer::Issuer)),
            requests: Mutex::new(Vec::new()),
        });
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}{JWKS_PATH}"),
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        tokio::spawn(serve(listener, discovery, state.clone()));
        Issuer { url, state }
    }

    /// Every answer waits this long from now on.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// While down, it answers 500 to its documents' paths.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// The `Cache-Control` of its documents from now on.
    pub fn set_cache_control(&self, value: &str) {
        *lock(&self.state.cache_control) = value.to_owned();
    }

    /// Publishes [`Signer::Rotated`]'s key instead of [`Signer::Issuer`]'s.
    pub fn rotate(&self) {
        self.publish(key_set(Signer::Rotated));
    }

    /// Publishes this key set document instead.
    pub fn publish(&self, keys: Value) {
        *lock(&self.state.keys) = keys;
    }

    /// Each request so far: its path, and whether the issuer was down.
    pub fn requests(&self) -> Vec<(String, bool)> {
        lock(&self.state.requests).clone()
    }
}

/// The key set of `signer`'s public key.
fn key_set(signer: Signer) -> Value {
    json!({ "keys": [jws::public(signer.private_jwk())] })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve(listener: TcpListener, discovery: Value, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (discovery, state) = (discovery.clone(), state.clone());
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let path = request.uri().path().to_owned();
            let down = state.down.load(Ordering::SeqCst);
            lock(&state.requests).push((path.clone(), down));
            let document = match path.as_str() {
                DISCOVERY_PATH => Some(discovery.to_string()),
                JWKS_PATH => Some(lock(&state.keys).to_string()),
                _ => None,
            };
            let response = match document {
                Some(body) if !down => http::Response::builder()
                    .header("content-type", "application/json")
                    .header("cache-control", lock(&state.cache_control).as_str())
                    .body(Full::new(Bytes::from(body))),
                Some(_) => http::Response::builder()
                    .status(500)
                    .body(Full::new(Bytes::from_static(b"issuer down"))),
                None => http::Response::builder()
                    .status(404)
                    .body(Full::new(Bytes::new())),
            };
            let delay = Duration::from_millis(state.delay_ms.load(Ordering::SeqCst));
            async move {
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>(response.expect("static response"))
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}
