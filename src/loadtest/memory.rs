//! `--sample-rss-every D`: each node's resident memory read from its `/metrics` every D
//! during the schedule, and the slope of each node's memory once warm — what a soak
//! needs to say whether memory is flat. A node restarted by a drill starts a new *life*
//! (seen as its CPU counter going back); each life is fitted on its own, after its first
//! `warm_up`.

use super::scrape;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// One reading.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RssSample {
    /// Seconds from the schedule's start.
    pub at_s: f64,
    pub node: usize,
    pub rss_bytes: f64,
    /// Which life of the node (0 until its first restart).
    pub life: u32,
}

/// The fit of one node life.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RssSlope {
    pub node: usize,
    pub life: u32,
    /// Samples fitted (those after the warm-up).
    pub samples: usize,
    /// Least-squares slope, bytes per minute.
    pub bytes_per_minute: f64,
    pub first_bytes: f64,
    pub last_bytes: f64,
}

/// What the sampler collected.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RssTrend {
    pub every_s: f64,
    pub warm_up_s: f64,
    pub samples: Vec<RssSample>,
    pub slopes: Vec<RssSlope>,
}

/// Reads every node every `every` for `duration` (the schedule), from `start`.
pub(super) async fn sample(
    nodes: &[SocketAddr],
    start: tokio::time::Instant,
    every: Duration,
    duration: Duration,
    warm_up: Duration,
) -> RssTrend {
    let mut samples = Vec::new();
    let mut last_cpu = vec![0.0f64; nodes.len()];
    let mut life = vec![0u32; nodes.len()];
    let mut k = 0u32;
    loop {
        let at = every * k;
        if at > duration {
            break;
        }
        tokio::time::sleep_until(start + at).await;
        for (node, s) in scrape::sample_all(nodes).await.into_iter().enumerate() {
            let (Some(rss), Some(cpu)) = (s.rss_bytes, s.cpu_seconds) else {
                continue;
            };
            if cpu < last_cpu[node] {
                life[node] += 1;
            }
            last_cpu[node] = cpu;
            samples.push(RssSample {
                at_s: at.as_secs_f64(),
                node,
                rss_bytes: rss,
                life: life[node],
            });
        }
        k += 1;
    }
    RssTrend {
        every_s: every.as_secs_f64(),
        warm_up_s: warm_up.as_secs_f64(),
        slopes: slopes(&samples, warm_up.as_secs_f64()),
        samples,
    }
}

/// The slope of each node life with at least three samples after its warm-up.
fn slopes(samples: &[RssSample], warm_up_s: f64) -> Vec<RssSlope> {
    let mut lives: Vec<(usize, u32)> = samples.iter().map(|s| (s.node, s.life)).collect();
    lives.sort_unstable();
    lives.dedup();
    lives
        .into_iter()
        .filter_map(|(node, life)| {
            let all: Vec<&RssSample> = samples
                .iter()
                .filter(|s| s.node == node && s.life == life)
                .collect();
            let born = all.first()?.at_s;
            let warm: Vec<(f64, f64)> = all
                .iter()
                .filter(|s| s.at_s >= born + warm_up_s)
                .map(|s| (s.at_s / 60.0, s.rss_bytes))
                .collect();
            (warm.len() >= 3).then(|| RssSlope {
                node,
                life,
                samples: warm.len(),
                bytes_per_minute: least_squares(&warm),
                first_bytes: warm[0].1,
                last_bytes: warm[warm.len() - 1].1,
            })
        })
        .collect()
}

/// The least-squares slope of `points` (x, y).
fn least_squares(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let var: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_s: f64, node: usize, rss_bytes: f64, life: u32) -> RssSample {
        RssSample {
            at_s,
            node,
            rss_bytes,
            life,
        }
    }

    #[test]
    fn each_life_is_fitted_after_its_warm_up() {
        let mut samples = Vec::new();
        for m in 0..10 {
            let t = m as f64 * 60.0;
            // Node 0: grows 1 MB/min during a 2-minute warm-up, then 1 kB/min.
            let rss = if m < 2 {
                1e6 * m as f64
            } else {
                2e6 + 1e3 * (m - 2) as f64
            };
            samples.push(s(t, 0, rss, 0));
            // Node 1: restarted at minute 5; each life flat.
            let (life, rss) = if m < 5 { (0, 5e6) } else { (1, 3e6) };
            samples.push(s(t, 1, rss, life));
        }
        let fits = slopes(&samples, 120.0);
        let find = |node, life| fits.iter().find(|f| f.node == node && f.life == life);
        let n0 = find(0, 0).unwrap();
        assert!((n0.bytes_per_minute - 1e3).abs() < 1e-6, "{n0:?}");
        assert_eq!(n0.samples, 8);
        assert_eq!(find(1, 0).unwrap().bytes_per_minute, 0.0);
        assert_eq!(find(1, 1).unwrap().samples, 3, "minutes 7, 8, 9");
        assert!(least_squares(&[(1.0, 5.0)]).abs() < 1e-9);
    }
}
