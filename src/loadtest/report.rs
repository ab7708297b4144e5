//! The run's report: one [`Report`], shown as comfy-tables and written as JSON.

use super::drill::Timeline;
use super::gate::Check;
use super::late::{LateBySecond, LateSummary, LATE_MS};
use super::memory::RssTrend;
use super::procwatch::ProcUsage;
use super::stats::{Counters, Histograms, HISTOGRAMS};
use super::stored::StoredCheck;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, Table};
use serde::Serialize;
use serde_json::{json, Value};

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub name: &'static str,
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub fn percentiles(h: &Histograms) -> Vec<Percentiles> {
    HISTOGRAMS
        .iter()
        .zip(&h.0)
        .map(|(name, h)| {
            let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            Percentiles {
                name,
                count: h.len(),
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: h.max() as f64 / 1000.0,
            }
        })
        .collect()
}

/// A server node's resources, from its /metrics.
#[derive(Debug, Clone, Serialize)]
pub struct NodeUsage {
    pub node: String,
    pub rss_bytes: Option<f64>,
    /// CPU seconds used during the schedule (difference of process_cpu_seconds_total).
    pub cpu_seconds: Option<f64>,
    /// Cluster messages Redis delivered to the node during the schedule (difference of
    /// realtime_cluster_messages_received_total): the work a sharded adapter spares.
    pub cluster_received: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Value,
    pub counters: Counters,
    pub lost: u64,
    pub notifications_lost: u64,
    pub deliveries_per_s: f64,
    pub run_seconds: f64,
    pub histograms_ms: Vec<Percentiles>,
    /// Room messages over [`LATE_MS`](super::late::LATE_MS): how many, and the seconds
    /// of the schedule that had the most.
    pub late: LateSummary,
    /// The same by every second of the schedule, for plotting.
    pub late_by_second: LateBySecond,
    pub workers: usize,
    pub client_cpu_seconds: f64,
    pub client_memory_per_connection_bytes: Option<f64>,
    /// Share of the whole machine's CPU time that was busy during the schedule (0–1;
    /// `None` where `/proc/stat` is missing): near 1, latencies are queueing on this box.
    pub machine_cpu_busy: Option<f64>,
    pub nodes: Vec<NodeUsage>,
    /// CPU seconds of the redis-server `--spawn-nodes` started, during the schedule.
    pub redis_cpu_seconds: Option<f64>,
    pub gate: Value,
    pub checks: Vec<Check>,
    pub pass: bool,
    /// What the drills did, when the run had any.
    pub drills: Option<Timeline>,
    /// Chat on a database the nodes shared: what it holds of the acked messages.
    pub stored: Option<StoredCheck>,
    /// `--sample-rss-every`: each node's memory over the schedule, and its slope.
    pub memory: Option<RssTrend>,
    /// `--watch-pid`: each process's CPU and memory from `/proc`.
    pub processes: Vec<ProcUsage>,
    pub limits: Vec<String>,
    pub errors: Vec<String>,
}

/// Where the late room messages were: spread over the run or in a few seconds.
fn late_line(late: &LateSummary) -> String {
    if late.late == 0 {
        return String::new();
    }
    let worst: Vec<String> = late
        .worst
        .iter()
        .map(|s| {
            format!(
                "{} s: {} (max {:.0} ms)",
                s.second,
                num(u64::from(s.late)),
                s.max_ms
            )
        })
        .collect();
    format!(
        "messages over {LATE_MS} ms: {} in {} seconds of the schedule; {:.0} % in the worst {}: {}\n",
        num(late.late),
        late.seconds_with_late,
        late.share_in_worst * 100.0,
        late.worst.len(),
        worst.join(", ")
    )
}

/// A node life's memory slope, with its connections and the slope at equal connections
/// when they could be told apart.
fn rss_slope(s: &super::memory::RssSlope) -> String {
    let mut out = format!(
        "{:+.1} KiB/min over {} samples ({:.1} → {:.1} MiB",
        s.bytes_per_minute / 1024.0,
        s.samples,
        s.first_bytes / 1_048_576.0,
        s.last_bytes / 1_048_576.0
    );
    if let (Some(a), Some(b)) = (s.first_connections, s.last_connections) {
        out.push_str(&format!(
            ", {} → {} connections",
            num(a as u64),
            num(b as u64)
        ));
    }
    out.push(')');
    if let (Some(leak), Some(per)) = (
        s.bytes_per_minute_at_equal_connections,
        s.bytes_per_connection,
    ) {
        out.push_str(&format!(
            "; at equal connections {:+.1} KiB/min, {:.0} B per connection",
            leak / 1024.0,
            per
        ));
    }
    out
}

/// `--watch-pid`: one row per process, the columns of a side-by-side comparison.
fn processes_table(processes: &[ProcUsage]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "watched pid",
        "CPU median (% of a core)",
        "user / kernel (s)",
        "kernel share",
        "CPU per delivery (µs)",
        "context switches/s",
        "RSS before → after (MiB)",
        "RSS growth per connection (B)",
    ]);
    for p in processes {
        t.add_row(vec![
            p.pid.to_string(),
            p.cpu_median_percent
                .map_or("-".into(), |c| format!("{c:.1}")),
            format!("{:.1} / {:.1}", p.user_seconds, p.kernel_seconds),
            p.kernel_share
                .map_or("-".into(), |k| format!("{:.0} %", k * 100.0)),
            p.cpu_per_delivery_us
                .map_or("-".into(), |c| format!("{c:.1}")),
            num(p.context_switches_per_s.round() as u64),
            format!(
                "{:.1} → {:.1}",
                p.rss_before_bytes as f64 / 1_048_576.0,
                p.rss_after_bytes as f64 / 1_048_576.0
            ),
            p.rss_growth_per_connection_bytes
                .map_or("-".into(), |b| num(b.max(0.0).round() as u64)),
        ]);
    }
    t
}

fn num(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl Report {
    /// `--churn`'s figures: drops, reconnections (recovered or not) and their time, the
    /// deliveries the server replayed, and whether the nodes recover at all.
    fn churn_rows(&self) -> Vec<(&'static str, String)> {
        if self.settings["churn_per_s"].as_f64().unwrap_or(0.0) <= 0.0 {
            return Vec::new();
        }
        let c = &self.counters;
        let reconnect = self.histograms_ms.iter().find(|p| p.name == "reconnect");
        let recovery = match c.recovery_on() {
            Some(true) => "on".to_owned(),
            Some(false) => "off".to_owned(),
            None => format!(
                "on some nodes ({} of {} clients)",
                c.pid_connects, c.connected
            ),
        };
        vec![
            ("recovery on the nodes", recovery),
            (
                "churn drops (skipped: none to drop)",
                format!("{} ({})", num(c.churn_drops), num(c.churn_skipped)),
            ),
            (
                "reconnects: recovered / not recovered",
                format!("{} / {}", num(c.recovered), num(c.not_recovered)),
            ),
            (
                "reconnect p50 / p99 (ms)",
                reconnect
                    .filter(|p| p.count > 0)
                    .map_or("-".into(), |p| format!("{:.0} / {:.0}", p.p50, p.p99)),
            ),
            ("deliveries replayed on recovery", num(c.replayed)),
            ("reconnect attempts failed", num(c.reconnect_errors)),
            ("away at the end", num(c.away_at_end)),
        ]
    }

    /// The drills' figures: what was done when, who lost the connection and how fast
    /// they were back, and what was lost, by cause.
    fn drill_rows(&self) -> Vec<(String, String)> {
        let Some(t) = &self.drills else {
            return Vec::new();
        };
        let c = &self.counters;
        let reconnect = self.histograms_ms.iter().find(|p| p.name == "reconnect");
        let mut rows: Vec<(String, String)> = t
            .steps
            .iter()
            .map(|s| (format!("drill at {:.1} s", s.at_s), s.what.clone()))
            .collect();
        let windows: Vec<String> = t
            .windows_s
            .iter()
            .map(|(a, b)| format!("{a:.1}–{b:.1} s"))
            .collect();
        rows.extend([
            ("drill windows".into(), windows.join(", ")),
            ("disconnected by drills".into(), num(c.disconnects)),
            (
                "back: p50 / p99 / max (ms)".into(),
                reconnect.filter(|p| p.count > 0).map_or("-".into(), |p| {
                    format!("{:.0} / {:.0} / {:.0}", p.p50, p.p99, p.max)
                }),
            ),
            ("acked messages lost".into(), num(c.lost_acked)),
            (
                "lost with the receiver's connection".into(),
                num(c.lost_reconnecting),
            ),
            (
                "publishes never acked (lost of them)".into(),
                format!("{} ({})", num(c.unacked), num(c.lost_unacked)),
            ),
            (
                "API failures inside drill windows".into(),
                num(c.api_failed_in_drill),
            ),
        ]);
        rows
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|e| json!({ "error": e.to_string() }))
    }

    /// The human summary: counts, latencies, resources, and the gate's verdict.
    pub fn render(&self) -> String {
        let c = &self.counters;
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec!["clients / deliveries", "value"]);
        let setting = |k: &str| self.settings[k].as_str().unwrap_or("-").to_owned();
        let rows: Vec<(&str, String)> = vec![
            (
                "nodes' store / adapter",
                format!("{} / {}", setting("store"), setting("adapter")),
            ),
            ("clients asked", num(c.clients)),
            (
                "stored /chat share (clients and messages)",
                match self.settings["chat_share"].as_f64() {
                    Some(share) if share > 0.0 && self.settings["scenario"] == "mixed" => {
                        format!("{:.0} %", share * 100.0)
                    }
                    _ => "-".into(),
                },
            ),
            ("connected", num(c.connected)),
            ("failed", num(c.failed)),
            ("dropped", num(c.dropped)),
            ("held to the end", num(c.held)),
            ("messages sent", num(c.messages_sent)),
            ("messages skipped (sender down)", num(c.messages_skipped)),
            ("deliveries expected", num(c.expected)),
            ("deliveries received", num(c.received)),
            ("lost", num(self.lost)),
            ("duplicated", num(c.duplicates)),
            ("deliveries/s", format!("{:.0}", self.deliveries_per_s)),
            (
                "API requests (ok / errors)",
                format!("{} / {}", num(c.api_ok), num(c.api_errors)),
            ),
            (
                "notifications expected / received",
                format!(
                    "{} / {}",
                    num(c.notifications_expected),
                    num(c.notifications_received)
                ),
            ),
            ("notifications lost", num(self.notifications_lost)),
            ("notifications duplicated", num(c.notifications_duplicated)),
            ("client workers", self.workers.to_string()),
            ("client CPU (s)", format!("{:.1}", self.client_cpu_seconds)),
            (
                "client memory per connection",
                self.client_memory_per_connection_bytes
                    .map_or("-".into(), |b| format!("{:.0} B", b)),
            ),
            (
                "machine CPU busy during the run",
                self.machine_cpu_busy
                    .map_or("-".into(), |b| format!("{:.0}%", b * 100.0)),
            ),
        ];
        for (k, v) in rows.into_iter().chain(self.churn_rows()) {
            t.add_row(vec![k.to_owned(), v]);
        }
        for (k, v) in self.drill_rows() {
            t.add_row(vec![k, v]);
        }
        if let Some(m) = &self.memory {
            for s in &m.slopes {
                t.add_row(vec![
                    format!("node {} RSS slope (life {}, once warm)", s.node, s.life),
                    rss_slope(s),
                ]);
            }
        }
        if let Some(s) = &self.stored {
            t.add_row(vec![
                "acked chat messages in the database".to_owned(),
                format!(
                    "{} of {} once, {} missing, {} doubled ({} stored unacked)",
                    num(s.stored_once),
                    num(s.acked),
                    num(s.missing),
                    num(s.duplicated),
                    num(s.stored_unacked)
                ),
            ]);
        }
        let mut h = Table::new();
        h.load_preset(UTF8_FULL_CONDENSED);
        h.set_header(vec![
            "latency (ms)",
            "count",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
        ]);
        for p in &self.histograms_ms {
            h.add_row(vec![
                p.name.to_owned(),
                num(p.count),
                format!("{:.2}", p.p50),
                format!("{:.2}", p.p90),
                format!("{:.2}", p.p99),
                format!("{:.2}", p.p999),
                format!("{:.2}", p.max),
            ]);
        }
        let mut n = Table::new();
        n.load_preset(UTF8_FULL_CONDENSED);
        n.set_header(vec![
            "node",
            "RSS (MiB)",
            "CPU during run (s)",
            "cluster msgs received",
        ]);
        for node in &self.nodes {
            n.add_row(vec![
                node.node.clone(),
                node.rss_bytes
                    .map_or("-".into(), |b| format!("{:.1}", b / 1_048_576.0)),
                node.cpu_seconds.map_or("-".into(), |s| format!("{s:.1}")),
                node.cluster_received.map_or("-".into(), |n| num(n as u64)),
            ]);
        }
        if let Some(cpu) = self.redis_cpu_seconds {
            n.add_row(vec![
                "redis-server (spawned)".into(),
                "-".into(),
                format!("{cpu:.1}"),
                "-".into(),
            ]);
        }
        let mut out = format!("{t}\n{h}\n{}{n}\n", late_line(&self.late));
        if !self.processes.is_empty() {
            out.push_str(&format!("{}\n", processes_table(&self.processes)));
        }
        if !self.checks.is_empty() {
            let mut g = Table::new();
            g.load_preset(UTF8_FULL_CONDENSED);
            g.set_header(vec!["criterion", "target", "actual", "result"]);
            for check in &self.checks {
                g.add_row(vec![
                    Cell::new(check.name),
                    Cell::new(&check.target),
                    Cell::new(&check.actual),
                    if check.pass {
                        Cell::new("PASS").fg(Color::Green)
                    } else {
                        Cell::new("FAIL").fg(Color::Red)
                    },
                ]);
            }
            out.push_str(&format!("{g}\n"));
        }
        for l in &self.limits {
            out.push_str(&format!("limit: {l}\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("error seen: {e}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1000), "1,000");
        assert_eq!(num(1234567), "1,234,567");
    }
}
