//! Per-namespace recording: the handles a namespace keeps ([`NamespaceMetrics`]) and the
//! timer around its event handlers ([`Timed`]).

use super::enabled;
use super::histogram::DurationHistogram;
use super::labels::{
    event_index, NamespaceEventLabels, NamespaceLabels, NamespaceReasonLabels,
    NamespaceResultLabels, KNOWN_EVENTS,
};
use super::registry::METRICS;
use prometheus_client::metrics::counter::Counter;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

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
    recovered: Counter,
    not_recovered: Counter,
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
        let recovery = |result: &'static str| {
            m.recoveries.get_or_create_owned(&NamespaceResultLabels {
                namespace: name.clone(),
                result,
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
            recovered: recovery("recovered"),
            not_recovered: recovery("not_recovered"),
            name,
        }
    }

    /// A socket finished connecting: counted, and logged at debug. `transport` is the
    /// name of the transport it connected over.
    pub fn connected(&self, socket: &impl std::fmt::Display, transport: &'static str) {
        if enabled() {
            self.connects.inc();
        }
        tracing::debug!(
            nsp = %self.name,
            socket = %socket,
            transport,
            "socket connected"
        );
    }

    /// Declares the server's disconnect reasons for this namespace, so each series
    /// exists at zero before the first disconnect.
    pub fn declare_disconnect_reasons(&self, reasons: &[&'static str]) {
        for &reason in reasons {
            let _ = METRICS
                .socket_disconnects
                .get_or_create_owned(&NamespaceReasonLabels {
                    namespace: self.name.clone(),
                    reason,
                });
        }
    }

    /// A connected socket left: counted by reason, its lifetime observed, logged at debug.
    /// `since` is when its connection's handshake arrived; `transport` the name of the
    /// transport it was on.
    /// Sockets that never finished connecting (refused, or closed meanwhile) are not
    /// counted (`connected` false), just as they were never counted as connected.
    pub fn disconnected(
        &self,
        connected: bool,
        socket: &impl std::fmt::Display,
        transport: &'static str,
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
            transport,
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

    /// A CONNECT asked to recover its session (`auth.pid` + `auth.offset`): whether it
    /// got it back.
    pub fn recovery(&self, recovered: bool) {
        if enabled() {
            if recovered {
                self.recovered.inc();
            } else {
                self.not_recovered.inc();
            }
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
