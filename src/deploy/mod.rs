//! Deployment descriptions `rtctl gen` writes: which services run (one per role), on
//! which Engine.IO paths, and the Kubernetes objects with their sizes and timings. Pure
//! planning and rendering; the commands only parse flags and write files.

pub mod k8s;
pub mod layout;

use crate::templates::{TemplateError, Templates};

/// One generated file, by its path relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: String,
    pub content: String,
}

impl k8s::K8sPlan {
    /// Every manifest of the plan: per service a Deployment, Service, HPA and PDB; one
    /// Ingress, PodMonitor and Grafana dashboard ConfigMap; and, under `helm/` (not a
    /// Kubernetes object, so `kubectl apply -f DIR` skips it), prometheus-adapter's
    /// values with the rule the HPA's Pods metric needs.
    pub fn render(
        &self,
        templates: &Templates,
        dashboard_json: &str,
    ) -> Result<Vec<GeneratedFile>, TemplateError> {
        let mut files = Vec::new();
        for svc in &self.services {
            for kind in ["deployment", "service", "hpa", "pdb"] {
                let ctx = minijinja::context! {
                    plan => self,
                    svc => svc,
                    grace_margin_s => k8s::GRACE_MARGIN_S,
                };
                files.push(GeneratedFile {
                    path: format!("{}-{kind}.yaml", svc.name),
                    content: templates.render(&format!("k8s/{kind}.yaml.j2"), ctx)?,
                });
            }
        }
        for (kind, path) in [
            ("ingress", "ingress.yaml"),
            ("podmonitor", "podmonitor.yaml"),
            ("grafana-dashboard", "grafana-dashboard.yaml"),
            (
                "prometheus-adapter-values",
                "helm/prometheus-adapter-values.yaml",
            ),
        ] {
            let ctx = minijinja::context! { plan => self, dashboard => dashboard_json };
            files.push(GeneratedFile {
                path: path.into(),
                content: templates.render(&format!("k8s/{kind}.yaml.j2"), ctx)?,
            });
        }
        Ok(files)
    }
}
