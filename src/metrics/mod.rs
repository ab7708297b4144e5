//! Prometheus metrics: what this node is doing, scraped from `GET /metrics`.
//!
//! Two kinds of numbers, kept in two places:
//!
//! - **Things that happen** (connects, events, bytes, queries, errors, durations) are
//!   counters and histograms in one process-wide registry ([`global`]). Recording one is
//!   an atomic add: no lock, no allocation. Handles whose labels are known early are
//!   resolved once and kept — per namespace in [`NamespaceMetrics`] (inside each
//!   `Namespace`), per transport in the registry — so the hot path never looks a label
//!   set up.
//! - **Things that are** (connections open now, sessions, rooms, pool connections,
//!   process memory) are read when Prometheus scrapes, from the server's own state
//!   ([`Snapshot`], rendered by [`render`]). They cost nothing between scrapes, cannot
//!   drift from the truth (an upgrade from polling to WebSocket moves a connection between
//!   transports without any bookkeeping), and each server in a process (tests run many)
//!   reports its own.
//!
//! Names follow Prometheus conventions: a `realtime_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters (added by the encoder), and only labels
//! of small, fixed cardinality: namespace (fixed when the server is built), transport,
//! reason, a fixed set of event names, operation, pool. Never a user, socket or room id:
//! each distinct label value is a separate time series kept for weeks by Prometheus, and
//! 100k users would be 100k series per metric.
//!
//! The cluster adapter records into [`cluster()`]; see [`ClusterMetrics`].
//!
//! **A leaf.** Every layer records here — transport, server, cluster, store, the app's
//! handlers — so this module imports none of them: each caller passes its own labels in,
//! as `&'static str` (a transport its `TransportKind::as_str()`, a refused Engine.IO
//! request its `EngineError::reason()`). Were it otherwise, metrics would depend on the
//! layers that depend on it, and the mapping from a subsystem's error to its label would
//! live away from the error, to be forgotten when a variant is added.
//!
//! **Switching recording off** (`--metrics-enabled false`, `METRICS_ENABLED=false`):
//! [`set_enabled`] flips one process-wide flag that every recording hook in this module
//! reads first (one relaxed atomic load, a predictable branch), so with it off nothing is
//! counted or timed, and `GET /metrics` answers 404 with a line saying why (a scrape would
//! only show frozen numbers). It exists to measure what recording costs (examples/
//! metrics-overhead.rs) and for deployments that do not run Prometheus. The cluster
//! adapter's counters ([`cluster()`]) are recorded on handles the adapter holds and are
//! not covered; they are per Redis message, not per client.
//!
//! Layout, one job per file: `histogram` (the lock-free [`DurationHistogram`] and its
//! buckets), `labels` (label sets and the fixed label values), `registry` (the
//! process-wide [`Metrics`]), `cluster` (the adapter's [`ClusterMetrics`]), `hooks` (the
//! recording functions the crate calls), `namespace` (per-namespace handles), `scrape`
//! (gauges read at scrape time and the text exposition), `process` (the standard
//! `process_*` series).

mod cluster;
mod histogram;
mod hooks;
mod labels;
mod namespace;
mod process;
mod registry;
mod scrape;
mod tally;

pub use cluster::{cluster, cluster_message_type, ClusterMetrics, CLUSTER_REQUEST_TYPES};
pub use histogram::{DurationHistogram, CONNECTION_BUCKETS, FAST_BUCKETS, QUERY_BUCKETS};
pub use hooks::{
    auth_failure, bytes_received, bytes_sent, cache_lookup, declare_auth_failures, declare_cache,
    declare_engine_errors, declare_queries, engine_error, query, rate_limited, redis_error,
    redis_master_switch,
};
pub use labels::{
    event_label, BuildLabels, CacheLabels, ClassLabels, ComponentLabels, NamespaceEventLabels,
    NamespaceLabels, NamespaceReasonLabels, NamespaceResultLabels, NamespaceTransportLabels,
    PoolLabels, PoolStateLabels, QueryLabels, ReasonLabels, TransportLabels, TypeLabels,
    KNOWN_EVENTS, REDIS_COMPONENTS, TRANSPORTS,
};
pub use namespace::{NamespaceMetrics, Timed};
pub use registry::{global, Metrics};
pub use scrape::{render, Snapshot};
pub use tally::{
    engine_closed, engine_opened, packets_in, packets_out, tally, tally_bytes_in, tally_bytes_out,
    Tally,
};

use std::sync::atomic::{AtomicBool, Ordering};

/// The `Content-Type` of `GET /metrics`: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Whether recording is on; see the module docs. On unless [`set_enabled`] said otherwise.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns recording on or off for the whole process (`realtime-server` does this once, at
/// start, from `--metrics-enabled`). Takes effect at the next recorded event.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether recording is on.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}
