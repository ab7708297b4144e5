//! `rtctl gen prometheus`: a scrape configuration for the nodes and the alert rules.
//!
//! `prometheus.yml` scrapes every node's `/metrics` and loads `rules/realtime.rules.yml`
//! (a path relative to the configuration file, as Prometheus resolves it). The rules use
//! only the metrics of [`crate::metrics`] (a test checks them against a live scrape, and
//! `promtool` checks both files).

use super::grafana::write_all;
use crate::node_addr::NodeAddr;
use crate::templates::Templates;
use serde::Serialize;
use std::path::PathBuf;

/// Where the rules file goes, relative to `prometheus.yml`.
pub const RULES_FILE: &str = "rules/realtime.rules.yml";

#[derive(clap::Args, Debug)]
pub struct PrometheusArgs {
    /// A node to scrape, `HOST:PORT` (repeat, or comma-separate, for each node).
    #[arg(long = "target", required = true, value_delimiter = ',', value_parser = NodeAddr::parse)]
    pub targets: Vec<NodeAddr>,

    /// Directory to write `prometheus.yml` and `rules/realtime.rules.yml` into.
    #[arg(short = 'o', long, default_value = "prometheus")]
    pub output: PathBuf,

    /// Scaling phase whose latency target the alert holds the nodes to: event handler
    /// p99 under 100 ms (1), 50 ms (2) or 20 ms (3).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub phase: u8,

    /// Prometheus job name of the nodes.
    #[arg(long, default_value = "realtime", value_parser = parse_job)]
    pub job: String,

    /// How often Prometheus scrapes the nodes (and evaluates the rules).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub scrape_interval: String,

    /// Alert when a node's failed Redis commands in 5 minutes exceed this.
    #[arg(long, default_value_t = 5)]
    pub redis_errors: u32,

    /// Alert when a database pool's share of connections in use stays above this for 5m.
    #[arg(long, default_value_t = 0.9)]
    pub pool_saturation: f64,

    /// Rate-limit rejections per second (per event class) that count as a spike, when
    /// also three times the last hour's rate.
    #[arg(long, default_value_t = 1.0)]
    pub rate_limit_per_second: f64,
}

/// The p99 event handler latency target of a scaling phase, in milliseconds.
pub fn phase_p99_target_ms(phase: u8) -> u32 {
    match phase {
        1 => 100,
        2 => 50,
        _ => 20,
    }
}

fn parse_job(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: a job name is letters, digits, '_' or '-'"))
    }
}

/// A Prometheus duration such as `15s`, `1m`, `500ms`.
fn parse_duration(s: &str) -> Result<String, String> {
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(unit_at);
    let ok = n.parse::<u32>().is_ok_and(|n| n > 0) && ["ms", "s", "m", "h", "d"].contains(&unit);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a duration like 15s or 1m"))
    }
}

#[derive(Serialize)]
struct ConfigCtx {
    targets: Vec<String>,
    job: String,
    scrape_interval: String,
    rules_file: String,
}

#[derive(Serialize)]
struct RulesCtx<'a> {
    job: &'a str,
    phase: u8,
    p99_target_ms: u32,
    p99_target_seconds: f64,
    redis_errors: u32,
    pool_saturation: f64,
    rate_limit_per_second: f64,
}

impl PrometheusArgs {
    /// `(path relative to the output directory, content)` of each file.
    pub fn render(&self, templates: &Templates) -> anyhow::Result<Vec<(&'static str, String)>> {
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let config = templates.render(
            "prometheus/prometheus.yml.j2",
            ConfigCtx {
                targets: self.targets.iter().map(|t| quoted(t.authority())).collect(),
                job: quoted(&self.job),
                scrape_interval: self.scrape_interval.clone(),
                rules_file: quoted(RULES_FILE),
            },
        )?;
        let target_ms = phase_p99_target_ms(self.phase);
        let rules = templates.render(
            "prometheus/realtime.rules.yml.j2",
            RulesCtx {
                job: &self.job,
                phase: self.phase,
                p99_target_ms: target_ms,
                p99_target_seconds: f64::from(target_ms) / 1000.0,
                redis_errors: self.redis_errors,
                pool_saturation: self.pool_saturation,
                rate_limit_per_second: self.rate_limit_per_second,
            },
        )?;
        Ok(vec![("prometheus.yml", config), (RULES_FILE, rules)])
    }

    pub fn run(self, templates: &Templates) -> anyhow::Result<()> {
        write_all(&self.output, &self.render(templates)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PrometheusArgs,
    }

    fn render(argv: &[&str]) -> Vec<(&'static str, String)> {
        let cli = Cli::try_parse_from(std::iter::once("gen").chain(argv.iter().copied())).unwrap();
        cli.args.render(&Templates::load(None).unwrap()).unwrap()
    }

    #[test]
    fn scrapes_every_target_and_loads_the_rules() {
        let files = render(&["--target", "10.0.0.1:3001,10.0.0.2:3001"]);
        let (name, config) = &files[0];
        assert_eq!(*name, "prometheus.yml");
        for needle in [
            "  - job_name: \"realtime\"\n",
            "    scrape_interval: 15s\n",
            "    metrics_path: /metrics\n",
            "          - \"10.0.0.1:3001\"\n",
            "          - \"10.0.0.2:3001\"\n",
            "rule_files:\n  - \"rules/realtime.rules.yml\"\n",
        ] {
            assert!(config.contains(needle), "missing {needle:?} in\n{config}");
        }
    }

    #[test]
    fn the_phase_sets_the_latency_target() {
        for (phase, secs) in [("1", "> 0.1\n"), ("2", "> 0.05\n"), ("3", "> 0.02\n")] {
            let rules = &render(&["--target", "a:1", "--phase", phase])[1].1;
            let line = rules
                .lines()
                .find(|l| l.contains("p99_5m >"))
                .unwrap_or_else(|| panic!("{rules}"));
            assert!(format!("{line}\n").ends_with(secs), "phase {phase}: {line}");
            // Alertmanager's template syntax reaches the file untouched.
            assert!(rules.contains("{{ $labels.instance }}"), "{rules}");
        }
        assert!(Cli::try_parse_from(["gen", "--target", "a:1", "--phase", "4"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in ["nohost", ":80", "a:0", "a b:80", "a\":1"] {
            assert!(NodeAddr::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_job("1abc").is_err());
        assert!(parse_job("a\"b").is_err());
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), "500ms");
    }
}
