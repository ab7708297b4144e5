//! `server_stats`, every 2 s, to every Admin UI of the cluster: this node's identity,
//! uptime, connections, namespaces and the "aggregated events" (connections opened and
//! closed, packets and bytes in and out, per second), which the UI charts.
//!
//! The per-second figures come from sampling the engine's running totals
//! ([`crate::metrics::tally`]) once a second, so production mode costs nothing per event.

use crate::metrics::Tally;
use crate::protocol::engineio::TransportKind;
use crate::server::Io;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the stats go out (the package's interval).
pub const STATS_EVERY: Duration = Duration::from_secs(2);

/// One per-second bucket of an aggregated event, as the package sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregated {
    /// Epoch ms of the second it counts, truncated to the second.
    pub timestamp: u64,
    pub kind: &'static str,
    /// The close reason, for `rawDisconnection` only.
    pub sub_type: Option<&'static str>,
    pub count: u64,
}

impl Aggregated {
    /// `{timestamp, type, subType?, count}`, in the package's key order.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::Map::new();
        v.insert("timestamp".into(), json!(self.timestamp));
        v.insert("type".into(), json!(self.kind));
        if let Some(sub) = self.sub_type {
            v.insert("subType".into(), json!(sub));
        }
        v.insert("count".into(), json!(self.count));
        Value::Object(v)
    }
}

/// What happened between two readings of the totals, stamped with the second it ends in.
pub fn deltas(before: &Tally, after: &Tally, now: SystemTime) -> Vec<Aggregated> {
    let ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let timestamp = ms - ms % 1000;
    let bucket = |kind, sub_type, count| Aggregated {
        timestamp,
        kind,
        sub_type,
        count,
    };
    let totals = [
        ("rawConnection", before.opened, after.opened),
        ("packetsIn", before.packets_in, after.packets_in),
        ("packetsOut", before.packets_out, after.packets_out),
        ("bytesIn", before.bytes_in, after.bytes_in),
        ("bytesOut", before.bytes_out, after.bytes_out),
    ];
    let mut out: Vec<Aggregated> = totals
        .iter()
        .map(|&(kind, was, now)| bucket(kind, None, now.saturating_sub(was)))
        .collect();
    for (reason, total) in &after.closed {
        let was = before
            .closed
            .iter()
            .find(|(r, _)| r == reason)
            .map_or(0, |(_, n)| *n);
        out.push(bucket(
            "rawDisconnection",
            Some(reason),
            total.saturating_sub(was),
        ));
    }
    out.retain(|a| a.count > 0);
    out
}

/// This node's `server_stats` payload.
pub fn server_stats(io: &Io, identity: &Identity, aggregated: &[Aggregated]) -> Value {
    let sessions = io.engine().sessions();
    let polling = sessions
        .iter()
        .filter(|s| s.transport() == TransportKind::Polling)
        .count();
    let mut namespaces: Vec<(String, usize)> = io
        .namespaces()
        .iter()
        .map(|ns| (ns.name.clone(), ns.socket_count()))
        .collect();
    namespaces.sort();
    json!({
        "serverId": identity.server_id,
        "hostname": identity.hostname,
        "pid": std::process::id(),
        "uptime": identity.started.elapsed().as_secs_f64(),
        "clientsCount": sessions.len(),
        "pollingClientsCount": polling,
        "aggregatedEvents": aggregated.iter().map(Aggregated::to_json).collect::<Vec<_>>(),
        "namespaces": namespaces
            .into_iter()
            .map(|(name, n)| json!({"name": name, "socketsCount": n}))
            .collect::<Vec<_>>(),
    })
}

/// Who this node is in the UI.
pub struct Identity {
    pub server_id: String,
    pub hostname: String,
    pub started: Instant,
}

impl Identity {
    pub fn new(server_id: String) -> Identity {
        Identity {
            server_id,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            started: Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_per_kind_and_reason_and_skip_zeros() {
        let before = Tally {
            opened: 3,
            closed: vec![("transport close", 1)],
            packets_in: 10,
            packets_out: 20,
            bytes_in: 100,
            bytes_out: 400,
        };
        let after = Tally {
            opened: 5,
            closed: vec![("transport close", 1), ("ping timeout", 2)],
            packets_in: 10,
            packets_out: 23,
            bytes_in: 100,
            bytes_out: 460,
        };
        let now = UNIX_EPOCH + Duration::from_millis(1_665_129_403_987);
        let json: Vec<Value> = deltas(&before, &after, now)
            .iter()
            .map(Aggregated::to_json)
            .collect();
        assert_eq!(
            json,
            [
                json!({"timestamp": 1_665_129_403_000u64, "type": "rawConnection", "count": 2}),
                json!({"timestamp": 1_665_129_403_000u64, "type": "packetsOut", "count": 3}),
                json!({"timestamp": 1_665_129_403_000u64, "type": "bytesOut", "count": 60}),
                json!({"timestamp": 1_665_129_403_000u64, "type": "rawDisconnection", "subType": "ping timeout", "count": 2}),
            ]
        );
    }
}
