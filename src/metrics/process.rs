//! Process statistics from `/proc/self` (Linux), read at scrape time, under the
//! standard names every Prometheus client library uses, so the usual dashboards work.

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Clock ticks per second of `/proc` times: USER_HZ, 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Default, PartialEq)]
pub(super) struct Stats {
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
    pub resident_bytes: i64,
    pub virtual_bytes: i64,
    pub open_fds: i64,
    pub max_fds: i64,
}

/// Adds the `process_*` series to a scrape's registry (none where there is no `/proc`).
pub(super) fn register(r: &mut Registry) {
    let Some(s) = read() else { return };
    r.register(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        ConstCounter::new(s.cpu_seconds),
    );
    let gauge = |v: i64| {
        let g: Gauge = Gauge::default();
        g.set(v);
        g
    };
    let start: Gauge<f64, AtomicU64> = Gauge::default();
    start.set(s.start_time_seconds);
    r.register(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        start,
    );
    r.register(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        gauge(s.resident_bytes),
    );
    r.register(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        gauge(s.virtual_bytes),
    );
    r.register(
        "process_open_fds",
        "Number of open file descriptors.",
        gauge(s.open_fds),
    );
    r.register(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        gauge(s.max_fds),
    );
}

/// `None` where there is no `/proc` (not Linux): the process metrics are then absent.
/// Any other file that cannot be read leaves its figures at 0.
pub(super) fn read() -> Option<Stats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut stats = parse_stat(&stat, boot_time().unwrap_or(0.0))?;
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        stats.resident_bytes = status_bytes(&status, "VmRSS:").unwrap_or(0);
        stats.virtual_bytes = status_bytes(&status, "VmSize:").unwrap_or(0);
    }
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as i64)
        .unwrap_or(0);
    stats.max_fds = max_fds().unwrap_or(0);
    Some(stats)
}

/// When the machine booted, in seconds since the epoch (`btime` of `/proc/stat`): process
/// start times in `/proc/self/stat` count from it.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// A `key: N kB` line of `/proc/self/status`, in bytes.
fn status_bytes(status: &str, key: &str) -> Option<i64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map(|k| k * 1024)
}

/// The soft limit of open files (`/proc/self/limits`).
fn max_fds() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<i64>().ok())
}

/// `/proc/self/stat`: the command name may contain spaces and parentheses, so fields
/// are counted from the last `)`. utime, stime and starttime are fields 14, 15, 22.
pub(super) fn parse_stat(stat: &str, boot_time: f64) -> Option<Stats> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(Stats {
        cpu_seconds: (field(14)? + field(15)?) / TICKS_PER_SECOND,
        start_time_seconds: boot_time + field(22)? / TICKS_PER_SECOND,
        ..Stats::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_parsed_after_the_command_name() {
        let line = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1000 123456 789 18446744073709551615";
        let s = parse_stat(line, 1_700_000_000.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
    }

    #[test]
    fn status_sizes_are_in_bytes() {
        let status = "Name:\trealtime\nVmSize:\t  123 kB\nVmRSS:\t    45 kB\n";
        assert_eq!(status_bytes(status, "VmRSS:"), Some(45 * 1024));
        assert_eq!(status_bytes(status, "VmSize:"), Some(123 * 1024));
        assert_eq!(status_bytes(status, "VmSwap:"), None);
    }
}
