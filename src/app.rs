//! Wires the product's namespaces onto a Socket.IO server.

use crate::config::Config;
use crate::server::Io;

/// The server as `realtime-server` / `rtctl serve` run it: every configured namespace.
pub fn build(config: &Config) -> Io {
    let mut builder = Io::builder(config.server.clone());
    for ns in &config.namespaces {
        builder = builder.namespace(ns, |_| {});
    }
    builder.build()
}
