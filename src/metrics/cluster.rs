//! What the cluster adapter records: its messages and requests, by type.

use super::histogram::{fast_histogram, HistogramFamily};
use super::labels::TypeLabels;
use super::registry::{register, METRICS};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Metrics of the cluster adapter (issue 4), registered here so that they appear in
/// every scrape with help text even before the adapter records anything. Record with
/// `metrics::cluster().published.get_or_create(&TypeLabels { r#type: "broadcast" }).inc()`
/// (resolve the handles once, in the adapter's constructor, where hot); Redis errors of
/// the adapter and presence go to [`redis_error`](super::redis_error) with component
/// `adapter` / `presence`.
pub struct ClusterMetrics {
    /// `realtime_cluster_messages_published_total{type}`: messages this node published
    /// (type: broadcast, request, response, …).
    pub published: Family<TypeLabels, Counter>,
    /// `realtime_cluster_messages_received_total{type}`: messages Redis delivered here
    /// (pub/sub echoes a node's own messages back to it: they count too).
    pub received: Family<TypeLabels, Counter>,
    /// `realtime_cluster_request_duration_seconds{type}`: a request to all nodes until
    /// every answer (or the timeout).
    pub request_duration: HistogramFamily<TypeLabels>,
    /// `realtime_cluster_request_timeouts_total{type}`.
    pub request_timeouts: Family<TypeLabels, Counter>,
    /// `realtime_redis_reconnects_total`: (re)connections of the adapter's Redis links.
    pub redis_reconnects: Counter,
    /// `realtime_cluster_nodes`: live nodes seen (this one included); set it on changes.
    pub nodes: Gauge,
}

/// Where the cluster adapter records.
pub fn cluster() -> &'static ClusterMetrics {
    &METRICS.cluster
}

/// The `type` of an adapter message, told by its channel: `<key>-request#…` is a
/// request, `<key>-response#…` a response, any other `<key>#…` a broadcast.
pub fn cluster_message_type(channel: &str) -> &'static str {
    let head = channel.split('#').next().unwrap_or("");
    if head.ends_with("-request") {
        "request"
    } else if head.ends_with("-response") {
        "response"
    } else {
        "broadcast"
    }
}

/// The request types whose durations and timeouts the Redis adapter records.
pub const CLUSTER_REQUEST_TYPES: &[&str] = &["fetch_sockets", "all_rooms", "server_side_emit"];

impl ClusterMetrics {
    /// Registers the adapter's metrics in `r` (part of building the process registry).
    pub(super) fn register(r: &mut Registry) -> ClusterMetrics {
        ClusterMetrics {
            published: register(
                r,
                "realtime_cluster_messages_published",
                "Adapter messages this node published to the cluster, by type.",
                Family::default(),
            ),
            received: register(
                r,
                "realtime_cluster_messages_received",
                "Adapter messages Redis delivered to this node, by type (a node's own broadcasts and requests come back too).",
                Family::default(),
            ),
            request_duration: register(
                r,
                "realtime_cluster_request_duration_seconds",
                "Time a cluster-wide request took until all answers arrived, by type.",
                HistogramFamily::new_with_constructor(fast_histogram as fn() -> _),
            ),
            request_timeouts: register(
                r,
                "realtime_cluster_request_timeouts",
                "Cluster-wide requests that did not get every answer in time, by type.",
                Family::default(),
            ),
            redis_reconnects: register(
                r,
                "realtime_redis_reconnects",
                "Reconnections of the cluster adapter's Redis connections.",
                Counter::default(),
            ),
            nodes: register(
                r,
                "realtime_cluster_nodes",
                "Live nodes this node sees in the cluster, itself included.",
                Gauge::default(),
            ),
        }
    }

    /// Creates every series of the adapter at zero (message and request types), so a
    /// node's scrape shows them before the first message and `rate()` sees the first
    /// increase. Called when a Redis adapter is built.
    pub fn init(&self) {
        for t in ["broadcast", "request", "response"] {
            drop(self.published.get_or_create(&TypeLabels { r#type: t }));
            drop(self.received.get_or_create(&TypeLabels { r#type: t }));
        }
        for &t in CLUSTER_REQUEST_TYPES {
            drop(
                self.request_duration
                    .get_or_create(&TypeLabels { r#type: t }),
            );
            drop(
                self.request_timeouts
                    .get_or_create(&TypeLabels { r#type: t }),
            );
        }
    }

    /// `n` messages of `type` published to Redis.
    pub fn published(&self, r#type: &'static str, n: u64) {
        self.published
            .get_or_create(&TypeLabels { r#type })
            .inc_by(n);
    }

    /// A message Redis delivered on `channel`.
    pub fn received(&self, channel: &str) {
        self.received_of(cluster_message_type(channel));
    }

    /// A message of `type` delivered here, for adapters whose channel names do not say
    /// it (the sharded adapter's namespace channel carries requests and broadcasts).
    pub fn received_of(&self, r#type: &'static str) {
        self.received.get_or_create(&TypeLabels { r#type }).inc();
    }

    /// A cluster request of `type` finished after `took`, complete or timed out.
    pub fn request(&self, r#type: &'static str, took: Duration, timed_out: bool) {
        let labels = TypeLabels { r#type };
        self.request_duration.get_or_create(&labels).observe(took);
        if timed_out {
            self.request_timeouts.get_or_create(&labels).inc();
        }
    }
}
