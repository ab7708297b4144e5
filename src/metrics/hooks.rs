//! The recording hooks the rest of the crate calls: one line at the call site, labels
//! passed in by the caller, nothing done while recording is off.

use super::enabled;
use super::labels::{
    event_label, CacheLabels, ClassLabels, ComponentLabels, NamespaceReasonLabels, QueryLabels,
    ReasonLabels, TransportLabels, TRANSPORTS,
};
use super::registry::METRICS;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::future::Future;
use std::time::Instant;

/// Engine.IO bytes read from a client; `transport` is the transport's name (one of
/// [`TRANSPORTS`]).
#[inline]
pub fn bytes_received(transport: &'static str, n: usize) {
    super::tally::tally_bytes_in(n);
    if !enabled() {
        return;
    }
    add_bytes(&METRICS.received_bytes, &METRICS.bytes_in, transport, n);
}

/// Engine.IO bytes written to a client; `transport` as for [`bytes_received`].
#[inline]
pub fn bytes_sent(transport: &'static str, n: usize) {
    super::tally::tally_bytes_out(n);
    if !enabled() {
        return;
    }
    add_bytes(&METRICS.sent_bytes, &METRICS.bytes_out, transport, n);
}

/// Adds `n` to `transport`'s counter: the pre-resolved one for a known transport (two
/// short string compares, no lookup), else the family's, looked up.
#[inline]
fn add_bytes(
    family: &Family<TransportLabels, Counter>,
    resolved: &[Counter; TRANSPORTS.len()],
    transport: &'static str,
    n: usize,
) {
    match TRANSPORTS.iter().position(|t| *t == transport) {
        Some(i) => resolved[i].inc_by(n as u64),
        None => family
            .get_or_create(&TransportLabels { transport })
            .inc_by(n as u64),
    };
}

/// A refused Engine.IO request. `reason` is the error's label, which the transport layer
/// owns (`EngineError::reason()`): one fixed snake_case name per kind of refusal.
pub fn engine_error(reason: &'static str) {
    if !enabled() {
        return;
    }
    METRICS
        .engine_errors
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// Declares the engine's error reasons, so each series exists at zero before the first
/// refusal (a dashboard shows 0, not "No data"; `rate()` sees the first increase).
pub fn declare_engine_errors(reasons: &[&'static str]) {
    for &reason in reasons {
        let _ = METRICS
            .engine_errors
            .get_or_create_owned(&ReasonLabels { reason });
    }
}

/// Declares the auth layer's refusal reasons for `namespace` (see
/// [`declare_engine_errors`]).
pub fn declare_auth_failures(namespace: &str, reasons: &[&'static str]) {
    let namespace: std::sync::Arc<str> = namespace.into();
    for &reason in reasons {
        let _ = METRICS
            .auth_failures
            .get_or_create_owned(&NamespaceReasonLabels {
                namespace: namespace.clone(),
                reason,
            });
    }
}

/// Declares the store's operations on each pool (see [`declare_engine_errors`]).
pub fn declare_queries(operations: &[&'static str], pools: &[&'static str]) {
    for &operation in operations {
        for &pool in pools {
            let _ = METRICS
                .db_errors
                .get_or_create_owned(&QueryLabels { operation, pool });
        }
    }
}

/// Declares cache `cache`'s hit and miss series (see [`declare_engine_errors`]).
pub fn declare_cache(cache: &'static str) {
    for result in ["hit", "miss"] {
        let _ = METRICS
            .cache_requests
            .get_or_create_owned(&CacheLabels { cache, result });
    }
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

/// A failed Redis command (`component`: one of [`super::labels::REDIS_COMPONENTS`]).
pub fn redis_error(component: &'static str) {
    if !enabled() {
        return;
    }
    METRICS
        .redis_errors
        .get_or_create(&ComponentLabels { component })
        .inc();
}

/// The Redis master moved and this node's commands follow it (Sentinel failover).
pub fn redis_master_switch() {
    if enabled() {
        METRICS.redis_master_switches.inc();
    }
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
