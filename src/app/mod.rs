//! The application: the product wired onto a Socket.IO server (auth on every namespace,
//! `/chat`, `/notifications`, the HTTP API, health and metrics) and its one lifecycle.
//!
//! Everything that runs the product goes through here — `rtctl serve`, `realtime-server`,
//! the nodes `rtctl loadtest --spawn-nodes` starts (they are `rtctl serve` processes) and
//! the integration tests — so a node always stops the same way:
//!
//! ```text
//! build ─► run (Socket.IO + HTTP routes) ─► drain ─► presence:update flush ─► store close
//! [build]  [App::serve] ……………………………………………………………………………………………………………………………………………………………►
//! ```
//!
//! One job per file:
//! - `build`: connects the services (store, Redis, cluster adapter) and declares the
//!   namespaces, giving an [`App`];
//! - `lifecycle`: [`serve`] / [`App::serve`], from listening to the closed store;
//! - `connect`: the connect steps every namespace gets ([`authenticate`],
//!   [`track_presence`]);
//! - `presence_updates`: the ordered, bounded `presence:update` queue and its flush;
//! - `routes`: the HTTP paths beside the engine (health, metrics, `/api/`);
//! - `adapter`: the Redis cluster adapter, when Redis is configured;
//! - `signal`: the process's shutdown signal (ctrl-c, SIGTERM);
//! - `error`: why an app could not be built.

mod adapter;
mod build;
mod connect;
mod error;
mod lifecycle;
mod presence_updates;
mod routes;
mod signal;

pub use adapter::cluster_adapter;
pub use build::build;
pub use connect::{authenticate, track_presence};
pub use error::BuildError;
pub use lifecycle::{serve, Stopped};
pub use presence_updates::PresenceUpdates;
pub use signal::shutdown_signal;

use crate::handlers::kit::State;
use crate::server::{Io, Routes};
use std::sync::Arc;

/// The built application, not yet serving: the Socket.IO server and the HTTP routes
/// beside it. [`App::serve`] runs it to the end; until then the fields are what a caller
/// (a test) may keep handles to.
pub struct App {
    pub io: Io,
    pub routes: Routes,
    pub state: State,
    /// Who is online (Redis in a cluster, in-process otherwise).
    pub presence: Arc<crate::presence::Presence>,
    /// `presence:update`s still to be sent; flushed before the database closes.
    pub presence_updates: PresenceUpdates,
    /// What the "listening" log line says about this node.
    banner: lifecycle::Banner,
}
