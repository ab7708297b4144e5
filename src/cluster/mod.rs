//! Adapters that leave the process: they implement the server's adapter contract
//! ([`crate::server::adapter`]) and tell the other nodes in a wire format.
//!
//! - [`redis::RedisAdapter`] serves this node's sockets through its
//!   [`LocalAdapter`](crate::server::adapter::LocalAdapter), then tells the other nodes
//!   through Redis pub/sub in the wire format of `@socket.io/redis-adapter` 8.x, so Node
//!   and Rust nodes, and `@socket.io/redis-emitter`, form one cluster.
//! - [`redis_streams::RedisStreamsAdapter`] does the same in the wire format of
//!   `@socket.io/redis-streams-adapter` 0.3.x: broadcasts and room operations are entries
//!   of a Redis stream, so their entry ids are recovery offsets and disconnected sessions
//!   recover on any node (sessions are Redis keys).
//! - [`emitter::Emitter`] is the Rust twin of `@socket.io/redis-emitter`: it emits to a
//!   cluster from a process that serves no sockets.
//! - [`wire`] converts between the server's broadcast types and the wire types of
//!   [`crate::protocol::cluster`]; nothing outside this module does.
//!
//! A node's own sockets are always served from memory: a broadcast reaches local
//! sockets at once and hands the cluster copy to a background publisher, so a Redis
//! outage never blocks or fails a local emit (the remote copy is lost — pub/sub keeps
//! nothing for absent listeners).

pub mod driver;
pub mod emitter;
pub mod redis;
pub mod redis_sharded;
pub mod redis_streams;
mod sharded_conn;
pub mod sharded_driver;
pub mod wire;
