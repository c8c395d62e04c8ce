//! Origin request and signing.
