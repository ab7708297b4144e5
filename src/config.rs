//! The one validated configuration both binaries share.
//!
//! Every setting is a flag with an environment twin (`--allowed-origins` /
//! `ALLOWED_ORIGINS`), listed by `--help`. Parsing does no I/O; [`Config::from_args`]
//! checks what types alone cannot and names the offending setting in its error.

pub use crate::handlers::bench::LoadtestNamespace;
use crate::handlers::role::Role;
use crate::protocol::cluster_sharded::SubscriptionMode;
use crate::protocol::engineio::TransportKind;
use crate::ratelimit::Rule;
use crate::redis_client::RedisArgs;
use crate::server::{EventBudget, RecoveryOptions, ServerOptions};
use crate::store::StoreArgs;
use crate::transport::{Cors, EngineConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// Server settings as flags and environment variables. Defaults follow the requirements
/// (SR-5): pingInterval 25 s, pingTimeout 60 s, upgradeTimeout 10 s, maxHttpBufferSize 1e6.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:3001")]
    pub listen: SocketAddr,

    /// HTTP path of the Engine.IO endpoint.
    #[arg(long, env = "SOCKETIO_PATH", default_value = "/socket.io/")]
    pub path: String,

    /// Milliseconds between server pings.
    #[arg(long, env = "PING_INTERVAL", default_value_t = 25_000)]
    pub ping_interval: u64,

    /// Milliseconds to wait for a pong before closing the connection.
    #[arg(long, env = "PING_TIMEOUT", default_value_t = 60_000)]
    pub ping_timeout: u64,

    /// Milliseconds a polling → WebSocket upgrade may take.
    #[arg(long, env = "UPGRADE_TIMEOUT", default_value_t = 10_000)]
    pub upgrade_timeout: u64,

    /// Milliseconds a new connection has to join a namespace.
    #[arg(long, env = "CONNECT_TIMEOUT", default_value_t = 45_000)]
    pub connect_timeout: u64,

    /// Milliseconds a client has to send a request's headers, from when the connection
    /// is ready for it; a slower one (slowloris) is dropped. 60 s, as Node's
    /// `headersTimeout` and nginx's `client_header_timeout`: at 10 s, clients of a box
    /// saturated by a 2,000 connects/s ramp were dropped before their headers arrived.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value_t = 60_000)]
    pub header_read_timeout: u64,

    /// Engine.IO sessions one client address may hold at once (0: no limit). Off by
    /// default: behind a proxy every client shares its address unless --trusted-proxies
    /// names it.
    #[arg(
        long,
        env = "MAX_CONNECTIONS_PER_IP",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_connections_per_ip: u32,

    /// Proxies (addresses or ranges, comma-separated) whose X-Forwarded-For header
    /// names the client's address for --max-connections-per-ip.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDR",
          value_parser = crate::transport::ip_limit::Cidr::parse)]
    pub trusted_proxies: Vec<crate::transport::ip_limit::Cidr>,

    /// Events one socket may send per window, `EVENTS/SECONDS` (`0` turns the budget
    /// off); an event over it is refused (its ack, if any, gets `{error: "rate_limited"}`).
    #[arg(long, env = "SOCKET_EVENT_BUDGET", default_value = "100/1", value_name = "N/S",
          value_parser = EventBudget::parse)]
    pub socket_event_budget: EventBudget,

    /// Refused events after which the socket is disconnected (a flood, not a burst).
    #[arg(
        long,
        env = "SOCKET_EVENT_REJECTIONS",
        default_value_t = 50,
        value_name = "N"
    )]
    pub socket_event_rejections: u32,

    /// Largest message or poll body in bytes (accepts `1e6`).
    #[arg(long, env = "MAX_HTTP_BUFFER_SIZE", default_value = "1e6", value_parser = parse_size)]
    pub max_http_buffer_size: usize,

    /// Allowed transports, comma-separated.
    #[arg(long, env = "TRANSPORTS", default_value = "websocket,polling", value_delimiter = ',', value_parser = parse_transport)]
    pub transports: Vec<TransportKind>,

    /// Browser origins allowed by CORS (comma-separated; `*` for any, without credentials).
    #[arg(
        long,
        env = "ALLOWED_ORIGINS",
        default_value = "http://localhost:3000",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// The service this node is: `all` (every namespace and API route), `chat` (`/chat`,
    /// `POST /api/chat/send`) or `notifications` (`/notifications`, `POST
    /// /api/notifications`). `/` and other namespaces are served by every role.
    #[arg(long, env = "ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// Socket.IO namespaces served, comma-separated.
    #[arg(
        long,
        env = "NAMESPACES",
        default_value = "/,/chat,/notifications",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Milliseconds a graceful shutdown may take before the process exits anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = 10_000)]
    pub shutdown_timeout: u64,

    /// Milliseconds to keep serving after shutdown begins, with /api/health/ready already
    /// 503, before connections are closed. Use about 5000 behind nginx or Kubernetes.
    #[arg(long, env = "DRAIN_DELAY", default_value_t = 0)]
    pub drain_delay: u64,

    /// Connection state recovery (socket.io's `connectionStateRecovery`): a client that
    /// drops for a moment gets its socket id, rooms and data back, and every event it
    /// missed, when it reconnects within --max-disconnection-duration.
    #[arg(long, env = "CONNECTION_STATE_RECOVERY", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true")]
    pub connection_state_recovery: bool,

    /// Milliseconds a disconnected client's session, and the events it may miss, are kept
    /// for recovery.
    #[arg(
        long,
        env = "MAX_DISCONNECTION_DURATION",
        default_value_t = 120_000,
        value_name = "MS"
    )]
    pub max_disconnection_duration: u64,

    /// A recovered socket skips the namespace's middleware (the auth check), as in Node;
    /// its session is still not recovered past its token's expiry.
    #[arg(long, env = "RECOVERY_SKIP_MIDDLEWARES", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub recovery_skip_middlewares: bool,

    /// The most events one namespace keeps in memory for recovery (the in-process and
    /// classic Redis adapters; older ones are dropped first).
    #[arg(
        long,
        env = "RECOVERY_MAX_PACKETS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub recovery_max_packets: usize,

    /// Milliseconds each dependency check of /api/health may take.
    #[arg(long, env = "HEALTH_TIMEOUT", default_value_t = 1000)]
    pub health_timeout: u64,

    /// This node's id in metrics, health and cluster presence (default: hostname-pid).
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,

    /// `development` generates missing secrets and prints them; `production` refuses to
    /// start without NEXTAUTH_SECRET and RT_SERVICE_TOKEN.
    #[arg(long = "env", env = "RT_ENV", default_value = "development", value_parser = ["development", "production"])]
    pub environment: String,

    /// Secret the Next.js app signs or encrypts its session tokens with (AUTH_SECRET is
    /// read when this is not set).
    #[arg(long, env = "NEXTAUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Bearer token the Next.js app presents to the HTTP API (/api/notifications, /api/chat/send).
    #[arg(long, env = "RT_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<String>,

    /// Rate limits per user and event, `event=points/seconds[@keyPrefix]`, comma-separated.
    #[arg(long = "rate-limit", env = "RATE_LIMITS", default_value = "message:send=10/60", value_delimiter = ',', value_parser = Rule::parse)]
    pub rate_limits: Vec<Rule>,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub admin_ui: crate::admin_ui::config::AdminUiArgs,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    pub log_format: String,

    /// Log level or filter (`info`, `realtime=debug`); RUST_LOG overrides it.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Threads that run connections (0: one per CPU core). 1 runs everything on one
    /// thread with no cross-thread wake-ups: the cheapest per delivery when several
    /// nodes share a machine's cores (see docs/scaling/benchmarks.md).
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// Serve the `/bench` namespace `rtctl loadtest` drives (pure fan-out through rooms
    /// and the cluster adapter, no database). Off in production unless asked for.
    #[arg(long, env = "LOADTEST_NAMESPACE")]
    pub loadtest_namespace: bool,

    /// Test-only: skip the broadcast of every Nth `/bench` publish on this node (still
    /// acked), so the loadtest's loss accounting can be shown to work.
    #[arg(long, env = "LOADTEST_DROP_EVERY", value_name = "N")]
    pub loadtest_drop_every: Option<u64>,

    /// Test-only: delay each `/bench` broadcast by this many milliseconds.
    #[arg(long, env = "LOADTEST_DELAY_MS", value_name = "MS")]
    pub loadtest_delay_ms: Option<u64>,

    /// Record Prometheus metrics. `false` makes every recording hook a no-op and
    /// /metrics answer 404 (for measuring their cost, or nodes nobody scrapes).
    #[arg(long, env = "METRICS_ENABLED", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub metrics_enabled: bool,
}

/// A setting that parsed but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--{setting} ({env}): {problem}")]
    Invalid {
        setting: &'static str,
        env: &'static str,
        problem: String,
    },
    #[error(transparent)]
    AdminUi(#[from] crate::admin_ui::config::AdminUiConfigError),
}

fn invalid(setting: &'static str, env: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        env,
        problem: problem.into(),
    }
}

/// A secret the server needs, and where it came from.
#[derive(Clone)]
pub struct Secret {
    pub value: String,
    /// Generated at start because none was configured (development only).
    pub generated: bool,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secret(<{} bytes>, generated: {})",
            self.value.len(),
            self.generated
        )
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The service this node is; `namespaces` holds only what it serves.
    pub role: Role,
    pub namespaces: Vec<String>,
    pub server: ServerOptions,
    pub production: bool,
    pub auth_secret: Secret,
    pub service_token: Secret,
    pub rate_limits: Vec<Rule>,
    pub store: StoreArgs,
    pub redis: RedisArgs,
    /// Which cluster adapter the node uses when Redis is configured.
    pub adapter: AdapterChoice,
    pub log_format: String,
    pub log_level: String,
    /// `--metrics-enabled`: whether the process records metrics (applied by `serve`:
    /// the switch is process-wide).
    pub metrics_enabled: bool,
    /// This node's id (`--node-id`, default hostname-pid).
    pub node_id: String,
    /// Timeout of each dependency check in /api/health.
    pub health_timeout: Duration,
    /// The `/bench` namespace for `rtctl loadtest`, when enabled.
    pub loadtest: Option<LoadtestNamespace>,
    /// The Socket.IO Admin UI's namespace, when enabled.
    pub admin_ui: Option<crate::admin_ui::config::AdminUiConfig>,
}

/// A configured secret, or (development) a random one.
fn secret(
    given: Option<&str>,
    production: bool,
    setting: &'static str,
    env: &'static str,
) -> Result<Secret, ConfigError> {
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        Some(v) => Ok(Secret {
            value: v.to_owned(),
            generated: false,
        }),
        None if production => Err(invalid(setting, env, "is required when RT_ENV=production")),
        None => {
            use base64::Engine as _;
            let raw: [u8; 32] = rand::random();
            Ok(Secret {
                value: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
                generated: true,
            })
        }
    }
}

impl Config {
    pub fn from_args(a: &ServeArgs) -> Result<Self, ConfigError> {
        if !a.path.starts_with('/') {
            return Err(invalid("path", "SOCKETIO_PATH", "must start with '/'"));
        }
        let mut path = a.path.clone();
        if !path.ends_with('/') {
            path.push('/');
        }
        for (value, setting, env) in [
            (a.ping_interval, "ping-interval", "PING_INTERVAL"),
            (a.ping_timeout, "ping-timeout", "PING_TIMEOUT"),
            (a.upgrade_timeout, "upgrade-timeout", "UPGRADE_TIMEOUT"),
            (a.connect_timeout, "connect-timeout", "CONNECT_TIMEOUT"),
            (
                a.header_read_timeout,
                "header-read-timeout",
                "HEADER_READ_TIMEOUT",
            ),
        ] {
            if value == 0 {
                return Err(invalid(setting, env, "must be at least 1 millisecond"));
            }
        }
        if a.max_http_buffer_size == 0 {
            return Err(invalid(
                "max-http-buffer-size",
                "MAX_HTTP_BUFFER_SIZE",
                "must be positive",
            ));
        }
        if a.transports.is_empty() {
            return Err(invalid(
                "transports",
                "TRANSPORTS",
                "name at least one of websocket, polling",
            ));
        }
        let origins: Vec<String> = a
            .allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty() {
            return Err(invalid(
                "allowed-origins",
                "ALLOWED_ORIGINS",
                "name at least one origin, or *",
            ));
        }
        if let Some(bad) = origins
            .iter()
            .find(|o| *o != "*" && !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return Err(invalid(
                "allowed-origins",
                "ALLOWED_ORIGINS",
                format!("{bad:?} is not an origin like https://app.example.com"),
            ));
        }
        let mut namespaces = Vec::new();
        for ns in &a.namespaces {
            let ns = ns.trim();
            if !ns.starts_with('/') || ns.contains(',') {
                return Err(invalid(
                    "namespaces",
                    "NAMESPACES",
                    format!("{ns:?} must start with '/'"),
                ));
            }
            if !namespaces.iter().any(|n| n == ns) {
                namespaces.push(ns.to_owned());
            }
        }
        if namespaces.is_empty() {
            return Err(invalid(
                "namespaces",
                "NAMESPACES",
                "name at least one namespace",
            ));
        }
        let namespaces = role_namespaces(a.role, namespaces)?;
        if a.health_timeout == 0 {
            return Err(invalid(
                "health-timeout",
                "HEALTH_TIMEOUT",
                "must be at least 1 millisecond",
            ));
        }
        let node_id = match &a.node_id {
            Some(id) => validate_node_id(id)?,
            None => default_node_id(),
        };
        let loadtest = loadtest_namespace(a)?;
        let adapter = adapter_choice(&a.cluster, a.redis.location.is_configured())?;
        let mut transports = a.transports.clone();
        transports.dedup();
        let production = a.environment == "production";
        let auth_secret_value = a
            .auth_secret
            .clone()
            .or_else(|| std::env::var("AUTH_SECRET").ok());
        let auth_secret = secret(
            auth_secret_value.as_deref(),
            production,
            "auth-secret",
            "NEXTAUTH_SECRET",
        )?;
        let service_token = secret(
            a.service_token.as_deref(),
            production,
            "service-token",
            "RT_SERVICE_TOKEN",
        )?;
        let admin_ui = a.admin_ui.check(&node_id, &namespaces)?;
        Ok(Config {
            listen: a.listen,
            role: a.role,
            production,
            auth_secret,
            service_token,
            rate_limits: a.rate_limits.clone(),
            store: a.store.clone(),
            redis: a.redis.clone(),
            adapter,
            namespaces,
            server: ServerOptions {
                engine: EngineConfig {
                    path,
                    ping_interval: Duration::from_millis(a.ping_interval),
                    ping_timeout: Duration::from_millis(a.ping_timeout),
                    upgrade_timeout: Duration::from_millis(a.upgrade_timeout),
                    max_payload: a.max_http_buffer_size,
                    transports,
                    cors: Cors::from_list(&origins),
                    max_sessions_per_ip: a.max_connections_per_ip,
                    trusted_proxies: a.trusted_proxies.clone(),
                    ..EngineConfig::default()
                },
                header_read_timeout: Duration::from_millis(a.header_read_timeout),
                event_budget: a.socket_event_budget.enabled().then_some(EventBudget {
                    disconnect_after: a.socket_event_rejections,
                    ..a.socket_event_budget
                }),
                connect_timeout: Duration::from_millis(a.connect_timeout),
                shutdown_timeout: Duration::from_millis(a.shutdown_timeout),
                drain_delay: Duration::from_millis(a.drain_delay),
                recovery: recovery(a)?,
            },
            log_format: a.log_format.clone(),
            log_level: a.log_level.clone(),
            metrics_enabled: a.metrics_enabled,
            admin_ui,
            node_id,
            health_timeout: Duration::from_millis(a.health_timeout),
            loadtest,
        })
    }
}

/// Connection state recovery's settings, or `None` when off.
/// The namespaces of `--namespaces` that `role` serves; the role's own one must be among
/// them (a chat node without `/chat` serves nothing of its role).
fn role_namespaces(role: Role, listed: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let own = ["/chat", "/notifications"]
        .into_iter()
        .find(|ns| role != Role::All && Role::owner_of(ns) == Some(role));
    if let Some(own) = own.filter(|own| !listed.iter().any(|n| n == own)) {
        return Err(invalid(
            "role",
            "ROLE",
            format!(
                "--role {} serves {own}, but --namespaces does not list it",
                role.as_str()
            ),
        ));
    }
    Ok(listed.into_iter().filter(|ns| role.serves(ns)).collect())
}

fn recovery(a: &ServeArgs) -> Result<Option<RecoveryOptions>, ConfigError> {
    if !a.connection_state_recovery {
        return Ok(None);
    }
    if a.max_disconnection_duration == 0 {
        return Err(invalid(
            "max-disconnection-duration",
            "MAX_DISCONNECTION_DURATION",
            "must be at least 1 millisecond",
        ));
    }
    if a.recovery_max_packets == 0 {
        return Err(invalid(
            "recovery-max-packets",
            "RECOVERY_MAX_PACKETS",
            "must be at least 1",
        ));
    }
    Ok(Some(RecoveryOptions {
        max_disconnection: Duration::from_millis(a.max_disconnection_duration),
        skip_middlewares: a.recovery_skip_middlewares,
        max_packets: a.recovery_max_packets,
    }))
}

/// Which cluster adapter (`--adapter`), and the Redis Streams adapter's settings: the
/// options of Node's `@socket.io/redis-streams-adapter`, with its defaults, so nodes of
/// both runtimes agree. The channel prefix is `--redis-adapter-key`, the requests'
/// timeout `--redis-requests-timeout`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Cluster adapter, with Redis configured: `redis` (pub/sub, @socket.io/redis-adapter
    /// 8.x), `redis-streams` (@socket.io/redis-streams-adapter 0.3.x: streams keep
    /// broadcasts and sessions, so connection state recovery works across nodes) or
    /// `redis-sharded` (sharded pub/sub of Redis 7, createShardedAdapter of
    /// @socket.io/redis-adapter 8.3).
    #[arg(long, env = "ADAPTER", default_value = "redis", value_enum)]
    pub adapter: AdapterKind,

    /// Which channels the redis-sharded adapter uses (`subscriptionMode`): `static` (two
    /// per namespace), `dynamic` (also one per public room, listened to by the nodes that
    /// have it) or `dynamic-private` (also one per socket). Every node must agree.
    #[arg(
        long,
        env = "REDIS_SHARDED_SUBSCRIPTION_MODE",
        default_value = "dynamic",
        value_enum
    )]
    pub redis_sharded_subscription_mode: ShardedMode,

    /// Stream key of the redis-streams adapter (`streamName`), or the prefix of
    /// `<name>-<i>` with several streams.
    #[arg(long, env = "REDIS_STREAMS_NAME", default_value = "socket.io")]
    pub redis_streams_name: String,

    /// Number of streams of the redis-streams adapter (`streamCount`); each namespace
    /// uses one, picked by a hash of its name.
    #[arg(long, env = "REDIS_STREAMS_COUNT", default_value_t = 1)]
    pub redis_streams_count: u32,

    /// Entries each stream keeps (`maxLen`, trimmed with `MAXLEN ~`): how far back a
    /// client can recover.
    #[arg(long, env = "REDIS_STREAMS_MAX_LEN", default_value_t = 10_000)]
    pub redis_streams_max_len: u64,

    /// Key prefix of recovery sessions (`sessionKeyPrefix`): `<prefix><pid>`.
    #[arg(
        long,
        env = "REDIS_STREAMS_SESSION_PREFIX",
        default_value = "sio:session:"
    )]
    pub redis_streams_session_prefix: String,
}

/// `--adapter`'s values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    Redis,
    RedisStreams,
    RedisSharded,
}

/// `--redis-sharded-subscription-mode`'s values (the package's `subscriptionMode`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardedMode {
    Static,
    Dynamic,
    DynamicPrivate,
}

impl From<ShardedMode> for SubscriptionMode {
    fn from(m: ShardedMode) -> Self {
        match m {
            ShardedMode::Static => SubscriptionMode::Static,
            ShardedMode::Dynamic => SubscriptionMode::Dynamic,
            ShardedMode::DynamicPrivate => SubscriptionMode::DynamicPrivate,
        }
    }
}

/// The cluster adapter a node uses when Redis is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterChoice {
    /// Pub/sub, the format of `@socket.io/redis-adapter` 8.x.
    Redis,
    /// Streams, the format of `@socket.io/redis-streams-adapter` 0.3.x.
    RedisStreams(StreamsSettings),
    /// Sharded pub/sub, the format of `createShardedAdapter` (redis-adapter 8.3).
    RedisSharded(SubscriptionMode),
}

/// The redis-streams adapter's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsSettings {
    pub stream_name: String,
    pub stream_count: u32,
    pub max_len: u64,
    pub session_key_prefix: String,
}

/// Checks the adapter settings; the streams ones only matter with `redis-streams`.
fn adapter_choice(a: &ClusterArgs, has_redis: bool) -> Result<AdapterChoice, ConfigError> {
    if a.adapter == AdapterKind::Redis {
        return Ok(AdapterChoice::Redis);
    }
    if !has_redis {
        let name = match a.adapter {
            AdapterKind::RedisSharded => "redis-sharded",
            _ => "redis-streams",
        };
        return Err(invalid(
            "adapter",
            "ADAPTER",
            format!("{name} needs Redis: set --redis-url (REDIS_URL) or --redis-host"),
        ));
    }
    if a.adapter == AdapterKind::RedisSharded {
        return Ok(AdapterChoice::RedisSharded(
            a.redis_sharded_subscription_mode.into(),
        ));
    }
    let name = a.redis_streams_name.trim();
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(invalid(
            "redis-streams-name",
            "REDIS_STREAMS_NAME",
            format!("{name:?} must be a Redis key without spaces"),
        ));
    }
    if !(1..=1024).contains(&a.redis_streams_count) {
        return Err(invalid(
            "redis-streams-count",
            "REDIS_STREAMS_COUNT",
            "must be between 1 and 1024 (one reader connection per stream)",
        ));
    }
    if a.redis_streams_max_len == 0 {
        return Err(invalid(
            "redis-streams-max-len",
            "REDIS_STREAMS_MAX_LEN",
            "must be at least 1",
        ));
    }
    if a.redis_streams_session_prefix.is_empty() {
        return Err(invalid(
            "redis-streams-session-prefix",
            "REDIS_STREAMS_SESSION_PREFIX",
            "must not be empty (sessions would be keys named by their bare id)",
        ));
    }
    Ok(AdapterChoice::RedisStreams(StreamsSettings {
        stream_name: name.to_owned(),
        stream_count: a.redis_streams_count,
        max_len: a.redis_streams_max_len,
        session_key_prefix: a.redis_streams_session_prefix.clone(),
    }))
}

/// The `/bench` settings, or `None` when off. The fault knobs only make sense with the
/// namespace on, so asking for them without it is an error rather than silently unused.
fn loadtest_namespace(a: &ServeArgs) -> Result<Option<LoadtestNamespace>, ConfigError> {
    if !a.loadtest_namespace {
        if a.loadtest_drop_every.is_some() {
            return Err(invalid(
                "loadtest-drop-every",
                "LOADTEST_DROP_EVERY",
                "requires --loadtest-namespace (LOADTEST_NAMESPACE=true)",
            ));
        }
        if a.loadtest_delay_ms.is_some() {
            return Err(invalid(
                "loadtest-delay-ms",
                "LOADTEST_DELAY_MS",
                "requires --loadtest-namespace (LOADTEST_NAMESPACE=true)",
            ));
        }
        return Ok(None);
    }
    if a.loadtest_drop_every == Some(0) {
        return Err(invalid(
            "loadtest-drop-every",
            "LOADTEST_DROP_EVERY",
            "must be at least 1 (1 drops every broadcast)",
        ));
    }
    if a.loadtest_delay_ms.is_some_and(|d| d > 60_000) {
        return Err(invalid(
            "loadtest-delay-ms",
            "LOADTEST_DELAY_MS",
            "must be at most 60000 milliseconds",
        ));
    }
    Ok(Some(LoadtestNamespace {
        drop_every: a.loadtest_drop_every,
        delay: a
            .loadtest_delay_ms
            .filter(|d| *d > 0)
            .map(Duration::from_millis),
    }))
}

/// A node id goes into metric labels, Redis keys and logs: short, no spaces.
fn validate_node_id(id: &str) -> Result<String, ConfigError> {
    let id = id.trim();
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(invalid(
            "node-id",
            "NODE_ID",
            format!("{id:?} must be 1-64 characters of A-Z a-z 0-9 - _ . :"),
        ))
    }
}

/// `hostname-pid` (the hostname is the pod name in Kubernetes), or a random short id
/// when the hostname is unknown.
fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .and_then(|h| validate_node_id(&h).ok());
    match host {
        Some(h) => format!("{h}-{}", std::process::id()),
        None => format!("node-{:08x}", rand::random::<u32>()),
    }
}

/// Sizes in bytes: `1000000`, `1e6`, `1_000_000`.
fn parse_size(s: &str) -> Result<usize, String> {
    let cleaned = s.trim().replace('_', "");
    if let Ok(n) = cleaned.parse::<usize>() {
        return Ok(n);
    }
    match cleaned.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= usize::MAX as f64 => {
            Ok(f as usize)
        }
        _ => Err(format!(
            "{s:?} is not a size in bytes (e.g. 1000000 or 1e6)"
        )),
    }
}

fn parse_transport(s: &str) -> Result<TransportKind, String> {
    TransportKind::parse(s.trim())
        .ok_or_else(|| format!("{s:?} is not a transport (websocket, polling)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(argv: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("t").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_args(&cli.args).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_requirements() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3001".parse().unwrap());
        let e = &c.server.engine;
        assert_eq!(e.ping_interval, Duration::from_millis(25_000));
        assert_eq!(e.ping_timeout, Duration::from_millis(60_000));
        assert_eq!(e.upgrade_timeout, Duration::from_millis(10_000));
        assert_eq!(e.max_payload, 1_000_000);
        assert_eq!(e.path, "/socket.io/");
        assert_eq!(
            e.transports,
            vec![TransportKind::Websocket, TransportKind::Polling]
        );
        assert_eq!(c.namespaces, vec!["/", "/chat", "/notifications"]);
        assert_eq!(c.role, Role::All);
    }

    #[test]
    fn a_role_keeps_its_own_namespace_and_the_shared_ones() {
        let c = parse(&["--role", "chat"]).unwrap();
        assert_eq!(c.namespaces, vec!["/", "/chat"]);
        let c = parse(&[
            "--role",
            "notifications",
            "--namespaces",
            "/,/x,/notifications",
        ]);
        assert_eq!(c.unwrap().namespaces, vec!["/", "/x", "/notifications"]);
        let e = parse(&["--role", "chat", "--namespaces", "/,/notifications"]).unwrap_err();
        assert!(
            e.contains("--role chat serves /chat, but --namespaces does not list it"),
            "{e}"
        );
        assert!(parse(&["--role", "gateway"])
            .unwrap_err()
            .contains("--role"));
    }

    #[test]
    fn invalid_settings_name_themselves() {
        let cases: &[(&[&str], &str)] = &[
            (&["--ping-interval", "abc"], "--ping-interval"),
            (&["--ping-timeout", "0"], "--ping-timeout"),
            (&["--transports", "carrier-pigeon"], "--transports"),
            (
                &["--max-http-buffer-size", "lots"],
                "--max-http-buffer-size",
            ),
            (&["--namespaces", "chat"], "--namespaces"),
            (
                &["--allowed-origins", "localhost:3000"],
                "--allowed-origins",
            ),
            (&["--path", "socket.io"], "--path"),
            (&["--no-such-flag"], "--no-such-flag"),
            (&["--rate-limit", "message:send=ten/60"], "--rate-limit"),
            (
                &["--env", "production", "--service-token", "t"],
                "NEXTAUTH_SECRET",
            ),
        ];
        for (argv, needle) in cases {
            let err = parse(argv).unwrap_err();
            assert!(err.contains(needle), "{argv:?} -> {err}");
        }
    }

    #[test]
    fn node_id_defaults_to_hostname_pid_and_is_validated() {
        let c = parse(&[]).unwrap();
        assert!(
            c.node_id.ends_with(&format!("-{}", std::process::id()))
                || c.node_id.starts_with("node-")
        );
        assert_eq!(parse(&["--node-id", "web-1"]).unwrap().node_id, "web-1");
        assert!(parse(&["--node-id", "has space"])
            .unwrap_err()
            .contains("--node-id"));
        assert!(parse(&["--health-timeout", "0"])
            .unwrap_err()
            .contains("--health-timeout"));
        let c = parse(&["--drain-delay", "5000"]).unwrap();
        assert_eq!(c.server.drain_delay, Duration::from_secs(5));
        assert_eq!(c.health_timeout, Duration::from_secs(1));
    }

    #[test]
    fn loadtest_namespace_is_off_by_default_and_its_knobs_need_it() {
        assert_eq!(parse(&[]).unwrap().loadtest, None);
        let c = parse(&["--loadtest-namespace"]).unwrap();
        assert_eq!(c.loadtest, Some(LoadtestNamespace::default()));
        let c = parse(&[
            "--loadtest-namespace",
            "--loadtest-drop-every",
            "5",
            "--loadtest-delay-ms",
            "20",
        ])
        .unwrap();
        assert_eq!(
            c.loadtest,
            Some(LoadtestNamespace {
                drop_every: Some(5),
                delay: Some(Duration::from_millis(20)),
            })
        );
        for (argv, needle) in [
            (&["--loadtest-drop-every", "5"][..], "--loadtest-drop-every"),
            (&["--loadtest-delay-ms", "5"][..], "--loadtest-delay-ms"),
            (
                &["--loadtest-namespace", "--loadtest-drop-every", "0"][..],
                "at least 1",
            ),
        ] {
            let err = parse(argv).unwrap_err();
            assert!(err.contains(needle), "{argv:?} -> {err}");
        }
    }

    #[test]
    fn the_streams_adapter_needs_redis_and_sane_settings() {
        assert_eq!(parse(&[]).unwrap().adapter, AdapterChoice::Redis);
        let redis = ["--redis-url", "redis://127.0.0.1:6379"];
        let with = |extra: &[&str]| {
            let mut argv = redis.to_vec();
            argv.extend_from_slice(extra);
            parse(&argv)
        };
        assert_eq!(
            with(&["--adapter", "redis-streams"]).unwrap().adapter,
            AdapterChoice::RedisStreams(StreamsSettings {
                stream_name: "socket.io".into(),
                stream_count: 1,
                max_len: 10_000,
                session_key_prefix: "sio:session:".into(),
            })
        );
        let c = with(&[
            "--adapter",
            "redis-streams",
            "--redis-streams-name",
            "rt",
            "--redis-streams-count",
            "4",
            "--redis-streams-max-len",
            "500",
            "--redis-streams-session-prefix",
            "rt:s:",
        ])
        .unwrap();
        let AdapterChoice::RedisStreams(s) = c.adapter else {
            panic!("streams");
        };
        assert_eq!(
            (s.stream_name.as_str(), s.stream_count, s.max_len),
            ("rt", 4, 500)
        );
        assert_eq!(s.session_key_prefix, "rt:s:");
        for (argv, needle) in [
            (&["--adapter", "redis-streams"][..], "REDIS_URL"),
            (&["--adapter", "kafka"][..], "--adapter"),
        ] {
            let err = parse(argv).unwrap_err();
            assert!(err.contains(needle), "{argv:?} -> {err}");
        }
        for (flag, value) in [
            ("--redis-streams-name", " "),
            ("--redis-streams-count", "0"),
            ("--redis-streams-max-len", "0"),
            ("--redis-streams-session-prefix", ""),
        ] {
            let err = with(&["--adapter", "redis-streams", flag, value]).unwrap_err();
            assert!(err.contains(flag), "{flag} {value:?} -> {err}");
        }
    }

    #[test]
    fn the_sharded_adapter_needs_redis_and_takes_a_subscription_mode() {
        let redis = ["--redis-url", "redis://127.0.0.1:6379"];
        let with = |extra: &[&str]| {
            let mut argv = redis.to_vec();
            argv.extend_from_slice(extra);
            parse(&argv)
        };
        assert_eq!(
            with(&["--adapter", "redis-sharded"]).unwrap().adapter,
            AdapterChoice::RedisSharded(SubscriptionMode::Dynamic)
        );
        for (value, mode) in [
            ("static", SubscriptionMode::Static),
            ("dynamic-private", SubscriptionMode::DynamicPrivate),
        ] {
            let argv = [
                "--adapter",
                "redis-sharded",
                "--redis-sharded-subscription-mode",
                value,
            ];
            assert_eq!(
                with(&argv).unwrap().adapter,
                AdapterChoice::RedisSharded(mode)
            );
        }
        let err = parse(&["--adapter", "redis-sharded"]).unwrap_err();
        assert!(err.contains("redis-sharded needs Redis"), "{err}");
        let err = with(&[
            "--adapter",
            "redis-sharded",
            "--redis-sharded-subscription-mode",
            "sometimes",
        ])
        .unwrap_err();
        assert!(err.contains("--redis-sharded-subscription-mode"), "{err}");
    }

    #[test]
    fn sizes_accept_scientific_notation() {
        assert_eq!(parse_size("1e6"), Ok(1_000_000));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert!(parse_size("1.5").is_err());
        assert!(parse_size("-1").is_err());
    }
}
