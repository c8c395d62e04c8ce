//! The Redis limits store (`LIMITS_STORE=redis`) of the native server and
//! the Lambda function. It owns one connection per process (multiplexed:
//! concurrent calls share it), opened in the background at startup or on
//! first use, never waited for by startup, and replaced after any failure
//! that is not Redis's own answer, so that a dead or hung Redis costs the
//! calls made while it is so, and counting resumes once it is back.
//!
//! Every call is one Lua script ([`SCRIPT`], loaded when a connection
//! opens, then sent by `EVALSHA`): one round trip, and atomic, since Redis
//! runs a script alone: concurrent streams of every instance lose no
//! update, and the check and the count of an admission cannot interleave
//! with another's. The script is [`crate::gateway::limits::apply`] on Redis
//! keys, with the keys of [`Counter::key`] and `EXPIREAT`
//! [`Window::expires_at`] on what it writes.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Script, ScriptInvocation};

use crate::gateway::limits::{Counter, Counts, StoreCall, StoreError, Window};

/// [`crate::gateway::limits::apply`] in Lua. Counts are compared and
/// answered as the decimal strings Redis keeps: exact for any count, where
/// Lua's numbers (doubles) are not past 2^53. `ARGV[1]` is the operation:
/// - `admit`: `ARGV[2]` the token budget, `ARGV[3]` the request limit (each
///   `''` when not set), `ARGV[4]` the requests key's expiry; `KEYS` the
///   tokens key if there is a budget, then the requests key if there is a
///   limit. A refused request is not counted.
/// - `charge`: `KEYS[1]` the tokens key, `ARGV[2]` the tokens, `ARGV[3]` its
///   expiry.
/// - `read`: `ARGV[2]`, `ARGV[3]` say (`1`) whether the tokens key and the
///   requests key are in `KEYS`, in that order.
///
/// Answers `{tokens, requests, admitted}`.
pub const SCRIPT: &str = r#"
local function count(key)
  return redis.call('GET', key) or '0'
end
local function below(used, limit)
  return #used < #limit or (#used == #limit and used < limit)
end
local function add(key, n, expires_at)
  redis.call('INCRBY', key, n)
  local total = count(key)
  -- A time already past deletes the key: the count is still the answer.
  redis.call('EXPIREAT', key, expires_at)
  return total
end
local op = ARGV[1]
if op == 'admit' then
  local budget, limit = ARGV[2], ARGV[3]
  local next_key = 1
  local tokens_key, requests_key
  if budget ~= '' then tokens_key = KEYS[next_key]; next_key = next_key + 1 end
  if limit ~= '' then requests_key = KEYS[next_key] end
  local tokens = tokens_key and count(tokens_key) or '0'
  local requests = requests_key and count(requests_key) or '0'
  local admitted = (not tokens_key or below(tokens, budget))
    and (not requests_key or below(requests, limit))
  if admitted and requests_key then
    requests = add(requests_key, 1, ARGV[4])
  end
  return {tokens, requests, admitted and 1 or 0}
elseif op == 'charge' then
  return {add(KEYS[1], ARGV[2], ARGV[3]), 0, 0}
elseif op == 'read' then
  local next_key = 1
  local tokens, requests = '0', '0'
  if ARGV[2] == '1' then tokens = count(KEYS[next_key]); next_key = next_key + 1 end
  if ARGV[3] == '1' then requests = count(KEYS[next_key]) end
  return {tokens, requests, 0}
end
return redis.error_reply('agent-edge: unknown limits operation')
"#;

/// The least time a connection attempt (TCP, TLS, `AUTH`) may take, or
/// `LIMITS_STORE_TIMEOUT_MS` if longer: a connection slower to open than
/// one call still serves the calls after it; bounded, so that an attempt
/// at a Redis that never answers is given up and made again.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time a call waits for a connection, and a command for its
/// answer before its connection is taken for dead; the driver gave up on
/// the call long before. Bounds the life of a call's task.
const MIN_DEAD_AFTER: Duration = Duration::from_secs(1);

/// A Redis limits store; clones share the connection.
#[derive(Clone)]
pub struct RedisStore(Arc<Inner>);

struct Inner {
    client: redis::Client,
    script: Script,
    /// How long a call waits for a connection, and a command for its
    /// answer before its connection is replaced.
    dead_after: Duration,
    connect_timeout: Duration,
    /// The URL and its password, as written and decoded: never in a detail.
    secrets: Vec<String>,
    slot: Mutex<Slot>,
    next_id: AtomicU64,
}

/// A connection attempt that callers share, run to its end in a task of
/// its own; the error is a detail, already without secrets.
type Connecting = Shared<BoxFuture<'static, Result<Connection, String>>>;

#[derive(Clone)]
struct Connection {
    /// Which connection this is: a failure replaces this one only, not one
    /// that replaced it meanwhile.
    id: u64,
    redis: MultiplexedConnection,
}

enum Slot {
    Idle,
    Connecting(Connecting),
    Ready(Connection),
}

impl RedisStore {
    /// The store of `url` (`redis://` or `rediss://`); connects on the first
    /// call. `timeout_ms` is `LIMITS_STORE_TIMEOUT_MS`. Fails only when the
    /// URL does not parse; the reason has no secret in it.
    pub fn new(url: &str, timeout_ms: u64) -> Result<RedisStore, String> {
        let secrets = secrets_of(url);
        let client = redis::Client::open(url)
            .map_err(|e| redact(&format!("not a valid Redis URL: {e}"), &secrets))?;
        Ok(RedisStore(Arc::new(Inner {
            client,
            script: Script::new(SCRIPT),
            dead_after: Duration::from_millis(timeout_ms).max(MIN_DEAD_AFTER),
            connect_timeout: Duration::from_millis(timeout_ms).max(MIN_CONNECT_TIMEOUT),
            secrets,
            slot: Mutex::new(Slot::Idle),
            next_id: AtomicU64::new(0),
        })))
    }

    /// Opens the connection before the first call needs it (a failure is
    /// left to that call to meet and report).
    pub fn connect_early(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.0.clone();
        async move {
            let _ = inner.connection().await;
        }
    }

    /// Runs `call`. The work is a task of its own, so that it ends (and a
    /// connection that failed it is replaced) even when the caller stops
    /// waiting at `LIMITS_STORE_TIMEOUT_MS`.
    pub fn call(
        &self,
        call: StoreCall,
    ) -> impl Future<Output = Result<Counts, StoreError>> + Send + 'static {
        let inner = self.0.clone();
        async move {
            tokio::spawn(inner.run(call))
                .await
                .unwrap_or_else(|stopped| {
                    let why = if stopped.is_panic() {
                        "the Redis call panicked"
                    } else {
                        "the Redis call was cancelled (the runtime is shutting down)"
                    };
                    Err(StoreError::Failed(why.into()))
                })
        }
    }
}

impl Inner {
    async fn run(self: Arc<Self>, call: StoreCall) -> Result<Counts, StoreError> {
        // The attempt goes on without this call (it is a task of its own):
        // a call waits for it no longer than for an answer.
        let connection = tokio::time::timeout(self.dead_after, self.connection())
            .await
            .map_err(|_| StoreError::TimedOut)?
            .map_err(StoreError::Failed)?;
        let mut redis = connection.redis.clone();
        let answer: Result<(u64, u64, u8), RedisError> = invocation(&self.script, &call)
            .invoke_async(&mut redis)
            .await;
        match answer {
            Ok((tokens, requests, admitted)) => Ok(Counts {
                tokens,
                requests,
                admitted: admitted == 1,
            }),
            Err(error) => {
                // Redis's own error answer (a script error, OOM, NOPERM)
                // came over a connection that works; anything else (an
                // I/O error, no answer in time, a garbled one) may have
                // left it unusable.
                if !matches!(
                    error.kind(),
                    redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
                ) {
                    self.forget(connection.id);
                }
                Err(StoreError::Failed(self.describe(&error)))
            }
        }
    }

    /// The connection, or the one being opened, or a new attempt.
    async fn connection(self: &Arc<Self>) -> Result<Connection, String> {
        let attempt = {
            let mut slot = lock(&self.slot);
            match &*slot {
                Slot::Ready(connection) => return Ok(connection.clone()),
                Slot::Connecting(attempt) => attempt.clone(),
                Slot::Idle => {
                    let attempt = self.clone().connect().boxed().shared();
                    tokio::spawn(attempt.clone().map(drop));
                    *slot = Slot::Connecting(attempt.clone());
                    attempt
                }
            }
        };
        attempt.await
    }

    /// Opens a connection and leaves it in the slot (or, failing, an empty
    /// slot: the next call tries again).
    async fn connect(self: Arc<Self>) -> Result<Connection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.dead_after));
        let mut opened = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await;
        if let Ok(redis) = &mut opened {
            // A Redis new or restarted has no scripts: loaded here, the
            // first call is one round trip too, not EVALSHA, NOSCRIPT,
            // SCRIPT LOAD, EVALSHA. Not loaded (an ACL without it), calls
            // still fall back to that.
            let _ = self.script.load_async(redis).await;
        }
        let mut slot = lock(&self.slot);
        match opened {
            Ok(redis) => {
                let connection = Connection {
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    redis,
                };
                *slot = Slot::Ready(connection.clone());
                Ok(connection)
            }
            Err(error) => {
                *slot = Slot::Idle;
                Err(self.describe(&error))
            }
        }
    }

    /// Drops connection `id` if it is still the current one.
    fn forget(&self, id: u64) {
        let mut slot = lock(&self.slot);
        if matches!(&*slot, Slot::Ready(connection) if connection.id == id) {
            *slot = Slot::Idle;
        }
    }

    fn describe(&self, error: &RedisError) -> String {
        redact(&format!("redis: {error}"), &self.secrets)
    }
}

/// The script's arguments for `call` (see [`SCRIPT`]).
fn invocation<'a>(script: &'a Script, call: &StoreCall) -> ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    match call {
        StoreCall::Admit {
            subject,
            tokens,
            requests,
        } => {
            invocation
                .arg("admit")
                .arg(tokens.map(|b| b.limit.to_string()).unwrap_or_default())
                .arg(requests.map(|b| b.limit.to_string()).unwrap_or_default())
                .arg(requests.map_or(0, |b| b.window.expires_at()));
            if let Some(b) = tokens {
                invocation.key(Counter::Tokens.key(b.window, subject));
            }
            if let Some(b) = requests {
                invocation.key(Counter::Requests.key(b.window, subject));
            }
        }
        StoreCall::Charge {
            subject,
            window,
            tokens,
        } => {
            invocation
                .key(Counter::Tokens.key(*window, subject))
                .arg("charge")
                // INCRBY adds signed 64-bit integers.
                .arg((*tokens).min(i64::MAX as u64))
                .arg(window.expires_at());
        }
        StoreCall::Read {
            subject,
            tokens,
            requests,
        } => {
            let flag = |w: &Option<Window>| if w.is_some() { "1" } else { "" };
            invocation.arg("read").arg(flag(tokens)).arg(flag(requests));
            if let Some(w) = tokens {
                invocation.key(Counter::Tokens.key(*w, subject));
            }
            if let Some(w) = requests {
                invocation.key(Counter::Requests.key(*w, subject));
            }
        }
    }
    invocation
}

/// What no detail may contain: the URL, and its password as written and
/// percent-decoded (the form the client sends in `AUTH`).
fn secrets_of(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_owned()];
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo.split_once(':').map_or(userinfo, |(_, p)| p));
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        secrets.push(password.to_owned());
        let decoded = percent_encoding::percent_decode_str(password).decode_utf8_lossy();
        secrets.push(decoded.into_owned());
    }
    // Longest first: the URL contains the password.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

fn redact(detail: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(detail.to_owned(), |detail, secret| {
            detail.replace(secret.as_str(), "***")
        })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update of the slot is one assignment: a panic cannot leave it
    // half done.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_never_hold_the_url_or_its_password() {
        let url = "rediss://default:p%40ss-w0rd@cache.example.com:6380/2";
        let secrets = secrets_of(url);
        assert_eq!(
            redact(
                &format!("failed for {url}: auth p%40ss-w0rd, p@ss-w0rd"),
                &secrets
            ),
            "failed for ***: auth ***, ***"
        );
        // A password alone (no user), and none at all.
        assert!(secrets_of("redis://:s3cret@h:1").contains(&"s3cret".to_owned()));
        assert_eq!(
            secrets_of("redis://h:1/0"),
            vec!["redis://h:1/0".to_owned()]
        );
    }

    #[test]
    fn an_unparsable_url_is_refused_without_quoting_it() {
        for url in [
            "redis://",
            "redis://:pw-123@host:notaport",
            "rediss://:pw-123@",
        ] {
            let error = RedisStore::new(url, 250)
                .err()
                .unwrap_or_else(|| panic!("{url}"));
            assert!(!error.contains("pw-123"), "{error}");
            assert!(error.starts_with("not a valid Redis URL"), "{error}");
        }
        assert!(RedisStore::new("rediss://user:pw@cache.example.com:6380/1", 250).is_ok());
    }
}
