//! What a worker measures: HdrHistograms (microseconds) and counters, serialized for the
//! trip to the coordinator (HdrHistogram V2 + base64) and merged there.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The histograms, by name, in the order the report shows them.
pub const HISTOGRAMS: [&str; 11] = [
    "connect",
    "message_latency",
    "fanout_completion",
    "ack_rtt",
    "api_response",
    "api_to_socket",
    "sender_lag",
    "reconnect",
    "message_latency_in_drills",
    "api_response_in_drills",
    "chat_message_latency",
];

/// A latency histogram: 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records a duration in milliseconds (clamped into the histogram's range).
pub fn record_ms(h: &mut Histogram<u64>, ms: f64) {
    let us = (ms * 1000.0).round().clamp(1.0, 600_000_000.0) as u64;
    h.saturating_record(us);
}

/// All of a worker's histograms.
#[derive(Debug, Clone)]
pub struct Histograms(pub Vec<Histogram<u64>>);

impl Default for Histograms {
    fn default() -> Self {
        Histograms(HISTOGRAMS.iter().map(|_| histogram()).collect())
    }
}

/// Indexes into [`Histograms`].
#[derive(Debug, Clone, Copy)]
pub enum H {
    Connect = 0,
    Latency = 1,
    Fanout = 2,
    Ack = 3,
    Api = 4,
    ApiToSocket = 5,
    SenderLag = 6,
    /// Churn and drills: from a client's drop to being back in its room.
    Reconnect = 7,
    /// Message latency of what was sent inside a drill window (`Latency` has the rest).
    LatencyDrill = 8,
    /// API response time of what was sent inside a drill window (`Api` has the rest).
    ApiDrill = 9,
    /// Stored /chat messages' latency outside drill windows (also in `Latency`): judged
    /// on its own, so the few stored messages of a mixed run cannot hide in the p99 of
    /// the many /bench ones.
    ChatLatency = 10,
}

impl Histograms {
    pub fn get(&self, h: H) -> &Histogram<u64> {
        &self.0[h as usize]
    }

    pub fn record(&mut self, h: H, ms: f64) {
        record_ms(&mut self.0[h as usize], ms);
    }

    /// Adds another worker's histograms into these.
    pub fn merge(&mut self, other: &Histograms) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.add(b).expect("histograms with the same bounds merge");
        }
    }

    /// V2-serialized, base64-encoded, one per histogram.
    pub fn encode(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|h| {
                let mut buf = Vec::new();
                V2Serializer::new()
                    .serialize(h, &mut buf)
                    .expect("serializing to memory cannot fail");
                base64::engine::general_purpose::STANDARD.encode(buf)
            })
            .collect()
    }

    pub fn decode(encoded: &[String]) -> Result<Histograms, String> {
        if encoded.len() != HISTOGRAMS.len() {
            return Err(format!(
                "expected {} histograms, got {}",
                HISTOGRAMS.len(),
                encoded.len()
            ));
        }
        let mut out = Vec::new();
        for e in encoded {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(e)
                .map_err(|e| format!("histogram base64: {e}"))?;
            let h: Histogram<u64> = Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .map_err(|e| format!("histogram: {e:?}"))?;
            let mut full = histogram();
            full.add(&h)
                .map_err(|e| format!("histogram range: {e:?}"))?;
            out.push(full);
        }
        Ok(Histograms(out))
    }
}

/// The counters of a run (summed over workers).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    /// Clients asked for.
    pub clients: u64,
    /// Clients connected and joined before the schedule started.
    pub connected: u64,
    /// Clients that never got there (error or timeout).
    pub failed: u64,
    /// Clients that were connected and lost the connection before the end.
    pub dropped: u64,
    /// Clients still connected at the end.
    pub held: u64,
    /// Messages published (their sender was connected).
    pub messages_sent: u64,
    /// Scheduled messages not sent because their sender was not connected.
    pub messages_skipped: u64,
    /// Publishes whose write failed (their expected deliveries are not counted).
    pub send_failed: u64,
    /// Publish acks received.
    pub acks: u64,
    /// Deliveries expected: for each message, the room's other members in session when it
    /// was sent (connected, or dropped by the churn and reconnecting).
    pub expected: u64,
    /// Distinct expected deliveries received.
    pub received: u64,
    /// Deliveries received again.
    pub duplicates: u64,
    /// Deliveries nobody expected (the receiver joined after the message was sent).
    pub unexpected: u64,
    /// API requests sent.
    pub api_sent: u64,
    /// API requests answered 201.
    pub api_ok: u64,
    /// API requests that failed (status or connection).
    pub api_errors: u64,
    /// API requests with no answer by the end of the run (drain included).
    pub api_unanswered: u64,
    /// Scheduled API requests skipped because their target was not connected.
    pub api_skipped: u64,
    /// Notifications expected on a socket (API answered 201, target connected).
    pub notifications_expected: u64,
    /// Notifications received.
    pub notifications_received: u64,
    /// Notifications received again.
    pub notifications_duplicated: u64,
    /// Clients whose first CONNECT reply carried a `pid`: the nodes run with connection
    /// state recovery on.
    pub pid_connects: u64,
    /// `--churn`: transports dropped on purpose (the client then reconnects).
    pub churn_drops: u64,
    /// Scheduled drops that found no client to drop.
    pub churn_skipped: u64,
    /// Dropped clients back in their room.
    pub reconnects: u64,
    /// Reconnections whose room-message socket was recovered (the same pid came back).
    pub recovered: u64,
    /// Reconnections that got a fresh socket (and joined their room again).
    pub not_recovered: u64,
    /// Reconnection attempts that failed (each is retried after the next delay).
    pub reconnect_errors: u64,
    /// Dropped clients still reconnecting at the end of the run.
    pub away_at_end: u64,
    /// Distinct expected deliveries that came replayed, before their socket's CONNECT
    /// reply (counted in `received` too).
    pub replayed: u64,
    /// Drills: connections that ended on their own (node killed or drained, Redis
    /// gone…) while the client was in session; each client then reconnected.
    #[serde(default)]
    pub disconnects: u64,
    /// Lost deliveries, by cause (they add up to [`Counters::lost`] when nothing was
    /// refused): the receiver's connection went down between the send and the end
    /// (connection state recovery is what brings these back) …
    #[serde(default)]
    pub lost_reconnecting: u64,
    /// … the receiver stayed connected and the sender had its ack: what the server
    /// promised and did not deliver …
    #[serde(default)]
    pub lost_acked: u64,
    /// … the receiver stayed connected, the sender never had its ack (it knows to retry).
    #[serde(default)]
    pub lost_unacked: u64,
    /// Publishes whose ack never came.
    #[serde(default)]
    pub unacked: u64,
    /// Notifications answered 201 and missed because their target's connection went
    /// down after the request (in `notifications_lost` too).
    #[serde(default)]
    pub notifications_lost_reconnecting: u64,
    /// API requests sent inside a drill window that failed or had no answer (in
    /// `api_errors` / `api_unanswered` too).
    #[serde(default)]
    pub api_failed_in_drill: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        macro_rules! sum {
            ($($f:ident),*) => { $(self.$f += o.$f;)* };
        }
        sum!(
            clients,
            connected,
            failed,
            dropped,
            held,
            messages_sent,
            messages_skipped,
            send_failed,
            acks,
            expected,
            received,
            duplicates,
            unexpected,
            api_sent,
            api_ok,
            api_errors,
            api_unanswered,
            api_skipped,
            notifications_expected,
            notifications_received,
            notifications_duplicated,
            pid_connects,
            churn_drops,
            churn_skipped,
            reconnects,
            recovered,
            not_recovered,
            reconnect_errors,
            away_at_end,
            replayed,
            disconnects,
            lost_reconnecting,
            lost_acked,
            lost_unacked,
            unacked,
            notifications_lost_reconnecting,
            api_failed_in_drill
        );
    }

    /// Expected deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Whether the nodes run with connection state recovery, from their CONNECT replies:
    /// a `pid` in every client's (`Some(true)`), in none (`Some(false)`), or in some only
    /// (`None`: nodes set differently).
    pub fn recovery_on(&self) -> Option<bool> {
        match self.pid_connects {
            0 => Some(false),
            n if n >= self.connected => Some(true),
            _ => None,
        }
    }

    pub fn notifications_lost(&self) -> u64 {
        self.notifications_expected
            .saturating_sub(self.notifications_received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_histograms_equal_one_histogram_of_all_values() {
        let mut a = Histograms::default();
        let mut b = Histograms::default();
        let mut all = Histograms::default();
        for i in 1..=1000u32 {
            let ms = f64::from(i) / 10.0;
            if i % 3 == 0 { &mut a } else { &mut b }.record(H::Latency, ms);
            all.record(H::Latency, ms);
        }
        b.record(H::Api, 250.0);
        all.record(H::Api, 250.0);
        // Through the wire format, as workers send them.
        let mut merged = Histograms::decode(&a.encode()).unwrap();
        merged.merge(&Histograms::decode(&b.encode()).unwrap());
        for h in [H::Latency, H::Api, H::Connect] {
            let (m, x) = (merged.get(h), all.get(h));
            assert_eq!(m.len(), x.len());
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(m.value_at_quantile(q), x.value_at_quantile(q), "{h:?} {q}");
            }
        }
        assert_eq!(merged.get(H::Latency).max(), all.get(H::Latency).max());
        assert!(Histograms::decode(&["x".to_owned()]).is_err());
    }

    #[test]
    fn counters_add_and_loss() {
        let mut a = Counters {
            expected: 10,
            received: 9,
            notifications_expected: 3,
            notifications_received: 3,
            ..Default::default()
        };
        a.add(&Counters {
            expected: 5,
            received: 5,
            duplicates: 2,
            ..Default::default()
        });
        assert_eq!(a.lost(), 1);
        assert_eq!(a.duplicates, 2);
        assert_eq!(a.notifications_lost(), 0);
    }

    #[test]
    fn recovery_on_the_nodes_is_read_from_the_pids() {
        let c = |pid_connects| Counters {
            connected: 10,
            pid_connects,
            ..Default::default()
        };
        assert_eq!(c(0).recovery_on(), Some(false));
        assert_eq!(c(10).recovery_on(), Some(true));
        assert_eq!(c(4).recovery_on(), None);
    }
}
