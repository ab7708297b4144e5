//! `rtctl gen k8s`: every generated object passes the Kubernetes schemas of a stated
//! version (PyPI kubernetes-validate, strict: unknown fields are errors), and the checks a
//! schema cannot do pass against a live node (tests/interop/k8s-manifests.mjs: probe paths,
//! the scraped metric the autoscaler names, the grace period against the drain, selectors,
//! Ingress paths against SOCKETIO_PATH, the PodMonitor against its CRD schema). Each check
//! is also shown to fail on a manifest broken on purpose.

use crate::common::node::NodeProcess;
use crate::common::nodejs::{interop_dir, require_node};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Kubernetes version the manifests are validated against (`-k`).
const KUBERNETES_VERSION: &str = "1.31.0";
const VALIDATE_HINT: &str = "kubernetes-validate is installed by scripts/test (into \
    target/test-tools/kubernetes-validate); by hand: `python3 -m venv /tmp/kv && \
    /tmp/kv/bin/pip install kubernetes-validate==1.37.0` and set \
    KUBERNETES_VALIDATE=/tmp/kv/bin/kubernetes-validate";

fn kubernetes_validate() -> PathBuf {
    let path = std::env::var_os("KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/test-tools/kubernetes-validate/bin/kubernetes-validate")
        });
    assert!(
        path.is_file(),
        "{} not found: {VALIDATE_HINT}",
        path.display()
    );
    path
}

fn generate(tag: &str, args: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rt-gen-k8s-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["gen", "k8s", "-o"])
        .arg(&dir)
        .args(args)
        .output()
        .expect("run rtctl");
    assert!(
        out.status.success(),
        "rtctl gen k8s {args:?}: {}",
        text(&out)
    );
    dir
}

fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn schema_check(dir: &Path) -> Output {
    Command::new(kubernetes_validate())
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(manifests(dir))
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubernetes-validate ({e}): {VALIDATE_HINT}"))
}

fn semantic_check(dir: &Path, node: &NodeProcess) -> Output {
    Command::new("node")
        .arg(interop_dir().join("k8s-manifests.mjs"))
        .arg(dir)
        .arg(node.url())
        .output()
        .expect("run node k8s-manifests.mjs")
}

fn edit(file: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(file).unwrap();
    assert!(s.contains(from), "{from:?} not in {}", file.display());
    std::fs::write(file, s.replacen(from, to, 1)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_manifests_are_schema_valid_and_consistent_with_a_live_node() {
    require_node(&["js-yaml", "@kubernetes-models/prometheus-operator"]);
    let node = NodeProcess::start("k8s-check", &[], &[]).await;
    let variants: [(&str, &[&str]); 3] = [
        ("single", &[]),
        (
            "split",
            &[
                "--role",
                "chat,notifications",
                "--affinity",
                "hash",
                "--tls-secret",
                "rt-tls",
                "--namespace",
                "chat-prod",
                "--image",
                "registry.example.com/realtime:1.2.3",
            ],
        ),
        ("ws-only", &["--affinity", "none", "--replicas", "2"]),
    ];
    for (tag, args) in variants {
        let dir = generate(tag, args);
        let kinds = manifests(&dir).len();
        let expected = if tag == "split" { 11 } else { 7 };
        assert_eq!(kinds, expected, "{tag}: {:?}", manifests(&dir));
        let schema = schema_check(&dir);
        let report = text(&schema);
        assert!(
            schema.status.success(),
            "{tag}: kubernetes-validate:\n{report}"
        );
        // Every core object was checked against a schema; only the CRD has none there.
        assert_eq!(
            report.matches(" passed for resource ").count(),
            expected - 1,
            "{report}"
        );
        assert!(
            report.contains("kind PodMonitor") && !report.contains("ERROR"),
            "{report}"
        );
        let checks = semantic_check(&dir, &node);
        assert!(
            checks.status.success(),
            "{tag}: k8s-manifests.mjs:\n{}",
            text(&checks)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The checks are not vacuous: each broken manifest is refused, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_manifests_are_refused() {
    require_node(&["js-yaml", "@kubernetes-models/prometheus-operator"]);
    let node = NodeProcess::start("k8s-broken", &[], &[]).await;
    let dir = generate("broken", &["--role", "chat,notifications"]);
    let chat = dir.join("realtime-chat-deployment.yaml");
    edit(&chat, "readinessProbe:", "readinesProbe:");
    let schema = schema_check(&dir);
    assert!(
        !schema.status.success(),
        "a misspelt field passed:\n{}",
        text(&schema)
    );
    assert!(text(&schema).contains("readinesProbe"), "{}", text(&schema));
    edit(&chat, "readinesProbe:", "readinessProbe:");
    assert!(schema_check(&dir).status.success());

    edit(
        &chat,
        "terminationGracePeriodSeconds: 25",
        "terminationGracePeriodSeconds: 15",
    );
    edit(
        &chat,
        "path: /api/health/live\n              port: http\n            periodSeconds: 10",
        "path: /api/health/alive\n              port: http\n            periodSeconds: 10",
    );
    edit(
        &dir.join("helm/prometheus-adapter-values.yaml"),
        "as: \"realtime_connections_per_pod\"",
        "as: \"realtime_sessions\"",
    );
    edit(
        &dir.join("ingress.yaml"),
        "- path: \"/notifications-io/\"",
        "- path: \"/socket.io/\"",
    );
    edit(
        &dir.join("podmonitor.yaml"),
        "honorLabels: true",
        "honorLabels: \"yes\"",
    );
    let out = semantic_check(&dir, &node);
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    for reason in [
        "grace 15 s > preStop 5 s + drain 15 s",
        "livenessProbe /api/health/alive answers on the node: GET /api/health/alive: 404",
        "HPA realtime-chat: prometheus-adapter serves realtime_connections_per_pod",
        "Ingress /socket.io/ → realtime-notifications: the pods' SOCKETIO_PATH",
        "PodMonitor realtime: CRD schema",
    ] {
        assert!(report.contains(reason), "missing {reason:?} in:\n{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
