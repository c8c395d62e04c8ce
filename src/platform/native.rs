//! Native server adapter (hyper + reqwest + tokio).
