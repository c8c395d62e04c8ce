//! agent-edge: an edge gateway for streaming AI agents.
//!
//! Per request it verifies the caller's JWT, builds and SigV4-signs the
//! origin request (AgentCore `InvokeAgentRuntime`, a Lambda function URL or
//! any SSE origin), and streams the answer back, byte for byte or rewritten
//! into plain text plus a trailer. The contract is `docs/interface.md`.
//!
//! Modules, in reading order:
//! - [`config`]: the configuration table, parsed from any key/value lookup.
//! - [`error`]: errors with a stable code, a status and who caused them.
//! - [`sse`]: the incremental SSE parser and the response transformer.
//! - [`auth`]: JWT verification against a JWKS, key and token caches.
//! - [`origin`]: the origin request and its SigV4 signature.
//! - [`gateway`]: the request's phases, from request filter to log line.
//! - [`scrub`]: the one scrubber of secrets in log fields and written errors.
//! - `platform`: the thin adapters (native server, Cloudflare Workers) that
//!   do the I/O and read the clock; nothing above them does.
//! - `demo`: the built-in AgentCore-speaking demo agent and development
//!   issuer behind `agent-edge dev` (native only).
//!
//! The core (everything but `platform` and `demo`) is sans-IO: synchronous
//! state machines over bytes and `http` types, the time passed in. It never
//! imports tokio or `worker` and never reads the clock, so it builds and runs
//! unchanged on `wasm32-unknown-unknown`; `clippy.toml` and
//! `tests/it/boundary.rs` fail the build when that is broken.

pub mod auth;
pub mod civil;
pub mod config;
pub mod error;
pub mod gateway;
pub mod origin;
pub mod scrub;
pub mod sse;

pub mod platform;

// A development tool, not the core: it reads the clock (see clippy.toml).
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::disallowed_methods)]
pub mod demo;
