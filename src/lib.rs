//! realtime: a clustered Socket.IO server (Engine.IO v4 / Socket.IO v5) and the `rtctl`
//! ops CLI, in one crate.
//!
//! Dependencies point one way, from the wire up to the binaries (docs/architecture.md
//! draws it, with the path of one message):
//!
//! - [`protocol`]: pure codecs — Engine.IO, Socket.IO and the cluster wire formats;
//! - [`transport`]: hyper + tokio-tungstenite: polling, WebSocket, upgrade, heartbeat,
//!   CORS — the only networking code of the server;
//! - [`server`]: namespaces, sockets, rooms, acks, middleware, drain, and the adapter
//!   contract ([`server::adapter`]) every adapter implements;
//! - [`cluster`]: adapters that leave the process (Redis), and the Redis emitter;
//! - the app's services ([`auth`], [`store`], [`presence`], [`cache`], [`ratelimit`],
//!   [`redis_client`]) and its [`handlers`] (`/chat`, `/notifications`, `/bench`, the HTTP
//!   API), with [`observability`] (health and metrics endpoints);
//! - [`config`]: the one validated configuration both binaries share, built from flags
//!   and environment, holding each lower layer's settings;
//! - [`app`]: wiring and the one lifecycle every node runs (`app::serve`);
//! - the ops side: [`client`] (our outgoing Socket.IO and HTTP client), [`loadtest`],
//!   [`probe`] (what `rtctl health` asks of nodes), [`node_addr`] (the one parser of
//!   node addresses they and `rtctl gen` share);
//! - [`commands`]: one thin module per `rtctl` subcommand; `src/bin` is thinner still;
//! - `fuzzing`: the fuzz targets (every decoder of outside bytes), shared by `fuzz/` and
//!   the corpus replay in the tests.
//!
//! Leaves every layer may use: [`metrics`] (each caller passes its own labels), [`sid`],
//! [`sync`] (locks that outlive a panic), [`telemetry`], [`templates`].

pub mod admin_ui;
pub mod app;
pub mod auth;
pub mod cache;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod deploy;
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
pub mod loadtest;
pub mod metrics;
pub mod node_addr;
pub mod observability;
pub mod presence;
pub mod probe;
pub mod protocol;
pub mod ratelimit;
pub mod redis_client;
pub mod runtime;
pub mod server;
pub mod sid;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod templates;
pub mod transport;
