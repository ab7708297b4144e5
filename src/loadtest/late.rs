//! When the slow room messages were sent: per second of the schedule, how many took
//! longer than [`LATE_MS`] to arrive and the slowest one. A p99 says how many were slow;
//! this says whether they were spread over the run (a box busy throughout: every line of
//! its budget matters) or came in a few bursts (one event behind each: a checkpoint, a
//! full presence rewrite, the ramp's last connects — find it and fix that), which is what
//! decides the next change.

use serde::{Deserialize, Serialize};

/// A room message slower than this is late: half the phase 3 target, so the seconds that
/// put a p99 near the target show up.
pub const LATE_MS: f64 = 10.0;

/// How long a timeline grows at most (a day of schedule): a message stamped far from the
/// schedule's start (a skewed clock) cannot make a worker allocate without bound.
const MAX_SECONDS: usize = 86_400;

/// Late messages by the second of the schedule they were sent in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LateBySecond {
    /// Messages over [`LATE_MS`], by second.
    pub late: Vec<u32>,
    /// The slowest message of each second (ms).
    pub max_ms: Vec<f32>,
}

/// One second of the schedule, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LateSecond {
    pub second: usize,
    pub late: u32,
    pub max_ms: f32,
}

/// The timeline in a few figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LateSummary {
    pub late: u64,
    /// Seconds with at least one late message.
    pub seconds_with_late: usize,
    /// The seconds with the most late messages, most first.
    pub worst: Vec<LateSecond>,
    /// The share of all late messages that were sent in `worst`.
    pub share_in_worst: f64,
}

impl LateBySecond {
    /// A message sent `since_start_ms` after the schedule started took `latency_ms`.
    pub fn record(&mut self, since_start_ms: f64, latency_ms: f64) {
        if !(0.0..(MAX_SECONDS as f64 * 1000.0)).contains(&since_start_ms) {
            return;
        }
        let second = (since_start_ms / 1000.0) as usize;
        if second >= self.late.len() {
            self.late.resize(second + 1, 0);
            self.max_ms.resize(second + 1, 0.0);
        }
        if latency_ms > LATE_MS {
            self.late[second] += 1;
        }
        self.max_ms[second] = self.max_ms[second].max(latency_ms as f32);
    }

    /// Adds another worker's timeline (the same schedule start for every worker).
    pub fn merge(&mut self, other: &LateBySecond) {
        let len = self.late.len().max(other.late.len());
        self.late.resize(len, 0);
        self.max_ms.resize(len, 0.0);
        for (s, n) in other.late.iter().enumerate() {
            self.late[s] += n;
        }
        for (s, max) in other.max_ms.iter().enumerate() {
            self.max_ms[s] = self.max_ms[s].max(*max);
        }
    }

    /// The `worst` seconds with the most late messages, and how much of the total they
    /// hold.
    pub fn summary(&self, worst: usize) -> LateSummary {
        let late: u64 = self.late.iter().map(|&n| u64::from(n)).sum();
        let mut seconds: Vec<LateSecond> = (self.late.iter().zip(&self.max_ms))
            .enumerate()
            .filter(|(_, (&n, _))| n > 0)
            .map(|(second, (&late, &max_ms))| LateSecond {
                second,
                late,
                max_ms,
            })
            .collect();
        let seconds_with_late = seconds.len();
        seconds.sort_by(|a, b| b.late.cmp(&a.late).then(a.second.cmp(&b.second)));
        seconds.truncate(worst);
        let in_worst: u64 = seconds.iter().map(|s| u64::from(s.late)).sum();
        LateSummary {
            late,
            seconds_with_late,
            worst: seconds,
            share_in_worst: if late == 0 {
                0.0
            } else {
                in_worst as f64 / late as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_messages_are_counted_in_the_second_they_were_sent() {
        let mut t = LateBySecond::default();
        t.record(100.0, 3.0);
        t.record(2_500.0, 25.0);
        t.record(2_999.0, 11.0);
        t.record(-5.0, 90.0);
        t.record(1e12, 90.0);
        assert_eq!(t.late, vec![0, 0, 2]);
        assert_eq!(t.max_ms, vec![3.0, 0.0, 25.0]);
    }

    #[test]
    fn merged_timelines_add_counts_and_keep_the_slowest() {
        let mut a = LateBySecond::default();
        a.record(0.0, 12.0);
        let mut b = LateBySecond::default();
        b.record(0.0, 30.0);
        b.record(1_000.0, 15.0);
        a.merge(&b);
        assert_eq!(a.late, vec![2, 1]);
        assert_eq!(a.max_ms, vec![30.0, 15.0]);
    }

    #[test]
    fn the_summary_names_the_worst_seconds_and_their_share() {
        let t = LateBySecond {
            late: vec![0, 6, 1, 0, 3],
            max_ms: vec![2.0, 40.0, 11.0, 4.0, 20.0],
        };
        let s = t.summary(2);
        assert_eq!(s.late, 10);
        assert_eq!(s.seconds_with_late, 3);
        assert_eq!(
            s.worst,
            vec![
                LateSecond {
                    second: 1,
                    late: 6,
                    max_ms: 40.0
                },
                LateSecond {
                    second: 4,
                    late: 3,
                    max_ms: 20.0
                }
            ]
        );
        assert!((s.share_in_worst - 0.9).abs() < 1e-9);
        assert_eq!(LateBySecond::default().summary(3).share_in_worst, 0.0);
    }
}
