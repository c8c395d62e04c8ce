//! Server-Sent Events: the incremental parser and the response transformer.
//!
//! - [`parser`]: the WHATWG event-stream parser ([`Parser`]) and the
//!   boundary tracker original mode uses ([`BoundaryTracker`]).
//! - [`transform`]: the response body filter of both response modes
//!   ([`Transformer`]).
//!
//! Sans-IO: bytes in, bytes out, the time passed in as milliseconds.
//! Spec: `SPEC.md`, "Original mode", "Transformed mode" and "SSE parsing".

pub mod parser;
pub mod transform;

pub use parser::{BoundaryTracker, Event, ParseError, Parser};
pub use transform::{OriginBodyKind, StreamError, Transformer, TransformerOptions};
