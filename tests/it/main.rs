//! Integration tests: one binary, a module per area. Every test starts its own server on
//! 127.0.0.1:0 and stops it; external peers (node, socket.io-client) are real processes.

mod admin_ui;
mod auth;
mod cluster;
mod common;
mod domain;
mod drills;
mod emitter;
mod engine;
mod fuzz;
mod fuzz_corpus;
mod gen;
mod gen_k8s;
mod hostile;
mod http1;
mod inspect;
mod interop;
mod limits;
mod loadtest;
mod monitoring;
mod multi_region;
mod observability;
mod presence;
mod recovery;
mod recovery_cluster;
mod redis_cluster;
mod reference_server;
mod roles;
mod sentinel;
mod sharded;
mod socketio;
mod store;
mod streams;
mod tls;
