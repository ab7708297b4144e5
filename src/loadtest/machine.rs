//! How busy the whole machine was during a run, from `/proc/stat` (Linux).
//!
//! Why: when the load generator and the nodes share a box, a saturated CPU turns into
//! queueing that no server change can remove, and latencies say nothing about the
//! server. The report states the machine's CPU use beside the latencies and names it as
//! what limited the run when it was (nearly) all used.

/// The machine counts as saturated from this share of busy CPU time on.
pub const SATURATED: f64 = 0.9;

/// Cumulative CPU time of all cores, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// The aggregate `cpu` line of `/proc/stat`: `user nice system idle iowait irq softirq
/// steal …`; idle and iowait are not busy, guest time is already inside user.
pub fn parse(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 5 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

/// Now, or `None` where `/proc/stat` does not exist.
pub fn read() -> Option<CpuTimes> {
    parse(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The share of CPU time that was busy between two readings (0.0–1.0).
pub fn busy_fraction(before: Option<CpuTimes>, after: Option<CpuTimes>) -> Option<f64> {
    let (b, a) = (before?, after?);
    let total = a.total.checked_sub(b.total)?;
    let busy = a.busy.checked_sub(b.busy)?;
    (total > 0).then(|| busy as f64 / total as f64)
}

/// The line for the report's limits when the machine was saturated; `servers_here`:
/// the nodes under test run on this machine too (`--spawn-nodes`).
pub fn saturation_note(busy: Option<f64>, servers_here: bool) -> Option<String> {
    let busy = busy.filter(|b| *b >= SATURATED)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let percent = busy * 100.0;
    Some(if servers_here {
        format!(
            "this machine's CPUs were {percent:.0}% busy during the run ({cores} cores shared by \
             the load generator, the nodes and Redis): latencies include queueing on this box; \
             run the load generator on other machines to measure the servers"
        )
    } else {
        format!(
            "this load generator's machine was {percent:.0}% busy during the run ({cores} \
             cores): latencies include its own queueing; spread the clients over more machines"
        )
    })
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/<pid>/stat` — for a
/// process that has no /metrics of its own (the spawned redis-server).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user, kernel) = super::procwatch::cpu_ticks(&stat)?;
    Some((user + kernel) as f64 / super::procwatch::ticks_per_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu_time() {
        let me = process_cpu_seconds(std::process::id());
        assert!(me.is_some_and(|s| s >= 0.0), "{me:?}");
    }

    const STAT: &str = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\nintr 1 2\n";

    #[test]
    fn the_aggregate_line_is_read() {
        assert_eq!(
            parse(STAT),
            Some(CpuTimes {
                busy: 160,
                total: 980
            })
        );
        assert_eq!(parse("intr 1 2\n"), None);
        assert_eq!(parse("cpu  1 x 3 4 5\n"), None);
        assert_eq!(parse("cpu  1 2 3\n"), None);
    }

    #[test]
    fn busy_share_between_readings_and_the_saturation_line() {
        let before = Some(CpuTimes {
            busy: 100,
            total: 1000,
        });
        let after = Some(CpuTimes {
            busy: 1050,
            total: 2000,
        });
        let busy = busy_fraction(before, after);
        assert_eq!(busy, Some(0.95));
        assert!(saturation_note(busy, true).unwrap().contains("95% busy"));
        assert!(saturation_note(busy, false)
            .unwrap()
            .contains("spread the clients"));
        let calm = busy_fraction(
            before,
            Some(CpuTimes {
                busy: 400,
                total: 2000,
            }),
        );
        assert_eq!(calm, Some(0.3));
        assert_eq!(saturation_note(calm, true), None);
        assert_eq!(busy_fraction(None, after), None);
        assert_eq!(busy_fraction(after, before), None, "counters never go back");
    }
}
