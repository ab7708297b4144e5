//! The probe's reports for people (a table) and for machines (JSON): the shapes `rtctl
//! health` prints, kept beside the types they render so a new field is added once.

use super::{overall, NodeReport, Probe};
use comfy_table::{presets, Cell, CellAlignment, Table};
use serde_json::{json, Value};
use std::time::Duration;

/// One row per node.
pub fn table(reports: &[NodeReport]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "URL",
        "NODE",
        "STATUS",
        "VERSION",
        "UPTIME",
        "CONNECTIONS",
        "DATABASE",
        "REDIS",
        "LATENCY",
    ]);
    for r in reports {
        let b = r.body();
        let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "-".into());
        let latency = match &r.probe {
            Probe::Answered { latency, .. } => format!("{} ms", millis(*latency)),
            Probe::Unreachable(why) => why.clone(),
        };
        let mut database = service(&b["services"]["database"]);
        if b["services"]["database_replica"].is_object() {
            database = format!(
                "{database}, replica {}",
                service(&b["services"]["database_replica"])
            );
        }
        t.add_row(vec![
            Cell::new(&r.url),
            Cell::new(text(&b["node"])),
            Cell::new(r.status()),
            Cell::new(text(&b["version"])),
            Cell::new(
                b["uptime_s"]
                    .as_u64()
                    .map(uptime)
                    .unwrap_or_else(|| "-".into()),
            )
            .set_alignment(CellAlignment::Right),
            Cell::new(
                b["connections"]
                    .as_u64()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
            )
            .set_alignment(CellAlignment::Right),
            Cell::new(database),
            Cell::new(service(&b["services"]["redis"])),
            Cell::new(latency),
        ]);
    }
    t.to_string()
}

/// A dependency's check in a few words: `up 1.2 ms`, `down: …`, `not configured`.
fn service(v: &Value) -> String {
    match v["status"].as_str() {
        Some("up") => match v["latency_ms"].as_f64() {
            Some(ms) => format!("up {ms} ms"),
            None => "up".into(),
        },
        Some("down") => {
            let error = v["error"].as_str().unwrap_or("");
            let mut short: String = error.chars().take(60).collect();
            if short.len() < error.len() {
                short.push('…');
            }
            format!("down: {short}")
        }
        Some("not_configured") => "not configured".into(),
        Some(other) => other.into(),
        None => "-".into(),
    }
}

/// `42s`, `5m 12s`, `3h 04m`, `2d 07h` (also `rtctl nodes`' uptime column).
pub fn uptime(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Milliseconds with one decimal.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// The whole report for machines: the overall status, counts, and one object per node.
pub fn to_json(reports: &[NodeReport]) -> Value {
    let count = |s: &str| reports.iter().filter(|r| r.status() == s).count();
    json!({
        "status": overall(reports).as_str(),
        "healthy": count("healthy"),
        "unhealthy": reports.len() - count("healthy") - count("unreachable"),
        "unreachable": count("unreachable"),
        "nodes": reports.iter().map(node_json).collect::<Vec<_>>(),
    })
}

fn node_json(r: &NodeReport) -> Value {
    let body = r.body();
    let (http_status, latency_ms) = match &r.probe {
        Probe::Answered {
            http_status,
            latency,
            ..
        } => (json!(http_status), json!(millis(*latency))),
        Probe::Unreachable(_) => (Value::Null, Value::Null),
    };
    json!({
        "url": r.url,
        "status": r.status(),
        "healthy": r.is_healthy(),
        "http_status": http_status,
        "latency_ms": latency_ms,
        "node": body["node"],
        "version": body["version"],
        "uptime_s": body["uptime_s"],
        "connections": body["connections"],
        "services": body["services"],
        "error": r.problem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::tests::{healthy, redis_down, refused};

    #[test]
    fn the_table_has_a_row_per_node() {
        let t = table(&[healthy(), redis_down(), refused()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 7, "{t}");
        for h in [
            "URL",
            "NODE",
            "STATUS",
            "VERSION",
            "UPTIME",
            "CONNECTIONS",
            "DATABASE",
            "REDIS",
            "LATENCY",
        ] {
            assert!(lines[1].contains(h), "{t}");
        }
        let row = |n: usize| -> Vec<&str> {
            lines[n]
                .trim_matches('│')
                .split('┆')
                .map(str::trim)
                .collect()
        };
        assert_eq!(
            row(3),
            [
                "http://10.0.0.1:3001/api/health",
                "n1",
                "healthy",
                "0.1.0",
                "1h 02m",
                "12",
                "up 0.42 ms",
                "not configured",
                "1.2 ms"
            ],
            "{t}"
        );
        assert_eq!(row(4)[2], "unhealthy");
        assert_eq!(row(4)[7], "down: no answer within 500 ms");
        assert_eq!(
            row(5)[1..],
            [
                "-",
                "unreachable",
                "-",
                "-",
                "-",
                "-",
                "-",
                "connection refused"
            ],
            "{t}"
        );
    }

    #[test]
    fn the_json_counts_and_explains() {
        let v = to_json(&[healthy(), redis_down(), refused()]);
        assert_eq!(v["status"], "unhealthy");
        assert_eq!(
            (
                v["healthy"].as_u64(),
                v["unhealthy"].as_u64(),
                v["unreachable"].as_u64()
            ),
            (Some(1), Some(1), Some(1))
        );
        assert_eq!(v["nodes"][1]["error"], "redis: no answer within 500 ms");
        assert_eq!(v["nodes"][2]["http_status"], Value::Null);
        assert_eq!(v["nodes"][0]["latency_ms"], 1.2);
    }

    #[test]
    fn uptimes_read_well() {
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(312), "5m 12s");
        assert_eq!(uptime(3 * 3600 + 240), "3h 04m");
        assert_eq!(uptime(2 * 86400 + 7 * 3600), "2d 07h");
    }
}
