//! Server-Sent Events: the incremental parser and the response transformer.
//!
//! - [`parser`]: the WHATWG event-stream parser ([`Parser`]) and the
//!   boundary tracker original mode uses ([`BoundaryTracker`]).
//! - [`transform`]: the response body filter of both response modes
//!   ([`Transformer`]).
//! - `dialect`: what transformed mode takes from each origin dialect.
//!
//! Sans-IO: bytes in, bytes out, the time passed in as milliseconds. What
//! clients receive: `docs/interface.md`, "The response".

mod dialect;
pub mod parser;
#[cfg(test)]
mod test_support;
pub mod transform;

pub use crate::error::StreamError;
pub use parser::{BoundaryTracker, Event, ParseError, Parser};
pub use transform::{OriginBodyKind, Transformer, TransformerOptions};
