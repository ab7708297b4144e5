//! Where the server's Redis is right now: one server, or the master a set of Sentinels
//! names. Every connection is made from a [`RedisTarget`] and, when it has to reconnect,
//! asks it again — so after a Sentinel failover the next connection goes to the new
//! master without a node restart.

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

    /// A client for the server to talk to now: the one server, or the master the
    /// Sentinels name (checked with `ROLE` by the crate) at the time of the call.
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            RedisTarget::Single(client) => Ok((**client).clone()),
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
            RedisTarget::Sentinel(s) => {
                let list: Vec<String> = s
                    .sentinels
                    .iter()
                    .map(|(h, p)| format!("{h}:{p}"))
                    .collect();
                format!("master {:?} via Sentinel {}", s.master, list.join(","))
            }
        }
    }

    /// Whether connections must follow a master that moves.
    pub fn follows_failover(&self) -> bool {
        matches!(self, RedisTarget::Sentinel(_))
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
