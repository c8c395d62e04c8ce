//! Platform adapters: convert types, do the I/O, read the clock. Nothing else.

#[cfg(not(target_arch = "wasm32"))]
pub mod native;

#[cfg(target_arch = "wasm32")]
pub mod workers;

#[cfg(not(target_arch = "wasm32"))]
pub mod lambda;
