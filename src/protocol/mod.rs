//! Pure codecs: bytes in, enums out. Nothing in here may import tokio, hyper, redis or
//! sqlx, so every wire rule is unit-testable and fuzzable without a socket.

pub mod cluster;
pub mod cluster_adapter;
pub mod cluster_sharded;
pub mod cluster_streams;
pub mod engineio;
pub mod socketio;
pub mod websocket;

#[cfg(test)]
mod fixtures;
