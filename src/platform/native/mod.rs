//! The native server: hyper for the listener ([`server`]), and the tokio
//! platform ([`NativePlatform`]: reqwest for the origin and the issuer,
//! tokio timers, the process clocks, the Redis limits store
//! ([`RedisStore`])) that the Lambda function shares.

mod platform;
mod redis_store;
mod server;

pub use platform::{log_panics, stderr_log, LogSink, NativePlatform, OriginBody};
pub use redis_store::{RedisStore, SCRIPT as REDIS_SCRIPT};
pub use server::{raise_open_file_limit, serve, shutdown_signal, spawn, ClientBody, GatewayServer};
