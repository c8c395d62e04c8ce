//! The HTTP-level conformance suite: one set of checks run against every
//! deployment target of the gateway, the native server, the Cloudflare
//! Worker under `wrangler dev` and the AWS Lambda function under `cargo
//! lambda watch`, all in front of the same demo AgentCore origin and the
//! same JWT issuer. A response that differs between them is a bug (issue 4,
//! item 6; issue 11).
//!
//! Layout:
//! - [`stack`]: the servers the tests share (the demo origin behind the
//!   [`tap`] proxy, the JWT issuer, the native gateway, `wrangler dev`,
//!   `cargo lambda watch`), started once on a runtime of their own, because
//!   each `#[tokio::test]` has a runtime that dies with it. Same
//!   configuration for every target:
//!   `AUTH=jwt`, CORS for one origin, `KEEPALIVE_SECONDS=1`,
//!   `MAX_BODY_BYTES=4096`, `MAX_BODY_KEYS=64`, and the rate limit of
//!   `wrangler.toml`.
//! - [`child`]: a target in a child process, tied to the test process;
//!   [`worker`] and [`lambda`] say how `scripts/wrangler-dev.sh` and `cargo
//!   lambda watch` start.
//! - [`tokens`]: the issuer's tokens, good ones and attacks.
//! - [`client`]: requests, and bodies read chunk by chunk with timestamps.
//! - the checks, by area: [`routes`], [`modes`], [`session`], [`agents`]
//!   (agents by name, sessions of their subject, ending them), [`jwt`],
//!   [`origin_errors`], [`streaming`], [`cors`], [`rate_limit`], [`logs`],
//!   [`faults`] (the demo agent's fault prompts), [`retries`] (retries
//!   before the first byte, AgentCore's 424 and 402), [`early_errors`] (early
//!   answers to keep-alive clients, the `Host` rule), [`parity`] (the
//!   same requests to every target, compared), and [`hardening`] (issue 14:
//!   the key cap, duplicates, a JSON `Content-Type`, `Host` rebinding,
//!   request ids, `Vary`, `Expect`, refused heads, raw Lambda events),
//!   and [`ag_ui`] (issue 17: recorded AG-UI runs in both modes).
//!
//! Nothing secret anywhere: every answer a check reads through [`client`]
//! is searched for every secret of the test configuration, and after every
//! check, each target's whole log so far (see [`origin_errors::secrets`]).
//!
//! Every check is an `async fn(Arc<Target>)` written once; [`every_target!`]
//! turns it into a test that runs it on each target at once and names the
//! target in failures. Checks that need a configuration of their own (wrong
//! AWS secret, unreachable origin, `AUTH=none`) start a native gateway and
//! are named `native_*`; [`worker_config`], [`worker_limits`] (the
//! Durable Object limits store) and [`lambda_config`] start Workers and
//! functions of their own ([`child::own`]). The Worker target
//! is left out only with `AGENT_EDGE_SKIP_WORKER=1`, the Lambda target only
//! with `AGENT_EDGE_SKIP_LAMBDA=1` (a test of its own says so through
//! [`stack::TargetKind::left_out`]); if one cannot start, every check fails
//! on it with the reason and the tool's last output. A check that cannot
//! apply to a target skips it through [`stack::Target::lacks`], which names
//! the reason.
//!
//! Run: `cargo test --test it conformance`.
//!
//! The contract: `docs/interface.md`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;

pub mod child;
mod client;
pub mod lambda;
mod lambda_config;
pub mod stack;
mod tap;
pub mod tokens;
pub mod worker;
mod worker_cache;
mod worker_config;
mod worker_limits;

mod ag_ui;
mod agents;
mod budget;
mod contract;
mod cors;
mod early_errors;
mod faults;
mod hardening;
mod jwt;
mod key_refresh;
mod logs;
mod modes;
mod origin_errors;
mod parity;
mod rate_limit;
mod retries;
mod routes;
mod session;
mod streaming;

pub use stack::Target;

/// A check's body for one target.
pub type Check = fn(Arc<Target>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Makes each listed check, an `async fn(Arc<Target>)` of the calling
/// module, a `#[tokio::test]` (in a submodule `every_target`) that runs it
/// on every target at once and fails naming each target it failed on.
macro_rules! every_target {
    ($($check:ident),* $(,)?) => {
        mod every_target {
            $(
                #[tokio::test]
                async fn $check() {
                    $crate::conformance::on_every_target(stringify!($check), |target| {
                        Box::pin(super::$check(target))
                    })
                    .await;
                }
            )*
        }
    };
}
pub(crate) use every_target;

/// Runs `check` on every target at once; panics listing the targets it
/// failed on (each failure's own panic message is printed above it).
pub async fn on_every_target(name: &str, check: Check) {
    let runs = stack::kinds().into_iter().map(|kind| async move {
        let outcome = match stack::target(kind).await {
            Ok(target) => AssertUnwindSafe(async {
                check(target.clone()).await;
                // Every line the target wrote so far, by any check: over the
                // run, the whole log is searched for every secret.
                origin_errors::assert_logs_clean(&target, &[]);
            })
            .catch_unwind()
            .await
            .map_err(panic_message),
            Err(unavailable) => Err(unavailable.reason),
        };
        (kind.name(), outcome)
    });
    let failures: Vec<String> = futures::future::join_all(runs)
        .await
        .into_iter()
        .filter_map(|(label, outcome)| outcome.err().map(|why| format!("[{label}] {why}")))
        .collect();
    assert!(
        failures.is_empty(),
        "conformance check `{name}` failed on {} target(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}
