//! Prometheus metrics: what this node is doing, scraped from `GET /metrics`.
//!
//! Two kinds of numbers, kept in two places:
//!
//! - **Things that happen** (connects, events, bytes, queries, errors, durations) are
//!   counters and histograms in one process-wide registry ([`global`]). Recording one is
//!   an atomic add: no lock, no allocation. Handles whose labels are known early are
//!   resolved once and kept — per namespace in [`NamespaceMetrics`] (inside each
//!   `Namespace`), per transport in statics — so the hot path never looks a label set up.
//! - **Things that are** (connections open now, sessions, rooms, pool connections,
//!   process memory) are read when Prometheus scrapes, from the server's own state
//!   ([`Scrape`]). They cost nothing between scrapes, cannot drift from the truth (an
//!   upgrade from polling to WebSocket moves a connection between transports without any
//!   bookkeeping), and each server in a process (tests run many) reports its own.
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
//! **Switching recording off** (`--metrics-enabled false`, `METRICS_ENABLED=false`):
//! [`set_enabled`] flips one process-wide flag that every recording hook in this module
//! reads first (one relaxed atomic load, a predictable branch), so with it off nothing is
//! counted or timed, and `GET /metrics` answers 404 with a line saying why (a scrape would
//! only show frozen numbers). It exists to measure what recording costs (examples/
//! metrics-overhead.rs) and for deployments that do not run Prometheus. The cluster
//! adapter's counters ([`cluster()`]) are recorded on handles the adapter holds and are
//! not covered; they are per Redis message, not per client.

use crate::protocol::engineio::TransportKind;
use crate::transport::EngineError;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

/// The `Content-Type` of `GET /metrics`: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

// ---- a lock-free histogram ------------------------------------------------------------

/// A histogram of durations with fixed buckets, recorded with two atomic adds.
///
/// `prometheus_client`'s own `Histogram` takes a mutex on every observation; handler and
/// query durations are recorded by every worker thread at once, so ours counts each
/// bucket in its own atomic and keeps the sum in whole nanoseconds (an integer add, no
/// compare-and-swap loop on a float).
#[derive(Clone, Debug)]
pub struct DurationHistogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds in seconds, ascending; `+Inf` is implicit (the last count).
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        DurationHistogram(Arc::new(HistogramInner {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.0.bounds.partition_point(|b| *b < secs);
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Socket.IO event handlers and cluster requests: 0.5 ms … 5 s.
pub const FAST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Database queries: 0.5 ms … 10 s (the statement timeout is in this range).
pub const QUERY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How long connections last: 1 s … 1 day.
pub const CONNECTION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];

type HistogramFamily<L> = Family<L, DurationHistogram, fn() -> DurationHistogram>;

fn fast_histogram() -> DurationHistogram {
    DurationHistogram::new(FAST_BUCKETS)
}
fn query_histogram() -> DurationHistogram {
    DurationHistogram::new(QUERY_BUCKETS)
}
fn connection_histogram() -> DurationHistogram {
    DurationHistogram::new(CONNECTION_BUCKETS)
}

// ---- label sets -----------------------------------------------------------------------

/// The client events counted under their own name; any other name is `other`, so a
/// client inventing event names cannot create series.
pub const KNOWN_EVENTS: [&str; 8] = [
    "room:open",
    "room:join",
    "message:send",
    "message:history",
    "typing",
    "notifications:list",
    "notifications:unread_count",
    "notifications:mark_read",
];

/// The label value for an event name: itself when known, else `other`.
pub fn event_label(name: &str) -> &'static str {
    KNOWN_EVENTS
        .iter()
        .find(|e| **e == name)
        .copied()
        .unwrap_or("other")
}

fn event_index(name: &str) -> usize {
    KNOWN_EVENTS
        .iter()
        .position(|e| *e == name)
        .unwrap_or(KNOWN_EVENTS.len())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceReasonLabels {
    pub namespace: Arc<str>,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceEventLabels {
    pub namespace: Arc<str>,
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceTransportLabels {
    pub namespace: Arc<str>,
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    pub operation: &'static str,
    pub pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolStateLabels {
    pub pool: &'static str,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub node: String,
}

// ---- the process-wide registry --------------------------------------------------------

/// Everything counted in this process. Fields are public so a caller with an unusual
/// need can record directly; the functions below cover the usual ones.
pub struct Metrics {
    registry: Registry,
    pub socket_connects: Family<NamespaceLabels, Counter>,
    pub socket_disconnects: Family<NamespaceReasonLabels, Counter>,
    /// How long a socket stayed in its namespace. Deliberately without a user label:
    /// the requirements sketch a `user_id` label here, but every user would become a
    /// separate time series (100k users → 100k × 15 bucket series, kept for weeks) — the
    /// classic cardinality explosion. "How long does user X stay" is a question for the
    /// logs (the disconnect line carries the socket id) or the database, not Prometheus.
    pub connection_duration: HistogramFamily<NamespaceLabels>,
    pub engine_errors: Family<ReasonLabels, Counter>,
    pub auth_failures: Family<NamespaceReasonLabels, Counter>,
    pub events_received: Family<NamespaceEventLabels, Counter>,
    pub events_sent: Family<NamespaceLabels, Counter>,
    pub received_bytes: Family<TransportLabels, Counter>,
    pub sent_bytes: Family<TransportLabels, Counter>,
    pub handler_duration: HistogramFamily<NamespaceLabels>,
    pub ack_timeouts: Family<NamespaceLabels, Counter>,
    pub broadcasts: Family<NamespaceLabels, Counter>,
    pub rate_limited: Family<ClassLabels, Counter>,
    pub query_duration: HistogramFamily<QueryLabels>,
    pub db_errors: Family<QueryLabels, Counter>,
    pub cache_requests: Family<CacheLabels, Counter>,
    pub redis_errors: Family<ComponentLabels, Counter>,
    pub cluster: ClusterMetrics,
    /// Pre-resolved per-transport byte counters: `[polling, websocket]`.
    bytes_in: [Counter; 2],
    bytes_out: [Counter; 2],
}

/// Metrics of the cluster adapter (issue 4), registered here so that they appear in
/// every scrape with help text even before the adapter records anything. Record with
/// `metrics::cluster().published.get_or_create(&TypeLabels { r#type: "broadcast" }).inc()`
/// (resolve the handles once, in the adapter's constructor, where hot); Redis errors of
/// the adapter and presence go to [`redis_error`] with component `adapter` / `presence`.
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

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &METRICS
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
        let r#type = cluster_message_type(channel);
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

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::default();
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {{
                let m = $metric;
                r.register($name, $help, m.clone());
                m
            }};
        }
        let received_bytes: Family<TransportLabels, Counter> = reg!(
            "realtime_received_bytes",
            "Bytes of Engine.IO payload received from clients, by transport.",
            Family::default()
        );
        let sent_bytes: Family<TransportLabels, Counter> = reg!(
            "realtime_sent_bytes",
            "Bytes of Engine.IO payload written to clients, by transport.",
            Family::default()
        );
        let per_transport = |f: &Family<TransportLabels, Counter>| {
            [TransportKind::Polling, TransportKind::Websocket].map(|t| {
                f.get_or_create_owned(&TransportLabels {
                    transport: t.as_str(),
                })
            })
        };
        let bytes_in = per_transport(&received_bytes);
        let bytes_out = per_transport(&sent_bytes);
        let cluster = ClusterMetrics {
            published: reg!(
                "realtime_cluster_messages_published",
                "Adapter messages this node published to the cluster, by type.",
                Family::default()
            ),
            received: reg!(
                "realtime_cluster_messages_received",
                "Adapter messages Redis delivered to this node, by type (a node's own broadcasts and requests come back too).",
                Family::default()
            ),
            request_duration: reg!(
                "realtime_cluster_request_duration_seconds",
                "Time a cluster-wide request took until all answers arrived, by type.",
                HistogramFamily::new_with_constructor(fast_histogram as fn() -> _)
            ),
            request_timeouts: reg!(
                "realtime_cluster_request_timeouts",
                "Cluster-wide requests that did not get every answer in time, by type.",
                Family::default()
            ),
            redis_reconnects: reg!(
                "realtime_redis_reconnects",
                "Reconnections of the cluster adapter's Redis connections.",
                Counter::default()
            ),
            nodes: reg!(
                "realtime_cluster_nodes",
                "Live nodes this node sees in the cluster, itself included.",
                Gauge::default()
            ),
        };
        Metrics {
            socket_connects: reg!(
                "realtime_socket_connects",
                "Sockets that connected to a namespace.",
                Family::default()
            ),
            socket_disconnects: reg!(
                "realtime_socket_disconnects",
                "Sockets that left a namespace, by Socket.IO disconnect reason.",
                Family::default()
            ),
            connection_duration: reg!(
                "realtime_connection_duration_seconds",
                "How long sockets stayed connected (handshake to disconnect), by namespace.",
                HistogramFamily::new_with_constructor(connection_histogram as fn() -> _)
            ),
            engine_errors: reg!(
                "realtime_engine_request_errors",
                "Engine.IO requests refused (bad handshake, unknown session, CORS, draining), by reason.",
                Family::default()
            ),
            auth_failures: reg!(
                "realtime_auth_failures",
                "Namespace connections refused by authentication, by reason.",
                Family::default()
            ),
            events_received: reg!(
                "realtime_events_received",
                "Socket.IO events received from clients, by namespace and event (known events only; others are \"other\").",
                Family::default()
            ),
            events_sent: reg!(
                "realtime_events_sent",
                "Socket.IO events queued to clients (a broadcast counts once per receiver), by namespace.",
                Family::default()
            ),
            received_bytes,
            sent_bytes,
            handler_duration: reg!(
                "realtime_event_handler_duration_seconds",
                "Time from an event's arrival until its handler finished, by namespace.",
                HistogramFamily::new_with_constructor(fast_histogram as fn() -> _)
            ),
            ack_timeouts: reg!(
                "realtime_ack_timeouts",
                "Server emits whose acknowledgement did not arrive in time, by namespace.",
                Family::default()
            ),
            broadcasts: reg!(
                "realtime_broadcasts",
                "Broadcast emits (to a room, several rooms or a namespace), by namespace.",
                Family::default()
            ),
            rate_limited: reg!(
                "realtime_rate_limit_rejections",
                "Requests refused by a rate limit, by event class.",
                Family::default()
            ),
            query_duration: reg!(
                "realtime_db_query_duration_seconds",
                "Database query time including the wait for a pooled connection, by operation and pool.",
                HistogramFamily::new_with_constructor(query_histogram as fn() -> _)
            ),
            db_errors: reg!(
                "realtime_db_errors",
                "Database queries that failed, by operation and pool.",
                Family::default()
            ),
            cache_requests: reg!(
                "realtime_cache_requests",
                "Cache lookups, by cache and result (hit or miss).",
                Family::default()
            ),
            redis_errors: reg!(
                "realtime_redis_errors",
                "Redis commands that failed, by component.",
                Family::default()
            ),
            cluster,
            bytes_in,
            bytes_out,
            registry: r,
        }
    }
}

fn transport_index(t: TransportKind) -> usize {
    match t {
        TransportKind::Polling => 0,
        TransportKind::Websocket => 1,
    }
}

// ---- recording: the hooks the rest of the crate calls ---------------------------------

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

/// Engine.IO bytes read from a client.
#[inline]
pub fn bytes_received(transport: TransportKind, n: usize) {
    if !enabled() {
        return;
    }
    METRICS.bytes_in[transport_index(transport)].inc_by(n as u64);
}

/// Engine.IO bytes written to a client.
#[inline]
pub fn bytes_sent(transport: TransportKind, n: usize) {
    if !enabled() {
        return;
    }
    METRICS.bytes_out[transport_index(transport)].inc_by(n as u64);
}

/// Counts a refused Engine.IO request and gives the error back (for `.response()`).
pub fn engine_error(e: EngineError) -> EngineError {
    if !enabled() {
        return e;
    }
    let reason = match e {
        EngineError::UnknownTransport => "unknown_transport",
        EngineError::UnknownSid => "unknown_sid",
        EngineError::BadHandshakeMethod => "bad_handshake_method",
        EngineError::BadRequest => "bad_request",
        EngineError::Forbidden => "forbidden",
        EngineError::UnsupportedProtocolVersion => "unsupported_protocol_version",
        EngineError::PayloadTooLarge => "payload_too_large",
        EngineError::Draining => "draining",
    };
    METRICS
        .engine_errors
        .get_or_create(&ReasonLabels { reason })
        .inc();
    e
}

/// A namespace connection refused by the auth middleware; `reason` is one of the auth
/// layer's fixed reason codes.
pub fn auth_failure(namespace: &str, reason: &'static str) {
    if !enabled() {
        return;
    }
    METRICS
        .auth_failures
        .get_or_create(&NamespaceReasonLabels {
            namespace: namespace.into(),
            reason,
        })
        .inc();
}

/// A request refused by a rate limit. The class is the limited event (a known name, or
/// `other`).
pub fn rate_limited(event: &str) {
    if !enabled() {
        return;
    }
    METRICS
        .rate_limited
        .get_or_create(&ClassLabels {
            class: event_label(event),
        })
        .inc();
}

/// A cache lookup (`cache`: e.g. `unread_count`).
pub fn cache_lookup(cache: &'static str, hit: bool) {
    if !enabled() {
        return;
    }
    let result = if hit { "hit" } else { "miss" };
    METRICS
        .cache_requests
        .get_or_create(&CacheLabels { cache, result })
        .inc();
}

/// A failed Redis command (`component`: `rate_limit`, `cache`, `adapter`, `presence`,
/// `health`).
pub fn redis_error(component: &'static str) {
    if !enabled() {
        return;
    }
    METRICS
        .redis_errors
        .get_or_create(&ComponentLabels { component })
        .inc();
}

/// Runs one database query, recording its duration (pool wait included) and whether it
/// failed. `operation` names the store method; `pool` is `primary` or `replica`.
pub async fn query<T, E>(
    operation: &'static str,
    pool: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if !enabled() {
        return fut.await;
    }
    let started = Instant::now();
    let result = fut.await;
    let labels = QueryLabels { operation, pool };
    METRICS
        .query_duration
        .get_or_create(&labels)
        .observe(started.elapsed());
    if result.is_err() {
        METRICS.db_errors.get_or_create(&labels).inc();
    }
    result
}

// ---- per namespace ---------------------------------------------------------------------

/// A namespace's handles, resolved once when the namespace is built, so recording an
/// event is an index and an atomic add.
pub struct NamespaceMetrics {
    name: Arc<str>,
    connects: Counter,
    events_received: [Counter; KNOWN_EVENTS.len() + 1],
    events_sent: Counter,
    handler_duration: DurationHistogram,
    connection_duration: DurationHistogram,
    ack_timeouts: Counter,
    broadcasts: Counter,
}

impl NamespaceMetrics {
    pub fn new(namespace: &str) -> Self {
        let m = &*METRICS;
        let name: Arc<str> = namespace.into();
        let ns = NamespaceLabels {
            namespace: name.clone(),
        };
        let event = |event: &'static str| {
            m.events_received
                .get_or_create_owned(&NamespaceEventLabels {
                    namespace: name.clone(),
                    event,
                })
        };
        let events_received =
            std::array::from_fn(|i| event(KNOWN_EVENTS.get(i).unwrap_or(&"other")));
        NamespaceMetrics {
            connects: m.socket_connects.get_or_create_owned(&ns),
            events_received,
            events_sent: m.events_sent.get_or_create_owned(&ns),
            handler_duration: m.handler_duration.get_or_create_owned(&ns),
            connection_duration: m.connection_duration.get_or_create_owned(&ns),
            ack_timeouts: m.ack_timeouts.get_or_create_owned(&ns),
            broadcasts: m.broadcasts.get_or_create_owned(&ns),
            name,
        }
    }

    /// A socket finished connecting: counted, and logged at debug.
    pub fn connected(&self, socket: &impl std::fmt::Display, transport: TransportKind) {
        if enabled() {
            self.connects.inc();
        }
        tracing::debug!(
            nsp = %self.name,
            socket = %socket,
            transport = transport.as_str(),
            "socket connected"
        );
    }

    /// A connected socket left: counted by reason, its lifetime observed, logged at debug.
    /// `since` is when its connection's handshake arrived.
    /// Sockets that never finished connecting (refused, or closed meanwhile) are not
    /// counted (`connected` false), just as they were never counted as connected.
    pub fn disconnected(
        &self,
        connected: bool,
        socket: &impl std::fmt::Display,
        transport: TransportKind,
        reason: &'static str,
        since: SystemTime,
    ) {
        if !connected {
            return;
        }
        let duration = since.elapsed().unwrap_or_default();
        if enabled() {
            self.connection_duration.observe(duration);
            METRICS
                .socket_disconnects
                .get_or_create(&NamespaceReasonLabels {
                    namespace: self.name.clone(),
                    reason,
                })
                .inc();
        }
        tracing::debug!(
            nsp = %self.name,
            socket = %socket,
            transport = transport.as_str(),
            reason,
            duration_ms = duration.as_millis() as u64,
            "socket disconnected"
        );
    }

    /// An event arrived from a client.
    #[inline]
    pub fn event_received(&self, name: &str) {
        if enabled() {
            self.events_received[event_index(name)].inc();
        }
    }

    /// Events queued to `n` clients.
    #[inline]
    pub fn events_sent(&self, n: usize) {
        if enabled() {
            self.events_sent.inc_by(n as u64);
        }
    }

    /// A broadcast queued for `sent` local sockets; gives `sent` back.
    #[inline]
    pub fn broadcast(&self, sent: usize) -> usize {
        if enabled() {
            self.broadcasts.inc();
            self.events_sent.inc_by(sent as u64);
        }
        sent
    }

    pub fn ack_timeout(&self) {
        if enabled() {
            self.ack_timeouts.inc();
        }
    }

    /// Wraps an event handler so that its duration (first poll to completion, however
    /// often it awaits) lands in the handler histogram.
    /// With recording off, the clock is not even read.
    pub fn timed<F: Future<Output = ()> + Unpin>(&self, fut: F) -> Timed<F> {
        Timed {
            fut,
            clock: enabled().then(|| (Instant::now(), self.handler_duration.clone())),
        }
    }
}

/// A future that records how long it took; see [`NamespaceMetrics::timed`].
pub struct Timed<F> {
    fut: F,
    /// When it started, and where it is recorded (`None`: recording is off).
    clock: Option<(Instant, DurationHistogram)>,
}

impl<F: Future<Output = ()> + Unpin> Future for Timed<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let poll = Pin::new(&mut self.fut).poll(cx);
        if poll.is_ready() {
            if let Some((started, histogram)) = &self.clock {
                histogram.observe(started.elapsed());
            }
        }
        poll
    }
}

// ---- scraping --------------------------------------------------------------------------

/// What one server knows at scrape time, beyond the process-wide counters.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// This node's id (for `realtime_build_info`).
    pub node: String,
    /// Sockets now, by namespace and transport.
    pub connections: Vec<(String, TransportKind, i64)>,
    /// Engine.IO sessions now, by transport.
    pub sessions: Vec<(TransportKind, i64)>,
    /// Rooms with members, by namespace.
    pub rooms: Vec<(String, i64)>,
    /// Database pools: (pool, in use, idle, max).
    pub pools: Vec<(&'static str, i64, i64, i64)>,
}

/// Renders `/metrics`: the process-wide registry, then this server's snapshot and the
/// process statistics, in the Prometheus text format 0.0.4.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &METRICS.registry);
    let _ =
        prometheus_client::encoding::prometheus_text::encode(&mut out, &scrape_registry(snapshot));
    out
}

fn scrape_registry(s: &Snapshot) -> Registry {
    let mut r = Registry::default();
    let build: Family<BuildLabels, Gauge> = Family::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            node: s.node.clone(),
        })
        .set(1);
    r.register(
        "realtime_build_info",
        "Always 1; the labels say which version runs under which node id.",
        build,
    );
    let connections: Family<NamespaceTransportLabels, Gauge> = Family::default();
    for (ns, t, n) in &s.connections {
        connections
            .get_or_create(&NamespaceTransportLabels {
                namespace: ns.as_str().into(),
                transport: t.as_str(),
            })
            .set(*n);
    }
    r.register(
        "realtime_connections",
        "Sockets connected now, by namespace and current transport.",
        connections,
    );
    let sessions: Family<TransportLabels, Gauge> = Family::default();
    for (t, n) in &s.sessions {
        sessions
            .get_or_create(&TransportLabels {
                transport: t.as_str(),
            })
            .set(*n);
    }
    r.register(
        "realtime_engine_sessions",
        "Engine.IO sessions (client connections) open now, by current transport.",
        sessions,
    );
    let rooms: Family<NamespaceLabels, Gauge> = Family::default();
    for (ns, n) in &s.rooms {
        rooms
            .get_or_create(&NamespaceLabels {
                namespace: ns.as_str().into(),
            })
            .set(*n);
    }
    r.register(
        "realtime_rooms",
        "Rooms with at least one member on this node (own-id rooms excluded), by namespace.",
        rooms,
    );
    let pool_conns: Family<PoolStateLabels, Gauge> = Family::default();
    let pool_max: Family<PoolLabels, Gauge> = Family::default();
    for (pool, in_use, idle, max) in &s.pools {
        for (state, n) in [("in_use", in_use), ("idle", idle)] {
            pool_conns
                .get_or_create(&PoolStateLabels { pool, state })
                .set(*n);
        }
        pool_max.get_or_create(&PoolLabels { pool }).set(*max);
    }
    r.register(
        "realtime_db_pool_connections",
        "Database pool connections now, by pool and state (in_use, idle).",
        pool_conns,
    );
    r.register(
        "realtime_db_pool_max_connections",
        "The configured size limit of each database pool.",
        pool_max,
    );
    process::register(&mut r);
    r
}

/// Process statistics from `/proc/self` (Linux), read at scrape time, under the
/// standard names every Prometheus client library uses.
mod process {
    use super::*;

    /// Clock ticks per second of `/proc` times: USER_HZ, 100 on every Linux ABI.
    const TICKS_PER_SECOND: f64 = 100.0;

    #[derive(Debug, Default, PartialEq)]
    pub(super) struct Stats {
        pub cpu_seconds: f64,
        pub start_time_seconds: f64,
        pub resident_bytes: i64,
        pub virtual_bytes: i64,
        pub open_fds: i64,
        pub max_fds: i64,
    }

    pub(super) fn register(r: &mut Registry) {
        let Some(s) = read() else { return };
        r.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            ConstCounter::new(s.cpu_seconds),
        );
        let gauge = |v: i64| {
            let g: Gauge = Gauge::default();
            g.set(v);
            g
        };
        let start: Gauge<f64, AtomicU64> = Gauge::default();
        start.set(s.start_time_seconds);
        r.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            start,
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            gauge(s.resident_bytes),
        );
        r.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            gauge(s.virtual_bytes),
        );
        r.register(
            "process_open_fds",
            "Number of open file descriptors.",
            gauge(s.open_fds),
        );
        r.register(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            gauge(s.max_fds),
        );
    }

    /// `None` where there is no `/proc` (not Linux): the process metrics are then absent.
    pub(super) fn read() -> Option<Stats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        let mut stats = parse_stat(&stat, boot_time)?;
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let kib = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
                    .map(|k| k * 1024)
            };
            stats.resident_bytes = kib("VmRSS:").unwrap_or(0);
            stats.virtual_bytes = kib("VmSize:").unwrap_or(0);
        }
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as i64)
            .unwrap_or(0);
        stats.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse::<i64>().ok())
            })
            .unwrap_or(0);
        Some(stats)
    }

    /// `/proc/self/stat`: the command name may contain spaces and parentheses, so fields
    /// are counted from the last `)`. utime, stime and starttime are fields 14, 15, 22.
    pub(super) fn parse_stat(stat: &str, boot_time: f64) -> Option<Stats> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state).
        let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
        Some(Stats {
            cpu_seconds: (field(14)? + field(15)?) / TICKS_PER_SECOND,
            start_time_seconds: boot_time + field(22)? / TICKS_PER_SECOND,
            ..Stats::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_in_seconds() {
        let h = DurationHistogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // le is inclusive
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        let mut r = Registry::default();
        r.register("t_seconds", "test", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        assert!(out.contains("t_seconds_bucket{le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"0.01\"} 3\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("t_seconds_count 4\n"), "{out}");
        assert!(out.contains("t_seconds_sum 2.0065\n"), "{out}");
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn unknown_events_share_one_label() {
        assert_eq!(event_label("message:send"), "message:send");
        assert_eq!(event_label("anything-a-client-invents"), "other");
        assert_eq!(event_index("other"), KNOWN_EVENTS.len());
    }

    #[test]
    fn proc_stat_is_parsed_after_the_command_name() {
        let line = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1000 123456 789 18446744073709551615";
        let s = process::parse_stat(line, 1_700_000_000.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
    }

    #[test]
    fn render_has_build_info_and_no_openmetrics_eof() {
        let out = render(&Snapshot {
            node: "n1".into(),
            connections: vec![("/chat".into(), TransportKind::Websocket, 2)],
            ..Snapshot::default()
        });
        assert!(out.contains("realtime_build_info{version=\""), "{out}");
        assert!(out.contains("node=\"n1\"} 1\n"), "{out}");
        assert!(
            out.contains("realtime_connections{namespace=\"/chat\",transport=\"websocket\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE realtime_socket_connects_total counter\n"),
            "{out}"
        );
        assert!(!out.contains("# EOF"));
    }
}
