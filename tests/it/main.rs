//! The single integration-test binary; one submodule per area.

mod botocore;
mod cli;
mod conformance;
#[path = "../support/issuer.rs"]
mod issuer_support;
mod native_stack;
mod pyenv;
mod pyjwt;
mod sigv4;
mod smoke;
mod sse;
