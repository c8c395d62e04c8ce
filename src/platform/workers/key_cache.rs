//! The issuer's key set shared across isolates through the Cache API: a new
//! isolate adopts the key set another one fetched, and an isolate that
//! fetched one stores it after its response. On `*.workers.dev` the cache
//! is a no-op and each isolate fetches for itself.

use http::{HeaderMap, HeaderName, HeaderValue};
use worker::{Cache, ResponseBuilder};

use super::headers::to_headers;
use crate::gateway::{Edge, KeySetCopy};

/// Cache API key under which the issuer's key set is shared across isolates.
const KEY_SET_CACHE_PREFIX: &str = "https://agent-edge.internal/jwks?issuer=";
const FETCHED_AT: &str = "x-agent-edge-fetched-at";
const MAX_AGE: &str = "x-agent-edge-max-age";

fn cache_key(edge: &Edge) -> Option<String> {
    let issuer = edge.issuer()?;
    Some(format!(
        "{KEY_SET_CACHE_PREFIX}{}",
        percent_encoding::utf8_percent_encode(issuer, percent_encoding::NON_ALPHANUMERIC)
    ))
}

/// When the isolate's key set was fetched: a change means there is a new one to store.
pub(super) fn stamp(edge: &Edge) -> Option<u64> {
    edge.export_key_set().map(|copy| copy.fetched_at)
}

/// Adopts the key set another isolate stored, when this one has none.
pub(super) async fn load(edge: &Edge) {
    let Some(key) = cache_key(edge) else {
        return;
    };
    if edge.export_key_set().is_some() {
        return;
    }
    let Ok(Some(mut cached)) = Cache::default().get(key.as_str(), true).await else {
        return;
    };
    let header_number = |name: &str| {
        cached
            .headers()
            .get(name)
            .ok()
            .flatten()
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(fetched_at), Some(max_age)) = (header_number(FETCHED_AT), header_number(MAX_AGE))
    else {
        return;
    };
    if let Ok(document) = cached.bytes().await {
        edge.import_key_set(KeySetCopy {
            document: document.into(),
            fetched_at,
            max_age,
        });
    }
}

/// Stores this isolate's key set for the others.
pub(super) async fn store(edge: &Edge) {
    let (Some(key), Some(copy)) = (cache_key(edge), edge.export_key_set()) else {
        return;
    };
    let Ok(headers) = to_headers(&HeaderMap::from_iter([
        (
            http::header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("max-age={}", crate::auth::STALE_GRACE))
                .expect("digits"),
        ),
        (
            HeaderName::from_static(FETCHED_AT),
            HeaderValue::from(copy.fetched_at),
        ),
        (
            HeaderName::from_static(MAX_AGE),
            HeaderValue::from(copy.max_age),
        ),
    ])) else {
        return;
    };
    let response = ResponseBuilder::new()
        .with_headers(headers)
        .fixed(copy.document.to_vec());
    let _ = Cache::default().put(key.as_str(), response).await;
}
