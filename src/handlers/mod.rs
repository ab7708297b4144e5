//! The application's handlers: what the server does for the Next.js app.
//!
//! - [`kit`]: what every handler shares — the authenticated [`kit::User`] on a socket, the
//!   services ([`kit::AppState`]) and the error acks clients receive;
//! - [`chat`] (`/chat`) and [`notifications`] (`/notifications`): the Socket.IO
//!   namespaces;
//! - [`api`]: the HTTP API the Next.js app calls (`POST /api/notifications`,
//!   `POST /api/chat/send`);
//! - [`role`]: which of them a node serves (`--role all|chat|notifications`);
//! - [`bench`]: the `/bench` namespace `rtctl loadtest` drives (`--loadtest-namespace`).
//!   It is the server side of the load test, served by nodes; the load generator that
//!   drives it is the `loadtest` module (`rtctl loadtest`).

pub mod api;
pub mod bench;
pub mod chat;
pub mod kit;
pub mod notifications;
pub mod role;
