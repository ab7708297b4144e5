//! `rtctl gen grafana`: a dashboard for the cluster plus Grafana's provisioning files.
//!
//! The dashboard names no datasource: every panel and query asks through a `datasource`
//! template variable (`${datasource}`, type prometheus), so the same file works whichever
//! Prometheus a Grafana has, imported by hand or provisioned from disk. (Grafana's export
//! format with `__inputs` only works through the import dialog; a provisioned file with
//! `${DS_PROMETHEUS}` in it shows "datasource not found" on every panel.)
//!
//! Every expression uses only the metric names and labels of [`crate::metrics`]; a test
//! checks them against a live scrape.

use super::write_output;
use crate::templates::Templates;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct GrafanaArgs {
    /// Directory to write into: `dashboards/realtime.json` and
    /// `provisioning/{datasources,dashboards}/realtime.yaml`.
    #[arg(short = 'o', long, default_value = "grafana")]
    pub output: PathBuf,

    /// URL of the Prometheus that scrapes the nodes, as Grafana's server reaches it.
    #[arg(long, default_value = "http://localhost:9090", value_parser = parse_http_url)]
    pub prometheus_url: String,

    /// Where Grafana reads dashboard files on its machine (the provider's `path`); copy
    /// `dashboards/` there.
    #[arg(long, default_value = "/var/lib/grafana/dashboards")]
    pub dashboards_path: String,

    /// Dashboard title.
    #[arg(long, default_value = "realtime")]
    pub title: String,

    /// Dashboard uid (stable, so links and provisioning updates keep pointing at it).
    #[arg(long, default_value = "realtime-cluster", value_parser = parse_uid)]
    pub uid: String,

    /// Grafana folder of the provisioned dashboard.
    #[arg(long, default_value = "realtime")]
    pub folder: String,

    /// Prometheus' scrape interval (the datasource's `timeInterval`; keep equal to
    /// `rtctl gen prometheus --scrape-interval`).
    #[arg(long, default_value = "15s")]
    pub scrape_interval: String,
}

fn parse_http_url(s: &str) -> Result<String, String> {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && !s.contains(char::is_whitespace)
        && s.len() > "https://".len();
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not an http:// or https:// URL"))
    }
}

/// Grafana uids: at most 40 characters of letters, digits, `-` and `_`.
fn parse_uid(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: a uid is 1-40 letters, digits, '-' or '_'"))
    }
}

/// A string as a JSON (and so YAML double-quoted) literal.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[derive(Serialize)]
struct DashboardCtx {
    uid: String,
    title: String,
    refresh: String,
}

/// The dashboard JSON (also embedded by `rtctl gen k8s` in a ConfigMap).
pub(crate) fn render_dashboard(
    templates: &Templates,
    uid: &str,
    title: &str,
) -> anyhow::Result<String> {
    let dashboard = templates.render(
        "grafana/dashboard.json.j2",
        DashboardCtx {
            uid: quoted(uid),
            title: quoted(title),
            refresh: quoted("30s"),
        },
    )?;
    // An override template that breaks the JSON should fail here, not in Grafana.
    serde_json::from_str::<serde_json::Value>(&dashboard)
        .map_err(|e| anyhow::anyhow!("the dashboard template does not render valid JSON: {e}"))?;
    Ok(dashboard)
}

#[derive(Serialize)]
struct DatasourceCtx {
    name: String,
    uid: String,
    url: String,
    scrape_interval: String,
}

#[derive(Serialize)]
struct ProviderCtx<'a> {
    folder: String,
    dashboards_path: &'a str,
    dashboards_path_yaml: String,
}

/// The generated files, by path relative to the output directory.
pub struct GrafanaFiles {
    pub files: Vec<(&'static str, String)>,
}

impl GrafanaArgs {
    pub fn render(&self, templates: &Templates) -> anyhow::Result<GrafanaFiles> {
        let dashboard = render_dashboard(templates, &self.uid, &self.title)?;
        let datasource = templates.render(
            "grafana/datasource.yaml.j2",
            DatasourceCtx {
                name: quoted("Prometheus"),
                uid: quoted("realtime-prometheus"),
                url: quoted(&self.prometheus_url),
                scrape_interval: quoted(&self.scrape_interval),
            },
        )?;
        let provider = templates.render(
            "grafana/dashboards.yaml.j2",
            ProviderCtx {
                folder: quoted(&self.folder),
                dashboards_path: &self.dashboards_path,
                dashboards_path_yaml: quoted(&self.dashboards_path),
            },
        )?;
        Ok(GrafanaFiles {
            files: vec![
                ("dashboards/realtime.json", dashboard),
                ("provisioning/datasources/realtime.yaml", datasource),
                ("provisioning/dashboards/realtime.yaml", provider),
            ],
        })
    }

    pub fn run(self, templates: &Templates) -> anyhow::Result<()> {
        write_all(&self.output, &self.render(templates)?.files)
    }
}

/// Writes each `(relative path, content)` under `dir`.
pub(crate) fn write_all(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    for (rel, content) in files {
        write_output(Some(&dir.join(rel)), content)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: GrafanaArgs,
    }

    fn render(argv: &[&str]) -> Vec<(&'static str, String)> {
        let cli = Cli::try_parse_from(std::iter::once("gen").chain(argv.iter().copied())).unwrap();
        cli.args
            .render(&Templates::load(None).unwrap())
            .unwrap()
            .files
    }

    #[test]
    fn the_dashboard_asks_for_its_datasource() {
        let files = render(&["--title", "Chat \"prod\""]);
        let dash: serde_json::Value = serde_json::from_str(&files[0].1).unwrap();
        assert_eq!(dash["title"], "Chat \"prod\"");
        assert_eq!(dash["uid"], "realtime-cluster");
        assert!(dash.get("__inputs").is_none());
        let vars = dash["templating"]["list"].as_array().unwrap();
        assert_eq!(vars[0]["name"], "datasource");
        assert_eq!(vars[0]["type"], "datasource");
        assert_eq!(vars[0]["query"], "prometheus");
        for panel in dash["panels"].as_array().unwrap() {
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
            for t in panel["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{t}");
                assert!(!t["expr"].as_str().unwrap().is_empty());
            }
        }
        // Grafana's legend placeholders survive the template engine.
        assert!(files[0]
            .1
            .contains("\"legendFormat\": \"{{namespace}} {{transport}}\""));
    }

    #[test]
    fn provisioning_points_at_prometheus_and_the_dashboards() {
        let files = render(&[
            "--prometheus-url",
            "http://prom:9090",
            "--dashboards-path",
            "/srv/dash",
        ]);
        assert_eq!(files[1].0, "provisioning/datasources/realtime.yaml");
        assert!(
            files[1].1.contains("url: \"http://prom:9090\"\n"),
            "{}",
            files[1].1
        );
        assert!(files[1].1.contains("type: prometheus\n"));
        assert!(
            files[2].1.contains("path: \"/srv/dash\"\n"),
            "{}",
            files[2].1
        );
        assert!(files[2].1.contains("type: file\n"));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Cli::try_parse_from(["gen", "--prometheus-url", "prom:9090"]).is_err());
        assert!(Cli::try_parse_from(["gen", "--uid", "a b"]).is_err());
    }
}
