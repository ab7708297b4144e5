//! `rtctl gen …`: configuration files generated from templates (see [`crate::templates`]).

pub mod grafana;
pub mod k8s;
pub mod migrations;
pub mod nginx;
pub mod prometheus;

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct GenCommand {
    /// Directory whose files override the embedded templates (same relative paths, e.g.
    /// `nginx/nginx.conf.j2`).
    #[arg(long, global = true, env = "RTCTL_TEMPLATES")]
    pub templates: Option<PathBuf>,

    #[command(subcommand)]
    pub what: Gen,
}

#[derive(clap::Subcommand, Debug)]
pub enum Gen {
    /// nginx.conf for a Socket.IO cluster: sticky upstream, WebSocket upgrade, timeouts
    /// derived from the heartbeat, limits sized for the expected connections.
    Nginx(nginx::NginxArgs),
    /// The SR-2 index migrations, one CREATE INDEX CONCURRENTLY per migration (sqlx or Prisma).
    Migrations(migrations::MigrationsArgs),
    /// A Grafana dashboard for the cluster (datasource chosen through a `${datasource}`
    /// variable) plus datasource and dashboard provisioning files.
    Grafana(grafana::GrafanaArgs),
    /// prometheus.yml scraping the nodes, and alert rules (node down, p99 over the phase
    /// target, Redis errors, pool saturation, rate-limit spikes).
    Prometheus(prometheus::PrometheusArgs),
    /// Kubernetes manifests: a Deployment, Service, autoscaler and disruption budget per
    /// role, an ingress-nginx Ingress, a PodMonitor, the Grafana dashboard as a ConfigMap
    /// and prometheus-adapter's rule for the connections-per-pod metric.
    K8s(k8s::K8sArgs),
}

impl GenCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let templates = crate::templates::Templates::load(self.templates.as_deref())?;
        match self.what {
            Gen::Nginx(args) => args.run(&templates),
            Gen::Migrations(args) => args.run(&templates),
            Gen::Grafana(args) => args.run(&templates),
            Gen::Prometheus(args) => args.run(&templates),
            Gen::K8s(args) => args.run(&templates),
        }
    }
}

/// Writes `content` to `path`, or to stdout when there is none.
pub(crate) fn write_output(path: Option<&std::path::Path>, content: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    match path {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create directory {}", dir.display()))?;
            }
            std::fs::write(p, content).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error.
            if let Err(e) = out.write_all(content.as_bytes()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}
