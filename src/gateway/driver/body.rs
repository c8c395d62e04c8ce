//! Phases 6 and 7 of a streamed answer: the origin's chunks through the
//! [`Transformer`] (keepalives while the origin is idle, the idle deadline),
//! and the request's log line when the stream ends or the client leaves.
//! A plain [`Stream`] polled by hand, so that it stays `Send` when the
//! platform's types are, and needs no boxing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use super::budget::{ChargeFailure, ChargePlan};
use super::{unix_ms, Platform};
use crate::error::Code;
use crate::gateway::limits::StoreError;
use crate::gateway::log::{Level, Outcome, RequestLog};
use crate::scrub::Scrubber;
use crate::sse::{StreamError, Transformer};

/// Most keys of an origin's `usage` object kept in a log line, nested ones
/// included: the origin decides how many it sends.
const MAX_LOGGED_USAGE_KEYS: usize = 32;

/// The numbers of an origin's `usage` object (nested objects kept, keys of
/// safe characters only, at most [`MAX_LOGGED_USAGE_KEYS`]): the origin's own
/// text never reaches the log.
fn numbers_only(value: &serde_json::Value) -> Option<serde_json::Value> {
    let mut keys_left = MAX_LOGGED_USAGE_KEYS;
    numbers_within(value, &mut keys_left)
}

fn numbers_within(value: &serde_json::Value, keys_left: &mut usize) -> Option<serde_json::Value> {
    use serde_json::Value;
    const MAX_KEY: usize = 64;
    match value {
        Value::Number(_) => Some(value.clone()),
        Value::Object(map) => {
            let mut kept = serde_json::Map::new();
            for (key, value) in map {
                if *keys_left == 0 {
                    break;
                }
                let safe = key.len() <= MAX_KEY
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                if !safe {
                    continue;
                }
                *keys_left -= 1;
                if let Some(value) = numbers_within(value, keys_left) {
                    kept.insert(key.clone(), value);
                }
            }
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        _ => None,
    }
}

/// The client's response body.
pub enum ResponseBody<P: Platform> {
    /// A complete answer (errors, ping, preflight).
    Full(Option<Bytes>),
    /// The origin's stream through the transformer.
    Stream(Box<StreamBody<P>>),
}

impl<P: Platform> ResponseBody<P> {
    /// Ends a stream now because the server is shutting down: its mode's
    /// in-band error, logged with outcome `shutdown`. The bytes to send
    /// last, or `None` when there is nothing more to send.
    pub fn shut_down(&mut self) -> Option<Bytes> {
        match self {
            ResponseBody::Full(body) => body.take(),
            ResponseBody::Stream(stream) if stream.origin.is_some() => {
                if let Some(log) = &mut stream.log {
                    log.outcome = Some(Outcome::Shutdown);
                }
                Some(stream.end(Some(StreamError::new(Code::ShuttingDown))))
            }
            ResponseBody::Stream(_) => None,
        }
    }
}

impl<P: Platform> Stream for ResponseBody<P> {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match self.get_mut() {
            ResponseBody::Full(body) => Poll::Ready(body.take().filter(|b| !b.is_empty())),
            ResponseBody::Stream(stream) => Pin::new(stream.as_mut()).poll_next(cx),
        }
    }
}

/// Phase 6 (response body filter) and phase 7 (logging) of a streamed
/// answer: origin chunks through the transformer, keepalives when the origin
/// is idle, the log line when the stream ends or the client goes away.
pub struct StreamBody<P: Platform> {
    platform: P,
    /// `None` once the origin is done (or dropped, which cancels it).
    origin: Option<P::OriginBody>,
    transformer: Transformer,
    sleep: Option<(u64, P::Sleep)>,
    started_ms: u64,
    /// `ORIGIN_IDLE_TIMEOUT_SECONDS`, in milliseconds.
    origin_idle_ms: u64,
    /// When the origin last sent bytes (or its head).
    last_origin_ms: u64,
    log: Option<RequestLog>,
    scrubber: Scrubber,
    /// Where the stream's tokens go when it ends (`TOKEN_BUDGET`).
    charge: Option<ChargePlan>,
    /// The charge in a shared store, awaited before the body ends.
    charging: Option<Charging<P>>,
}

/// A charge on its way to the platform's store.
struct Charging<P: Platform> {
    call: P::StoreCall,
    deadline_ms: u64,
    sleep: P::Sleep,
    failure: ChargeFailure,
}

impl<P: Platform> StreamBody<P> {
    /// The body of a stream that started at `started_ms`, ending with `log`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        platform: &P,
        origin: P::OriginBody,
        transformer: Transformer,
        started_ms: u64,
        origin_idle_ms: u64,
        log: RequestLog,
        scrubber: Scrubber,
        charge: Option<ChargePlan>,
    ) -> Self {
        StreamBody {
            platform: platform.clone(),
            origin: Some(origin),
            transformer,
            sleep: None,
            started_ms,
            origin_idle_ms,
            last_origin_ms: platform.now_ms(),
            log: Some(log),
            scrubber,
            charge,
            charging: None,
        }
    }

    fn emit(&mut self, bytes: Bytes) -> Poll<Option<Bytes>> {
        if let Some(log) = &mut self.log {
            if log.ttfb_ms.is_none() {
                log.ttfb_ms = Some(self.platform.now_ms().saturating_sub(self.started_ms));
            }
            log.bytes_out += bytes.len() as u64;
        }
        Poll::Ready(Some(bytes))
    }

    fn end(&mut self, error: Option<StreamError>) -> Bytes {
        self.origin = None;
        self.sleep = None;
        // The transformer's own limit error, or the origin's failure.
        let code = error
            .as_ref()
            .map(|e| e.code)
            .or_else(|| self.transformer.ended_with_error());
        let outcome = if code.is_some() {
            Outcome::OriginError
        } else {
            Outcome::Complete
        };
        let tail = self.transformer.finish(error);
        if let Some(mut log) = self.log.take() {
            // A cause set before the end (shutdown) stands.
            log.outcome.get_or_insert(outcome);
            log.error = code;
            log.bytes_out += tail.len() as u64;
            if log.ttfb_ms.is_none() && !tail.is_empty() {
                log.ttfb_ms = Some(self.platform.now_ms().saturating_sub(self.started_ms));
            }
            self.write_log(log);
        }
        tail
    }

    fn write_log(&mut self, mut log: RequestLog) {
        self.settle(&mut log);
        // The origin wrote it: only its numbers are logged.
        log.usage = self.transformer.usage().and_then(numbers_only);
        log.duration_ms = self.platform.now_ms().saturating_sub(self.started_ms);
        if log.outcome != Some(Outcome::Complete) {
            log.level = Level::Warn;
        }
        self.platform.log(&log.to_line());
    }
}

impl<P: Platform> StreamBody<P> {
    /// Charges the stream's tokens (the origin's usage, else the estimate):
    /// at once in memory, or a call to the shared store that the body
    /// awaits before it ends.
    fn settle(&mut self, log: &mut RequestLog) {
        let Some(plan) = self.charge.take() else {
            return;
        };
        let now_ms = self.platform.now_ms();
        let charged = plan.charge(
            self.transformer.tokens(),
            log.bytes_in as u64,
            self.transformer.text_bytes(),
            now_ms,
            unix_ms(self.platform.now()),
        );
        log.tokens_charged = Some(charged.tokens);
        log.usage_estimated = charged.estimated;
        if let Some((call, deadline_ms, failure)) = charged.pending {
            self.charging = Some(Charging {
                call: self.platform.limits_store(call),
                deadline_ms,
                sleep: self.platform.sleep_until(deadline_ms),
                failure,
            });
        }
    }

    /// After the last byte: the charge's answer, then the end.
    fn poll_charged(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let Some(charging) = &mut self.charging else {
            return Poll::Ready(None);
        };
        let error = match Pin::new(&mut charging.call).poll(cx) {
            Poll::Ready(Ok(_)) => None,
            Poll::Ready(Err(error)) => Some(error),
            Poll::Pending => match Pin::new(&mut charging.sleep).poll(cx) {
                Poll::Ready(()) => Some(StoreError::TimedOut),
                Poll::Pending => return Poll::Pending,
            },
        };
        let charging = self.charging.take().expect("polled above");
        if let Some(error) = error {
            self.platform.log(&charging.failure.line(&error));
        }
        Poll::Ready(None)
    }
}

impl<P: Platform> Stream for StreamBody<P> {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        // Every field is Unpin (the platform's futures are required to be).
        let this = self.get_mut();
        loop {
            let Some(origin) = this.origin.as_mut() else {
                return this.poll_charged(cx);
            };
            match Pin::new(origin).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let now = this.platform.now_ms();
                    if !chunk.is_empty() {
                        this.last_origin_ms = now;
                    }
                    let out = this.transformer.push(chunk, now);
                    if this.transformer.is_finished() {
                        // A limit ended the stream inside `push`.
                        let tail = this.end(None);
                        let all = if tail.is_empty() {
                            out
                        } else {
                            [out, tail].concat().into()
                        };
                        return this.emit(all);
                    }
                    if !out.is_empty() {
                        return this.emit(out);
                    }
                }
                Poll::Ready(Some(Err(detail))) => {
                    // The client gets a fixed sentence (the same on every
                    // platform); the platform's wording goes to the log.
                    if let Some(log) = &mut this.log {
                        log.detail = Some(this.scrubber.scrub(&detail));
                    }
                    let tail = this.end(Some(StreamError::new(Code::OriginStreamFailed)));
                    return this.emit(tail);
                }
                Poll::Ready(None) => {
                    let tail = this.end(None);
                    if !tail.is_empty() {
                        return this.emit(tail);
                    }
                    // Loop: the charge, then the end.
                }
                Poll::Pending => {
                    let idle_at = this.last_origin_ms.saturating_add(this.origin_idle_ms);
                    // `None` inside an event: no keepalive may go there.
                    let keepalive_at = this.transformer.idle_deadline();
                    let deadline = keepalive_at.map_or(idle_at, |at| at.min(idle_at));
                    // A timer due later is replaced; one due earlier is kept
                    // (and re-armed when it fires), so a busy stream does not
                    // arm a timer per chunk.
                    if this.sleep.as_ref().is_none_or(|(at, _)| *at > deadline) {
                        this.sleep = Some((deadline, this.platform.sleep_until(deadline)));
                    }
                    let (armed_at, sleep) = this.sleep.as_mut().expect("just set");
                    if Pin::new(sleep).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let armed_at = *armed_at;
                    this.sleep = None;
                    // The timer firing proves its time has passed, even
                    // where the clock only advances on I/O (Workers).
                    let now = this.platform.now_ms().max(armed_at);
                    if now >= idle_at {
                        if let Some(log) = &mut this.log {
                            log.detail = Some(format!(
                                "no origin bytes for {} s",
                                this.origin_idle_ms / 1000
                            ));
                        }
                        let tail = this.end(Some(StreamError::new(Code::OriginIdleTimeout)));
                        return this.emit(tail);
                    }
                    if let Some(keepalive) = this.transformer.poll_idle(now) {
                        return this.emit(keepalive);
                    }
                    // Not due yet: loop to re-arm the timer.
                }
            }
        }
    }
}

impl<P: Platform> Drop for StreamBody<P> {
    fn drop(&mut self) {
        // Dropped before the end: the client went away. Dropping `origin`
        // with us cancels the origin request.
        if let Some(mut log) = self.log.take() {
            log.outcome = Some(Outcome::ClientClosed);
            self.write_log(log);
        }
        // A charge still on its way goes on without us.
        if let Some(charging) = self.charging.take() {
            self.platform
                .detach(charging.call, charging.deadline_ms, charging.failure);
        }
    }
}
