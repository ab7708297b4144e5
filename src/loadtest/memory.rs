//! `--sample-rss-every D`: each node's resident memory and client connections read from
//! its `/metrics` every D during the schedule, and the slope of each node's memory once
//! warm — what a soak needs to say whether memory is flat. A node restarted by a drill
//! starts a new *life* (seen as its CPU counter going back); each life is fitted on its
//! own, after its first `warm_up`.
//!
//! Clients move between nodes in a soak (a restarted node's clients land on the others,
//! and drift back through churn), so a node's memory can grow because it holds more
//! connections. Each life is therefore also fitted on time *and* connections together:
//! the time coefficient of that fit is the growth at an unchanged connection count — a
//! leak — and the connection coefficient the memory per connection.

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
    /// Engine.IO sessions it held (`None`: not exported).
    pub connections: Option<f64>,
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
    /// Connections at the first and last fitted sample.
    pub first_connections: Option<f64>,
    pub last_connections: Option<f64>,
    /// The fit on time and connections together: growth per minute at an unchanged
    /// connection count, and bytes per connection (`None` without connection counts,
    /// or when they did not vary enough to tell the two apart).
    pub bytes_per_minute_at_equal_connections: Option<f64>,
    pub bytes_per_connection: Option<f64>,
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
            let (Some(rss), Some(cpu), connections) = (s.rss_bytes, s.cpu_seconds, s.sessions)
            else {
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
                connections,
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
            let warm: Vec<&RssSample> = all
                .into_iter()
                .filter(|s| s.at_s >= born + warm_up_s)
                .collect();
            if warm.len() < 3 {
                return None;
            }
            let over_time: Vec<(f64, f64)> =
                warm.iter().map(|s| (s.at_s / 60.0, s.rss_bytes)).collect();
            let both: Option<Vec<[f64; 3]>> = warm
                .iter()
                .map(|s| Some([s.at_s / 60.0, s.connections?, s.rss_bytes]))
                .collect();
            let fit = both.and_then(|points| least_squares_2(&points));
            Some(RssSlope {
                node,
                life,
                samples: warm.len(),
                bytes_per_minute: least_squares(&over_time),
                first_bytes: warm[0].rss_bytes,
                last_bytes: warm[warm.len() - 1].rss_bytes,
                first_connections: warm[0].connections,
                last_connections: warm[warm.len() - 1].connections,
                bytes_per_minute_at_equal_connections: fit.map(|f| f.0),
                bytes_per_connection: fit.map(|f| f.1),
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

/// The least-squares fit of z = a + b·x + c·y over `points` (x, y, z): `(b, c)`; `None`
/// when x and y are (nearly) collinear or constant, so the two cannot be told apart.
fn least_squares_2(points: &[[f64; 3]]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mean = |i: usize| points.iter().map(|p| p[i]).sum::<f64>() / n;
    let (mx, my, mz) = (mean(0), mean(1), mean(2));
    let sum = |f: &dyn Fn(&[f64; 3]) -> f64| points.iter().map(f).sum::<f64>();
    let sxx = sum(&|p| (p[0] - mx).powi(2));
    let syy = sum(&|p| (p[1] - my).powi(2));
    let sxy = sum(&|p| (p[0] - mx) * (p[1] - my));
    let sxz = sum(&|p| (p[0] - mx) * (p[2] - mz));
    let syz = sum(&|p| (p[1] - my) * (p[2] - mz));
    let det = sxx * syy - sxy * sxy;
    // Collinear (or a constant connection count): the determinant vanishes relative to
    // the variances.
    if det <= 1e-9 * sxx * syy || syy == 0.0 {
        return None;
    }
    Some(((syy * sxz - sxy * syz) / det, (sxx * syz - sxy * sxz) / det))
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
            connections: None,
        }
    }

    #[test]
    fn growth_from_more_connections_is_told_apart_from_a_leak() {
        // 7 kB per connection, connections rising unevenly, plus 500 B/min of leak.
        let conns = [
            3000.0, 3100.0, 3500.0, 3400.0, 3900.0, 4200.0, 4100.0, 4600.0,
        ];
        let points: Vec<[f64; 3]> = conns
            .iter()
            .enumerate()
            .map(|(m, c)| [m as f64, *c, 50e6 + 7e3 * c + 500.0 * m as f64])
            .collect();
        let (leak, per_conn) = least_squares_2(&points).unwrap();
        assert!((leak - 500.0).abs() < 1e-3, "{leak}");
        assert!((per_conn - 7e3).abs() < 1e-6, "{per_conn}");
        // Connections that never change cannot be told apart from the constant.
        let flat: Vec<[f64; 3]> = (0..5).map(|m| [m as f64, 3000.0, 1e6]).collect();
        assert_eq!(least_squares_2(&flat), None);
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
