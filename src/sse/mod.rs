//! SSE parser and transformer.
