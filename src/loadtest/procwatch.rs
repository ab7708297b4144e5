//! `--watch-pid PID`: a server process on this machine measured from `/proc`, whatever
//! it is (ours, Node, socketioxide) — the numbers a side-by-side comparison needs and a
//! server's own `/metrics` cannot give alike for all three: CPU split into user and
//! kernel time, context switches, and resident memory before the clients came.
//!
//! Why from `/proc` and not `/metrics`: the peers export different metrics or none, and
//! the kernel's share of the CPU — the part the event loop's syscalls and wake-ups cost —
//! is only visible there.

use serde::Serialize;
use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcReading {
    /// User and kernel CPU time, in clock ticks.
    pub user_ticks: u64,
    pub kernel_ticks: u64,
    pub rss_bytes: u64,
    /// Voluntary + involuntary context switches of all the process's threads.
    pub context_switches: u64,
}

/// What a watched process spent during the schedule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcUsage {
    pub pid: u32,
    /// The median, over one-second intervals of the schedule, of the CPU used (% of one
    /// core): the steady cost, not lifted by the ramp's tail or a slow start.
    pub cpu_median_percent: Option<f64>,
    pub user_seconds: f64,
    pub kernel_seconds: f64,
    /// Kernel time ÷ (user + kernel time).
    pub kernel_share: Option<f64>,
    /// (user + kernel) ÷ deliveries received by the clients during the schedule.
    pub cpu_per_delivery_us: Option<f64>,
    pub context_switches_per_s: f64,
    /// Resident memory before the first client connected and at the schedule's end.
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    /// (after − before) ÷ clients connected.
    pub rss_growth_per_connection_bytes: Option<f64>,
}

/// Reads `/proc/<pid>/stat`, `/proc/<pid>/statm` and every thread's status; `None` when
/// the process is gone or this is not Linux.
pub fn read(pid: u32) -> Option<ProcReading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user_ticks, kernel_ticks) = cpu_ticks(&stat)?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    Some(ProcReading {
        user_ticks,
        kernel_ticks,
        rss_bytes: resident_pages(&statm)? * page_size(),
        context_switches: thread_context_switches(pid),
    })
}

/// utime and stime (fields 14 and 15); the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// The second field of `statm`: resident pages.
fn resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no memory is involved.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn ticks_per_second() -> f64 {
    // SAFETY: as above.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Sum of `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` over the threads
/// alive now (a thread that ended takes its count with it: runtimes keep theirs).
fn thread_context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|s| context_switches(&s))
        .sum()
}

fn context_switches(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Readings of one process taken every second over the schedule.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub pid: u32,
    pub before_ramp: Option<ProcReading>,
    pub readings: Vec<ProcReading>,
}

/// Reads each pid every `every` from `start` until `start + duration`, the first reading
/// at `start`.
pub async fn sample(
    traces: &mut [Trace],
    start: tokio::time::Instant,
    every: Duration,
    duration: Duration,
) {
    let mut ticker = tokio::time::interval_at(start, every);
    let end = start + duration;
    loop {
        let at = ticker.tick().await;
        for t in traces.iter_mut() {
            t.readings.extend(read(t.pid));
        }
        if at >= end {
            break;
        }
    }
}

/// The usage a trace shows; `seconds` per interval, deliveries and clients of the run.
pub fn usage(trace: &Trace, interval_s: f64, deliveries: u64, connected: u64) -> ProcUsage {
    let hz = ticks_per_second();
    let (first, last) = match (trace.readings.first(), trace.readings.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => (ProcReading::default(), ProcReading::default()),
    };
    let user = last.user_ticks.saturating_sub(first.user_ticks) as f64 / hz;
    let kernel = last.kernel_ticks.saturating_sub(first.kernel_ticks) as f64 / hz;
    let busy = user + kernel;
    let span = interval_s * trace.readings.len().saturating_sub(1) as f64;
    let before = trace.before_ramp.map_or(first.rss_bytes, |r| r.rss_bytes);
    ProcUsage {
        pid: trace.pid,
        cpu_median_percent: median_percent(&trace.readings, interval_s, hz),
        user_seconds: user,
        kernel_seconds: kernel,
        kernel_share: (busy > 0.0).then(|| kernel / busy),
        cpu_per_delivery_us: (deliveries > 0).then(|| busy * 1e6 / deliveries as f64),
        context_switches_per_s: if span > 0.0 {
            last.context_switches.saturating_sub(first.context_switches) as f64 / span
        } else {
            0.0
        },
        rss_before_bytes: before,
        rss_after_bytes: last.rss_bytes,
        rss_growth_per_connection_bytes: (connected > 0)
            .then(|| (last.rss_bytes as f64 - before as f64) / connected as f64),
    }
}

/// The median CPU of the intervals between consecutive readings, in % of one core.
fn median_percent(readings: &[ProcReading], interval_s: f64, hz: f64) -> Option<f64> {
    let mut percents: Vec<f64> = readings
        .windows(2)
        .map(|w| {
            let ticks = (w[1].user_ticks + w[1].kernel_ticks)
                .saturating_sub(w[0].user_ticks + w[0].kernel_ticks);
            ticks as f64 / hz / interval_s * 100.0
        })
        .collect();
    if percents.is_empty() {
        return None;
    }
    percents.sort_by(f64::total_cmp);
    let mid = percents.len() / 2;
    Some(if percents.len() % 2 == 1 {
        percents[mid]
    } else {
        (percents[mid - 1] + percents[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(user: u64, kernel: u64, rss: u64, switches: u64) -> ProcReading {
        ProcReading {
            user_ticks: user,
            kernel_ticks: kernel,
            rss_bytes: rss,
            context_switches: switches,
        }
    }

    #[test]
    fn stat_fields_are_read_past_a_command_name_with_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0";
        assert_eq!(cpu_ticks(stat), Some((7, 3)));
        assert_eq!(cpu_ticks("42 (x) S 1"), None);
        assert_eq!(resident_pages("100 25 3 1 0 20 0\n"), Some(25));
    }

    #[test]
    fn context_switches_add_both_kinds() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(context_switches(status), 15);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = read(std::process::id()).expect("/proc/self is readable on Linux");
        assert!(me.rss_bytes > 0);
    }

    #[test]
    fn usage_splits_kernel_time_and_divides_by_deliveries_and_clients() {
        // hz is the system's; build ticks from it so the test holds for any value.
        let hz = ticks_per_second() as u64;
        let trace = Trace {
            pid: 7,
            before_ramp: Some(reading(0, 0, 1_000_000, 0)),
            readings: vec![
                reading(0, 0, 3_000_000, 100),
                reading(hz / 10, hz / 10, 3_000_000, 200),
                reading(hz / 5, hz / 5, 3_000_000, 300),
                reading(hz / 2, hz / 2, 3_000_000, 400),
            ],
        };
        let u = usage(&trace, 1.0, 10_000, 1_000);
        assert!((u.user_seconds - 0.5).abs() < 1e-9);
        assert!((u.kernel_share.unwrap() - 0.5).abs() < 1e-9);
        // 1 s of CPU for 10,000 deliveries = 100 µs each.
        assert!((u.cpu_per_delivery_us.unwrap() - 100.0).abs() < 1e-6);
        // Intervals: 20 %, 20 %, 60 %: the median is 20 %.
        assert!((u.cpu_median_percent.unwrap() - 20.0).abs() < 1e-6);
        assert!((u.context_switches_per_s - 100.0).abs() < 1e-9);
        assert_eq!(u.rss_growth_per_connection_bytes, Some(2_000.0));
    }

    #[test]
    fn a_process_never_read_gives_no_rates() {
        let u = usage(&Trace::default(), 1.0, 0, 0);
        assert_eq!(u.cpu_median_percent, None);
        assert_eq!(u.cpu_per_delivery_us, None);
        assert_eq!(u.rss_growth_per_connection_bytes, None);
    }
}
