//! Label sets, and the fixed label values that keep every metric's cardinality small.
//!
//! Values are `&'static str` given by the layer that records (a transport's name, an
//! error's reason): this module names no subsystem type. Only names whose series must
//! exist before the first recording (so a scrape shows them at zero and `rate()` sees the
//! first increase) or that come from clients (so a client cannot create series) are listed
//! here.

use prometheus_client::encoding::EncodeLabelSet;
use std::sync::Arc;

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

/// The `transport` label values, as the transport layer names them
/// (`TransportKind::as_str()`; a test there keeps the two lists equal). Their byte
/// counters are created at zero with the registry and resolved once, so recording bytes
/// never looks a label set up.
pub const TRANSPORTS: [&str; 2] = ["polling", "websocket"];

/// The `component` values of `realtime_redis_errors_total`: every Redis user of the
/// server. Their series exist at zero from the start.
pub const REDIS_COMPONENTS: [&str; 5] = ["adapter", "cache", "health", "presence", "rate_limit"];

/// The label value for an event name: itself when known, else `other`.
pub fn event_label(name: &str) -> &'static str {
    KNOWN_EVENTS
        .iter()
        .find(|e| **e == name)
        .copied()
        .unwrap_or("other")
}

/// Where an event's counter sits in a namespace's handles: its place in
/// [`KNOWN_EVENTS`], or one past the end for `other`.
pub(super) fn event_index(name: &str) -> usize {
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
pub struct NamespaceResultLabels {
    pub namespace: Arc<str>,
    pub result: &'static str,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_events_share_one_label() {
        assert_eq!(event_label("message:send"), "message:send");
        assert_eq!(event_label("anything-a-client-invents"), "other");
        assert_eq!(event_index("other"), KNOWN_EVENTS.len());
    }
}
