//! The single integration-test binary; one submodule per area.

mod botocore;
mod cli;
mod conformance;
mod native_stack;
mod pyenv;
mod pyjwt;
mod sigv4;
mod smoke;
mod sse;
