// The checks a schema cannot do on what `rtctl gen k8s` writes, against a live node.
// (tests/it/gen_k8s.rs runs kubernetes-validate on the core objects first.)
//
// - the PodMonitor validates against the prometheus-operator CRD's schema, as compiled by
//   @kubernetes-models/prometheus-operator;
// - selectors: each Service, PDB and the PodMonitor select the pods of a Deployment, each
//   named port exists on the container;
// - probes: every probe path answers on the node (not 404), on the container's port;
// - the drain: terminationGracePeriodSeconds > preStop sleep + DRAIN_DELAY + SHUTDOWN_TIMEOUT;
// - routing: every Ingress path is the SOCKETIO_PATH of the pods behind it, the proxy
//   timeouts outlive one heartbeat, and without affinity the pods accept WebSocket only;
// - autoscaling: the HPA's Pods metric is the one prometheus-adapter's rule serves, and the
//   series that rule reads exists in a live scrape of the node; the HPA targets a Deployment;
// - the Grafana ConfigMap holds a dashboard that parses.
//
// Usage: node k8s-manifests.mjs <dir> <node-url>
// Prints `ok <check>` per check; exits 1 listing every failure.

import fs from "node:fs";
import path from "node:path";
import * as yaml from "js-yaml";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";

const [dir, nodeUrl] = process.argv.slice(2);
if (!dir || !nodeUrl) {
  console.error("usage: node k8s-manifests.mjs <dir> <node-url>");
  process.exit(2);
}

const failures = [];
function check(name, ok, detail) {
  if (ok) console.log(`ok ${name}`);
  else failures.push(`${name}: ${detail}`);
}

function load(file) {
  return yaml.loadAll(fs.readFileSync(file, "utf8")).filter(Boolean);
}
const objects = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith(".yaml"))
  .flatMap((f) => load(path.join(dir, f)).map((o) => ({ ...o, file: f })));
const adapter = load(path.join(dir, "helm", "prometheus-adapter-values.yaml"))[0];
const ofKind = (kind) => objects.filter((o) => o.kind === kind);
const deployments = ofKind("Deployment");
const matches = (selector, labels) =>
  Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v) && Object.keys(selector ?? {}).length > 0;
const podsOf = (selector) => deployments.filter((d) => matches(selector, d.spec.template.metadata.labels));
const container = (d) => d.spec.template.spec.containers[0];
const env = (d, name) => container(d).env?.find((e) => e.name === name)?.value;
const portNamed = (d, name) => container(d).ports?.some((p) => p.name === name);

async function get(pathname) {
  try {
    const res = await fetch(new URL(pathname, nodeUrl), { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    return { status: 0, body: String(err) };
  }
}

check("at least one Deployment", deployments.length > 0, `none in ${dir}`);

for (const d of deployments) {
  const name = `Deployment ${d.metadata.name}`;
  check(`${name}: selector matches its pods`, matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels), "selector/labels differ");
  for (const kind of ["startupProbe", "livenessProbe", "readinessProbe"]) {
    const probe = container(d)[kind]?.httpGet;
    if (!probe) {
      check(`${name}: ${kind}`, kind === "startupProbe", "missing");
      continue;
    }
    check(`${name}: ${kind} port ${probe.port} exists`, portNamed(d, probe.port), "no container port of that name");
    const res = await get(probe.path);
    check(`${name}: ${kind} ${probe.path} answers on the node`, res.status === 200, `GET ${probe.path}: ${res.status} ${res.body.slice(0, 200)}`);
  }
  const grace = d.spec.template.spec.terminationGracePeriodSeconds;
  const preStop = container(d).lifecycle?.preStop?.sleep?.seconds ?? 0;
  const drainS = (Number(env(d, "DRAIN_DELAY") ?? 0) + Number(env(d, "SHUTDOWN_TIMEOUT") ?? 10000)) / 1000;
  check(`${name}: grace ${grace} s > preStop ${preStop} s + drain ${drainS} s`, grace > preStop + drainS, "SIGKILL would cut the drain short");
  check(`${name}: NODE_ID from the pod name`, container(d).env?.find((e) => e.name === "NODE_ID")?.valueFrom?.fieldRef?.fieldPath === "metadata.name", "NODE_ID not from metadata.name");
  check(`${name}: production mode`, env(d, "RT_ENV") === "production", `RT_ENV=${env(d, "RT_ENV")}`);
  check(`${name}: zero-downtime rollout`, d.spec.strategy?.rollingUpdate?.maxUnavailable === 0, "maxUnavailable is not 0");
}

for (const s of ofKind("Service")) {
  const pods = podsOf(s.spec.selector);
  check(`Service ${s.metadata.name}: selects one Deployment's pods`, pods.length === 1, `selects ${pods.length}`);
  for (const p of s.spec.ports) {
    check(`Service ${s.metadata.name}: targetPort ${p.targetPort}`, pods.every((d) => portNamed(d, p.targetPort)), "no such container port");
  }
}

for (const pdb of ofKind("PodDisruptionBudget")) {
  check(`PDB ${pdb.metadata.name}: selects one Deployment's pods`, podsOf(pdb.spec.selector.matchLabels).length === 1, "selects none or several");
}

const services = new Map(ofKind("Service").map((s) => [s.metadata.name, s]));
for (const ing of ofKind("Ingress")) {
  const a = ing.metadata.annotations ?? {};
  const sticky = a["nginx.ingress.kubernetes.io/affinity"] === "cookie" || "nginx.ingress.kubernetes.io/upstream-hash-by" in a;
  for (const rule of ing.spec.rules) {
    for (const p of rule.http.paths) {
      const svc = services.get(p.backend.service.name);
      const where = `Ingress ${p.path} → ${p.backend.service.name}`;
      check(`${where}: the Service exists with port ${p.backend.service.port.name}`, svc?.spec.ports.some((sp) => sp.name === p.backend.service.port.name), "no such Service or port");
      const pods = svc ? podsOf(svc.spec.selector) : [];
      check(`${where}: the pods' SOCKETIO_PATH`, pods.length > 0 && pods.every((d) => env(d, "SOCKETIO_PATH") === p.path), pods.map((d) => env(d, "SOCKETIO_PATH")).join(","));
      for (const d of pods) {
        const heartbeatS = (Number(env(d, "PING_INTERVAL")) + Number(env(d, "PING_TIMEOUT"))) / 1000;
        for (const t of ["proxy-read-timeout", "proxy-send-timeout"]) {
          const v = Number(a[`nginx.ingress.kubernetes.io/${t}`]);
          check(`${where}: ${t} ${v} s > heartbeat ${heartbeatS} s`, v > heartbeatS, "idle connections would be cut");
        }
        check(`${where}: no affinity means WebSocket only`, sticky || env(d, "TRANSPORTS") === "websocket", "polling without affinity reaches the wrong pod");
      }
    }
  }
}

const rules = adapter?.rules?.custom ?? [];
const scrape = await get("/metrics");
check("the node serves /metrics", scrape.status === 200, `${scrape.status}`);
for (const hpa of ofKind("HorizontalPodAutoscaler")) {
  const where = `HPA ${hpa.metadata.name}`;
  const target = deployments.find((d) => d.metadata.name === hpa.spec.scaleTargetRef.name);
  check(`${where}: targets a Deployment`, hpa.spec.scaleTargetRef.kind === "Deployment" && target, "no such Deployment");
  check(`${where}: min ≤ max`, hpa.spec.minReplicas <= hpa.spec.maxReplicas, `${hpa.spec.minReplicas} > ${hpa.spec.maxReplicas}`);
  for (const m of hpa.spec.metrics.filter((m) => m.type === "Pods")) {
    const rule = rules.find((r) => r.name?.as === m.pods.metric.name);
    check(`${where}: prometheus-adapter serves ${m.pods.metric.name}`, rule, "no adapter rule names it");
    const series = rule?.seriesQuery?.match(/^[a-zA-Z_:][a-zA-Z0-9_:]*/)?.[0];
    const present = series && new RegExp(`^${series}(\\{| )`, "m").test(scrape.body);
    check(`${where}: series ${series} in a live scrape`, present, "the node does not export it");
  }
}

for (const pm of ofKind("PodMonitor")) {
  const { file, ...doc } = pm;
  let valid = true;
  let detail = "";
  try {
    new PodMonitor(doc).validate();
  } catch (err) {
    valid = false;
    detail = err.message;
  }
  check(`PodMonitor ${pm.metadata.name}: CRD schema`, valid, detail);
  const pods = podsOf(pm.spec.selector.matchLabels);
  check(`PodMonitor ${pm.metadata.name}: selects every Deployment`, pods.length === deployments.length, `selects ${pods.length} of ${deployments.length}`);
  for (const ep of pm.spec.podMetricsEndpoints) {
    check(`PodMonitor port ${ep.port}`, pods.every((d) => portNamed(d, ep.port)), "no such container port");
    const res = await get(ep.path);
    check(`PodMonitor path ${ep.path} answers`, res.status === 200, `${res.status}`);
  }
}

for (const cm of ofKind("ConfigMap").filter((c) => c.metadata.labels?.grafana_dashboard)) {
  let uid = null;
  try {
    uid = JSON.parse(cm.data["realtime.json"]).uid;
  } catch (err) {
    uid = null;
  }
  check(`ConfigMap ${cm.metadata.name}: a dashboard`, typeof uid === "string", "realtime.json is not a dashboard");
}

if (failures.length) {
  console.error(`${failures.length} check(s) failed:\n- ${failures.join("\n- ")}`);
  process.exit(1);
}
console.log(`all checks passed (${objects.length} objects)`);
