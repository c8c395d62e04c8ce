//! Development JWT issuer.
