//! The built-in demo agent and development issuer behind `agent-edge dev`.

pub mod issuer;
pub mod origin;
