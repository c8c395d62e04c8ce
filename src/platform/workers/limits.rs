//! `LIMITS_STORE=durable_object`: token budgets and request limits counted in
//! one Durable Object per subject ([`LimitsCounter`], SQLite-backed), reached
//! through the `LIMITS` binding with `idFromName(subject)`, so every isolate
//! in every location sees the same counts.
//!
//! The gateway sends the object a [`StoreCall`] as JSON ([`ask`]); the object
//! runs [`limits::apply`], the admission rule every store shares, over a
//! table `counters(key, count, expires_at)` and answers [`Counts`] as JSON
//! (400 for a body that is not a call, 500 when its storage fails).
//!
//! Atomic without a transaction: `sql.exec` is synchronous and a call runs
//! [`limits::apply`] without awaiting (after its body is read, before its
//! answer), so no other call to the object, from any isolate, runs between
//! its reads and writes, and the runtime commits those writes together.
//! Expiry uses the object's clock (`Date.now()`): a row past its
//! `expires_at` (its window's end plus [`limits::KEPT_PAST_END_SECONDS`])
//! counts as 0 and is deleted by the next writing call, through an index, so
//! an active subject's object holds only its live windows (a few dozen rows
//! at most); an idle one keeps its last rows until it is called again.

use std::cell::OnceCell;

use worker::js_sys::{Array, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::worker_sys::{SqlStorage, SqlStorageCursor};
use worker::{
    durable_object, Date, DurableObject, Env, Method, Request, RequestInit, Response, State,
};

use crate::gateway::limits::{self, CounterMap, Counts, StoreCall, StoreError};

/// The Durable Object namespace binding in `wrangler.toml`.
pub(super) const BINDING: &str = "LIMITS";

/// The URL of a call to an object: only the stub routes it, the host is never resolved.
const CALL_URL: &str = "https://limits.agent-edge.internal/call";

/// Longest error detail kept from the runtime or the object (for the log).
const MAX_DETAIL: usize = 200;

/// JavaScript numbers are exact up to 2^53 - 1; counts are capped there.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS counters_expiry ON counters (expires_at)",
];

/// Sends `call` to its subject's object and reads the counts it answers.
pub(super) async fn ask(env: &Env, call: &StoreCall) -> Result<Counts, StoreError> {
    let namespace = env
        .durable_object(BINDING)
        .map_err(|e| failed("no LIMITS binding", e))?;
    let stub = namespace
        .id_from_name(subject(call))
        .and_then(|id| id.get_stub())
        .map_err(|e| failed("the subject's object", e))?;
    let body = serde_json::to_string(call).map_err(|e| failed("the call", e))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init(CALL_URL, &init).map_err(|e| failed("the call", e))?;
    let mut response = stub
        .fetch_with_request(request)
        .await
        .map_err(|e| failed("the object did not answer", e))?;
    let status = response.status_code();
    let text = response
        .text()
        .await
        .map_err(|e| failed("the object's answer", e))?;
    if status != 200 {
        return Err(failed(&format!("the object answered {status}"), text));
    }
    serde_json::from_str(&text).map_err(|e| failed("the object's answer", e))
}

fn subject(call: &StoreCall) -> &str {
    match call {
        StoreCall::Admit { subject, .. }
        | StoreCall::Charge { subject, .. }
        | StoreCall::Read { subject, .. } => subject,
    }
}

/// `StoreError::Failed` with a short detail: runtime errors can be long.
fn failed(what: &str, error: impl std::fmt::Display) -> StoreError {
    let mut detail = format!("{what}: {error}");
    if detail.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
        detail.push('…');
    }
    StoreError::Failed(detail)
}

/// One subject's counters (the `LimitsCounter` class of `wrangler.toml`).
#[durable_object(fetch)]
pub struct LimitsCounter {
    /// `ctx.storage.sql`, or why there is none (a class not declared in
    /// `new_sqlite_classes`).
    sql: Result<SqlStorage, String>,
    /// Set once the table exists (or creating it failed: every call says so).
    schema: OnceCell<Result<(), String>>,
}

impl DurableObject for LimitsCounter {
    fn new(state: State, _env: Env) -> Self {
        // Read through `Reflect`: the getter throws when the object is not
        // SQLite-backed, which the generated binding would not catch.
        let sql = Reflect::get(state.storage().as_raw(), &JsValue::from_str("sql"))
            .ok()
            .filter(|sql| sql.is_object())
            .map(JsCast::unchecked_into::<SqlStorage>)
            .ok_or_else(|| {
                "no SQL storage: declare LimitsCounter in a new_sqlite_classes migration".to_owned()
            });
        LimitsCounter {
            sql,
            schema: OnceCell::new(),
        }
    }

    async fn fetch(&self, mut request: Request) -> worker::Result<Response> {
        let call = match request.text().await {
            Ok(body) => serde_json::from_str::<StoreCall>(&body),
            Err(_) => return Response::error("unreadable body", 400),
        };
        let Ok(call) = call else {
            return Response::error("not a limits store call", 400);
        };
        match self.answer(&call) {
            Ok(counts) => Response::from_json(&counts),
            Err(detail) => Response::error(detail, 500),
        }
    }
}

impl LimitsCounter {
    /// Runs `call` on the stored counters, synchronously (hence atomically).
    fn answer(&self, call: &StoreCall) -> Result<Counts, String> {
        let sql = self.sql.as_ref().map_err(Clone::clone)?;
        self.schema
            .get_or_init(|| {
                SCHEMA
                    .iter()
                    .try_for_each(|statement| exec(sql, statement, &[]).map(drop))
            })
            .clone()?;
        let now = Date::now().as_millis() / 1000;
        if !matches!(call, StoreCall::Read { .. }) {
            exec(
                sql,
                "DELETE FROM counters WHERE expires_at <= ?",
                &[number(now)],
            )?;
        }
        let mut counters = SqlCounters {
            sql,
            now,
            error: None,
        };
        let counts = limits::apply(call, &mut counters);
        match counters.error {
            None => Ok(counts),
            Some(error) => Err(error),
        }
    }
}

/// [`CounterMap`] over the `counters` table. [`CounterMap`] cannot fail: the
/// first storage error is kept, and the call answers it instead of counts.
struct SqlCounters<'a> {
    sql: &'a SqlStorage,
    /// Unix seconds.
    now: u64,
    error: Option<String>,
}

impl SqlCounters<'_> {
    fn first_number(&mut self, query: &str, bindings: &[JsValue]) -> u64 {
        if self.error.is_some() {
            return 0;
        }
        match exec(self.sql, query, bindings).and_then(|cursor| first_number(&cursor)) {
            Ok(n) => n.unwrap_or(0),
            Err(error) => {
                self.error = Some(error);
                0
            }
        }
    }
}

impl CounterMap for SqlCounters<'_> {
    fn get(&mut self, key: &str) -> u64 {
        self.first_number(
            "SELECT count FROM counters WHERE key = ? AND expires_at > ?",
            &[JsValue::from_str(key), number(self.now)],
        )
    }

    fn add(&mut self, key: &str, n: u64, expires_at: u64) -> u64 {
        // Expired rows were deleted before the call, so a row found here is live.
        self.first_number(
            "INSERT INTO counters (key, count, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (key) DO UPDATE SET count = min(count + excluded.count, ?), \
             expires_at = excluded.expires_at RETURNING count",
            &[
                JsValue::from_str(key),
                number(n),
                number(expires_at),
                number(MAX_SAFE_INTEGER),
            ],
        )
    }
}

fn number(n: u64) -> JsValue {
    JsValue::from_f64(n.min(MAX_SAFE_INTEGER) as f64)
}

fn exec(sql: &SqlStorage, query: &str, bindings: &[JsValue]) -> Result<SqlStorageCursor, String> {
    let array: Array = bindings.iter().collect();
    sql.exec(query, array).map_err(|e| {
        let message = e
            .dyn_ref::<worker::js_sys::Error>()
            .map(|e| String::from(e.message()))
            .unwrap_or_else(|| format!("{e:?}"));
        format!("storage: {message}")
    })
}

/// The first column of the first row, as a count.
fn first_number(cursor: &SqlStorageCursor) -> Result<Option<u64>, String> {
    let row = cursor.raw().next().map_err(|e| format!("storage: {e:?}"))?;
    if row.done() {
        return Ok(None);
    }
    let value = Array::from(&row.value()).get(0);
    // Counts are stored as integers; a float would be a foreign row.
    Ok(value.as_f64().map(|f| f.max(0.0) as u64))
}
