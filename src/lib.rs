//! realtime: a clustered Socket.IO server (Engine.IO v4 / Socket.IO v5) and the `rtctl`
//! ops CLI, in one crate.
//!
//! Data flows bytes → [`protocol`] → [`transport`] → [`server`], never back up:
//! - [`protocol`]: pure Engine.IO and Socket.IO codecs;
//! - [`transport`]: hyper + tokio-tungstenite: polling, WebSocket, upgrade, heartbeat, CORS;
//! - [`server`]: namespaces, sockets, rooms, acks, connect middleware, graceful drain;
//! - [`config`]: the one validated configuration both binaries share;
//! - [`commands`]: one module per `rtctl` subcommand.

pub mod api;
pub mod app;
pub mod auth;
pub mod cache;
pub mod chat;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod domain;
pub mod health;
pub mod loadtest;
pub mod loadtest_namespace;
pub mod metrics;
pub mod node_addr;
pub mod notifications;
pub mod presence;
pub mod probe;
pub mod protocol;
pub mod ratelimit;
pub mod redis_client;
pub mod server;
pub mod sid;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod transport;
