//! Gateway phases.
