//! `rtctl gen k8s`: Kubernetes manifests for the cluster (planning in [`crate::deploy`]).

use super::grafana::{render_dashboard, write_all};
use crate::deploy::k8s::{Affinity, K8sOptions};
use crate::deploy::layout::{Paths, DEFAULT_CHAT_PATH, DEFAULT_NOTIFICATIONS_PATH, DEFAULT_PATH};
use crate::handlers::role::Role;
use crate::templates::Templates;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct K8sArgs {
    /// Directory to write the manifests into (`kubectl apply -f DIR`).
    #[arg(short = 'o', long, default_value = "k8s")]
    pub output: PathBuf,

    /// Roles to deploy, one Deployment each: `all` (one service), or `chat,notifications`
    /// (the requirements' two services, each on its own Engine.IO path).
    #[arg(
        long = "role",
        value_enum,
        value_delimiter = ',',
        default_value = "all"
    )]
    pub roles: Vec<Role>,

    /// Container image (its entrypoint runs realtime-server).
    #[arg(long, default_value = "realtime:latest")]
    pub image: String,

    /// Kubernetes namespace of every object.
    #[arg(long, default_value = "default")]
    pub namespace: String,

    /// Base name of the objects (`realtime`, `realtime-chat`, …) and their
    /// `app.kubernetes.io/name` label.
    #[arg(long, default_value = "realtime")]
    pub name: String,

    /// Pods per role at least (the autoscaler's minimum); 2 or more for no single point
    /// of failure.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: u32,

    /// Pods per role at most.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_replicas: u32,

    /// Connections per pod: the autoscaler's Pods-metric target, and what memory is sized for.
    #[arg(long, default_value_t = 15_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections_per_pod: u32,

    /// Message deliveries per second per pod at the CPU target (sizes the CPU request).
    #[arg(long, default_value_t = 5_000)]
    pub deliveries_per_pod: u32,

    /// The autoscaler's CPU utilization target, percent of the request.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u32).range(10..=100))]
    pub target_cpu: u32,

    /// How the Ingress keeps a browser on its pod: `cookie`, `hash` (client address), or
    /// `none` (WebSocket only: the pods refuse polling).
    #[arg(long, value_enum, default_value = "cookie")]
    pub affinity: Affinity,

    /// Host name the Ingress answers.
    #[arg(long, default_value = "realtime.example.com")]
    pub host: String,

    /// TLS Secret for the host (cert-manager or your own); none: plain HTTP.
    #[arg(long)]
    pub tls_secret: Option<String>,

    /// IngressClass of the controller.
    #[arg(long, default_value = "nginx")]
    pub ingress_class: String,

    /// Secret with NEXTAUTH_SECRET, RT_SERVICE_TOKEN, DATABASE_URL, REDIS_URL, … (envFrom).
    #[arg(long, default_value = "realtime-secrets")]
    pub secret_name: String,

    /// Engine.IO path of the single service (`--role all`).
    #[arg(long, default_value = DEFAULT_PATH)]
    pub path: String,

    /// Engine.IO path of the chat service when the roles are split.
    #[arg(long, default_value = DEFAULT_CHAT_PATH)]
    pub chat_path: String,

    /// Engine.IO path of the notification service when the roles are split.
    #[arg(long, default_value = DEFAULT_NOTIFICATIONS_PATH)]
    pub notifications_path: String,

    /// Container port.
    #[arg(long, default_value_t = 3001, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// The nodes' pingInterval in ms (the Ingress timeouts must outlive the heartbeat).
    #[arg(long, default_value_t = 25_000)]
    pub ping_interval: u64,

    /// The nodes' pingTimeout in ms.
    #[arg(long, default_value_t = 60_000)]
    pub ping_timeout: u64,

    /// The nodes' DRAIN_DELAY in ms: serving on after SIGTERM with readiness 503.
    #[arg(long, default_value_t = 5_000)]
    pub drain_delay: u64,

    /// The nodes' SHUTDOWN_TIMEOUT in ms.
    #[arg(long, default_value_t = 10_000)]
    pub shutdown_timeout: u64,

    /// Seconds the preStop hook waits before SIGTERM, while the pod's removal from the
    /// endpoints reaches every ingress controller and kube-proxy.
    #[arg(long, default_value_t = 5)]
    pub pre_stop: u64,
}

impl K8sArgs {
    fn options(&self) -> K8sOptions {
        K8sOptions {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            image: self.image.clone(),
            roles: self.roles.clone(),
            paths: Paths {
                all: self.path.clone(),
                chat: self.chat_path.clone(),
                notifications: self.notifications_path.clone(),
            },
            replicas: self.replicas,
            max_replicas: self.max_replicas,
            connections_per_pod: self.connections_per_pod,
            deliveries_per_pod: self.deliveries_per_pod,
            target_cpu_percent: self.target_cpu,
            affinity: self.affinity,
            host: self.host.clone(),
            tls_secret: self.tls_secret.clone(),
            ingress_class: self.ingress_class.clone(),
            secret_name: self.secret_name.clone(),
            port: self.port,
            ping_interval_ms: self.ping_interval,
            ping_timeout_ms: self.ping_timeout,
            drain_delay_ms: self.drain_delay,
            shutdown_timeout_ms: self.shutdown_timeout,
            pre_stop_s: self.pre_stop,
        }
    }

    pub fn run(self, templates: &Templates) -> anyhow::Result<()> {
        let plan = self.options().plan()?;
        let dashboard = render_dashboard(templates, "realtime-cluster", "realtime")?;
        let files = plan.render(templates, &dashboard)?;
        let files: Vec<(&str, String)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.content.clone()))
            .collect();
        write_all(&self.output, &files)
    }
}
