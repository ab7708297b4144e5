//! `rtctl gen nginx`: an nginx.conf in front of the cluster.

use super::write_output;
use crate::node_addr::NodeAddr;
use crate::templates::Templates;
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct NginxArgs {
    /// A node, `HOST:PORT` (repeat, or comma-separate, for each node).
    #[arg(long = "upstream", required = true, value_delimiter = ',', value_parser = NodeAddr::parse)]
    pub upstreams: Vec<NodeAddr>,

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

#[derive(Serialize)]
struct Context<'a> {
    upstreams: Vec<&'a str>,
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
        let ctx = Context {
            upstreams: self.upstreams.iter().map(NodeAddr::authority).collect(),
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
    fn bad_upstreams_are_refused() {
        for bad in ["nohost", ":80", "a:0", "a:99999", "a b:80"] {
            assert!(NodeAddr::parse(bad).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["gen", "--upstream", "a:1", "--tls-cert", "c"]).is_err());
    }
}
