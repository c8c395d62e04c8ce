//! Demo AgentCore origin.
