//! `rtctl health URL…`: every node's `GET /api/health` in one table (or JSON). The
//! probing and the report are the library's ([`crate::probe`]); this is the command
//! line, the spinner, and the exit code.

use super::Exit;
use crate::node_addr::NodeUrl;
use crate::probe::{self, NodeReport, Overall};
use std::time::Duration;

const EXIT_CODES: &str = "\
Exit codes:
  0  every node answered and is healthy
  1  some node is unhealthy, draining, or unreachable (while others answer)
  2  no node could be reached at all, or a usage error";

#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct HealthCommand {
    /// A node: `http://HOST:PORT` (the path defaults to `/api/health`) or `HOST:PORT`.
    #[arg(required = true, value_name = "URL", value_parser = NodeUrl::parse)]
    pub urls: Vec<NodeUrl>,

    /// `table` for people, `json` for machines.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,

    /// Milliseconds each node has to connect and answer.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

impl HealthCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        // A spinner on stderr when the nodes take more than a second (terminals only).
        let bar = indicatif::ProgressBar::hidden();
        bar.set_length(self.urls.len() as u64);
        let timeout = Duration::from_millis(self.timeout);
        let answered = || bar.inc(1);
        let checking = probe::check_all(&self.urls, timeout, &answered);
        let reports = super::spinner_after_a_second(
            &bar,
            "{spinner} checking nodes: {pos}/{len} answered",
            checking,
        )
        .await;
        let text = if self.format == "json" {
            let mut s = serde_json::to_string_pretty(&probe::render::to_json(&reports))?;
            s.push('\n');
            s
        } else {
            probe::render::table(&reports) + "\n"
        };
        super::gen::write_output(None, &text)?;
        outcome(&reports)?;
        Ok(())
    }
}

/// The exit outcome of a report: `Ok` when all are healthy, else an [`Exit`] with code 2
/// when no node answered and 1 otherwise, and one line naming what is wrong.
fn outcome(reports: &[NodeReport]) -> Result<(), Exit> {
    let problems = probe::problems(reports);
    match probe::overall(reports) {
        Overall::Healthy => Ok(()),
        Overall::Unreachable => Err(Exit::new(2, problems.join("; "))),
        Overall::Unhealthy => Err(Exit::new(
            1,
            format!(
                "{} of {} nodes not healthy: {}",
                problems.len(),
                reports.len(),
                problems.join("; ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::tests::{healthy, redis_down, refused};

    #[test]
    fn exit_codes_follow_the_overall_status() {
        assert_eq!(
            outcome(&[healthy(), redis_down(), refused()])
                .unwrap_err()
                .code,
            1
        );
        assert!(outcome(&[healthy(), healthy()]).is_ok());
        let gone = outcome(&[refused()]).unwrap_err();
        assert_eq!(gone.code, 2);
        assert_eq!(
            gone.message,
            "http://10.0.0.3:3001/api/health: connection refused"
        );
    }
}
