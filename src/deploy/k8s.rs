//! The numbers behind `rtctl gen k8s`: resources from the measured cost of a connection
//! and a delivery, the termination grace from the drain settings, the ingress timeouts
//! from the heartbeat. The templates (`templates/k8s/`) only lay them out; every rule a
//! generated manifest must keep is decided and checked here.

use super::layout::{self, Paths, Service};
use crate::handlers::role::Role;
use serde::Serialize;

/// RSS of an idle authenticated WebSocket at 10,000 connections, upper end of the
/// measured range (`examples/idle-connections`, docs/scaling/infrastructure.md).
pub const BYTES_PER_CONNECTION: u64 = 6_504;
/// What a node needs besides its clients: an idle release node is 11.6 MiB RSS (measured
/// with `ps -o rss`, embedded store, no clients); the rest is room for the database and
/// Redis pools, caches and the allocator's slack under load.
pub const BASE_MEMORY_MIB: u64 = 64;
/// CPU a cluster node spends per delivered message in the phase 3 run (six nodes sharing
/// one Redis: each decodes every broadcast), the dearest figure measured
/// (docs/scaling/benchmarks.md); a single node spends 12–24 µs.
pub const CPU_MICROS_PER_DELIVERY: u64 = 48;
/// Below this a pod starves during handshake bursts (reconnect storms after a deploy).
pub const MIN_CPU_MILLIS: u64 = 250;
/// Seconds between the last of the drain and SIGKILL, for the process to exit.
pub const GRACE_MARGIN_S: u64 = 5;

/// How browsers stay on the pod that holds their session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Affinity {
    /// ingress-nginx cookie affinity: works behind NAT and for polling; the browser must
    /// send the cookie (same origin, or `withCredentials: true`).
    Cookie,
    /// ingress-nginx `upstream-hash-by` on the client address: no cookie needed, but one
    /// NAT address lands on one pod.
    Hash,
    /// No affinity: the pods accept WebSocket only (`TRANSPORTS=websocket`), so any pod
    /// can take any connection; browsers must use `transports: ["websocket"]`.
    None,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum K8sError {
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("--max-replicas ({max}) is below --replicas ({min}); the autoscaler needs max ≥ min")]
    Replicas { min: u32, max: u32 },
    #[error("{name} {value:?} is not a valid Kubernetes name (lowercase letters, digits and '-', starting with a letter, at most {max} characters)")]
    Name {
        name: &'static str,
        value: String,
        max: usize,
    },
}

/// What the user asked for (the templates read these fields through [`K8sPlan`]).
#[derive(Debug, Clone, Serialize)]
pub struct K8sOptions {
    pub name: String,
    pub namespace: String,
    pub image: String,
    #[serde(skip)]
    pub roles: Vec<Role>,
    #[serde(skip)]
    pub paths: Paths,
    pub replicas: u32,
    pub max_replicas: u32,
    pub connections_per_pod: u32,
    pub deliveries_per_pod: u32,
    pub target_cpu_percent: u32,
    pub affinity: Affinity,
    pub host: String,
    pub tls_secret: Option<String>,
    pub ingress_class: String,
    pub secret_name: String,
    pub port: u16,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub drain_delay_ms: u64,
    pub shutdown_timeout_ms: u64,
    pub pre_stop_s: u64,
}

/// Everything the templates lay out: the options as given, and what follows from them.
#[derive(Debug, Clone, Serialize)]
pub struct K8sPlan {
    #[serde(flatten)]
    pub options: K8sOptions,
    pub services: Vec<Service>,
    pub websocket_only: bool,
    /// preStop + DRAIN_DELAY + SHUTDOWN_TIMEOUT + margin, whole seconds.
    pub grace_period_s: u64,
    /// Ingress proxy read/send timeout: above one heartbeat cycle.
    pub proxy_timeout_s: u64,
    pub memory_request_mib: u64,
    pub memory_limit_mib: u64,
    pub cpu_request_millis: u64,
    /// The custom metric the autoscaler reads, as prometheus-adapter names it.
    pub hpa_metric: &'static str,
    /// The series prometheus-adapter turns into [`Self::hpa_metric`].
    pub hpa_series: &'static str,
}

/// Name of the per-pod connections metric the HPA scales on.
pub const HPA_METRIC: &str = "realtime_connections_per_pod";
/// The node's gauge of open Engine.IO sessions (one per browser connection).
pub const HPA_SERIES: &str = "realtime_engine_sessions";

impl K8sOptions {
    pub fn plan(&self) -> Result<K8sPlan, K8sError> {
        // Objects are named `<name>-notifications-pdb` at most: 63 characters in all.
        check_name("--name", &self.name, 40)?;
        check_name("--namespace", &self.namespace, 63)?;
        check_name("--secret-name", &self.secret_name, 253)?;
        if self.max_replicas < self.replicas {
            return Err(K8sError::Replicas {
                min: self.replicas,
                max: self.max_replicas,
            });
        }
        let services = layout::services(&self.name, &self.roles, &self.paths)?;
        let heartbeat_ms = self.ping_interval_ms + self.ping_timeout_ms;
        let drain_ms = self.drain_delay_ms + self.shutdown_timeout_ms;
        let memory_request_mib = BASE_MEMORY_MIB
            + (self.connections_per_pod as u64 * BYTES_PER_CONNECTION * 3 / 2).div_ceil(1 << 20);
        Ok(K8sPlan {
            options: self.clone(),
            services,
            websocket_only: self.affinity == Affinity::None,
            grace_period_s: self.pre_stop_s + drain_ms.div_ceil(1000) + GRACE_MARGIN_S,
            proxy_timeout_s: heartbeat_ms.div_ceil(1000) + 10,
            memory_request_mib,
            // Room for bursts of queued output to slow clients: a pod over its limit is
            // OOM-killed and drops every client it holds.
            memory_limit_mib: 2 * memory_request_mib,
            cpu_request_millis: cpu_request_millis(
                self.deliveries_per_pod,
                self.target_cpu_percent,
            ),
            hpa_metric: HPA_METRIC,
            hpa_series: HPA_SERIES,
        })
    }
}

/// The request that puts `deliveries` per second at the autoscaler's CPU target.
fn cpu_request_millis(deliveries: u32, target_percent: u32) -> u64 {
    let busy_millis = deliveries as u64 * CPU_MICROS_PER_DELIVERY / 1000;
    (busy_millis * 100)
        .div_ceil(target_percent.max(1) as u64)
        .max(MIN_CPU_MILLIS)
}

fn check_name(name: &'static str, value: &str, max: usize) -> Result<(), K8sError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(K8sError::Name {
            name,
            value: value.to_owned(),
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> K8sOptions {
        K8sOptions {
            name: "realtime".into(),
            namespace: "default".into(),
            image: "realtime:1".into(),
            roles: vec![Role::All],
            paths: Paths::default(),
            replicas: 3,
            max_replicas: 12,
            connections_per_pod: 15_000,
            deliveries_per_pod: 5_000,
            target_cpu_percent: 70,
            affinity: Affinity::Cookie,
            host: "rt.example.com".into(),
            tls_secret: None,
            ingress_class: "nginx".into(),
            secret_name: "realtime-secrets".into(),
            port: 3001,
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            drain_delay_ms: 5_000,
            shutdown_timeout_ms: 10_000,
            pre_stop_s: 5,
        }
    }

    #[test]
    fn the_grace_period_outlives_the_whole_drain() {
        let plan = options().plan().unwrap();
        assert_eq!(plan.grace_period_s, 5 + 15 + GRACE_MARGIN_S);
        let odd = K8sOptions {
            drain_delay_ms: 1,
            shutdown_timeout_ms: 1,
            pre_stop_s: 0,
            ..options()
        };
        assert!(odd.plan().unwrap().grace_period_s * 1000 > 2);
    }

    #[test]
    fn resources_follow_the_measured_costs() {
        let plan = options().plan().unwrap();
        // 15,000 × 6,504 B × 1.5 = 139.6 MiB → 140, plus the base.
        assert_eq!(plan.memory_request_mib, 64 + 140);
        assert_eq!(plan.memory_limit_mib, 2 * 204);
        // 5,000/s × 48 µs = 240 ms of CPU per second, at 70 % → 343m.
        assert_eq!(plan.cpu_request_millis, 343);
        assert_eq!(cpu_request_millis(100, 70), MIN_CPU_MILLIS);
        // Proxies wait longer than one heartbeat cycle (45 s).
        assert_eq!(plan.proxy_timeout_s, 55);
    }

    #[test]
    fn bad_options_are_refused_with_what_to_change() {
        let few = K8sOptions {
            max_replicas: 2,
            ..options()
        };
        assert_eq!(
            few.plan().unwrap_err(),
            K8sError::Replicas { min: 3, max: 2 }
        );
        for bad in ["", "Realtime", "rt_1", "1rt", "rt-", &"r".repeat(41)] {
            let o = K8sOptions {
                name: bad.into(),
                ..options()
            };
            assert!(matches!(o.plan(), Err(K8sError::Name { .. })), "{bad}");
        }
        let mixed = K8sOptions {
            roles: vec![Role::All, Role::Chat],
            ..options()
        };
        assert!(matches!(mixed.plan(), Err(K8sError::Layout(_))));
    }
}
