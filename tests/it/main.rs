//! The single integration-test binary; one submodule per area.

mod botocore;
mod sigv4;
mod smoke;
mod sse;
