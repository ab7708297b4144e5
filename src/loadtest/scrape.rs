//! The nodes' own figures, read from their `/metrics` before and after the schedule: how
//! much memory they hold, how much CPU the run cost them, and how many cluster messages
//! Redis delivered to them (what a sharded adapter saves).

use crate::client::http::HttpConn;
use std::net::SocketAddr;
use std::time::Duration;

/// One node's process figures at one moment (`None`: not readable).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeSample {
    pub rss_bytes: Option<f64>,
    pub cpu_seconds: Option<f64>,
    /// `realtime_cluster_messages_received_total`, all types.
    pub cluster_received: Option<f64>,
    /// `realtime_engine_sessions`, all transports: the client connections it holds.
    pub sessions: Option<f64>,
}

/// Each node's sample, in order (a node that does not answer within 5 s has none).
pub async fn sample_all(nodes: &[SocketAddr]) -> Vec<NodeSample> {
    let mut out = Vec::new();
    for addr in nodes {
        out.push(sample(*addr).await.unwrap_or_default());
    }
    out
}

async fn sample(addr: SocketAddr) -> Option<NodeSample> {
    let fetch = async {
        let mut conn = HttpConn::open(addr, None, &addr.to_string()).await.ok()?;
        conn.request(http::Method::GET, "/metrics", &[], bytes::Bytes::new())
            .await
            .ok()
    };
    let res = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&res.body);
    Some(NodeSample {
        rss_bytes: metric(&text, "process_resident_memory_bytes"),
        cpu_seconds: metric(&text, "process_cpu_seconds_total"),
        cluster_received: metric_sum(&text, "realtime_cluster_messages_received_total"),
        sessions: metric_sum(&text, "realtime_engine_sessions"),
    })
}

/// The sum of every sample of `name`, whatever its labels (`None`: no sample).
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let series_name = series.split('{').next().unwrap_or(series);
        if let (true, Ok(v)) = (series_name == name, value.trim().parse::<f64>()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// The value of an unlabelled sample in Prometheus text format.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labelled_samples() {
        let text = "# TYPE c counter\nc_total{type=\"broadcast\"} 10\nc_total{type=\"request\"} 2.5\nc_totalx 7\n";
        assert_eq!(metric_sum(text, "c_total"), Some(12.5));
        assert_eq!(metric_sum(text, "absent"), None);
    }

    #[test]
    fn reads_unlabelled_samples() {
        let text = "# HELP x\nprocess_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1048576\nother{a=\"b\"} 3\n";
        assert_eq!(metric(text, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(
            metric(text, "process_resident_memory_bytes"),
            Some(1048576.0)
        );
        assert_eq!(metric(text, "missing"), None);
    }
}
