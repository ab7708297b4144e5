//! Where the server's Redis is right now: one server, the master a set of Sentinels
//! names, or a Redis Cluster. Every connection is made from a [`RedisTarget`] and, when
//! it has to reconnect, asks it again — so after a Sentinel failover the next connection
//! goes to the new master, and after a Cluster node dies a subscriber moves to another
//! node, without a node restart.

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, TlsMode};
use std::sync::Arc;
use std::time::Duration;

/// A Redis the server connects to. Cheap to clone.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server (`REDIS_URL`, or `REDIS_HOST` + `REDIS_PORT`).
    Single(Box<redis::Client>),
    /// The master of `REDIS_SENTINEL_MASTER`, as the Sentinels report it.
    Sentinel(Arc<SentinelTarget>),
    /// A Redis Cluster reached through any of `REDIS_CLUSTER_NODES`.
    Cluster(Arc<ClusterTarget>),
}

/// A Redis Cluster: commands go to the master of each key's slot (the crate's cluster
/// connection follows slot moves and failovers); a pub/sub subscriber may sit on any node,
/// since a cluster delivers every PUBLISH to every node.
pub struct ClusterTarget {
    client: redis::cluster::ClusterClient,
    nodes: Vec<(String, u16)>,
    /// Credentials of each node, for the single-node connections of subscribers.
    username: Option<String>,
    password: Option<String>,
    timeout: Duration,
}

impl ClusterTarget {
    /// A command connection to the whole cluster: fails fast (`timeout`) per command,
    /// and refreshes its slot map when a node moves or dies.
    pub async fn connect(&self) -> redis::RedisResult<redis::cluster_async::ClusterConnection> {
        self.client.get_async_connection().await
    }

    /// A RESP3 connection to the whole cluster whose pushes (sharded messages, and a
    /// `Disconnection` when a node's connection is lost) go to `pushes`: the crate sends
    /// each SSUBSCRIBE to the master of the channel's slot.
    pub async fn subscriber(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> redis::RedisResult<redis::cluster_async::ClusterConnection> {
        let (user, password) = (self.username.as_deref(), self.password.as_deref());
        cluster_builder(&self.nodes, user, password, self.timeout)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()?
            .get_async_connection()
            .await
    }
}

/// A cluster client's settings: `nodes` to find the cluster through, each node's
/// credentials, a command failing after `timeout`.
fn cluster_builder(
    nodes: &[(String, u16)],
    username: Option<&str>,
    password: Option<&str>,
    timeout: Duration,
) -> redis::cluster::ClusterClientBuilder {
    let urls = nodes
        .iter()
        .map(|(host, port)| format!("redis://{host}:{port}"));
    let mut b = redis::cluster::ClusterClientBuilder::new(urls)
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(2);
    if let Some(username) = username {
        b = b.username(username);
    }
    if let Some(password) = password {
        b = b.password(password);
    }
    b
}

/// A master found through Sentinel.
pub struct SentinelTarget {
    /// The crate's client keeps state between lookups (`&mut self`); one lookup at a time.
    client: tokio::sync::Mutex<SentinelClient>,
    master: String,
    sentinels: Vec<(String, u16)>,
    /// How long one lookup may take (a Sentinel that does not answer is skipped by the
    /// crate; one that hangs would otherwise hold every reconnect).
    timeout: Duration,
}

/// What a Sentinel lookup needs besides the Sentinels' addresses.
#[derive(Debug, Clone, Default)]
pub struct SentinelSettings {
    pub master: String,
    pub sentinel_password: Option<String>,
    /// The master's credentials and database (ioredis' `password`, `username`, `db`).
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    /// TLS to the Sentinels and to the master, checked against `ca` when given.
    pub tls: bool,
    pub ca: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl RedisTarget {
    /// A target behind the Sentinels at `sentinels` (`host:port` each).
    pub fn sentinel(
        sentinels: &[(String, u16)],
        settings: &SentinelSettings,
    ) -> redis::RedisResult<RedisTarget> {
        let addrs = sentinels.iter().map(|(host, port)| match settings.tls {
            false => ConnectionAddr::Tcp(host.clone(), *port),
            true => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
        });
        let mut b =
            SentinelClientBuilder::new(addrs, &settings.master, SentinelServerType::Master)?
                .set_client_to_redis_db(settings.db);
        if let Some(password) = &settings.sentinel_password {
            b = b.set_client_to_sentinel_password(password);
        }
        if let Some(username) = &settings.username {
            b = b.set_client_to_redis_username(username);
        }
        if let Some(password) = &settings.password {
            b = b.set_client_to_redis_password(password);
        }
        if settings.tls {
            b = b
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(pem) = &settings.ca {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                };
                b = b
                    .set_client_to_redis_certificates(certificates.clone())
                    .set_client_to_sentinel_certificates(certificates);
            }
        }
        Ok(RedisTarget::Sentinel(Arc::new(SentinelTarget {
            client: tokio::sync::Mutex::new(b.build()?),
            master: settings.master.clone(),
            sentinels: sentinels.to_vec(),
            timeout: settings.timeout,
        })))
    }

    /// A target on the Redis Cluster that `nodes` (`host:port` each, any of its nodes)
    /// belong to, with the nodes' credentials.
    pub fn cluster(
        nodes: &[(String, u16)],
        username: Option<&str>,
        password: Option<&str>,
        timeout: Duration,
    ) -> redis::RedisResult<RedisTarget> {
        let client = cluster_builder(nodes, username, password, timeout).build()?;
        Ok(RedisTarget::Cluster(Arc::new(ClusterTarget {
            client,
            nodes: nodes.to_vec(),
            username: username.map(str::to_owned),
            password: password.map(str::to_owned),
            timeout,
        })))
    }

    /// A client for the server to talk to now: the one server, the master the
    /// Sentinels name (checked with `ROLE` by the crate) at the time of the call, or
    /// the first node of a Redis Cluster that answers (for a pub/sub subscriber).
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            RedisTarget::Single(client) => Ok((**client).clone()),
            RedisTarget::Cluster(c) => c.reachable_node().await,
            RedisTarget::Sentinel(s) => {
                let lookup = async { s.client.lock().await.async_get_client().await };
                match tokio::time::timeout(s.timeout, lookup).await {
                    Ok(found) => found,
                    Err(_) => Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no Sentinel named the master in time",
                        format!("{} ms", s.timeout.as_millis()),
                    ))),
                }
            }
        }
    }

    /// For messages and logs: the redacted URL, or the master's name and its Sentinels.
    pub fn describe(&self) -> String {
        match self {
            RedisTarget::Single(client) => address_of(client),
            RedisTarget::Sentinel(s) => format!(
                "master {:?} via Sentinel {}",
                s.master,
                host_ports(&s.sentinels)
            ),
            RedisTarget::Cluster(c) => format!("Redis Cluster via {}", host_ports(&c.nodes)),
        }
    }

    /// Whether connections must follow a master that moves.
    pub fn follows_failover(&self) -> bool {
        matches!(self, RedisTarget::Sentinel(_))
    }
}

/// `host:port,host:port` of a list of addresses.
fn host_ports(list: &[(String, u16)]) -> String {
    let list: Vec<String> = list.iter().map(|(h, p)| format!("{h}:{p}")).collect();
    list.join(",")
}

impl ClusterTarget {
    fn node_info(&self, host: &str, port: u16) -> redis::RedisResult<redis::ConnectionInfo> {
        use redis::IntoConnectionInfo as _;
        let mut settings = redis::RedisConnectionInfo::default();
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        Ok((host, port)
            .into_connection_info()?
            .set_redis_settings(settings))
    }

    /// A client of the first configured node that answers PING in time: where a
    /// subscriber connects (any node hears every PUBLISH of the cluster).
    async fn reachable_node(&self) -> redis::RedisResult<redis::Client> {
        let mut last = None;
        for (host, port) in &self.nodes {
            let client = redis::Client::open(self.node_info(host, *port)?)?;
            let ping = async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut conn).await
            };
            match tokio::time::timeout(self.timeout, ping).await {
                Ok(Ok(())) => return Ok(client),
                Ok(Err(e)) => last = Some(e),
                Err(_) => {}
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Io,
                "no Redis Cluster node answered",
                host_ports(&self.nodes),
            ))
        }))
    }
}

/// `host:port` of a client, without credentials.
pub fn address_of(client: &redis::Client) -> String {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
        other => other.to_string(),
    }
}
