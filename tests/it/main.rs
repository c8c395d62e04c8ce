//! The single integration-test binary; one submodule per area.

// Only the core may not read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod botocore;
mod boundary;
mod browser;
mod cli;
mod client_limits;
mod conformance;
mod docs;
#[path = "../support/issuer.rs"]
mod issuer_support;
mod lambda_deploy;
mod limits_redis;
mod native_stack;
mod pyenv;
mod pyjwt;
mod shutdown;
mod sigv4;
mod smoke;
mod sse;
