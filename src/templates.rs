//! The templates `rtctl gen` renders (minijinja), embedded in the binary so it works
//! anywhere, and overridable file by file with `--templates DIR` (same relative names).

use minijinja::Environment;
use std::path::{Path, PathBuf};

/// Every template the binary ships, by its path under `templates/`.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "nginx/nginx.conf.j2",
        include_str!("../templates/nginx/nginx.conf.j2"),
    ),
    (
        "migrations/sqlx.sql.j2",
        include_str!("../templates/migrations/sqlx.sql.j2"),
    ),
    (
        "migrations/prisma.sql.j2",
        include_str!("../templates/migrations/prisma.sql.j2"),
    ),
    (
        "grafana/dashboard.json.j2",
        include_str!("../templates/grafana/dashboard.json.j2"),
    ),
    (
        "grafana/datasource.yaml.j2",
        include_str!("../templates/grafana/datasource.yaml.j2"),
    ),
    (
        "grafana/dashboards.yaml.j2",
        include_str!("../templates/grafana/dashboards.yaml.j2"),
    ),
    (
        "prometheus/prometheus.yml.j2",
        include_str!("../templates/prometheus/prometheus.yml.j2"),
    ),
    (
        "prometheus/realtime.rules.yml.j2",
        include_str!("../templates/prometheus/realtime.rules.yml.j2"),
    ),
    (
        "k8s/deployment.yaml.j2",
        include_str!("../templates/k8s/deployment.yaml.j2"),
    ),
    (
        "k8s/service.yaml.j2",
        include_str!("../templates/k8s/service.yaml.j2"),
    ),
    (
        "k8s/hpa.yaml.j2",
        include_str!("../templates/k8s/hpa.yaml.j2"),
    ),
    (
        "k8s/pdb.yaml.j2",
        include_str!("../templates/k8s/pdb.yaml.j2"),
    ),
    (
        "k8s/ingress.yaml.j2",
        include_str!("../templates/k8s/ingress.yaml.j2"),
    ),
    (
        "k8s/podmonitor.yaml.j2",
        include_str!("../templates/k8s/podmonitor.yaml.j2"),
    ),
    (
        "k8s/prometheus-adapter-values.yaml.j2",
        include_str!("../templates/k8s/prometheus-adapter-values.yaml.j2"),
    ),
    (
        "k8s/grafana-dashboard.yaml.j2",
        include_str!("../templates/k8s/grafana-dashboard.yaml.j2"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name} is invalid or failed to render: {source}")]
    Render {
        name: String,
        source: minijinja::Error,
    },
}

/// The loaded templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The embedded templates, each replaced by `DIR/<same path>` when that file exists.
    pub fn load(override_dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_keep_trailing_newline(true);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // No escaping: the templates are config files (YAML, JSON, nginx), and each quotes
        // its values itself (`tojson` where a string must be a YAML/JSON literal).
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        for (name, embedded) in EMBEDDED {
            let source = match override_dir.map(|d| d.join(name)) {
                Some(path) if path.exists() => std::fs::read_to_string(&path)
                    .map_err(|source| TemplateError::Read { path, source })?,
                _ => (*embedded).to_owned(),
            };
            env.add_template_owned(*name, source)
                .map_err(|source| TemplateError::Render {
                    name: (*name).to_owned(),
                    source,
                })?;
        }
        Ok(Templates { env })
    }

    pub fn render(&self, name: &str, ctx: impl serde::Serialize) -> Result<String, TemplateError> {
        let err = |source| TemplateError::Render {
            name: name.to_owned(),
            source,
        };
        self.env
            .get_template(name)
            .map_err(err)?
            .render(ctx)
            .map_err(err)
    }
}
