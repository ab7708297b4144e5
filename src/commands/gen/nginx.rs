//! `rtctl gen nginx`: an nginx.conf in front of the cluster.

use super::write_output;
use crate::deploy::layout::{self, Paths, Service};
use crate::handlers::role::Role;
use crate::node_addr::NodeAddr;
use crate::templates::Templates;
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct NginxArgs {
    /// A node serving every role, `HOST:PORT` (repeat, or comma-separate, for each node).
    #[arg(long = "upstream", value_delimiter = ',', value_parser = NodeAddr::parse,
          required_unless_present_all = ["chat_upstreams", "notifications_upstreams"],
          conflicts_with_all = ["chat_upstreams", "notifications_upstreams"])]
    pub upstreams: Vec<NodeAddr>,

    /// A node of the chat service (`--role chat`); with --notifications-upstream, the
    /// two services get their own Engine.IO paths and API routes.
    #[arg(long = "chat-upstream", value_delimiter = ',', value_parser = NodeAddr::parse,
          requires = "notifications_upstreams")]
    pub chat_upstreams: Vec<NodeAddr>,

    /// A node of the notification service (`--role notifications`).
    #[arg(long = "notifications-upstream", value_delimiter = ',', value_parser = NodeAddr::parse,
          requires = "chat_upstreams")]
    pub notifications_upstreams: Vec<NodeAddr>,

    /// Engine.IO path of the single service (the nodes' SOCKETIO_PATH).
    #[arg(long, default_value = layout::DEFAULT_PATH)]
    pub path: String,

    /// Engine.IO path of the chat service (its nodes' SOCKETIO_PATH).
    #[arg(long, default_value = layout::DEFAULT_CHAT_PATH)]
    pub chat_path: String,

    /// Engine.IO path of the notification service (its nodes' SOCKETIO_PATH).
    #[arg(long, default_value = layout::DEFAULT_NOTIFICATIONS_PATH)]
    pub notifications_path: String,

    /// `server_name` of the virtual host.
    #[arg(long, default_value = "_")]
    pub server_name: String,

    /// Port (or `address:port`) nginx listens on.
    #[arg(long, default_value = "80")]
    pub listen: String,

    /// Session affinity: `hash` (consistent hash of the client address; recommended) or `ip_hash`.
    #[arg(long, default_value = "hash", value_parser = ["hash", "ip_hash"])]
    pub sticky: String,

    /// Concurrent client connections to size nginx for.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub connections: u32,

    /// The nodes' pingInterval in ms (the proxy timeouts must outlive the heartbeat).
    #[arg(long, env = "PING_INTERVAL", default_value_t = 25_000)]
    pub ping_interval: u64,

    /// The nodes' pingTimeout in ms.
    #[arg(long, env = "PING_TIMEOUT", default_value_t = 60_000)]
    pub ping_timeout: u64,

    /// TLS certificate (PEM); with --tls-key, nginx terminates TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Failed attempts before nginx takes a node out for --fail-timeout seconds.
    #[arg(long, default_value_t = 3)]
    pub max_fails: u32,

    /// Seconds a failed node stays out.
    #[arg(long, default_value_t = 10)]
    pub fail_timeout: u32,

    /// Write here instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

/// One upstream block and its locations.
#[derive(Serialize)]
struct Upstream<'a> {
    /// The nginx upstream name (`realtime_nodes`, `realtime_chat`, …).
    upstream: String,
    servers: Vec<&'a str>,
    #[serde(flatten)]
    service: Service,
}

#[derive(Serialize)]
struct Context<'a> {
    services: Vec<Upstream<'a>>,
    node_count: usize,
    server_name: &'a str,
    listen: &'a str,
    sticky: &'a str,
    connections: u32,
    worker_connections: u64,
    rlimit_nofile: u64,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    read_timeout_s: u64,
    tls: bool,
    tls_cert: String,
    tls_key: String,
    max_fails: u32,
    fail_timeout: u32,
}

impl NginxArgs {
    /// Renders the configuration.
    pub fn render(&self, templates: &Templates) -> anyhow::Result<String> {
        // Two descriptors per proxied connection, plus headroom for upstream keepalive
        // and API traffic; each worker may end up with most connections (the kernel does
        // not balance accept() evenly), so size every worker for all of them.
        let worker_connections = 2 * self.connections as u64 + 1024;
        let heartbeat_ms = self.ping_interval + self.ping_timeout;
        let services = self.services()?;
        let ctx = Context {
            node_count: services.iter().map(|s| s.servers.len()).sum(),
            services,
            server_name: &self.server_name,
            listen: &self.listen,
            sticky: &self.sticky,
            connections: self.connections,
            worker_connections,
            rlimit_nofile: 2 * worker_connections,
            ping_interval_ms: self.ping_interval,
            ping_timeout_ms: self.ping_timeout,
            // Whole seconds, strictly longer than one heartbeat cycle, with a margin.
            read_timeout_s: heartbeat_ms.div_ceil(1000) + 10,
            tls: self.tls_cert.is_some(),
            tls_cert: path_string(&self.tls_cert),
            tls_key: path_string(&self.tls_key),
            max_fails: self.max_fails,
            fail_timeout: self.fail_timeout,
        };
        Ok(templates.render("nginx/nginx.conf.j2", ctx)?)
    }

    /// One upstream per service: all nodes in one, or the chat and notification nodes
    /// apart, each with the path and routes [`layout::services`] gives its role.
    fn services(&self) -> Result<Vec<Upstream<'_>>, layout::LayoutError> {
        let paths = Paths {
            all: self.path.clone(),
            chat: self.chat_path.clone(),
            notifications: self.notifications_path.clone(),
        };
        let groups: Vec<(Role, &[NodeAddr])> = if self.upstreams.is_empty() {
            vec![
                (Role::Chat, &self.chat_upstreams),
                (Role::Notifications, &self.notifications_upstreams),
            ]
        } else {
            vec![(Role::All, &self.upstreams)]
        };
        let roles: Vec<Role> = groups.iter().map(|(r, _)| *r).collect();
        let services = layout::services("realtime", &roles, &paths)?;
        Ok(services
            .into_iter()
            .zip(groups)
            .map(|(service, (role, nodes))| Upstream {
                upstream: match role {
                    Role::All => "realtime_nodes".into(),
                    _ => format!("realtime_{}", role.as_str()),
                },
                servers: nodes.iter().map(NodeAddr::authority).collect(),
                service,
            })
            .collect())
    }

    pub fn run(self, templates: &Templates) -> anyhow::Result<()> {
        let text = self.render(templates)?;
        write_output(self.output.as_deref(), &text)
    }
}

fn path_string(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: NginxArgs,
    }

    fn render(argv: &[&str]) -> String {
        let cli = Cli::try_parse_from(std::iter::once("gen").chain(argv.iter().copied())).unwrap();
        cli.args.render(&Templates::load(None).unwrap()).unwrap()
    }

    #[test]
    fn the_config_has_what_a_socket_io_cluster_needs() {
        let conf = render(&[
            "--upstream",
            "10.0.0.1:3001,10.0.0.2:3001",
            "--connections",
            "5000",
        ]);
        for needle in [
            "map $http_upgrade $connection_upgrade",
            "hash $remote_addr consistent;",
            "server 10.0.0.1:3001 max_fails=3 fail_timeout=10s;",
            "server 10.0.0.2:3001 max_fails=3 fail_timeout=10s;",
            "location /socket.io/",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_read_timeout 95s;",
            "location = /api/health/ready",
            "location /api/",
            "worker_connections 11024;",
            "worker_rlimit_nofile 22048;",
        ] {
            assert!(conf.contains(needle), "missing {needle:?} in\n{conf}");
        }
        assert!(!conf.contains("ip_hash;"));
        assert!(!conf.contains("ssl_certificate"));
    }

    #[test]
    fn options_change_the_output() {
        let conf = render(&[
            "--upstream",
            "a:1",
            "--sticky",
            "ip_hash",
            "--tls-cert",
            "/c.pem",
            "--tls-key",
            "/k.pem",
            "--listen",
            "443",
            "--ping-interval",
            "1000",
            "--ping-timeout",
            "500",
        ]);
        assert!(conf.contains("\n        ip_hash;"));
        assert!(conf.contains("listen 443 ssl;"));
        assert!(conf.contains("ssl_certificate     /c.pem;"));
        assert!(conf.contains("proxy_read_timeout 12s;"));
    }

    #[test]
    fn split_roles_get_their_own_upstreams_paths_and_routes() {
        let conf = render(&[
            "--chat-upstream",
            "10.0.0.1:3001,10.0.0.2:3001",
            "--notifications-upstream",
            "10.0.0.3:3001",
            "--notifications-path",
            "/notify-io/",
        ]);
        for needle in [
            "upstream realtime_chat {\n",
            "upstream realtime_notifications {\n",
            "server 10.0.0.2:3001 max_fails=3",
            "location /chat-io/ {\n            proxy_pass http://realtime_chat;",
            "location /notify-io/ {\n            proxy_pass http://realtime_notifications;",
            "location /api/chat/ {\n            proxy_pass http://realtime_chat;",
            "location /api/notifications {\n            proxy_pass http://realtime_notifications;",
            r#"io("https://<host>/notifications", { path: "/notify-io/" })"#,
        ] {
            assert!(conf.contains(needle), "missing {needle:?} in\n{conf}");
        }
        assert!(!conf.contains("realtime_nodes") && !conf.contains("location /socket.io/"));
        let notifications = conf
            .split("upstream realtime_notifications")
            .nth(1)
            .unwrap();
        let block = &notifications[..notifications.find('}').unwrap()];
        assert_eq!(block.matches("server ").count(), 1, "{block}");
    }

    #[test]
    fn a_split_needs_both_roles_and_no_shared_upstream() {
        let parse =
            |argv: &[&str]| Cli::try_parse_from(std::iter::once("gen").chain(argv.iter().copied()));
        assert!(parse(&["--chat-upstream", "a:1"]).is_err());
        assert!(parse(&[
            "--upstream",
            "a:1",
            "--chat-upstream",
            "b:1",
            "--notifications-upstream",
            "c:1"
        ])
        .is_err());
        assert!(parse(&[]).is_err());
        let same = parse(&[
            "--chat-upstream",
            "a:1",
            "--notifications-upstream",
            "b:1",
            "--chat-path",
            "/io/",
            "--notifications-path",
            "/io/",
        ])
        .unwrap();
        let err = same
            .args
            .render(&Templates::load(None).unwrap())
            .unwrap_err();
        assert!(
            err.to_string().contains("both use Engine.IO path \"/io/\""),
            "{err}"
        );
    }

    #[test]
    fn bad_upstreams_are_refused() {
        for bad in ["nohost", ":80", "a:0", "a:99999", "a b:80"] {
            assert!(NodeAddr::parse(bad).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["gen", "--upstream", "a:1", "--tls-cert", "c"]).is_err());
    }
}
