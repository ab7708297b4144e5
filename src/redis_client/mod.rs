//! The shared Redis connection settings and client.
//!
//! One multiplexed, auto-reconnecting connection ([`RedisConn`]) serves rate limits,
//! caches and presence; pub/sub gets its own connections (see `cluster/`). All come from
//! the one [`RedisArgs::target`], so TLS settings apply to every connection, and behind
//! Sentinel every connection asks for the current master when it (re)connects.
//!
//! TLS: a `rediss://` URL speaks TLS (rustls, the certificate checked against the
//! system's roots, or against `--redis-ca-cert` alone when given). `rediss://…#insecure`
//! skips verification (the `redis` crate's syntax): only for a provider whose CA you
//! cannot get.

mod conn;
mod slot;
mod target;

pub use conn::RedisConn;
pub use slot::key_slot;
pub use target::{address_of, RedisTarget, SentinelSettings};

use redis::aio::ConnectionManagerConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Where the cluster's Redis is: the flags (and environment twins) the server and `rtctl
/// presence|rooms|nodes` share, declared once so an operator's REDIS_URL or REDIS_HOST
/// means the same Redis to both and the names cannot drift apart.
#[derive(clap::Args, Debug, Clone)]
pub struct RedisLocation {
    /// The cluster's Redis URL (`redis://host:6379/0`): the server keeps rate limits,
    /// caches, presence and the adapter there; `rtctl presence|rooms|nodes` read it.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis host (the Node app's REDIS_HOST), used when REDIS_URL is not set.
    #[arg(long, env = "REDIS_HOST")]
    pub redis_host: Option<String>,

    /// Redis port (the Node app's REDIS_PORT), with --redis-host.
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,

    /// Sentinels that know where the master is (`host:port,host:port`, ioredis'
    /// `sentinels`), instead of REDIS_URL / REDIS_HOST: every connection follows a
    /// failover by itself.
    #[arg(long, env = "REDIS_SENTINELS", value_delimiter = ',')]
    pub redis_sentinels: Vec<String>,

    /// Nodes of a Redis Cluster (`host:port,host:port`, any of its nodes; ioredis'
    /// `new Cluster(nodes)`), instead of REDIS_URL / REDIS_HOST / REDIS_SENTINELS:
    /// commands go to each key's master, and a failover of a master is followed.
    #[arg(long, env = "REDIS_CLUSTER_NODES", value_delimiter = ',')]
    pub redis_cluster_nodes: Vec<String>,

    /// The master's name in Sentinel (ioredis' `name`).
    #[arg(long, env = "REDIS_SENTINEL_MASTER", default_value = "mymaster")]
    pub redis_sentinel_master: String,

    /// Password of the Sentinels themselves (ioredis' `sentinelPassword`).
    #[arg(long, env = "REDIS_SENTINEL_PASSWORD")]
    pub redis_sentinel_password: Option<String>,

    /// TLS to the Sentinels and to the master they name (checked against
    /// --redis-ca-cert when given, else the system's roots).
    #[arg(long, env = "REDIS_SENTINEL_TLS")]
    pub redis_sentinel_tls: bool,

    /// Username of the master found through Sentinel, or of --redis-host (ioredis'
    /// `username`).
    #[arg(long, env = "REDIS_USERNAME")]
    pub redis_username: Option<String>,

    /// Password of the master found through Sentinel, or of --redis-host (ioredis'
    /// `password`; with REDIS_URL, put it in the URL).
    #[arg(long, env = "REDIS_PASSWORD")]
    pub redis_password: Option<String>,

    /// Database of the master found through Sentinel, or of --redis-host (ioredis' `db`).
    #[arg(long, env = "REDIS_DB", default_value_t = 0)]
    pub redis_db: i64,
}

impl Default for RedisLocation {
    fn default() -> Self {
        RedisLocation {
            redis_url: None,
            redis_host: None,
            redis_port: 6379,
            redis_sentinels: Vec::new(),
            redis_cluster_nodes: Vec::new(),
            redis_sentinel_master: "mymaster".into(),
            redis_sentinel_password: None,
            redis_sentinel_tls: false,
            redis_username: None,
            redis_password: None,
            redis_db: 0,
        }
    }
}

impl RedisLocation {
    /// The URL of a single server, if one is configured (not with Sentinel).
    pub fn url(&self) -> Option<String> {
        if let Some(url) = &self.redis_url {
            return Some(url.clone());
        }
        let host = self.redis_host.as_ref()?;
        let auth = match (&self.redis_username, &self.redis_password) {
            (_, None) => String::new(),
            (user, Some(pw)) => format!("{}:{pw}@", user.as_deref().unwrap_or("")),
        };
        let db = match self.redis_db {
            0 => String::new(),
            n => format!("/{n}"),
        };
        Some(format!("redis://{auth}{host}:{}{db}", self.redis_port))
    }

    /// Whether Redis is configured at all (one server, Sentinel or a Cluster).
    pub fn is_configured(&self) -> bool {
        self.url().is_some()
            || !self.redis_sentinels.is_empty()
            || !self.redis_cluster_nodes.is_empty()
    }

    /// Whether Redis is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        !self.redis_cluster_nodes.is_empty()
    }

    /// For messages: the redacted URL, the master's name and its Sentinels, or the
    /// cluster's nodes.
    pub fn describe(&self) -> String {
        if self.is_cluster() {
            return format!("Redis Cluster via {}", self.redis_cluster_nodes.join(","));
        }
        match self.url() {
            Some(url) if self.redis_sentinels.is_empty() => redact(&url),
            _ => format!(
                "master {:?} via Sentinel {}",
                self.redis_sentinel_master,
                self.redis_sentinels.join(",")
            ),
        }
    }
}

/// `host:port` entries of setting `what` (an example follows in errors), each checked.
fn addresses(
    list: &[String],
    what: &str,
    example: &str,
) -> Result<Vec<(String, u16)>, RedisSetupError> {
    let bad = |entry: &str| {
        RedisSetupError::Addresses(format!(
            "{entry:?} is not host:port ({what} is a comma-separated list, e.g. {example})"
        ))
    };
    list.iter()
        .map(|s| {
            let (host, port) = s.trim().rsplit_once(':').ok_or_else(|| bad(s))?;
            let port = port.parse().map_err(|_| bad(s))?;
            if host.is_empty() {
                return Err(bad(s));
            }
            Ok((host.trim_matches(['[', ']']).to_owned(), port))
        })
        .collect()
}

/// Redis settings. Without any of them the server runs on in-process state (one node).
///
/// The command timeout and the presence prefix are declared here and again in `rtctl`'s
/// inspection flags: the timeout on purpose (a server's command must fail fast, 1 s; an
/// operator's read may wait, 2 s), the prefix because the app reads it from here.
#[derive(clap::Args, Debug, Clone)]
pub struct RedisArgs {
    #[command(flatten)]
    pub location: RedisLocation,

    /// PEM file of the CA(s) that signed the Redis server's certificate, for a
    /// `rediss://` URL whose server certificate the system's roots do not vouch for
    /// (a private CA, a managed service's own CA). Replaces the system roots.
    #[arg(long, env = "REDIS_CA_CERT")]
    pub redis_ca_cert: Option<PathBuf>,

    /// Milliseconds a Redis command may take before it counts as failed.
    #[arg(long, env = "REDIS_TIMEOUT", default_value_t = 1000)]
    pub redis_timeout: u64,

    /// Channel prefix of the cluster adapter: the `key` option of Node's
    /// @socket.io/redis-adapter and redis-emitter (nodes sharing a cluster must agree).
    #[arg(long, env = "REDIS_ADAPTER_KEY", default_value = "socket.io")]
    pub redis_adapter_key: String,

    /// Milliseconds a cluster request (fetch_sockets, server_side_emit with acks, all
    /// rooms) waits for every node's answer (the adapter's `requestsTimeout`).
    #[arg(long, env = "REDIS_REQUESTS_TIMEOUT", default_value_t = 5000)]
    pub redis_requests_timeout: u64,

    /// Milliseconds between presence heartbeats; a node that dies without a word has its
    /// users shown offline within three times this. A heartbeat costs Redis the same
    /// whatever the node's connection count.
    #[arg(long, env = "PRESENCE_HEARTBEAT", default_value_t = 5_000)]
    pub presence_heartbeat: u64,

    /// Key prefix of presence in Redis (users, sockets, nodes, room snapshots); `rtctl
    /// presence|rooms|nodes` must be given the same.
    #[arg(long, env = "PRESENCE_PREFIX", default_value = DEFAULT_PRESENCE_PREFIX)]
    pub presence_prefix: String,
}

/// Where presence lives in Redis unless `--presence-prefix` says otherwise.
pub const DEFAULT_PRESENCE_PREFIX: &str = "rt:presence";

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("REDIS_URL {url:?} is not a valid Redis URL: {source}")]
    InvalidUrl {
        url: String,
        source: redis::RedisError,
    },
    #[error("cannot use REDIS_CA_CERT {path:?}: {reason}")]
    CaCert { path: PathBuf, reason: String },
    #[error("invalid Redis Sentinel settings: {0}")]
    Sentinels(String),
    #[error("invalid Redis addresses: {0}")]
    Addresses(String),
    #[error("invalid Redis Cluster settings: {0}")]
    Cluster(String),
    // `error` is not a `#[source]`: its text is in the message once, before the hint,
    // instead of again after it in an error chain.
    #[error(
        "cannot connect to Redis at {target}: {error} ({})",
        hint(target, error)
    )]
    Unreachable {
        target: String,
        error: redis::RedisError,
    },
}

/// What to check after a failed connection: the certificate when TLS refused it, the
/// URL and server otherwise.
fn hint(target: &str, err: &redis::RedisError) -> &'static str {
    let text = err.to_string().to_ascii_lowercase();
    if text.contains("certificate") || text.contains("unknownissuer") {
        "the server's TLS certificate is not trusted: set REDIS_CA_CERT to the PEM of the CA \
         that signed it, and check that the host in REDIS_URL is one the certificate names"
    } else if target.starts_with("rediss://") {
        "is redis-server running with TLS on that port? check REDIS_URL"
    } else {
        "is redis-server running? check REDIS_URL (a TLS-only server needs rediss://)"
    }
}

impl Default for RedisArgs {
    fn default() -> Self {
        RedisArgs {
            location: RedisLocation::default(),
            redis_ca_cert: None,
            redis_timeout: 1000,
            redis_adapter_key: "socket.io".into(),
            redis_requests_timeout: 5000,
            presence_heartbeat: 5_000,
            presence_prefix: DEFAULT_PRESENCE_PREFIX.into(),
        }
    }
}

impl RedisArgs {
    /// Settings for the Redis at `url`, the rest default (what tests and tools start from).
    pub fn at_url(url: impl Into<String>) -> RedisArgs {
        RedisArgs {
            location: RedisLocation {
                redis_url: Some(url.into()),
                ..RedisLocation::default()
            },
            ..RedisArgs::default()
        }
    }

    /// The URL to use, if Redis is configured at all.
    pub fn url(&self) -> Option<String> {
        self.location.url()
    }

    /// The client every Redis connection of the server is made from (commands, the
    /// cluster's publisher and subscriber), with the TLS settings; `Ok(None)` when
    /// Redis is not configured. Reads `--redis-ca-cert` now, so a bad file fails at start.
    pub fn client(&self) -> Result<Option<redis::Client>, RedisSetupError> {
        let Some(url) = self.url() else {
            return Ok(None);
        };
        let client =
            redis::Client::open(url.as_str()).map_err(|source| RedisSetupError::InvalidUrl {
                url: redact(&url),
                source,
            })?;
        let Some(path) = &self.redis_ca_cert else {
            return Ok(Some(client));
        };
        let tls = matches!(
            client.get_connection_info().addr(),
            redis::ConnectionAddr::TcpTls { .. }
        );
        if !tls {
            return Err(RedisSetupError::CaCert {
                path: path.clone(),
                reason: format!(
                    "it only applies to TLS, and REDIS_URL {} is not rediss://: use rediss:// \
                     or unset REDIS_CA_CERT",
                    redact(&url)
                ),
            });
        }
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(read_ca(path)?),
        };
        redis::Client::build_with_tls(client.get_connection_info().clone(), certificates)
            .map(Some)
            .map_err(|e| RedisSetupError::CaCert {
                path: path.clone(),
                reason: e.to_string(),
            })
    }

    /// Where every Redis connection of the server goes: one server, or the master the
    /// Sentinels name; `Ok(None)` when Redis is not configured. Checks the settings (and
    /// reads `--redis-ca-cert`) now, so a mistake fails at start.
    pub fn target(&self) -> Result<Option<RedisTarget>, RedisSetupError> {
        if self.location.is_cluster() {
            return self.cluster_target().map(Some);
        }
        let sentinels = addresses(
            &self.location.redis_sentinels,
            "REDIS_SENTINELS",
            "10.0.0.5:26379,10.0.0.6:26379",
        )?;
        if sentinels.is_empty() {
            return Ok(self.client()?.map(|c| RedisTarget::Single(Box::new(c))));
        }
        if self.location.url().is_some() {
            return Err(RedisSetupError::Sentinels(
                "REDIS_SENTINELS and REDIS_URL / REDIS_HOST are both set: keep one (with \
                 Sentinel, the master's address comes from the Sentinels)"
                    .into(),
            ));
        }
        let l = &self.location;
        let settings = SentinelSettings {
            master: l.redis_sentinel_master.clone(),
            sentinel_password: l.redis_sentinel_password.clone(),
            username: l.redis_username.clone(),
            password: l.redis_password.clone(),
            db: l.redis_db,
            tls: l.redis_sentinel_tls,
            ca: self.redis_ca_cert.as_deref().map(read_ca).transpose()?,
            timeout: Duration::from_millis(self.redis_timeout),
        };
        RedisTarget::sentinel(&sentinels, &settings)
            .map(Some)
            .map_err(|e| RedisSetupError::Sentinels(e.to_string()))
    }

    /// The Redis Cluster of `--redis-cluster-nodes`, refused beside another location.
    fn cluster_target(&self) -> Result<RedisTarget, RedisSetupError> {
        let l = &self.location;
        if l.url().is_some() || !l.redis_sentinels.is_empty() {
            return Err(RedisSetupError::Cluster(
                "REDIS_CLUSTER_NODES is set beside REDIS_URL / REDIS_HOST / REDIS_SENTINELS: \
                 keep one (a cluster's nodes are found through the ones listed)"
                    .into(),
            ));
        }
        if self.redis_ca_cert.is_some() {
            return Err(RedisSetupError::Cluster(
                "TLS to a Redis Cluster is not supported yet: unset REDIS_CA_CERT, or reach \
                 the cluster over a private network"
                    .into(),
            ));
        }
        let nodes = addresses(
            &l.redis_cluster_nodes,
            "REDIS_CLUSTER_NODES",
            "10.0.0.5:6379,10.0.0.6:6379",
        )?;
        RedisTarget::cluster(
            &nodes,
            l.redis_username.as_deref(),
            l.redis_password.as_deref(),
            Duration::from_millis(self.redis_timeout),
        )
        .map_err(|e| RedisSetupError::Cluster(e.to_string()))
    }

    /// How the server's command connections behave: each command fails fast (the
    /// timeout) during an outage, and reconnects happen in the background.
    pub fn manager_config(&self, retries: usize) -> ConnectionManagerConfig {
        let timeout = Duration::from_millis(self.redis_timeout);
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(retries)
            .set_max_delay(Duration::from_secs(2))
    }

    /// Connects, or `Ok(None)` when Redis is not configured. The connection reconnects
    /// by itself after an outage, and follows the master after a Sentinel failover; a
    /// command during the outage fails fast (timeout).
    pub async fn connect(&self) -> Result<Option<RedisConn>, RedisSetupError> {
        let Some(target) = self.target()? else {
            return Ok(None);
        };
        RedisConn::connect(target.clone(), self.manager_config(2))
            .await
            .map(Some)
            .map_err(|error| RedisSetupError::Unreachable {
                target: target.describe(),
                error,
            })
    }
}

/// The PEM of `--redis-ca-cert`, checked to hold a certificate.
fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, RedisSetupError> {
    let ca_error = |reason: String| RedisSetupError::CaCert {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(format!("cannot read it: {e}")))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ca_error(
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(pem)
}

/// A URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_make_a_url_and_passwords_are_redacted() {
        let a = RedisArgs {
            location: RedisLocation {
                redis_host: Some("cache".into()),
                redis_port: 6380,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(a.url().as_deref(), Some("redis://cache:6380"));
        assert_eq!(RedisArgs::default().url(), None);
        assert_eq!(
            redact("redis://:s3cret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    fn with_ca(url: &str, ca: &std::path::Path) -> RedisArgs {
        RedisArgs {
            redis_ca_cert: Some(ca.to_owned()),
            ..RedisArgs::at_url(url)
        }
    }

    /// A CA file is read when the client is made: a plain URL, a missing file and a file
    /// without a certificate are refused at start, each saying what to change.
    #[test]
    fn a_ca_file_needs_rediss_and_a_pem_certificate() {
        let dir = std::env::temp_dir().join(format!("rt-redis-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "just text\n").unwrap();
        let missing = dir.join("missing.pem");

        let err = with_ca("redis://:pw@cache:6379", &not_pem)
            .client()
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RedisSetupError::CaCert { .. }), "{text}");
        assert!(text.contains("use rediss://"), "{text}");
        assert!(!text.contains("pw"), "the password leaked: {text}");

        let text = with_ca("rediss://cache:6380", &missing)
            .client()
            .unwrap_err()
            .to_string();
        assert!(text.contains("cannot read it"), "{text}");
        assert!(text.contains("missing.pem"), "{text}");

        let text = with_ca("rediss://cache:6380", &not_pem)
            .client()
            .unwrap_err()
            .to_string();
        assert!(text.contains("no PEM certificate"), "{text}");

        // Without a CA file a rediss:// URL is a TLS client on the system roots.
        let plain = RedisArgs::at_url("rediss://cache:6380");
        let client = plain.client().unwrap().unwrap();
        assert!(matches!(
            client.get_connection_info().addr(),
            redis::ConnectionAddr::TcpTls { .. }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
