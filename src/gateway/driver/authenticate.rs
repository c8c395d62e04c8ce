//! Phase 2, authentication: the loop that drives the sans-IO
//! [`Authenticator`] (verify, or fetch the issuer's documents, or hand a
//! signature to the platform) until the token is verified or refused, and
//! the key set refresh that runs beside requests.

use std::sync::{Arc, Mutex};

use futures::future::{select, Either};

use super::{collect, lock, unix_ms, unix_seconds, Platform, Shared};
use crate::auth::{
    Authenticator, Check, FetchRequest, FetchResponse, Verified, ISSUER_FETCH_TIMEOUT_MS,
    MAX_ISSUER_DOCUMENT_BYTES, STALE_REFRESH_WAIT_MS,
};
use crate::error::GatewayError;
use crate::gateway::log::{Event, EventName, Level};

pub(super) async fn authenticate<P: Platform>(
    shared: &Shared,
    platform: &P,
    authorization: Option<&str>,
) -> Result<Option<Verified>, GatewayError> {
    let Some(authenticator) = &shared.authenticator else {
        return Ok(None);
    };
    let refresh = lock(authenticator).take_background_refresh(unix_seconds(platform.now()));
    if let Some(request) = refresh {
        let refresh = KeyRefresh {
            authenticator: authenticator.clone(),
            request,
        };
        if let Some(refresh) = platform.spawn_key_refresh(refresh) {
            // Run here, briefly: the stale keys serve if it is not done.
            refresh.run(platform, STALE_REFRESH_WAIT_MS).await;
        }
    }
    let mut fetch_turn = None;
    loop {
        let now = unix_seconds(platform.now());
        let check = lock(authenticator).check(authorization, now);
        match check {
            Check::Verified(verified) => return Ok(Some(verified)),
            Check::Rejected(error) => return Err(error),
            Check::VerifySignature(check) => {
                let verdict = platform.verify_rsa(&check).await;
                if verdict.is_none() {
                    // Correct, but the slow path the platform was to spare.
                    let event = Event::new(
                        unix_ms(platform.now()),
                        Level::Warn,
                        EventName::SignatureCheckFallback,
                    )
                    .with_detail(
                        "the platform could not check an RSA signature; checked in-process",
                    );
                    platform.log(&event.to_line());
                }
                lock(authenticator).on_signature(&check, verdict);
            }
            Check::Fetch(request) => {
                if P::SHARES_IO_ACROSS_REQUESTS && fetch_turn.is_none() {
                    // Wait for any refresh in flight, then look again: it may
                    // have brought the key.
                    fetch_turn = Some(shared.auth_fetch.lock().await);
                    continue;
                }
                let response = fetch_document(platform, &request, ISSUER_FETCH_TIMEOUT_MS).await;
                let now = unix_seconds(platform.now());
                if let Some(failure) = lock(authenticator).on_fetched(&request, response, now) {
                    log_fetch_failure(platform, &failure);
                }
            }
        }
    }
}

/// The refresh of a stale key set that still serves
/// ([`Authenticator::take_background_refresh`]), handed to
/// [`Platform::spawn_key_refresh`].
pub struct KeyRefresh {
    authenticator: Arc<Mutex<Authenticator>>,
    request: FetchRequest,
}

impl KeyRefresh {
    /// Fetches until the key set is refreshed or the attempt failed; each
    /// fetch within `wait_ms` (at most [`ISSUER_FETCH_TIMEOUT_MS`]).
    pub async fn run<P: Platform>(self, platform: &P, wait_ms: u64) {
        let mut request = self.request;
        loop {
            let wait_ms = wait_ms.min(ISSUER_FETCH_TIMEOUT_MS);
            let response = fetch_document(platform, &request, wait_ms).await;
            let now = unix_seconds(platform.now());
            let next = {
                let mut authenticator = lock(&self.authenticator);
                if let Some(failure) = authenticator.on_fetched(&request, response, now) {
                    log_fetch_failure(platform, &failure);
                }
                authenticator.take_background_refresh(now)
            };
            match next {
                Some(next) => request = next,
                None => return,
            }
        }
    }
}

/// One issuer fetch, given up after `wait_ms`.
async fn fetch_document<P: Platform>(
    platform: &P,
    request: &FetchRequest,
    wait_ms: u64,
) -> Result<FetchResponse, String> {
    let deadline = platform.now_ms().saturating_add(wait_ms);
    let fetch = std::pin::pin!(async {
        let mut answer = platform.fetch_issuer(&request.url).await?;
        let body = collect(&mut answer.body, MAX_ISSUER_DOCUMENT_BYTES, || {
            format!("issuer document larger than {MAX_ISSUER_DOCUMENT_BYTES} bytes")
        })
        .await?;
        Ok(FetchResponse {
            status: answer.status,
            cache_control: answer.cache_control,
            body,
        })
    });
    match select(fetch, platform.sleep_until(deadline)).await {
        Either::Left((response, _)) => response,
        Either::Right(_) => Err(format!("no answer within {wait_ms} ms")),
    }
}

fn log_fetch_failure<P: Platform>(platform: &P, failure: &str) {
    let event = Event::new(unix_ms(platform.now()), Level::Warn, EventName::KeySetFetch)
        .with_detail(failure.to_owned());
    platform.log(&event.to_line());
}
